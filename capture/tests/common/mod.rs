//! Running the capture binary against a scratch database of the local stack.
#![allow(dead_code)] // each test binary uses a part

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use cdc_tests::{stack, unique_name, ScratchDb, TopicReader};
use rand::Rng;

/// A capture process with its own topic prefix, state directory and replica server id.
pub(crate) struct Capture {
    child: Option<Child>,
    /// The generated configuration file.
    pub(crate) config: PathBuf,
    /// Its state (checkpoint) directory.
    pub(crate) state_dir: PathBuf,
    /// Topic prefix.
    pub(crate) prefix: String,
    /// The database it captures.
    pub(crate) db: String,
    /// Base URL of /metrics and /health.
    pub(crate) url: String,
    /// Where its output goes.
    pub(crate) log: PathBuf,
}

/// Options of a test capture.
pub(crate) struct Options {
    pub(crate) snapshot: &'static str,
    pub(crate) chunk_rows: usize,
    pub(crate) extra: String,
}

impl Default for Options {
    fn default() -> Options {
        Options { snapshot: "initial", chunk_rows: 1000, extra: String::new() }
    }
}

/// One source of a test capture.
pub(crate) struct SourceSpec {
    /// The source's name.
    pub(crate) name: String,
    /// The capture account's URL with the captured database as its path.
    pub(crate) url: String,
}

impl Capture {
    /// Writes the configuration and starts the process: one source `src` on the scratch database, the shared
    /// stack's broker.
    pub(crate) fn start(db: &ScratchDb, options: Options) -> Result<Capture> {
        let source = SourceSpec { name: "src".into(), url: db.capture_url() };
        Capture::start_sources(stack().var("KAFKA_BROKERS"), &db.name, &[source], options)
    }

    /// Writes the configuration and starts the process with the given sources and broker; `db` is the database
    /// [`Capture::topic`] names topics of.
    pub(crate) fn start_sources(brokers: &str, db: &str, sources: &[SourceSpec], options: Options) -> Result<Capture> {
        let prefix = unique_name("cap");
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let server_id: u32 = rand::rng().random_range(10_000..4_000_000);
        let sources: String = sources
            .iter()
            .enumerate()
            .map(|(i, source)| {
                format!(
                    r#"
[[sources]]
name = "{name}"
url = "{url}"
server_id = {server_id}
snapshot = "{snapshot}"
snapshot_chunk_rows = {chunk}
heartbeat_interval = "500ms"
"#,
                    name = source.name,
                    url = source.url,
                    server_id = server_id + i as u32,
                    snapshot = options.snapshot,
                    chunk = options.chunk_rows,
                )
            })
            .collect();
        let config = dir.join("capture.toml");
        std::fs::write(
            &config,
            format!(
                r#"topic_prefix = "{prefix}"
state_dir = "{state}"
listen = "127.0.0.1:{port}"
checkpoint_interval = "50ms"
{extra}
[kafka]
brokers = "{brokers}"
partitions = 3
{sources}"#,
                state = dir.join("state").display(),
                extra = options.extra,
            ),
        )?;
        let mut capture = Capture {
            child: None,
            state_dir: dir.join("state"),
            log: dir.join("capture.log"),
            config,
            prefix,
            db: db.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
        };
        capture.spawn()?;
        Ok(capture)
    }

    fn spawn(&mut self) -> Result<()> {
        self.child = Some(spawn_logged(&self.config, &self.log)?);
        Ok(())
    }

    /// SIGKILL, no cleanup.
    pub(crate) fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the process again with the same configuration and state.
    pub(crate) fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// Graceful stop (SIGTERM) and its exit status.
    pub(crate) fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        Ok(child.wait()?)
    }

    /// SIGTERM, then waits at most `limit` for the exit: the exit status, or `None` if the process still ran
    /// (it is then killed).
    pub(crate) fn stop_within(&mut self, limit: Duration) -> Result<Option<std::process::ExitStatus>> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        let exited = cdc_tests::eventually_blocking(limit, || child.try_wait()?.context("still running"));
        if exited.is_err() {
            child.kill()?;
            child.wait()?;
        }
        Ok(exited.ok())
    }

    /// Runs a second capture process with the same configuration to its end (at most `limit`): its exit status
    /// (`None` if it still ran; it is then killed) and output.
    pub(crate) fn run_again(&self, limit: Duration) -> Result<(Option<std::process::ExitStatus>, String)> {
        let out = self.log.with_extension("second.log");
        let log = std::fs::File::create(&out)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_capture"))
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting a second capture")?;
        let exited = cdc_tests::eventually_blocking(limit, || child.try_wait()?.context("still running"));
        if exited.is_err() {
            child.kill()?;
            child.wait()?;
        }
        Ok((exited.ok(), std::fs::read_to_string(&out)?))
    }

    /// Whether the process has exited, and its status.
    pub(crate) fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }

    /// The topic of a table of the scratch database.
    pub(crate) fn topic(&self, table: &str) -> String {
        format!("{}.{}.{}", self.prefix, self.db, table)
    }

    /// The topic of a table of another database.
    pub(crate) fn topic_of(&self, db: &str, table: &str) -> String {
        format!("{}.{}.{}", self.prefix, db, table)
    }

    /// A reader of the given tables' topics.
    pub(crate) fn reader(&self, tables: &[&str]) -> Result<TopicReader> {
        let topics: Vec<String> = tables.iter().map(|t| self.topic(t)).collect();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        TopicReader::new(stack().var("KAFKA_BROKERS"), &refs)
    }

    /// Waits until `/health` says the source streams (its snapshot is done).
    pub(crate) async fn wait_streaming(&self) -> Result<()> {
        let url = format!("{}/health", self.url);
        cdc_tests::eventually(DEADLINE, || async {
            let health = http_get(&url).await?;
            anyhow::ensure!(health.contains("streaming"), "{health}");
            Ok(())
        })
        .await
    }

    /// The process output so far.
    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A generous deadline for results that depend on several processes.
/// The configuration file of a capture with one source `src`, for tests that run the binary themselves (on a private
/// stack, or stopping and starting it): the settings every test capture has, and the lines a test adds.
pub(crate) struct ConfigFile<'a> {
    pub(crate) prefix: &'a str,
    /// `listen`: `127.0.0.1:0` when the test does not query the endpoints.
    pub(crate) listen: &'a str,
    pub(crate) brokers: &'a str,
    /// The source's URL.
    pub(crate) url: &'a str,
    pub(crate) server_id: u32,
    /// More lines at the top level, in `[kafka]` and in the source.
    pub(crate) top: &'a str,
    pub(crate) kafka: &'a str,
    pub(crate) source: &'a str,
}

impl ConfigFile<'_> {
    /// Writes `<dir>/capture.toml` (state in `<dir>/state`) and returns its path.
    pub(crate) fn write(&self, dir: &Path) -> Result<PathBuf> {
        let config = dir.join("capture.toml");
        let ConfigFile { prefix, listen, brokers, url, server_id, top, kafka, source } = self;
        let state = dir.join("state");
        std::fs::write(
            &config,
            format!(
                "topic_prefix = \"{prefix}\"\nstate_dir = \"{state}\"\nlisten = \"{listen}\"\n{top}\n[kafka]\n\
                 brokers = \"{brokers}\"\n{kafka}\n[[sources]]\nname = \"src\"\nurl = \"{url}\"\nserver_id = {server_id}\n\
                 {source}\n",
                state = state.display(),
            ),
        )?;
        Ok(config)
    }
}

/// Starts the capture binary on `config`, its output appended to `log`.
pub(crate) fn spawn_logged(config: &Path, log: &Path) -> Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    Command::new(env!("CARGO_BIN_EXE_capture"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .spawn()
        .context("starting the capture")
}

pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// Minimal HTTP GET of a loopback endpoint: status line, headers and body as text.
pub(crate) async fn http_get(url: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}
