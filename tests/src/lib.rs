//! Harness for integration tests against the real local stack.
//!
//! - [`stack`] brings the stack up once per test process (through `scripts/stack up`, which is idempotent and
//!   serialised by a lock, so parallel test binaries share one stack) and returns its connection variables.
//! - [`unique_name`] gives each test its own database, topic prefix, consumer group or ClickHouse database, so tests
//!   isolate by name and run in parallel.
//! - [`eventually`] polls a check until it passes or a deadline expires: tests never sleep to wait for a result.
//! - [`StackCommand`] runs `scripts/stack` against another state directory and port base, for tests of the stack
//!   itself that must not disturb the shared one; [`PrivateStack`] is such a stack for one test, wiped when dropped.
//! - [`ScratchDb`] is a database of its own on one of the stack's MariaDB servers; [`TopicReader`] reads topics
//!   from the beginning with a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::Rng;

/// The repository root.
pub fn repo_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf())
}

/// The connection variables of the running stack (the `export NAME=value` lines of `.stack/env`).
#[derive(Debug, Clone)]
pub struct StackEnv {
    vars: HashMap<String, String>,
}

impl StackEnv {
    /// Parses `export NAME=value` lines.
    pub fn parse(text: &str) -> StackEnv {
        let vars = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("export "))
            .filter_map(|assignment| assignment.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        StackEnv { vars }
    }

    /// A variable; panics with a clear message when the stack does not define it.
    pub fn var(&self, name: &str) -> &str {
        self.vars.get(name).unwrap_or_else(|| panic!("the stack's env has no {name}; is scripts/stack up current?"))
    }

    /// All variables.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }
}

/// Brings the shared stack up (once per process) and returns its variables.
pub fn stack() -> &'static StackEnv {
    static ENV: OnceLock<StackEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let out = StackCommand::shared().run(&["up"]).expect("scripts/stack up runs");
        assert!(out.status.success(), "scripts/stack up failed:\n{}", describe(&out));
        // `scripts/stack` keeps its state in STACK_HOME (default `.stack`), so a process started with STACK_HOME and
        // STACK_PORT_BASE set uses that stack throughout.
        let home = std::env::var_os("STACK_HOME").map_or_else(|| repo_root().join(".stack"), |h| repo_root().join(h));
        let text = std::fs::read_to_string(home.join("env")).expect("$STACK_HOME/env exists after up");
        StackEnv::parse(&text)
    })
}

/// `scripts/stack` with its environment: the shared stack, or a private one on its own directory and ports.
#[derive(Debug, Clone)]
pub struct StackCommand {
    env: Vec<(String, String)>,
}

impl StackCommand {
    /// The shared stack of the repository (`.stack/`, default ports).
    pub fn shared() -> StackCommand {
        StackCommand { env: Vec::new() }
    }

    /// A private stack in `home` on ports from `port_base`, running only the given project processes.
    pub fn private(home: &Path, port_base: u16) -> StackCommand {
        StackCommand {
            env: vec![
                ("STACK_HOME".into(), home.display().to_string()),
                ("STACK_PORT_BASE".into(), port_base.to_string()),
                ("STACK_APPS".into(), String::new()),
            ],
        }
    }

    /// The same, with one more environment variable for the script.
    pub fn with_env(mut self, key: &str, value: &str) -> StackCommand {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `scripts/stack ARGS...` to completion.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(repo_root().join("scripts/stack"));
        cmd.args(args).current_dir(repo_root());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().with_context(|| format!("running scripts/stack {}", args.join(" ")))
    }

    /// Runs and fails unless the command succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!("scripts/stack {} failed:\n{}", args.join(" "), describe(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A private stack of its own for one test (a directory named after `prefix`, free ports, no project processes), for
/// tests that change global server state or freeze components. Dropping it wipes the stack, also when the test fails
/// or panics, so no servers outlive the test.
pub struct PrivateStack {
    /// `scripts/stack` on this stack.
    pub cmd: StackCommand,
    /// Its state directory (`env`, `run/<component>.pid`, logs).
    pub home: PathBuf,
}

impl PrivateStack {
    /// Claims a directory and ports; the stack starts with `cmd.ok(&["up"])`. The shared stack is brought up first,
    /// which installs the packages and the broker the private one reuses.
    pub fn new(prefix: &str) -> PrivateStack {
        stack();
        let home = std::env::temp_dir().join(unique_name(prefix));
        PrivateStack { cmd: StackCommand::private(&home, free_port_base()), home }
    }
}

/// The PID of a running component of the stack in `home`: the first field of `run/<component>.pid` (the second is
/// the process's start time, which `scripts/stack` checks).
pub fn component_pid(home: &Path, component: &str) -> Result<u32> {
    let file = home.join("run").join(format!("{component}.pid"));
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let pid = text.split_whitespace().next().with_context(|| format!("{} is empty", file.display()))?;
    pid.parse().with_context(|| format!("a PID in {}: {text:?}", file.display()))
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        let _ = self.cmd.run(&["down", "--wipe"]);
    }
}

/// A port base for a private stack: every port it derives from the base is free now.
pub fn free_port_base() -> u16 {
    (20000..60000)
        .step_by(400)
        .find(|base| {
            [6u16, 7, 8, 23, 24, 80, 81, 82, 83, 90, 92]
                .iter()
                .all(|off| std::net::TcpListener::bind(("127.0.0.1", base + off)).is_ok())
        })
        .expect("a free port range")
}

/// Exit status, stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A name unique to this test run: `prefix` (lowercased, non-alphanumerics as `_`) plus a random suffix. Valid as a
/// MySQL or ClickHouse database name, a topic prefix and a consumer group.
pub fn unique_name(prefix: &str) -> String {
    let clean: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    let suffix: u32 = rand::rng().random();
    format!("t_{clean}_{suffix:08x}")
}

/// Polls `check` until it returns `Ok`, or fails with its last error once `timeout` has passed.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => {
                return Err(err.context(format!("condition still false after {timeout:?}")));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
        }
    }
}

/// The blocking twin of [`eventually`], for tests that drive processes rather than async clients.
pub fn eventually_blocking<T>(timeout: Duration, mut check: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => {
                return Err(err.context(format!("condition still false after {timeout:?}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub mod kafka;
pub mod mysql;
pub mod pipeline;

pub use kafka::{Message, TopicReader};
pub use mysql::ScratchDb;
pub use pipeline::Sources;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_parse() {
        let env = StackEnv::parse("export A=1\nexport B=mysql://u:p@h:1/db\n# comment\n");
        assert_eq!(env.var("A"), "1");
        assert_eq!(env.var("B"), "mysql://u:p@h:1/db");
    }

    #[test]
    fn unique_names_differ_and_are_safe() {
        let a = unique_name("My-Test");
        let b = unique_name("My-Test");
        assert_ne!(a, b);
        assert!(a.starts_with("t_my_test_"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[tokio::test]
    async fn eventually_retries_until_success_and_reports_failure() {
        let mut n = 0;
        let got = eventually(Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move { if n < 3 { bail!("not yet") } else { Ok(n) } }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
        let err = eventually(Duration::from_millis(100), || async { Err::<(), _>(anyhow::anyhow!("never")) })
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("never"));
    }
}
