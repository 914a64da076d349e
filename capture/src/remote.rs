//! Requests of the command line to a running capture's HTTP server: where it answers ([`Remote`], [`base_url`]), one
//! request ([`request`]), and the error of a refused one ([`refused`]).

use anyhow::{bail, Context, Result};

use crate::config::Settings;

/// Where the running capture answers.
#[derive(clap::Args, Debug, Clone)]
pub struct Remote {
    /// Base URL of the capture's HTTP server; default: `listen` of the configuration.
    #[arg(long)]
    pub url: Option<String>,
}

/// The base URL of the capture of `settings`, or `--url`.
pub(crate) fn base_url(settings: &Settings, remote: &Remote) -> String {
    match &remote.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let mut addr = settings.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    }
}

/// Nothing listens at the capture's address.
#[derive(Debug, thiserror::Error)]
#[error("no capture answers at {0}")]
pub(crate) struct NotRunning(String);

/// One request to the capture: the status and the body.
pub(crate) async fn request(base: &str, method: &str, path: &str, body: Option<String>) -> Result<(u16, String)> {
    if !base.starts_with("http://") {
        bail!("--url {base} must start with http://");
    }
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        // A skip reads the binlog up to its target: give it time.
        .timeout(std::time::Duration::from_secs(300))
        .build()?;
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut builder = client.request(method.clone(), format!("{base}{path}"));
    if let Some(body) = body {
        builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    }
    let response = match builder.send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() => return Err(NotRunning(base.to_owned()).into()),
        Err(e) if e.is_timeout() => bail!("{method} {base}{path}: no answer in time ({e})"),
        Err(e) => return Err(e).with_context(|| format!("{method} {base}{path}")),
    };
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// The error of a refused request.
pub(crate) fn refused(status: u16, body: &str) -> anyhow::Error {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    anyhow::anyhow!("refused ({status}): {message}")
}
