//! Incremental snapshots (`capture resnapshot`) against the real local stack: convergence under concurrent writes,
//! a SIGKILL in the middle, `--where`, and refused requests.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use cdc_contract::ChangeEvent;
use cdc_tests::{eventually, ScratchDb, TopicReader};
use common::{http_get, Capture, Options, DEADLINE};
use mysql_async::prelude::*;
use rand::Rng;
use serde_json::{json, Value};

const TABLE: &str = "CREATE TABLE items (id BIGINT UNSIGNED PRIMARY KEY, name VARCHAR(40), n BIGINT)";

/// Runs `capture resnapshot` against the capture.
fn resnapshot(capture: &Capture, args: &[&str]) -> Result<Output> {
    std::process::Command::new(env!("CARGO_BIN_EXE_capture"))
        .arg("resnapshot")
        .arg("--config")
        .arg(&capture.config)
        .args(["--source", "src"])
        .args(args)
        .output()
        .context("running capture resnapshot")
}

/// `capture resnapshot` that must succeed.
fn start_resnapshot(capture: &Capture, args: &[&str]) -> Result<()> {
    let out = resnapshot(capture, args)?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "capture resnapshot {args:?} failed: {text}");
    ensure!(text.contains("started"), "{text}");
    Ok(())
}

async fn health(capture: &Capture) -> Result<Value> {
    let text = http_get(&format!("{}/health", capture.url)).await?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(serde_json::from_str(body)?)
}

/// Waits until `/health` shows the resnapshot of the source done; returns its status.
async fn wait_done(capture: &Capture) -> Result<Value> {
    wait_state(capture, "done").await
}

/// Waits until `/health` shows the resnapshot of the source in `state`; returns its status.
async fn wait_state(capture: &Capture, state: &str) -> Result<Value> {
    eventually(DEADLINE, || async {
        let status = health(capture).await?["resnapshots"]["src"].clone();
        ensure!(status["state"] == state, "resnapshot not {state} yet: {status}");
        Ok(status)
    })
    .await
}

async fn insert_rows(db: &ScratchDb, from: u64, to: u64) -> Result<()> {
    let mut conn = db.pool.get_conn().await?;
    let ids: Vec<u64> = (from..=to).collect();
    for batch in ids.chunks(5000) {
        let values: Vec<String> = batch.iter().map(|id| format!("({id}, 'row {id}', {id})")).collect();
        conn.query_drop(format!("INSERT INTO items VALUES {}", values.join(","))).await?;
    }
    Ok(())
}

async fn table_state(db: &ScratchDb) -> Result<BTreeMap<String, Value>> {
    let rows: Vec<(u64, String, i64)> =
        db.pool.get_conn().await?.query("SELECT id, name, n FROM items ORDER BY id").await?;
    Ok(rows.into_iter().map(|(id, name, n)| (json!({ "id": id }).to_string(), json!({"id": id, "name": name, "n": n}))).collect())
}

/// Inserts, updates, deletes and primary-key changes at random over `1..=max` until `stop`, pausing `pause` between
/// rounds of four. Keys move up by `100 * max`; new keys come above those, so that a resnapshot started after the
/// writer reads up to a bounded key (its end key) while the inserts above it are streamed.
fn concurrent_writer(
    db: &ScratchDb,
    max: u64,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<u64>> {
    let pool = db.pool.clone();
    tokio::spawn(async move {
        let mut conn = pool.get_conn().await?;
        let mut next = 1000 * max;
        let mut writes = 0;
        while !stop.load(Ordering::SeqCst) {
            let (a, b, c) = {
                let mut rng = rand::rng();
                (rng.random_range(1..=max), rng.random_range(1..=max), rng.random_range(1..=max))
            };
            next += 1;
            conn.query_drop(format!(
                "UPDATE items SET n = n + 1, name = 'upd {writes}' WHERE id = {a};
                 DELETE FROM items WHERE id = {b};
                 INSERT INTO items VALUES ({next}, 'new {next}', {writes});
                 UPDATE items SET id = {c} + 100 * {max} WHERE id = {c}"
            ))
            .await?;
            writes += 4;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        anyhow::Ok(writes)
    })
}

/// The newest event per key by `ChangeEvent::version` (as consumers keep rows): key -> the row, absent if deleted.
/// Also checks that each key's events arrive in version order (partition order and versions agree): an event older
/// than the newest of its key may only be one sent again after a restart (same version, same content).
fn newest_by_version(reader: &TopicReader) -> Result<BTreeMap<String, Value>> {
    let mut newest: HashMap<String, (u64, Option<Value>)> = HashMap::new();
    let mut seen: HashMap<(String, u64), Option<Value>> = HashMap::new();
    for m in &reader.messages {
        let Some(value) = &m.value else { continue };
        // The contract's decoder reads from text (its enums borrow their strings).
        let event: ChangeEvent = serde_json::from_str(&value.to_string())?;
        let version = event.version().context("a version")?;
        let key = m.key.to_string();
        let row = (event.op != cdc_contract::Op::Delete).then(|| value["after"].clone());
        match seen.insert((key.clone(), version), row.clone()) {
            Some(old) => ensure!(old == row, "key {key}: two different events at version {version}"),
            None => match newest.get(&key) {
                Some((v, _)) if *v > version => anyhow::bail!("key {key}: a new version {version} arrived after {v}: {value}"),
                _ => {
                    newest.insert(key, (version, row));
                }
            },
        }
    }
    Ok(newest.into_iter().filter_map(|(k, (_, row))| row.map(|r| (k, r))).collect())
}

/// Reads until the newest version of every key equals the table (or fails at the deadline with the difference).
async fn converges(reader: &mut TopicReader, want: &BTreeMap<String, Value>) -> Result<()> {
    let mut last = usize::MAX;
    let result = reader
        .read_until(DEADLINE, |m| {
            let idle = m.len() == last;
            last = m.len();
            idle && !m.is_empty()
        })
        .await;
    let mut got = newest_by_version(reader)?;
    let deadline = std::time::Instant::now() + DEADLINE;
    while &got != want && std::time::Instant::now() < deadline {
        let n = reader.messages.len();
        let _ = reader.read_until(Duration::from_secs(2), |m| m.len() > n + 1000).await;
        got = newest_by_version(reader)?;
    }
    result?;
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).take(5).collect();
    let differ: Vec<_> = want.iter().filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).take(5).collect();
    ensure!(
        &got == want,
        "topic and table differ: {} rows vs {}; missing {missing:?}, resurrected or extra {extra:?}, differing {differ:?}",
        got.len(),
        want.len()
    );
    Ok(())
}

fn reads(reader: &TopicReader) -> Vec<&Value> {
    reader.events().into_iter().filter(|e| e["op"] == "r").collect()
}

/// Rows written before the capture started (`snapshot = "never"`) reach the topic only through the resnapshot;
/// updates, deletes, inserts and key changes run all through it. Afterwards the newest version of each key is the
/// table's row, and no deleted row came back.
#[tokio::test(flavor = "multi_thread")]
async fn a_resnapshot_under_concurrent_writes_converges_to_the_table() -> Result<()> {
    let db = ScratchDb::create("CATALOG", "resnap").await?;
    db.exec(TABLE).await?;
    insert_rows(&db, 1, 5000).await?;
    let capture = Capture::start(&db, Options { snapshot: "never", chunk_rows: 100, ..Options::default() })?;
    capture.wait_streaming().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = concurrent_writer(&db, 5000, Duration::from_micros(500), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await; // let the writer start before the first chunk
    let started = std::time::Instant::now();
    start_resnapshot(&capture, &["--table", &format!("{}.items", db.name)])?;
    // One at a time per source: a second request while it runs is refused (it takes seconds, this milliseconds).
    let second = resnapshot(&capture, &["--table", &format!("{}.items", db.name)])?;
    let stderr = String::from_utf8_lossy(&second.stderr);
    ensure!(!second.status.success() && stderr.contains("is running") && stderr.contains("refused (409)"), "{stderr}");
    let status = wait_done(&capture).await?;
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await??;
    let want = table_state(&db).await?;
    let mut reader = capture.reader(&["items"])?;
    converges(&mut reader, &want).await?;
    let reads = reads(&reader);
    println!("resnapshot of 5000 rows in {took:?} with {writes} concurrent writes: {status}; {} reads", reads.len());
    ensure!(reads.len() > 1000 && status["rows"].as_u64() == Some(reads.len() as u64), "{status} vs {}", reads.len());
    ensure!(status["chunks"].as_u64().unwrap_or(0) >= 30, "many chunks (deletes make fewer than 50): {status}");
    ensure!(reads.iter().all(|r| r["source"]["snapshot"] == "true" && r["transaction"].is_null()));
    let metrics = http_get(&format!("{}/metrics", capture.url)).await?;
    let line = format!("cdc_capture_resnapshot_rows_total{{source=\"src\",table=\"{}.items\"}} {}", db.name, reads.len());
    ensure!(metrics.contains(&line), "{line} in\n{metrics}");
    ensure!(metrics.contains(&format!("cdc_capture_resnapshot_active{{source=\"src\",table=\"{}.items\"}} 0", db.name)));
    drop(capture);
    db.drop_db().await
}

/// SIGKILL while chunks are being emitted under concurrent writes: after the restart the resnapshot continues
/// after the last acknowledged chunk (no read of a key at or below it is emitted again) and the topic converges.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigkill_in_the_middle_of_a_resnapshot_resumes_after_the_last_acknowledged_chunk() -> Result<()> {
    let db = ScratchDb::create("ORDERS", "resnapkill").await?;
    db.exec(TABLE).await?;
    insert_rows(&db, 1, 20_000).await?;
    let mut capture = Capture::start(&db, Options { snapshot: "never", chunk_rows: 400, ..Options::default() })?;
    capture.wait_streaming().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = concurrent_writer(&db, 20_000, Duration::from_millis(1), stop.clone());
    start_resnapshot(&capture, &["--table", &format!("{}.items", db.name)])?;
    let checkpoint_file = capture.state_dir.join("src.json");
    let progress = || -> Result<Value> {
        let cp: Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint_file)?)?;
        Ok(cp["resnapshot"].clone())
    };
    eventually(DEADLINE, || async {
        let p = progress()?;
        ensure!(p["chunks"].as_u64().unwrap_or(0) >= 5, "not far enough yet: {p}");
        Ok(())
    })
    .await?;
    capture.kill()?;
    let saved = progress()?;
    let last_key = saved["last_key"][0].as_u64().context("a last key in the saved progress")?;
    ensure!(last_key < 20_000, "killed before the end: {saved}");
    println!("killed with progress {saved}");
    let restarted_ms = cdc_common::now_ms();
    capture.restart()?;
    let status = wait_done(&capture).await?;
    stop.store(true, Ordering::SeqCst);
    writer.await??;
    ensure!(capture.output().contains("resnapshot resumed"), "{}", capture.output());
    let want = table_state(&db).await?;
    let mut reader = capture.reader(&["items"])?;
    converges(&mut reader, &want).await?;
    let after_restart: Vec<u64> = reads(&reader)
        .into_iter()
        .filter(|r| r["ts_ms"].as_i64().unwrap_or(0) >= restarted_ms)
        .filter_map(|r| r["after"]["id"].as_u64())
        .collect();
    ensure!(!after_restart.is_empty(), "reads after the restart");
    let again: Vec<&u64> = after_restart.iter().filter(|id| **id <= last_key).take(5).collect();
    ensure!(again.is_empty(), "keys up to {last_key} were acknowledged before the kill but read again: {again:?}");
    ensure!(progress()?.is_null(), "the finished resnapshot left progress in the checkpoint");
    println!("after the restart: {} reads, final status {status}", after_restart.len());
    drop(capture);
    db.drop_db().await
}

/// `--where` reads only matching rows.
#[tokio::test(flavor = "multi_thread")]
async fn where_limits_the_rows_read() -> Result<()> {
    let db = ScratchDb::create("USERS", "resnapwhere").await?;
    db.exec(TABLE).await?;
    insert_rows(&db, 1, 1000).await?;
    let capture = Capture::start(&db, Options { snapshot: "never", chunk_rows: 30, ..Options::default() })?;
    capture.wait_streaming().await?;
    start_resnapshot(&capture, &["--table", &format!("{}.items", db.name), "--where", "id % 10 = 0 AND n > 500"])?;
    let status = wait_done(&capture).await?;
    ensure!(status["rows"] == 50 && status["where"] == "id % 10 = 0 AND n > 500", "{status}");
    let mut reader = capture.reader(&["items"])?;
    reader.read_events(50, DEADLINE).await?;
    let mut ids: Vec<u64> = reads(&reader).iter().filter_map(|r| r["after"]["id"].as_u64()).collect();
    ids.sort_unstable(); // the keys are spread over partitions
    let want: Vec<u64> = (51..=100).map(|i| i * 10).collect();
    ensure!(ids == want, "{ids:?}");
    drop(capture);
    db.drop_db().await
}

/// Refused requests name the cause, and nothing is emitted for them.
#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_fail_with_a_clear_error_before_anything_is_emitted() -> Result<()> {
    let db = ScratchDb::create("USERS", "resnaperr").await?;
    db.exec(TABLE).await?;
    db.exec("CREATE TABLE nokey (a INT, b INT)").await?;
    insert_rows(&db, 1, 10).await?;
    let capture = Capture::start(&db, Options { snapshot: "never", ..Options::default() })?;
    capture.wait_streaming().await?;
    let items = format!("{}.items", db.name);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--table".into(), items.clone(), "--where".into(), "id >>> 3".into()], "is not a valid condition on"),
        (vec!["--table".into(), items.clone(), "--where".into(), "no_such_column = 1".into()], "Unknown column"),
        (vec!["--table".into(), items.clone(), "--where".into(), "1=1; DROP TABLE items".into()], "is not a valid condition"),
        (vec!["--table".into(), items.clone(), "--where".into(), " ".into()], "--where is empty"),
        (vec!["--table".into(), format!("{}.nokey", db.name)], "has no primary key"),
        (vec!["--table".into(), format!("{}.missing", db.name)], "does not exist"),
        (vec!["--table".into(), "mysql.user".into()], "is not captured by this source"),
        (vec!["--table".into(), "items".into()], "is not of the form database.table"),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = resnapshot(&capture, &args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        ensure!(stderr.contains(expected) && stderr.contains("refused (400)"), "{args:?}: expected {expected:?} in {stderr}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capture"))
        .args(["resnapshot", "--config"])
        .arg(&capture.config)
        .args(["--source", "nosuch", "--table", &items])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && stderr.contains("no source named \"nosuch\"") && stderr.contains("refused (404)"), "{stderr}");
    let h = health(&capture).await?;
    ensure!(h["resnapshots"] == json!({}), "a refused request started something: {h}");
    ensure!(h["status"] == "ok", "{h}");
    // Nothing was emitted: a valid request afterwards reads the table's 10 rows, and they are the topic's first.
    start_resnapshot(&capture, &["--table", &items])?;
    wait_done(&capture).await?;
    let mut reader = capture.reader(&["items"])?;
    reader.read_events(10, DEADLINE).await?;
    ensure!(reader.events().len() == 10 && reads(&reader).len() == 10, "{:?}", reader.events());
    drop(capture);
    db.drop_db().await
}

/// A definite error while reading chunks (the table is dropped) abandons the resnapshot with its error in `/health`;
/// the source keeps streaming.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_dropped_during_its_resnapshot_abandons_it_and_streaming_goes_on() -> Result<()> {
    let db = ScratchDb::create("CATALOG", "resnapdrop").await?;
    db.exec(TABLE).await?;
    db.exec("CREATE TABLE other (id INT PRIMARY KEY, v INT)").await?;
    insert_rows(&db, 1, 20_000).await?;
    let capture = Capture::start(&db, Options { snapshot: "never", chunk_rows: 50, ..Options::default() })?;
    capture.wait_streaming().await?;
    start_resnapshot(&capture, &["--table", &format!("{}.items", db.name)])?;
    db.exec("DROP TABLE items").await?;
    let status = wait_state(&capture, "abandoned").await?;
    let error = status["error"].as_str().unwrap_or_default();
    ensure!(error.contains("doesn't exist") || error.contains("1146"), "{status}");
    ensure!(status["rows"].as_u64().unwrap_or(u64::MAX) < 20_000, "{status}");
    db.exec("INSERT INTO other VALUES (1, 7)").await?;
    let mut reader = capture.reader(&["other"])?;
    reader.read_events(1, DEADLINE).await?;
    ensure!(reader.events()[0]["op"] == "c", "{:?}", reader.events());
    let h = health(&capture).await?;
    ensure!(h["status"] == "ok" && h["sources"]["src"] == "streaming", "{h}");
    let checkpoint = capture.state_dir.join("src.json");
    eventually(DEADLINE, || async {
        let cp: Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint)?)?;
        ensure!(cp["resnapshot"].is_null(), "an abandoned resnapshot stays out of the checkpoints: {cp}");
        Ok(())
    })
    .await?;
    drop(capture);
    db.drop_db().await
}
