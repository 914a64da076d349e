//! Running the capture binary against a scratch database of the local stack.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use cdc_tests::{stack, unique_name, ScratchDb, TopicReader};
use rand::Rng;

/// A capture process with its own topic prefix, state directory and replica server id.
pub struct Capture {
    child: Option<Child>,
    /// The generated configuration file.
    pub config: PathBuf,
    /// Its state (checkpoint) directory.
    pub state_dir: PathBuf,
    /// Topic prefix.
    pub prefix: String,
    /// The database it captures.
    pub db: String,
    /// Base URL of /metrics and /health.
    pub url: String,
    /// Where its output goes.
    pub log: PathBuf,
}

/// Options of a test capture.
pub struct Options {
    pub snapshot: &'static str,
    pub chunk_rows: usize,
    pub extra: String,
}

impl Default for Options {
    fn default() -> Options {
        Options { snapshot: "initial", chunk_rows: 1000, extra: String::new() }
    }
}

impl Capture {
    /// Writes the configuration and starts the process.
    pub fn start(db: &ScratchDb, options: Options) -> Result<Capture> {
        let env = stack();
        let prefix = unique_name("cap");
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let server_id: u32 = rand::rng().random_range(10_000..4_000_000);
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

[[sources]]
name = "src"
url = "{url}"
server_id = {server_id}
snapshot = "{snapshot}"
snapshot_chunk_rows = {chunk}
heartbeat_interval = "500ms"
"#,
                state = dir.join("state").display(),
                brokers = env.var("KAFKA_BROKERS"),
                url = db.capture_url(),
                snapshot = options.snapshot,
                chunk = options.chunk_rows,
                extra = options.extra,
            ),
        )?;
        let mut capture = Capture {
            child: None,
            state_dir: dir.join("state"),
            log: dir.join("capture.log"),
            config,
            prefix,
            db: db.name.clone(),
            url: format!("http://127.0.0.1:{port}"),
        };
        capture.spawn()?;
        Ok(capture)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_capture"))
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the capture")?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, no cleanup.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the process again with the same configuration and state.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// Graceful stop (SIGTERM) and its exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        Ok(child.wait()?)
    }

    /// Whether the process has exited, and its status.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }

    /// The topic of a table of the scratch database.
    pub fn topic(&self, table: &str) -> String {
        format!("{}.{}.{}", self.prefix, self.db, table)
    }

    /// A reader of the given tables' topics.
    pub fn reader(&self, tables: &[&str]) -> Result<TopicReader> {
        let topics: Vec<String> = tables.iter().map(|t| self.topic(t)).collect();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        TopicReader::new(stack().var("KAFKA_BROKERS"), &refs)
    }

    /// The process output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A generous deadline for results that depend on several processes.
pub const DEADLINE: Duration = Duration::from_secs(120);
