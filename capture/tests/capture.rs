//! The capture against the real local stack: types, ordering, crash safety, snapshots, schema changes.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{ensure, Result};
use cdc_tests::{eventually, ScratchDb};
use common::{Capture, Options, DEADLINE};
use mysql_async::prelude::*;
use serde_json::{json, Value};

const TYPES_TABLE: &str = "CREATE TABLE types (
  id BIGINT UNSIGNED PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, i INT, iu INT UNSIGNED,
  bi BIGINT, bu BIGINT UNSIGNED,
  d DECIMAL(12,2), d0 DECIMAL(20,0), dn DECIMAL(5,3), f FLOAT, db DOUBLE,
  c CHAR(5), vc VARCHAR(50), t TEXT, l1 VARCHAR(20) CHARACTER SET latin1,
  bin BINARY(3), vb VARBINARY(10), bl BLOB,
  dt DATE, tm TIME(3), tm0 TIME, dtm DATETIME, dtm3 DATETIME(3), dtm6 DATETIME(6), ts TIMESTAMP(3) NULL, yr YEAR,
  b1 BIT(1), b10 BIT(10), e ENUM('a','b','c'), s SET('x','y','z'), j JSON, n INT NULL
) CHARACTER SET utf8mb4";

const TYPES_VALUES: &str = "(18446744073709551615, -128, 255, -32768, -8388608, -2147483648, 4294967295,
  -9223372036854775808, 18446744073709551615,
  -1234567890.12, 12345678901234567890, -0.005, 1.5, 2.25,
  'ab', 'héllo 😀', 'some text', 'é',
  'abc', x'00ff', x'deadbeef',
  '2024-02-29', '-12:34:56.789', '838:59:59', '2024-02-29 12:34:56', '2024-02-29 12:34:56.123',
  '2024-02-29 12:34:56.123456', '2024-02-29 12:34:56.120', 2024,
  b'1', b'1000000001', 'b', 'x,z', '{\"a\": 1, \"b\": [true, null]}', NULL)";

/// The documented value of every column of `TYPES_VALUES` (Debezium's MySQL defaults; DECIMAL as a string).
fn expected_types(id: u64) -> Value {
    json!({
        "id": id, "ti": -128, "tiu": 255, "si": -32768, "mi": -8388608, "i": -2147483648i64, "iu": 4294967295u64,
        "bi": i64::MIN, "bu": u64::MAX,
        "d": "-1234567890.12", "d0": "12345678901234567890", "dn": "-0.005", "f": 1.5, "db": 2.25,
        "c": "ab", "vc": "héllo 😀", "t": "some text", "l1": "é",
        "bin": "YWJj", "vb": "AP8=", "bl": "3q2+7w==",
        "dt": 19782, "tm": -45296789000i64, "tm0": 3020399000000i64,
        "dtm": 1709210096000i64, "dtm3": 1709210096123i64, "dtm6": 1709210096123456i64,
        "ts": "2024-02-29T12:34:56.120Z", "yr": 2024,
        "b1": true, "b10": "AQI=", "e": "b", "s": "x,z", "j": "{\"a\":1,\"b\":[true,null]}", "n": null
    })
}

fn after(event: &Value) -> &Value {
    &event["after"]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_in_snapshot_and_stream() -> Result<()> {
    let db = ScratchDb::create("USERS", "types").await?;
    db.exec(TYPES_TABLE).await?;
    let insert = TYPES_VALUES.replacen("18446744073709551615", "1", 1);
    db.exec(&format!("INSERT INTO types VALUES {insert}")).await?;
    let capture = Capture::start(&db, Options::default())?;
    let mut reader = capture.reader(&["types"])?;
    reader.read_events(1, DEADLINE).await?;
    db.exec(&format!("INSERT INTO types VALUES {TYPES_VALUES}")).await?;
    reader.read_events(2, DEADLINE).await?;
    let events = reader.events();
    assert_eq!(events[0]["op"], "r", "snapshot first: {}", events[0]);
    assert_eq!(after(events[0]), &expected_types(1), "snapshot row");
    assert_eq!(events[1]["op"], "c");
    assert_eq!(after(events[1]), &expected_types(u64::MAX), "streamed row");
    let source = &events[1]["source"];
    assert_eq!(source["connector"], "mysql");
    assert_eq!(source["db"], db.name.as_str());
    assert_eq!(source["table"], "types");
    assert_eq!(source["snapshot"], "false");
    assert!(source["gtid"].as_str().is_some_and(|g| g.starts_with("0-1-")), "{source}");
    assert!(source["file"].as_str().is_some_and(|f| f.starts_with("binlog.")), "{source}");
    assert_eq!(events[1]["transaction"]["total_order"], 1);
    assert_eq!(reader.messages[1].key, json!({"id": u64::MAX}));
    drop(capture);
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread")]
async fn inserts_updates_deletes_keep_per_key_order_with_images() -> Result<()> {
    let db = ScratchDb::create("CATALOG", "order").await?;
    db.exec("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20), qty INT)").await?;
    let capture = Capture::start(&db, Options::default())?;
    let mut reader = capture.reader(&["items"])?;
    // Wait until streaming (the empty snapshot is done) so that every change below is a streamed event.
    capture.wait_streaming().await?;
    db.exec(
        "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2);
         UPDATE items SET qty = qty + 10 WHERE id = 1;
         START TRANSACTION; UPDATE items SET name = 'bb' WHERE id = 2; DELETE FROM items WHERE id = 1; COMMIT;
         UPDATE items SET id = 3 WHERE id = 2;",
    )
    .await?;
    // c1 c2 u1 u2 d1(+tombstone) d2(+tombstone) c3
    reader.read_until(DEADLINE, |m| m.len() >= 9).await?;
    let by_key = |id: i64| -> Vec<(String, Value, Value)> {
        reader
            .messages
            .iter()
            .filter(|m| m.key == json!({"id": id}))
            .map(|m| match &m.value {
                Some(v) => (v["op"].as_str().unwrap_or("?").to_owned(), v["before"].clone(), v["after"].clone()),
                None => ("tombstone".into(), Value::Null, Value::Null),
            })
            .collect()
    };
    assert_eq!(
        by_key(1),
        vec![
            ("c".into(), Value::Null, json!({"id": 1, "name": "a", "qty": 1})),
            ("u".into(), json!({"id": 1, "name": "a", "qty": 1}), json!({"id": 1, "name": "a", "qty": 11})),
            ("d".into(), json!({"id": 1, "name": "a", "qty": 11}), Value::Null),
            ("tombstone".into(), Value::Null, Value::Null),
        ]
    );
    assert_eq!(
        by_key(2),
        vec![
            ("c".into(), Value::Null, json!({"id": 2, "name": "b", "qty": 2})),
            ("u".into(), json!({"id": 2, "name": "b", "qty": 2}), json!({"id": 2, "name": "bb", "qty": 2})),
            ("d".into(), json!({"id": 2, "name": "bb", "qty": 2}), Value::Null),
            ("tombstone".into(), Value::Null, Value::Null),
        ],
        "a primary key change is a delete of the old key"
    );
    assert_eq!(by_key(3), vec![("c".into(), Value::Null, json!({"id": 3, "name": "bb", "qty": 2}))]);
    // Every message of a key sits on one partition.
    for id in 1..=3 {
        let parts: HashSet<i32> =
            reader.messages.iter().filter(|m| m.key == json!({"id": id})).map(|m| m.partition).collect();
        assert_eq!(parts.len(), 1, "key {id} on partitions {parts:?}");
    }
    // The two-statement transaction: one id, orders 1 and 2.
    let txn: Vec<&Value> = reader
        .events()
        .into_iter()
        .filter(|e| e["op"] == "u" && e["after"]["name"] == "bb" || e["op"] == "d" && e["before"]["id"] == 1)
        .collect();
    assert_eq!(txn.len(), 2);
    assert_eq!(txn[0]["transaction"]["id"], txn[1]["transaction"]["id"]);
    let mut orders: Vec<u64> = txn.iter().map(|e| e["transaction"]["total_order"].as_u64().unwrap()).collect();
    orders.sort();
    assert_eq!(orders, vec![1, 2]);
    drop(capture);
    db.drop_db().await
}

/// Folds change events into the table state they describe, by key.
fn fold(events: &[&Value]) -> BTreeMap<String, Value> {
    let mut state = BTreeMap::new();
    for e in events {
        match e["op"].as_str() {
            Some("c" | "u" | "r") => {
                state.insert(e["after"]["id"].to_string(), e["after"].clone());
            }
            Some("d") => {
                state.remove(&e["before"]["id"].to_string());
            }
            _ => {}
        }
    }
    state
}

async fn table_state(db: &ScratchDb, table: &str) -> Result<BTreeMap<String, Value>> {
    let rows: Vec<(u64, String, i64)> =
        db.pool.get_conn().await?.query(format!("SELECT id, name, n FROM {table} ORDER BY id")).await?;
    Ok(rows.into_iter().map(|(id, name, n)| (id.to_string(), json!({"id": id, "name": name, "n": n}))).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn three_sigkills_during_20000_inserts_lose_nothing() -> Result<()> {
    let db = ScratchDb::create("ORDERS", "kill").await?;
    db.exec("CREATE TABLE rows20k (id BIGINT UNSIGNED PRIMARY KEY, name VARCHAR(40), n BIGINT)").await?;
    let mut capture = Capture::start(&db, Options::default())?;
    let writer = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            let mut conn = pool.get_conn().await?;
            for batch in 0..2000u64 {
                let values: Vec<String> =
                    (0..10u64).map(|i| batch * 10 + i + 1).map(|id| format!("({id}, 'row {id}', {id})")).collect();
                conn.query_drop(format!("INSERT INTO rows20k VALUES {}", values.join(","))).await?;
            }
            anyhow::Ok(())
        })
    };
    // Kill the capture three times while the rows are being written, each time once it made progress (or, should
    // the writer already be done, once it had the chance to).
    for round in 0..3 {
        let checkpoint = capture.state_dir.join("src.json");
        let before = std::fs::read_to_string(&checkpoint).unwrap_or_default();
        eventually(Duration::from_secs(30), || {
            let checkpoint = checkpoint.clone();
            let before = before.clone();
            async move {
                let now = std::fs::read_to_string(&checkpoint).unwrap_or_default();
                ensure!(!now.is_empty() && now != before, "no new checkpoint yet");
                Ok(())
            }
        })
        .await
        .or_else(|e| if writer.is_finished() { Ok(()) } else { Err(e) })?;
        capture.kill()?;
        println!("killed the capture (round {round})");
        capture.restart()?;
    }
    writer.await??;
    let mut reader = capture.reader(&["rows20k"])?;
    let mut ids = HashSet::new();
    let mut scanned = 0;
    reader
        .read_until(DEADLINE, |m| {
            for msg in &m[scanned..] {
                if let Some(v) = &msg.value {
                    ids.insert(v["after"]["id"].to_string());
                }
            }
            scanned = m.len();
            ids.len() >= 20_000
        })
        .await?;
    // Duplicates only with identical coordinates, among snapshot reads and among streamed events. A snapshot that a
    // kill interrupted resumes in a new read view (docs/capture.md, "Exact snapshot"), so it may read a row whose
    // insert streaming then emits too, from the first view's position: a read and a create of one row, not a
    // duplicate (the create's version is the greater).
    let mut seen: HashMap<(String, bool), (String, u64, u64)> = HashMap::new();
    let mut duplicates = 0;
    for e in reader.events() {
        let id = (e["after"]["id"].to_string(), e["op"] == "r");
        let coords = (
            e["source"]["file"].as_str().unwrap_or_default().to_owned(),
            e["source"]["pos"].as_u64().unwrap_or_default(),
            e["source"]["row"].as_u64().unwrap_or_default(),
        );
        if let Some(first) = seen.insert(id.clone(), coords.clone()) {
            duplicates += 1;
            assert_eq!(first, coords, "row {id:?} (id, snapshot read) sent twice with different coordinates");
        }
    }
    println!("20000 rows, {duplicates} duplicates (all with identical coordinates)");
    assert_eq!(fold(&reader.events()), table_state(&db, "rows20k").await?);
    drop(capture);
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_of_100000_rows_with_concurrent_writes_ends_in_the_table_state() -> Result<()> {
    let db = ScratchDb::create("CATALOG", "snap").await?;
    db.exec("CREATE TABLE big (id BIGINT UNSIGNED PRIMARY KEY, name VARCHAR(40), n BIGINT)").await?;
    {
        let mut conn = db.pool.get_conn().await?;
        for batch in 0..20u64 {
            let values: Vec<String> =
                (0..5000u64).map(|i| batch * 5000 + i + 1).map(|id| format!("({id}, 'r{id}', 0)")).collect();
            conn.query_drop(format!("INSERT INTO big VALUES {}", values.join(","))).await?;
        }
    }
    let capture = Capture::start(&db, Options { chunk_rows: 5000, ..Options::default() })?;
    // Concurrent writes while the snapshot runs: updates, deletes and inserts across the key range.
    let mut conn = db.pool.get_conn().await?;
    for k in 0..200u64 {
        let id = 1 + k * 499;
        conn.query_drop(format!(
            "UPDATE big SET n = n + 1, name = 'upd{k}' WHERE id = {id}; DELETE FROM big WHERE id = {};
             INSERT INTO big VALUES ({}, 'new{k}', {k})",
            id + 1,
            200_000 + k
        ))
        .await?;
    }
    drop(conn);
    let want = table_state(&db, "big").await?;
    let mut reader = capture.reader(&["big"])?;
    // Fold only when reading pauses (the topic is drained for now), not after every message.
    let mut last = 0;
    reader
        .read_until(DEADLINE * 2, |m| {
            let idle = m.len() == last;
            last = m.len();
            idle && m.len() >= 100_000 && {
                let events: Vec<&Value> = m.iter().filter_map(|m| m.value.as_ref()).collect();
                fold(&events) == want
            }
        })
        .await?;
    let events = reader.events();
    assert!(events.iter().filter(|e| e["op"] == "r").count() >= 99_000, "the snapshot emitted the rows");
    assert_eq!(events.iter().filter(|e| e["source"]["snapshot"] == "last").count(), 1, "one row marks the end");
    assert_eq!(fold(&events), want);
    drop(capture);
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_changes_mid_stream_decode_on_both_sides_across_a_restart() -> Result<()> {
    let db = ScratchDb::create("USERS", "ddl").await?;
    db.exec("CREATE TABLE p (id INT PRIMARY KEY, a VARCHAR(10))").await?;
    let mut capture = Capture::start(&db, Options::default())?;
    let mut reader = capture.reader(&["p", "q"])?;
    capture.wait_streaming().await?;
    db.exec("INSERT INTO p VALUES (1, 'one')").await?;
    reader.read_events(1, DEADLINE).await?;
    // Stop, then change the schema several times with rows in between, then restart: the restart resumes between
    // DDLs and must decode each row with the schema at its position.
    capture.kill()?;
    db.exec(
        "ALTER TABLE p ADD COLUMN b INT NOT NULL DEFAULT 7;
         INSERT INTO p VALUES (2, 'two', 2);
         ALTER TABLE p DROP COLUMN a;
         INSERT INTO p VALUES (3, 3);
         ALTER TABLE p MODIFY b BIGINT UNSIGNED;
         INSERT INTO p VALUES (4, 18446744073709551615);
         ALTER TABLE p RENAME COLUMN b TO c;
         UPDATE p SET c = 5 WHERE id = 4;
         RENAME TABLE p TO q;
         INSERT INTO q VALUES (6, 6);
         TRUNCATE TABLE q;
         CREATE TABLE p (id INT PRIMARY KEY, z VARCHAR(5));
         INSERT INTO p VALUES (7, 'z');",
    )
    .await?;
    capture.restart()?;
    reader
        .read_until(DEADLINE, |m| {
            let truncates = m.iter().filter(|m| m.value.as_ref().is_some_and(|v| v["op"] == "t")).count();
            let last = m.iter().any(|m| m.value.as_ref().is_some_and(|v| v["after"]["z"] == "z"));
            truncates == 3 && last
        })
        .await?;
    // Different keys sit on different partitions: order by source coordinates.
    let mut sorted = reader.events();
    sorted.sort_by_key(|e| {
        (
            e["source"]["file"].as_str().unwrap_or("").to_owned(),
            e["source"]["pos"].as_u64().unwrap_or(0),
            e["source"]["row"].as_u64().unwrap_or(0),
        )
    });
    let events: Vec<(String, String, Value)> = sorted
        .into_iter()
        .map(|e| (e["source"]["table"].as_str().unwrap_or("").to_owned(), e["op"].as_str().unwrap_or("").to_owned(), e["after"].clone()))
        .collect();
    let want = vec![
        ("p".into(), "c".into(), json!({"id": 1, "a": "one"})),
        ("p".into(), "c".into(), json!({"id": 2, "a": "two", "b": 2})),
        ("p".into(), "c".into(), json!({"id": 3, "b": 3})),
        ("p".into(), "c".into(), json!({"id": 4, "b": u64::MAX})),
        ("p".into(), "u".into(), json!({"id": 4, "c": 5})),
        ("q".into(), "c".into(), json!({"id": 6, "c": 6})),
    ];
    let truncates: Vec<_> = events.iter().filter(|(t, op, _)| t == "q" && op == "t").collect();
    assert_eq!(truncates.len(), 3, "TRUNCATE goes to every partition of the table's topic: {events:?}");
    let rows: Vec<_> = events.iter().filter(|(_, op, _)| op != "t").cloned().collect();
    let mut want_all = want.clone();
    want_all.push(("p".into(), "c".into(), json!({"id": 7, "z": "z"})));
    assert_eq!(rows, want_all);
    drop(capture);
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sources_send_heartbeats_advance_positions_and_keep_lag_small() -> Result<()> {
    let db = ScratchDb::create("ORDERS", "idle").await?;
    db.exec("CREATE TABLE quiet (id INT PRIMARY KEY)").await?;
    let other = ScratchDb::create("ORDERS", "other").await?;
    other.exec("CREATE TABLE noise (id INT PRIMARY KEY)").await?;
    let capture = Capture::start(&db, Options::default())?;
    capture.wait_streaming().await?;
    let checkpoint = capture.state_dir.join("src.json");
    let position = |text: &str| -> (String, u64) {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        (v["position"]["file"].as_str().unwrap_or("").to_owned(), v["position"]["pos"].as_u64().unwrap_or(0))
    };
    let before = eventually(DEADLINE, || async {
        let text = std::fs::read_to_string(&checkpoint)?;
        Ok(position(&text))
    })
    .await?;
    // Writes to a table the capture does not capture still move its position forward.
    other.exec("INSERT INTO noise VALUES (1), (2), (3)").await?;
    eventually(DEADLINE, || async {
        let now = position(&std::fs::read_to_string(&checkpoint)?);
        ensure!(now.0 == before.0 && now.1 > before.1, "checkpoint still at {now:?} (was {before:?})");
        Ok(())
    })
    .await?;
    // While idle: heartbeats every 500 ms carrying the position, and a lag that stays near zero.
    let mut reader =
        cdc_tests::TopicReader::new(cdc_tests::stack().var("KAFKA_BROKERS"), &[&cdc_contract::heartbeat_topic(&capture.prefix)])?;
    reader.read_until(DEADLINE, |m| m.len() >= 4).await?;
    let beats: Vec<&Value> = reader.events();
    assert!(beats.iter().all(|b| b["source"] == "src" && b["pos"].as_u64().is_some()), "{beats:?}");
    let times: Vec<i64> = beats.iter().map(|b| b["ts_ms"].as_i64().unwrap_or(0)).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "heartbeats advance in time: {times:?}");
    let metrics = common::http_get(&format!("{}/metrics", capture.url)).await?;
    let lag: f64 = metrics
        .lines()
        .find(|l| l.starts_with("cdc_capture_lag_seconds{source=\"src\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::MAX);
    assert!(lag <= 2.0, "idle lag {lag}s:\n{metrics}");
    assert!(beats.iter().all(|b| b["idle"] == true && b["as_of_ms"].as_i64() > Some(0)), "{beats:?}");
    // Heartbeats are watermarks: after 5 rows, a heartbeat names offsets that cover exactly those 5 records of the
    // table's topic (summed over its partitions), never more than the topic holds.
    db.exec("INSERT INTO quiet VALUES (1), (2), (3), (4), (5)").await?;
    let topic = format!("{}.{}.quiet", capture.prefix, db.name);
    let covered = |b: &Value| -> i64 { b["watermarks"][&topic].as_array().map_or(0, |a| a.iter().filter_map(Value::as_i64).sum()) };
    reader.read_until(DEADLINE, |m| m.iter().filter_map(|m| m.value.as_ref()).any(|b| covered(b) == 5)).await?;
    let marks: Vec<i64> = reader.events().iter().map(|b| covered(b)).collect();
    assert!(marks.iter().all(|&m| m <= 5) && marks.windows(2).all(|w| w[0] <= w[1]), "watermarks {marks:?}");
    drop(capture);
    other.drop_db().await?;
    db.drop_db().await
}
