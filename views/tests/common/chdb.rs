//! Starting the Python process that runs chdb (current ClickHouse in process, PyPI wheel `chdb-core`) for the
//! current-ClickHouse tests, and what to do when chdb is not installed.

use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// The Python that runs chdb (`CDC_PYTHON`, default `python3`).
pub(crate) fn python() -> String {
    std::env::var("CDC_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `script` run by [`python`] with piped stdin and stdout.
pub(crate) fn spawn(script: &str) -> Result<Child> {
    let python = python();
    Command::new(&python)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {python}"))
}

/// chdb could not be imported (`missing`: the import error): a failure when `CI` is set, else a note and `Ok` (the
/// test is skipped).
pub(crate) fn unavailable(missing: &serde_json::Value) -> Result<()> {
    let advice = format!("chdb is not importable by {} ({missing}); install it with `pip install chdb-core`", python());
    if std::env::var_os("CI").is_some() {
        bail!("{advice}: CI requires this check");
    }
    eprintln!("note: {advice}; skipping the current-ClickHouse check (set CI to make this a failure)");
    Ok(())
}
