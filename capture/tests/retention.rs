//! Binlog retention headroom against the real local stack: the metric and the `/health` warning.
//!
//! The stack's servers are shared, so these tests change no server setting and rotate no binlog: they read the
//! server's expiry period and check what the capture makes of it while the checkpoint is on the active file. What a
//! closed, purged or undated file gives is covered by the unit tests of `pipeline.rs` and `metrics.rs`.

mod common;

use anyhow::{ensure, Context, Result};
use cdc_tests::{eventually, ScratchDb};
use common::{http_get, Capture, Options, DEADLINE};
use mysql_async::prelude::*;
use serde_json::Value;

/// The value of `cdc_capture_binlog_retention_headroom_seconds{source="src"}`, if exported yet.
async fn headroom(capture: &Capture) -> Result<f64> {
    let text = http_get(&format!("{}/metrics", capture.url)).await?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cdc_capture_binlog_retention_headroom_seconds{source=\"src\"} "))
        .with_context(|| format!("no headroom sample yet:\n{text}"))?;
    let value = line.rsplit(' ').next().unwrap_or_default();
    value.parse().with_context(|| format!("not a number: {line}"))
}

/// The JSON body of `/health` and whether the status was 200.
async fn health(capture: &Capture) -> Result<(bool, Value)> {
    let response = http_get(&format!("{}/health", capture.url)).await?;
    let (head, body) = response.split_once("\r\n\r\n").context("an HTTP response")?;
    Ok((head.starts_with("HTTP/1.1 200"), serde_json::from_str(body).with_context(|| response.clone())?))
}

/// The binlog file of the capture's checkpoint.
fn checkpoint_file(capture: &Capture) -> Result<String> {
    let text = std::fs::read_to_string(capture.state_dir.join("src.json"))?;
    let checkpoint: Value = serde_json::from_str(&text)?;
    Ok(checkpoint["position"]["file"].as_str().context("a file")?.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn headroom_is_the_expiry_period_on_the_active_file_and_warns_below_the_threshold() -> Result<()> {
    let db = ScratchDb::create("CATALOG", "retention").await?;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY)").await?;
    let expiry: u64 =
        db.pool.get_conn().await?.query_first("SELECT @@global.binlog_expire_logs_seconds").await?.unwrap_or(0);
    ensure!(expiry > 0, "scripts/stack configures binlog_expire_logs_seconds=604800, the server has {expiry}");
    // The default threshold (1h) is far below the expiry: no warning. A threshold a day above it: always a warning.
    let quiet = Capture::start(&db, Options::default())?;
    let threshold = format!("retention_warning = \"{}s\"", expiry + 86_400);
    let warned = Capture::start(&db, Options { extra: threshold, ..Options::default() })?;
    quiet.wait_streaming().await?;
    warned.wait_streaming().await?;
    db.exec("INSERT INTO t VALUES (1)").await?;

    for capture in [&quiet, &warned] {
        // The checkpoint's file is the server's active one: the full expiry, less the seconds since the capture last
        // saw that file active (it looks every 2 s).
        let value = eventually(DEADLINE, || headroom(capture)).await?;
        let expiry = expiry as f64;
        println!("headroom {value}s with the server's expiry {expiry}s");
        assert!(value <= expiry + 1.0 && value >= expiry - 30.0, "headroom {value}s, expiry {expiry}s");
    }

    let (ok, body) = eventually(DEADLINE, || async {
        let before = checkpoint_file(&warned)?;
        let (ok, body) = health(&warned).await?;
        let after = checkpoint_file(&warned)?;
        let warning = body["warnings"][0].as_str().unwrap_or_default().to_owned();
        ensure!(warning.contains(&before) || warning.contains(&after), "no warning naming {before}: {body}");
        Ok((ok, body))
    })
    .await?;
    assert!(ok, "a warning keeps /health at 200: {body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["sources"]["src"], "streaming", "{body}");
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{body}");
    let warning = warnings[0].as_str().unwrap_or_default();
    println!("{warning}");
    assert!(warning.starts_with("source src: binlog retention headroom "), "{warning}");
    assert!(warning.contains("is below retention_warning"), "{warning}");

    let (ok, body) = health(&quiet).await?;
    assert!(ok, "{body}");
    assert_eq!(body["warnings"], serde_json::json!([]), "headroom above 1h: no warning: {body}");

    drop(quiet);
    drop(warned);
    db.drop_db().await
}
