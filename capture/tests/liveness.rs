//! Isolation and liveness of the capture process against the real stack: a definite error stops only its source,
//! a frozen MariaDB or broker (SIGSTOP) turns `/health` to 503 within 10 s and the capture recovers by itself after
//! SIGCONT with nothing lost, SIGTERM ends the process within 10 s while the broker is frozen, and a second capture
//! on the same state_dir refuses to start.
//!
//! The isolation and lock tests use the shared stack (they change nothing global: the MINIMAL row image is set in
//! the writing session only). Freezing servers needs a private stack, which one test brings up and wipes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cdc_tests::{eventually, stack, ScratchDb, PrivateStack, StackCommand, StackEnv, TopicReader};
use common::{http_get, Capture, Options, SourceSpec, DEADLINE};
use mysql_async::prelude::*;
use serde_json::Value;

/// `/health`: status code and body.
async fn health(capture: &Capture) -> Result<(u16, Value)> {
    let response = http_get(&format!("{}/health", capture.url)).await?;
    let status: u16 = response.split_whitespace().nth(1).context("a status line")?.parse()?;
    let body = response.split_once("\r\n\r\n").context("a body")?.1;
    Ok((status, serde_json::from_str(body).with_context(|| format!("JSON: {response}"))?))
}

/// Waits until `/health` has `status` and `check(body)` holds; returns how long that took.
async fn health_becomes(
    capture: &Capture,
    status: u16,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Result<Duration> {
    let started = Instant::now();
    eventually(timeout, || async {
        let (got, body) = health(capture).await?;
        ensure!(got == status && check(&body), "{got} {body}");
        Ok(())
    })
    .await?;
    Ok(started.elapsed())
}

/// Waits until every named source streams and `/health` is 200.
async fn all_streaming(capture: &Capture, names: &[&str]) -> Result<()> {
    health_becomes(capture, 200, DEADLINE, |body| names.iter().all(|n| body["sources"][n] == "streaming")).await?;
    Ok(())
}

fn metrics_line(text: &str, metric: &str, source: &str) -> Option<String> {
    let prefix = format!("{metric}{{source=\"{source}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(str::to_owned)
}

const TABLE: &str = "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(20) NOT NULL DEFAULT 'x')";

/// The ids of the change events read so far.
fn ids(reader: &TopicReader) -> std::collections::BTreeSet<i64> {
    reader.events().iter().filter_map(|e| e["after"]["id"].as_i64()).collect()
}

/// An update written with `binlog_row_image=MINIMAL` in the writing session only: the capture cannot build a full
/// event from it, a definite error of that source.
async fn minimal_image_update(db: &ScratchDb) -> Result<()> {
    db.exec("SET SESSION binlog_row_image = 'MINIMAL'; UPDATE t SET v = v + 1 WHERE id = 1").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_definite_error_stops_only_its_source_and_the_other_keeps_streaming() -> Result<()> {
    let good = ScratchDb::create("USERS", "iso_good").await?;
    let bad = ScratchDb::create("CATALOG", "iso_bad").await?;
    for db in [&good, &bad] {
        db.exec(TABLE).await?;
        db.exec("INSERT INTO t (id, v) VALUES (1, 1)").await?;
    }
    let sources = [
        SourceSpec { name: "good".into(), url: good.capture_url() },
        SourceSpec { name: "bad".into(), url: bad.capture_url() },
    ];
    let mut capture = Capture::start_sources(stack().var("KAFKA_BROKERS"), &good.name, &sources, Options::default())?;
    all_streaming(&capture, &["good", "bad"]).await?;
    let brokers = stack().var("KAFKA_BROKERS");
    let mut good_reader = TopicReader::new(brokers, &[&capture.topic_of(&good.name, "t")])?;
    let mut bad_reader = TopicReader::new(brokers, &[&capture.topic_of(&bad.name, "t")])?;
    good_reader.read_events(1, DEADLINE).await?;
    bad_reader.read_events(1, DEADLINE).await?;

    minimal_image_update(&bad).await?;
    health_becomes(&capture, 503, DEADLINE, |body| {
        body["sources"]["bad"].as_str().is_some_and(|s| s.starts_with("failed: ") && s.contains("partial row image"))
    })
    .await?;
    let (_, body) = health(&capture).await?;
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("bad: failed: source bad: ") && reason.contains("binlog_row_image=FULL"), "{body}");
    assert_eq!(body["sources"]["good"], "streaming", "{body}");
    let metrics = http_get(&format!("{}/metrics", capture.url)).await?;
    assert_eq!(metrics_line(&metrics, "cdc_capture_source_failed", "bad").as_deref(), Some("1"), "{metrics}");
    assert_eq!(metrics_line(&metrics, "cdc_capture_up", "bad").as_deref(), Some("0"));
    assert_eq!(metrics_line(&metrics, "cdc_capture_source_failed", "good").as_deref(), Some("0"));
    assert_eq!(metrics_line(&metrics, "cdc_capture_up", "good").as_deref(), Some("1"));

    // The other source goes on delivering, and the process keeps running.
    good.exec("INSERT INTO t (id, v) VALUES (2, 2), (3, 3)").await?;
    good_reader.read_events(3, DEADLINE).await?;
    assert_eq!(ids(&good_reader), [1, 2, 3].into(), "the healthy source delivers after the other failed");
    assert!(capture.exited()?.is_none(), "one failed source must not end the process:\n{}", capture.output());

    // A shutdown after a failure exits 1 and names it.
    let status = capture.stop_within(Duration::from_secs(10))?.context("the capture did not stop within 10 s")?;
    assert_eq!(status.code(), Some(1), "{}", capture.output());
    let output = capture.output();
    assert!(output.contains("capture: shut down with failed sources: source bad: "), "{output}");
    good.drop_db().await?;
    bad.drop_db().await
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_source_has_failed_the_process_exits_1_naming_the_error() -> Result<()> {
    let db = ScratchDb::create("ORDERS", "all_failed").await?;
    db.exec(TABLE).await?;
    db.exec("INSERT INTO t (id, v) VALUES (1, 1)").await?;
    let mut capture = Capture::start(&db, Options::default())?;
    capture.wait_streaming().await?;
    minimal_image_update(&db).await?;
    let status = cdc_tests::eventually_blocking(DEADLINE, || capture.exited()?.context("still running"))?;
    assert_eq!(status.code(), Some(1), "{}", capture.output());
    let output = capture.output();
    assert!(output.contains("capture: every source failed: source src: "), "{output}");
    assert!(output.contains("partial row image; set binlog_row_image=FULL on the server"), "{output}");
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_capture_on_the_same_state_dir_refuses_to_start() -> Result<()> {
    let db = ScratchDb::create("USERS", "lock").await?;
    db.exec(TABLE).await?;
    let mut capture = Capture::start(&db, Options::default())?;
    capture.wait_streaming().await?;
    let started = Instant::now();
    let (status, output) = capture.run_again(Duration::from_secs(30))?;
    let status = status.context("the second capture did not exit")?;
    println!("second capture on the same state_dir exited with {status} after {:?}", started.elapsed());
    assert_eq!(status.code(), Some(1), "{output}");
    let lock = capture.state_dir.join("capture.lock");
    assert!(output.contains("is in use by another capture (process "), "{output}");
    assert!(output.contains(&lock.display().to_string()) && output.contains("stop that capture first"), "{output}");
    // The first one is undisturbed.
    let (code, body) = health(&capture).await?;
    assert_eq!((code, &body["sources"]["src"]), (200, &Value::from("streaming")), "{body}");
    assert_eq!(capture.stop()?.code(), Some(0), "{}", capture.output());
    db.drop_db().await
}

/// SIGSTOP/SIGCONT of a component of the private stack.
fn signal(home: &Path, component: &str, signal: &str) -> Result<()> {
    let pid = cdc_tests::component_pid(home, component)?;
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status()?;
    ensure!(status.success(), "kill -{signal} {pid} ({component})");
    let want = if signal == "STOP" { 'T' } else { 'S' };
    // The process really is stopped (T) or running again (anything else) before the clock starts.
    cdc_tests::eventually_blocking(Duration::from_secs(5), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).unwrap_or('?');
        ensure!((state == 'T') == (want == 'T'), "{component} is in state {state}");
        Ok(())
    })
}

/// A database with table `t` on one server of the private stack, and the capture account's URL for it.
async fn private_db(env: &StackEnv, server: &str, name: &str) -> Result<(mysql_async::Pool, String)> {
    let admin = env.var(&format!("{server}_MYSQL_ADMIN_URL"));
    let root = mysql_async::Pool::new(admin);
    root.get_conn().await?.query_drop(format!("CREATE DATABASE {name}")).await?;
    root.disconnect().await?;
    let pool = mysql_async::Pool::new(cdc_tests::mysql::replace_db(admin, name).as_str());
    pool.get_conn().await?.query_drop(TABLE).await?;
    Ok((pool, cdc_tests::mysql::replace_db(env.var(&format!("{server}_MYSQL_CAPTURE_URL")), name)))
}

async fn insert(pool: &mysql_async::Pool, ids: std::ops::RangeInclusive<i64>) -> Result<()> {
    let values: Vec<String> = ids.map(|id| format!("({id}, {id})")).collect();
    pool.get_conn().await?.query_drop(format!("INSERT INTO t (id, v) VALUES {}", values.join(", "))).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn frozen_mariadb_and_broker_turn_health_503_and_recover_and_sigterm_ends_the_process() -> Result<()> {
    let private = PrivateStack::new("liveness_stack");
    let result = frozen(&private.cmd, &private.home).await;
    // Whatever happened, nothing stays stopped (a stopped process would not stop for the wipe).
    for component in ["mysql-users", "kafka"] {
        let _ = signal(&private.home, component, "CONT");
    }
    result
}

async fn frozen(cmd: &StackCommand, home: &Path) -> Result<()> {
    cmd.ok(&["up"])?;
    let env = StackEnv::parse(&cmd.ok(&["env"])?);
    let brokers = env.var("KAFKA_BROKERS");
    let (users, users_url) = private_db(&env, "USERS", "live_users").await?;
    let (catalog, catalog_url) = private_db(&env, "CATALOG", "live_catalog").await?;
    let sources = [
        SourceSpec { name: "users".into(), url: users_url },
        SourceSpec { name: "catalog".into(), url: catalog_url },
    ];
    let mut capture = Capture::start_sources(brokers, "live_users", &sources, Options::default())?;
    all_streaming(&capture, &["users", "catalog"]).await?;
    let mut users_reader = TopicReader::new(brokers, &[&capture.topic_of("live_users", "t")])?;
    let mut catalog_reader = TopicReader::new(brokers, &[&capture.topic_of("live_catalog", "t")])?;
    insert(&users, 1..=10).await?;
    insert(&catalog, 1..=10).await?;
    users_reader.read_events(10, DEADLINE).await?;
    catalog_reader.read_events(10, DEADLINE).await?;

    // A frozen source server: 503 naming that source; the other source keeps delivering.
    signal(home, "mysql-users", "STOP")?;
    let unhealthy = health_becomes(&capture, 503, Duration::from_secs(30), |body| {
        body["reason"].as_str().is_some_and(|r| r.starts_with("users: ") && !r.contains("catalog"))
    })
    .await?;
    let (_, body) = health(&capture).await?;
    println!("mariadb frozen: /health 503 after {unhealthy:?}: {}", body["reason"]);
    insert(&catalog, 11..=20).await?;
    catalog_reader.read_events(20, DEADLINE).await?;
    // Reconnecting to the frozen server does not hang either: the start-up checks time out and are retried.
    let retried = health_becomes(&capture, 503, Duration::from_secs(60), |body| {
        body["reason"].as_str().is_some_and(|r| r.contains("the start-up checks did not answer within 10s"))
    })
    .await?;
    println!("mariadb frozen: a reconnection timed out {retried:?} later: {}", health(&capture).await?.1["reason"]);
    signal(home, "mysql-users", "CONT")?;
    let resumed = Instant::now();
    insert(&users, 11..=20).await?;
    let recovered = health_becomes(&capture, 200, Duration::from_secs(60), |_| true).await?;
    println!("mariadb resumed: /health 200 after {recovered:?} (insert included {:?})", resumed.elapsed());
    users_reader.read_events(20, DEADLINE).await?;
    assert_eq!(ids(&users_reader), (1..=20).collect(), "every change of the frozen source arrives");
    assert!(unhealthy < Duration::from_secs(10), "503 within 10 s of the freeze, took {unhealthy:?}");

    // SIGTERM while a source server is frozen; then the capture starts again and resumes.
    signal(home, "mysql-users", "STOP")?;
    health_becomes(&capture, 503, Duration::from_secs(30), |body| {
        body["reason"].as_str().is_some_and(|r| r.starts_with("users: "))
    })
    .await?;
    let asked = Instant::now();
    let status = capture.stop_within(Duration::from_secs(30))?;
    let took = asked.elapsed();
    println!("SIGTERM with a MariaDB frozen: exited with {status:?} after {took:?}");
    let status = status.context("the capture did not exit within 30 s of SIGTERM")?;
    assert!(took < Duration::from_secs(10), "exit within 10 s of SIGTERM, took {took:?}:\n{}", capture.output());
    assert_eq!(status.code(), Some(0), "{}", capture.output());
    signal(home, "mysql-users", "CONT")?;
    let restarted_ms = cdc_common::now_ms();
    capture.restart()?;
    all_streaming(&capture, &["users", "catalog"]).await?;
    // Each source has published a heartbeat since (the first one reads the broker's watermarks): the broker is
    // frozen below while the sources stream normally.
    let mut beats = TopicReader::new(brokers, &[&cdc_contract::heartbeat_topic(&capture.prefix)])?;
    beats
        .read_until(DEADLINE, |messages| {
            ["users", "catalog"].iter().all(|source| {
                let beat = |m: &&cdc_tests::Message| {
                    m.value.as_ref().is_some_and(|v| v["source"] == *source && v["ts_ms"].as_i64() > Some(restarted_ms))
                };
                messages.iter().any(|m| beat(&m))
            })
        })
        .await?;

    // A frozen broker: 503 naming it; after SIGCONT it recovers and nothing is lost.
    signal(home, "kafka", "STOP")?;
    let frozen_at = Instant::now();
    let unhealthy = health_becomes(&capture, 503, Duration::from_secs(30), |body| {
        body["reason"].as_str().is_some_and(|r| r.contains("broker not acknowledging for "))
    })
    .await?;
    let (_, body) = health(&capture).await?;
    println!("broker frozen: /health 503 after {unhealthy:?}: {}", body["reason"]);
    let metrics = http_get(&format!("{}/metrics", capture.url)).await?;
    let waited = ["users", "catalog"]
        .iter()
        .filter_map(|s| metrics_line(&metrics, "cdc_capture_oldest_unacknowledged_seconds", s)?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(waited > 5.0, "the oldest batch waits for its acknowledgement: {metrics}");
    insert(&users, 21..=30).await?;
    insert(&catalog, 21..=30).await?;
    signal(home, "kafka", "CONT")?;
    let recovered = health_becomes(&capture, 200, Duration::from_secs(60), |_| true).await?;
    println!("broker resumed after {:?} frozen: /health 200 after {recovered:?}", frozen_at.elapsed());
    users_reader.read_events(30, DEADLINE).await?;
    catalog_reader.read_events(30, DEADLINE).await?;
    assert_eq!(ids(&users_reader), (1..=30).collect());
    assert_eq!(ids(&catalog_reader), (1..=30).collect());
    assert!(unhealthy < Duration::from_secs(10), "503 within 10 s of the broker's freeze, took {unhealthy:?}");
    assert!(capture.exited()?.is_none(), "{}", capture.output());

    // SIGTERM while the broker is frozen, with changes waiting for it.
    signal(home, "kafka", "STOP")?;
    insert(&users, 31..=40).await?;
    health_becomes(&capture, 503, Duration::from_secs(30), |body| {
        body["reason"].as_str().is_some_and(|r| r.contains("broker not acknowledging"))
    })
    .await?;
    let asked = Instant::now();
    let status = capture.stop_within(Duration::from_secs(30))?;
    let took = asked.elapsed();
    println!("SIGTERM with the broker frozen: exited with {status:?} after {took:?}");
    let status = status.context("the capture did not exit within 30 s of SIGTERM")?;
    assert!(took < Duration::from_secs(10), "exit within 10 s of SIGTERM, took {took:?}:\n{}", capture.output());
    assert_eq!(status.code(), Some(0), "a shutdown with healthy sources is a clean stop:\n{}", capture.output());
    signal(home, "kafka", "CONT")?;
    users.disconnect().await?;
    catalog.disconnect().await?;
    Ok(())
}
