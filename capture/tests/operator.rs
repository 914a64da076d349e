//! The operator commands against the real stack: `capture replay`, `capture skip`, `capture status`,
//! `capture pause` / `capture resume`.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use cdc_tests::{eventually, stack, ScratchDb};
use common::{http_get, Capture, Options, SourceSpec, DEADLINE};
use mysql_async::prelude::*;
use serde_json::Value;

/// Runs `capture <args>`: exit code, stdout, stderr.
async fn capture_cli(args: &[&str]) -> Result<(i32, String, String)> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_capture"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .context("running the capture command")?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr)))
}

/// The server's binlog end, `FILE:POS`.
async fn binlog_end(db: &ScratchDb) -> Result<String> {
    let row: mysql_async::Row = db.pool.get_conn().await?.query_first("SHOW MASTER STATUS").await?.context("binlog on")?;
    Ok(format!("{}:{}", row.get::<String, _>(0).context("file")?, row.get::<u64, _>(1).context("pos")?))
}

/// The value without its top-level `ts_ms` (the time of encoding, which a replay cannot reproduce).
fn without_ts(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove("ts_ms");
    }
    value
}

/// A record as compared: topic, key, value without `ts_ms` (`None` for a tombstone).
type Published = (String, Value, Option<Value>);

/// `(key, value without ts_ms)` of each line of replay's JSON output, and its last line.
fn replay_lines(stdout: &str) -> Result<(Vec<Published>, String)> {
    let mut lines: Vec<&str> = stdout.lines().collect();
    let last = lines.pop().context("no output")?.to_owned();
    let records = lines
        .iter()
        .map(|line| {
            let record: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
            let value = (!record["value"].is_null()).then(|| without_ts(record["value"].clone()));
            Ok((record["topic"].as_str().unwrap_or_default().to_owned(), record["key"].clone(), value))
        })
        .collect::<Result<_>>()?;
    Ok((records, last))
}

fn order(records: &mut [Published]) {
    records.sort_by_key(|(topic, key, value)| {
        let at = value.as_ref().map(|v| (v["source"]["pos"].as_u64(), v["source"]["row"].as_u64()));
        (topic.clone(), at, key.to_string())
    });
}

/// Replay's JSON output of a window equals what the capture published to Kafka for it (every record, tombstones
/// included, byte for byte but the encoding time `ts_ms`); `--format none` prints only the counts, the same; bad
/// windows and an unreachable server are clear errors with a non-zero exit.
#[tokio::test(flavor = "multi_thread")]
async fn replay_prints_what_the_capture_published() -> Result<()> {
    let db = ScratchDb::create("USERS", "replay").await?;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(10,2), at DATETIME(3))").await?;
    let capture = Capture::start(&db, Options { snapshot: "never", ..Options::default() })?;
    capture.wait_streaming().await?;
    let from = binlog_end(&db).await?;
    db.exec("INSERT INTO t VALUES (1, 'one', 1.50, '2024-01-02 03:04:05.678'), (2, 'two', 2.25, NULL), (3, 'three', 3, NOW(3))").await?;
    db.exec("UPDATE t SET amount = amount * 2 WHERE id <= 2").await?;
    db.exec("UPDATE t SET id = 30 WHERE id = 3").await?;
    db.exec("BEGIN; DELETE FROM t WHERE id = 1; INSERT INTO t VALUES (4, 'four', 4, NULL); COMMIT").await?;
    let to = binlog_end(&db).await?;
    // 3 creates, 2 updates, a key change (delete + create), a delete and a create: 9 change events, 2 tombstones.
    let mut reader = capture.reader(&["t"])?;
    reader.read_until(DEADLINE, |m| m.len() >= 11).await?;
    let mut published: Vec<Published> =
        reader.messages.iter().map(|m| (m.topic.clone(), m.key.clone(), m.value.clone().map(without_ts))).collect();
    order(&mut published);

    let config = capture.config.to_str().context("path")?;
    let (code, stdout, stderr) = capture_cli(&["replay", "--config", config, "--source", "src", "--from", &from, "--to", &to]).await?;
    ensure!(code == 0, "replay exited {code}: {stderr}");
    let (mut replayed, last) = replay_lines(&stdout)?;
    order(&mut replayed);
    assert_eq!(replayed, published, "replay's records are the published ones");
    let bytes: usize = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r.get("topic").is_some())
        .map(|r| {
            let len = |v: &Value| if v.is_null() { 0 } else { v.to_string().len() };
            len(&r["key"]) + len(&r["value"])
        })
        .sum();
    assert_eq!(last, format!("rows=9 bytes={bytes}"));

    let (code, counted, stderr) =
        capture_cli(&["replay", "--config", config, "--from", &from, "--to", &to, "--format", "none"]).await?;
    ensure!(code == 0, "{stderr}");
    assert_eq!(counted, format!("rows=9 bytes={bytes}\n"), "only the counts");
    // Without the configuration: the URL's database, the default prefix.
    let (code, plain, stderr) =
        capture_cli(&["replay", "--source-url", &db.capture_url(), "--from", &from, "--to", &to, "--format", "none"]).await?;
    ensure!(code == 0, "{stderr}");
    assert!(plain.starts_with("rows=9 bytes="), "{plain}");

    let (file, pos) = to.rsplit_once(':').context("to")?;
    let pos: u64 = pos.parse()?;
    let beyond = format!("{file}:{}", pos + 1_000_000_000);
    let missing = format!("{}.999999:4", file.rsplit_once('.').context("file")?.0);
    let purged = format!("{}.000000:4", file.rsplit_once('.').context("file")?.0);
    let unreachable = "mysql://cdc_capture:x@127.0.0.1:1/db";
    let cases: [(&str, &str, &str, &str); 5] = [
        (&db.capture_url(), &from, &beyond, "is beyond the end of"),
        (&db.capture_url(), &from, &missing, "the server has no binlog file"),
        (&db.capture_url(), &purged, &to, "is purged from the server"),
        (&db.capture_url(), &to, &from, "is before --from"),
        (unreachable, &from, &to, "Connection refused"),
    ];
    for (url, from, to, expected) in cases {
        let (code, stdout, stderr) = capture_cli(&["replay", "--source-url", url, "--from", from, "--to", to]).await?;
        assert_ne!(code, 0, "{from}..{to}: {stdout}");
        assert!(stderr.contains(expected), "{from}..{to}: expected {expected:?} in {stderr}");
    }
    let inside = format!("{file}:{}", pos - 1);
    let (code, _, stderr) = capture_cli(&["replay", "--source-url", &db.capture_url(), "--from", &from, "--to", &inside]).await?;
    assert!(code != 0 && stderr.contains("is inside an event"), "{stderr}");
    Ok(())
}

/// The saved checkpoint's `FILE:POS`.
fn checkpoint_position(state_dir: &Path) -> Result<String> {
    let cp: Value = serde_json::from_str(&std::fs::read_to_string(state_dir.join("src.json"))?)?;
    Ok(format!("{}:{}", cp["position"]["file"].as_str().context("file")?, cp["position"]["pos"]))
}

/// A row the broker refuses (over `message.max.bytes`) stops its source while the other streams on, with the
/// checkpoint right before it; `capture skip` to its GTID moves the checkpoint past it, and only it, in the running capture, records who, why and what in the
/// history, and the source streams on; the printed replay command prints the skipped row. With the capture
/// stopped, skip edits the checkpoint under the state_dir lock, and refuses targets before the checkpoint or
/// inside a transaction.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_stopped_on_a_bad_row_is_skipped_past_and_the_skipped_row_replays() -> Result<()> {
    let db = ScratchDb::create("USERS", "skip").await?;
    let other = ScratchDb::create("USERS", "skip_other").await?;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, note TEXT)").await?;
    other.exec("CREATE TABLE u (id INT PRIMARY KEY)").await?;
    let sources = [
        SourceSpec { name: "src".into(), url: db.capture_url() },
        SourceSpec { name: "other".into(), url: other.capture_url() },
    ];
    let extra = "[kafka.properties]\n\"message.max.bytes\" = \"4000\"\n".to_owned();
    let mut capture = Capture::start_sources(stack().var("KAFKA_BROKERS"), &db.name, &sources, Options { extra, ..Options::default() })?;
    capture.wait_streaming().await?;
    let mut reader = capture.reader(&["t"])?;
    db.exec("INSERT INTO t VALUES (1, 'small')").await?;
    reader.read_events(1, DEADLINE).await?;

    let mut conn = db.pool.get_conn().await?;
    // Right before the bad row, within a checkpoint interval: the stopped source's checkpoint is still after it
    // (saved at the stop), so the skip passes over the bad row alone.
    conn.query_drop("INSERT INTO t VALUES (10, 'just before')").await?;
    conn.query_drop(format!("INSERT INTO t VALUES (2, '{}')", "x".repeat(10_000))).await?;
    let gtid: String = conn.query_first("SELECT @@last_gtid").await?.context("a GTID")?;
    conn.query_drop("INSERT INTO t VALUES (3, 'after')").await?;
    let health_url = format!("{}/health", capture.url);
    let health = eventually(DEADLINE, || {
        let url = health_url.clone();
        async move {
            let health = http_get(&url).await?;
            ensure!(health.contains("src: failed") && health.contains("message.max.bytes"), "{health}");
            Ok(health)
        }
    })
    .await?;
    assert!(health.contains("\"other\":\"streaming\""), "the other source streams on: {health}");
    let stopped_at = checkpoint_position(&capture.state_dir)?;
    reader.read_until(DEADLINE, |m| m.iter().any(|m| m.key["id"] == 10)).await?;

    let config = capture.config.to_str().context("path")?.to_owned();
    let reason = "row 2 is larger than the broker accepts";
    let skip = ["skip", "--config", &config, "--source", "src", "--to", &gtid, "--reason", reason, "--actor", "tester"];
    let (code, stdout, stderr) = capture_cli(&skip).await?;
    ensure!(code == 0, "skip exited {code}: {stdout}{stderr}");
    assert!(stdout.contains(&format!("checkpoint moved from {stopped_at} to ")), "{stdout}");
    assert!(stdout.contains("skipped: 1 row changes"), "{stdout}");
    // Streams on: row 3 arrives, row 2 never did.
    reader.read_until(DEADLINE, |m| m.iter().any(|m| m.key["id"] == 3)).await?;
    assert!(!reader.messages.iter().any(|m| m.key["id"] == 2), "the skipped row was not published");
    capture.wait_streaming().await?;
    let health = http_get(&health_url).await?;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let history = std::fs::read_to_string(capture.state_dir.join("src.history.jsonl"))?;
    let entry: Value = serde_json::from_str(history.lines().next().context("an entry")?)?;
    assert_eq!((entry["action"].as_str(), entry["actor"].as_str(), entry["reason"].as_str()), (Some("skip"), Some("tester"), Some(reason)));
    assert_eq!(format!("{}:{}", entry["from"]["position"]["file"].as_str().unwrap_or_default(), entry["from"]["position"]["pos"]), stopped_at);
    assert!(capture.output().contains("checkpoint moved forward by an operator's skip"), "the log line");

    // The printed command replays the skipped range: row 2, whole.
    let replay = stdout.lines().skip_while(|l| !l.starts_with("replay the skipped range")).nth(1).context("the command")?;
    assert_eq!(Some(replay.trim()), entry["replay"].as_str());
    let args: Vec<&str> = replay.split_whitespace().skip(1).collect();
    let (code, replayed, stderr) = capture_cli(&args).await?;
    ensure!(code == 0, "{stderr}");
    let (records, last) = replay_lines(&replayed)?;
    assert!(last.starts_with("rows=1 bytes="), "{last}");
    let row = records.iter().find_map(|(_, key, value)| (key["id"] == 2).then_some(value.clone())).flatten().context("row 2")?;
    assert_eq!(row["after"]["note"].as_str().map(str::len), Some(10_000));

    // Stopped: the command edits the checkpoint itself.
    capture.stop()?;
    let checkpoint = checkpoint_position(&capture.state_dir)?;
    conn.query_drop("INSERT INTO t VALUES (4, 'while stopped')").await?;
    let gtid4: String = conn.query_first("SELECT @@last_gtid").await?.context("a GTID")?;
    let (file, pos) = checkpoint.rsplit_once(':').context("position")?;
    let before = format!("{file}:{}", pos.parse::<u64>()? - 1);
    let inside = format!("{file}:{}", pos.parse::<u64>()? + 1);
    for (to, expected) in [(before.as_str(), "is not after the checkpoint"), (inside.as_str(), "is not a transaction boundary"), (gtid.as_str(), "already in the checkpoint's GTID set")] {
        let (code, stdout, stderr) =
            capture_cli(&["skip", "--config", &config, "--source", "src", "--to", to, "--reason", "test"]).await?;
        assert!(code != 0 && stderr.contains(expected), "{to}: expected {expected:?}: {stdout}{stderr}");
    }
    assert_eq!(checkpoint_position(&capture.state_dir)?, checkpoint, "a refused skip leaves the checkpoint");
    let (code, stdout, stderr) =
        capture_cli(&["skip", "--config", &config, "--source", "src", "--to", &gtid4, "--reason", "offline"]).await?;
    ensure!(code == 0, "{stdout}{stderr}");
    assert!(stdout.contains("skipped: 1 row changes"), "{stdout}");
    assert_ne!(checkpoint_position(&capture.state_dir)?, checkpoint);
    let history = std::fs::read_to_string(capture.state_dir.join("src.history.jsonl"))?;
    assert_eq!(history.lines().count(), 2, "{history}");
    Ok(())
}

/// `capture status` as a table; a paused source publishes nothing while rows are inserted, /health stays 200 and
/// says so, the pause survives a restart, and after `capture resume` every row arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_source_publishes_nothing_until_resumed() -> Result<()> {
    let db = ScratchDb::create("USERS", "pause").await?;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY)").await?;
    let mut capture = Capture::start(&db, Options::default())?;
    capture.wait_streaming().await?;
    let mut reader = capture.reader(&["t"])?;
    db.exec("INSERT INTO t VALUES (1)").await?;
    reader.read_events(1, DEADLINE).await?;
    let config = capture.config.to_str().context("path")?.to_owned();
    let status_args = ["status", "--config", config.as_str()];
    let status = || capture_cli(&status_args);
    let (code, table, stderr) = status().await?;
    ensure!(code == 0, "{stderr}");
    let row = table.lines().find(|l| l.starts_with("src ")).context("a row for src")?.to_owned();
    assert!(table.starts_with("source  state      position"), "{table}");
    assert!(row.contains(" streaming ") && row.contains(":"), "{row}");

    let (code, stdout, stderr) = capture_cli(&["pause", "--config", &config, "--source", "src", "--reason", "maintenance", "--actor", "tester"]).await?;
    ensure!(code == 0, "{stdout}{stderr}");
    let health_url = format!("{}/health", capture.url);
    let paused = |health: &str| health.starts_with("HTTP/1.1 200") && health.contains("\"src\":\"paused by tester since ");
    eventually(DEADLINE, || {
        let url = health_url.clone();
        async move {
            let health = http_get(&url).await?;
            ensure!(paused(&health), "{health}");
            Ok(())
        }
    })
    .await?;
    let (_, table, _) = status().await?;
    assert!(table.lines().any(|l| l.starts_with("src ") && l.contains(" paused ") && l.ends_with(": maintenance")), "{table}");
    let (code, _, stderr) = capture_cli(&["pause", "--config", &config, "--source", "src"]).await?;
    assert!(code != 0 && stderr.contains("already paused"), "{stderr}");

    for id in 2..=51 {
        db.exec(&format!("INSERT INTO t VALUES ({id})")).await?;
    }
    // Nothing arrives while paused (5 s of reading, then a restart, then 3 s more).
    let none = reader.read_until(Duration::from_secs(5), |m| m.len() > 1).await;
    assert!(none.is_err(), "a paused source published: {:?}", reader.messages.len());
    capture.restart()?;
    eventually(DEADLINE, || {
        let url = health_url.clone();
        async move {
            let health = http_get(&url).await?;
            ensure!(paused(&health), "{health}");
            Ok(())
        }
    })
    .await?;
    let none = reader.read_until(Duration::from_secs(3), |m| m.len() > 1).await;
    assert!(none.is_err(), "paused after the restart too: {}", reader.messages.len());

    let (code, stdout, stderr) = capture_cli(&["resume", "--config", &config, "--source", "src"]).await?;
    ensure!(code == 0, "{stdout}{stderr}");
    reader.read_events(51, DEADLINE).await?;
    let mut ids: Vec<i64> = reader.events().iter().filter_map(|e| e["after"]["id"].as_i64()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids, (1..=51).collect::<Vec<_>>());
    let (_, table, _) = status().await?;
    assert!(table.lines().any(|l| l.starts_with("src ") && l.contains(" streaming ")), "{table}");
    let history = std::fs::read_to_string(capture.state_dir.join("src.history.jsonl"))?;
    let actions: Vec<String> = history.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).map(|e| e["action"].to_string()).collect();
    assert_eq!(actions, ["\"pause\"", "\"resume\""]);
    Ok(())
}
