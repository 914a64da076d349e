//! Start-up errors that must be precise: a wrong binlog format, missing privileges, a purged binlog.
//!
//! These change global server state, so they run on a private stack of their own.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use cdc_tests::{describe, eventually_blocking, unique_name, PrivateStack, StackCommand, StackEnv};
use common::ConfigFile;
use mysql_async::prelude::*;

fn write_config(dir: &Path, url: &str, brokers: &str) -> Result<std::path::PathBuf> {
    let prefix = unique_name("err");
    let top = r#"checkpoint_interval = "20ms""#;
    ConfigFile { prefix: &prefix, listen: "127.0.0.1:0", brokers, url, server_id: 4242, top, kafka: "", source: "" }
        .write(dir)
}

fn check(config: &Path) -> Result<(bool, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_capture")).arg("--check").arg("--config").arg(config).output()?;
    Ok((out.status.success(), describe(&out)))
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_format_missing_privileges_and_purged_binlog_give_precise_errors() -> Result<()> {
    let private = PrivateStack::new("errors_stack");
    scenario(&private.cmd, &private.home).await
}

async fn scenario(cmd: &StackCommand, home: &Path) -> Result<()> {
    cmd.ok(&["up"])?;
    let env = StackEnv::parse(&cmd.ok(&["env"])?);
    let brokers = env.var("KAFKA_BROKERS");
    let admin = mysql_async::Pool::new(env.var("USERS_MYSQL_ADMIN_URL"));
    let dir = home.join("capture");
    std::fs::create_dir_all(&dir)?;

    // The service account instead of the capture account: the message names the grants to add.
    let config = write_config(&dir, env.var("USERS_MYSQL_URL"), brokers)?;
    let (ok, out) = check(&config)?;
    assert!(!ok, "{out}");
    assert!(out.contains("lacks REPLICATION SLAVE, BINLOG MONITOR, SELECT") && out.contains("GRANT"), "{out}");

    // binlog_format=STATEMENT: the message names the setting, what was found and the fix.
    let config = write_config(&dir, env.var("USERS_MYSQL_CAPTURE_URL"), brokers)?;
    admin.get_conn().await?.query_drop("SET GLOBAL binlog_format = 'STATEMENT'").await?;
    let (ok, out) = check(&config)?;
    assert!(!ok, "{out}");
    assert!(out.contains(r#"binlog_format is "STATEMENT", the capture needs ROW"#), "{out}");
    assert!(out.contains("SET GLOBAL binlog_format='ROW'"), "{out}");
    admin.get_conn().await?.query_drop("SET GLOBAL binlog_format = 'ROW'").await?;
    let (ok, out) = check(&config)?;
    assert!(ok, "{out}");

    // Run until a checkpoint exists, stop, purge the binlog it needs.
    let mut child = Command::new(env!("CARGO_BIN_EXE_capture")).arg("--config").arg(&config).spawn()?;
    let checkpoint = dir.join("state/src.json");
    eventually_blocking(Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&checkpoint)?;
        anyhow::ensure!(text.contains("\"snapshot\": null"), "snapshot not done: {text}");
        Ok(())
    })?;
    child.kill()?;
    child.wait()?;
    let needed: String = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&checkpoint)?)?
        ["position"]["file"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut conn = admin.get_conn().await?;
    conn.query_drop("FLUSH BINARY LOGS").await?;
    // MariaDB keeps a file until its binlog checkpoint completes, which happens in the background: retry.
    cdc_tests::eventually(Duration::from_secs(30), || {
        let admin = admin.clone();
        let needed = needed.clone();
        async move {
            let mut conn = admin.get_conn().await?;
            let logs: Vec<(String, u64)> = conn.query("SHOW BINARY LOGS").await?;
            let newest = logs.last().map(|(f, _)| f.clone()).unwrap_or_default();
            conn.query_drop(format!("PURGE BINARY LOGS TO '{newest}'")).await?;
            let logs: Vec<(String, u64)> = conn.query("SHOW BINARY LOGS").await?;
            anyhow::ensure!(logs.iter().all(|(f, _)| *f != needed), "{needed} still there: {logs:?}");
            Ok(())
        }
    })
    .await?;
    drop(conn);
    admin.disconnect().await?;
    let (ok, out) = check(&config)?;
    assert!(!ok, "{out}");
    assert!(out.contains("is no longer on the server") && out.contains("Re-snapshot"), "{out}");
    assert!(out.contains(&checkpoint.display().to_string()), "names the checkpoint file: {out}");
    // Running (not only --check) gives the same definite error and exits non-zero instead of retrying.
    let out = Command::new(env!("CARGO_BIN_EXE_capture")).arg("--config").arg(&config).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is no longer on the server"), "{}", describe(&out));
    Ok(())
}
