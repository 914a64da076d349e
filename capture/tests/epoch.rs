//! Row versions stay monotonic when binlog positions restart, and a checkpoint of another server resumes by GTID set.
//!
//! The RESET MASTER test changes global server state, so it runs on a private stack of its own; the other only
//! edits its own checkpoint file and runs on the shared stack.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use cdc_contract::ChangeEvent;
use cdc_tests::mysql::replace_db;
use cdc_tests::{describe, eventually_blocking, unique_name, ScratchDb, PrivateStack, StackCommand, StackEnv, TopicReader};
use common::{spawn_logged, Capture, ConfigFile, Options, DEADLINE};
use mysql_async::prelude::*;

/// The events of key `id` read so far, in arrival order (one partition per key), as (version, epoch, v, op).
fn history(reader: &TopicReader, id: u64) -> Vec<(u64, u32, i64, String)> {
    reader
        .events()
        .into_iter()
        .filter_map(|value| {
            let event: ChangeEvent = serde_json::from_str(&value.to_string()).ok()?;
            let row = event.after.as_ref().or(event.before.as_ref())?;
            (row.get("id")?.as_u64()? == id).then(|| {
                let v = match row.get("v") {
                    Some(cdc_contract::Value::Int(v)) => *v,
                    _ => -1,
                };
                (event.version().unwrap_or(0), event.source.epoch, v, event.op.code().to_owned())
            })
        })
        .collect()
}

/// Whether a message is a change event whose new image is row `(id, v)`.
fn is_row(m: &cdc_tests::Message, id: i64, v: i64) -> bool {
    m.value.as_ref().is_some_and(|e| e["after"]["id"] == id && e["after"]["v"] == v)
}

/// Regression: after `RESET MASTER` and the documented re-snapshot, binlog positions restarted at file 1, so every
/// later change of a key had a lower version than the ones consumers already held, and they ignored it forever.
#[tokio::test(flavor = "multi_thread")]
async fn reset_master_then_resnapshot_keeps_versions_growing() -> Result<()> {
    let private = PrivateStack::new("epoch_stack");
    reset_scenario(&private.cmd, &private.home).await
}

fn write_config(dir: &Path, prefix: &str, url: &str, brokers: &str) -> Result<std::path::PathBuf> {
    ConfigFile {
        prefix,
        listen: "127.0.0.1:0",
        brokers,
        url,
        server_id: 4243,
        top: r#"checkpoint_interval = "20ms""#,
        kafka: "partitions = 1",
        source: r#"heartbeat_interval = "500ms""#,
    }
    .write(dir)
}

fn stop(mut child: Child) -> Result<()> {
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
    child.wait()?;
    Ok(())
}

/// Waits until the checkpoint says the snapshot is complete.
fn wait_snapshot_done(checkpoint: &Path) -> Result<serde_json::Value> {
    eventually_blocking(Duration::from_secs(60), || {
        let text = std::fs::read_to_string(checkpoint)?;
        ensure!(text.contains("\"snapshot\": null"), "snapshot not done: {text}");
        Ok(serde_json::from_str(&text)?)
    })
}

async fn reset_scenario(cmd: &StackCommand, home: &Path) -> Result<()> {
    cmd.ok(&["up"])?;
    let env = StackEnv::parse(&cmd.ok(&["env"])?);
    let brokers = env.var("KAFKA_BROKERS");
    let db = unique_name("epoch");
    let admin = mysql_async::Pool::new(replace_db(env.var("USERS_MYSQL_ADMIN_URL"), "mysql").as_str());
    let mut conn = admin.get_conn().await?;
    conn.query_drop(format!("CREATE DATABASE `{db}`")).await?;
    conn.query_drop(format!("CREATE TABLE `{db}`.items (id INT PRIMARY KEY, v INT NOT NULL)")).await?;
    conn.query_drop(format!("INSERT INTO `{db}`.items VALUES (1, 0), (2, 0)")).await?;
    // Some binlog files first, so that positions after the reset (file 1) are clearly lower.
    for _ in 0..3 {
        conn.query_drop("FLUSH BINARY LOGS").await?;
    }
    let dir = home.join("capture");
    std::fs::create_dir_all(&dir)?;
    let prefix = unique_name("ep");
    let config = write_config(&dir, &prefix, &replace_db(env.var("USERS_MYSQL_CAPTURE_URL"), &db), brokers)?;
    let log = dir.join("capture.log");
    let checkpoint = dir.join("state/src.json");
    let topic = format!("{prefix}.{db}.items");
    let mut reader = TopicReader::new(brokers, &[&topic])?;

    let child = spawn_logged(&config, &log)?;
    wait_snapshot_done(&checkpoint)?;
    conn.query_drop(format!("UPDATE `{db}`.items SET v = 1 WHERE id = 1")).await?;
    conn.query_drop("FLUSH BINARY LOGS").await?;
    conn.query_drop(format!("UPDATE `{db}`.items SET v = 2 WHERE id = 1")).await?;
    reader.read_until(DEADLINE, |m| m.iter().any(|m| is_row(m, 1, 2))).await?;
    stop(child)?;
    let before = history(&reader, 1);
    let old_max = before.iter().map(|e| e.0).max().unwrap_or(0);

    // RESET MASTER: the server's files restart at binlog.000001, its GTIDs at 0-1-1.
    conn.query_drop("RESET MASTER").await?;
    conn.query_drop(format!("UPDATE `{db}`.items SET v = 3 WHERE id = 1")).await?;
    let logs: Vec<(String, u64)> = conn.query("SHOW BINARY LOGS").await?;
    ensure!(logs.len() == 1 && logs[0].0.ends_with(".000001"), "{logs:?}");

    // The capture notices the reset and stops with the remedy, --check too.
    let check = Command::new(env!("CARGO_BIN_EXE_capture")).arg("--check").arg("--config").arg(&config).output()?;
    let text = describe(&check);
    ensure!(!check.status.success(), "{text}");
    ensure!(text.contains("RESET MASTER") && text.contains("Re-snapshot") && text.contains(".epoch"), "{text}");
    let run: Output = Command::new(env!("CARGO_BIN_EXE_capture")).arg("--config").arg(&config).output()?;
    ensure!(!run.status.success(), "a reset binlog is a definite error: {}", describe(&run));

    // The documented re-snapshot: move the checkpoint away, keep the epoch file.
    ensure!(dir.join("state/src.epoch").exists(), "the epoch file exists");
    std::fs::rename(&checkpoint, dir.join("src.json.before-reset"))?;
    let child = spawn_logged(&config, &log)?;
    let cp = wait_snapshot_done(&checkpoint)?;
    conn.query_drop(format!("UPDATE `{db}`.items SET v = 4 WHERE id = 1")).await?;
    reader.read_until(DEADLINE, |m| m.iter().any(|m| is_row(m, 1, 4))).await?;
    stop(child)?;

    let after = history(&reader, 1);
    let snapshot = after.iter().find(|e| e.2 == 3).context("the re-snapshot read v=3")?;
    let newest = after.iter().find(|e| e.2 == 4).context("the update after the re-snapshot")?;
    println!("key 1 before the reset: {before:?}");
    println!("key 1 after: {after:?}");
    println!("checkpoint after the re-snapshot: {cp}");
    ensure!(snapshot.3 == "r" && snapshot.1 > 0, "the re-snapshot is in a raised epoch: {snapshot:?}");
    ensure!(snapshot.0 > old_max, "the re-snapshot read's version {} > every earlier one {old_max}", snapshot.0);
    ensure!(newest.0 > snapshot.0, "the update after it is newer still: {newest:?} vs {snapshot:?}");
    ensure!(cp["epoch"].as_u64() == Some(u64::from(snapshot.1)), "the checkpoint carries the epoch: {cp}");
    // Versions of key 1 only grow in arrival order, across the reset.
    for pair in after.windows(2) {
        ensure!(pair[0].0 < pair[1].0, "versions must grow: {after:?}");
    }
    drop(conn);
    admin.disconnect().await?;
    Ok(())
}

/// Regression: a checkpoint of another server (a failover to a replica) was refused (`WrongServer`); the capture
/// now resumes from the checkpoint's GTID set, in a raised epoch, without losing or reordering changes. Simulated by
/// giving the checkpoint another server_id and a position that does not exist on this server.
#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_of_another_server_resumes_by_gtid_set() -> Result<()> {
    let db = ScratchDb::create("USERS", "epoch_gtid").await?;
    db.exec("CREATE TABLE items (id INT PRIMARY KEY, v INT NOT NULL); INSERT INTO items VALUES (1, 0)").await?;
    let mut capture = Capture::start(&db, Options::default())?;
    capture.wait_streaming().await?;
    db.exec("INSERT INTO items VALUES (2, 0)").await?;
    let mut reader = capture.reader(&["items"])?;
    reader.read_events(2, DEADLINE).await?;
    // A plain restart on the same server resumes at the position, in the same epoch (the server's GTID state at
    // the checkpoint's position agrees with the checkpoint's).
    capture.restart()?;
    capture.wait_streaming().await?;
    db.exec("UPDATE items SET v = 5 WHERE id = 2").await?;
    reader.read_until(DEADLINE, |m| m.iter().any(|m| is_row(m, 2, 5))).await?;
    ensure!(history(&reader, 2).iter().all(|e| e.1 == 0), "{:?}", history(&reader, 2));
    ensure!(!capture.output().contains("epoch raised"), "{}", capture.output());
    ensure!(capture.stop()?.success(), "{}", capture.output());

    let checkpoint = capture.state_dir.join("src.json");
    let mut cp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint)?)?;
    let real_server = cp["server_id"].clone();
    ensure!(cp["gtid_set"].as_str().is_some_and(|g| !g.is_empty()), "{cp}");
    cp["server_id"] = 987_654.into();
    cp["position"] = serde_json::json!({"file": "binlog.000077", "pos": 123_456});
    std::fs::write(&checkpoint, serde_json::to_vec_pretty(&cp)?)?;
    // Changes while the capture is down must arrive, changes after it too.
    db.exec("INSERT INTO items VALUES (3, 0); UPDATE items SET v = 1 WHERE id = 1").await?;
    capture.restart()?;
    capture.wait_streaming().await?;
    db.exec("INSERT INTO items VALUES (4, 0); UPDATE items SET v = 2 WHERE id = 1").await?;
    // Keys go to different partitions: wait for each.
    reader
        .read_until(DEADLINE, |m| [(1, 2), (3, 0), (4, 0)].iter().all(|&(id, v)| m.iter().any(|m| is_row(m, id, v))))
        .await?;
    let output = capture.output();
    ensure!(output.contains("epoch raised") && output.contains("987654"), "{output}");
    for id in [3, 4] {
        let events = history(&reader, id);
        ensure!(events.len() == 1 && events[0].3 == "c" && events[0].1 > 0, "id {id}: {events:?}");
    }
    let key1 = history(&reader, 1);
    ensure!(key1.iter().map(|e| e.2).collect::<Vec<_>>() == [0, 1, 2], "key 1 once per change: {key1:?}");
    for pair in key1.windows(2) {
        ensure!(pair[0].0 < pair[1].0, "versions must grow: {key1:?}");
    }
    // The capture saves checkpoints of the server it reads, in the new epoch.
    eventually_blocking(Duration::from_secs(30), || {
        let now: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint)?)?;
        ensure!(now["server_id"] == real_server && now["epoch"].as_u64() >= Some(1), "{now}");
        ensure!(now["position"]["file"] != "binlog.000077", "{now}");
        Ok(())
    })?;
    capture.stop()?;
    db.drop_db().await?;
    Ok(())
}
