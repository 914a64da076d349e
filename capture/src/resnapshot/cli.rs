//! `capture resnapshot`: asks the running capture (its HTTP server, `listen` of its configuration, or `--url`) to
//! re-snapshot one table of one source, and prints the answer.

use std::time::Duration;

use crate::config::Settings;

/// `capture resnapshot --source S --table db.t [--where SQL]`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The source (`name` of a `[[sources]]` entry).
    #[arg(long)]
    pub source: String,
    /// The table, `database.table`; it must be captured by the source and have a primary key.
    #[arg(long)]
    pub table: String,
    /// Only rows matching this SQL condition on the table's columns (as after WHERE), e.g. "id > 1000".
    #[arg(long = "where", value_name = "SQL")]
    pub filter: Option<String>,
    /// Base URL of the running capture's HTTP server; default: `listen` of the configuration.
    #[arg(long)]
    pub url: Option<String>,
}

/// The capture's base URL: `--url`, else `listen` (an unspecified address is reached on the loopback).
pub fn base_url(settings: &Settings, url: Option<&str>) -> String {
    match url {
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

/// Sends the request; returns the line to print on success, or the error to print.
pub async fn run(settings: &Settings, args: &Args) -> anyhow::Result<String> {
    let base = base_url(settings, args.url.as_deref());
    let url = format!("{base}/sources/{}/resnapshot", args.source);
    let body = serde_json::json!({ "table": args.table, "where": args.filter });
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let response = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the capture at {base} ({e}); is it running? (--url to name its address)"))?;
    let status = response.status();
    let text = response.text().await?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if status.is_success() {
        Ok(format!("resnapshot of {} on source {} started; progress in {base}/health: {json}", args.table, args.source))
    } else {
        let error = json.get("error").and_then(|e| e.as_str()).map(str::to_owned).unwrap_or_else(|| json.to_string());
        anyhow::bail!("{error} (HTTP {})", status.as_u16())
    }
}
