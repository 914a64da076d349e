//! Events that must not be passed over silently, against the real MariaDB: row changes written as statements
//! (a session with `binlog_format=STATEMENT`) and compressed events (`log_bin_compress=ON`).

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use cdc_tests::mysql::replace_db;
use cdc_tests::{eventually, unique_name, ScratchDb, PrivateStack, StackCommand, StackEnv, TopicReader};
use common::{http_get, spawn_logged, Capture, ConfigFile, Options, DEADLINE};
use mysql_async::prelude::*;
use serde_json::{json, Value};

/// The saved checkpoint's (file, pos).
fn checkpoint_position(state_dir: &Path) -> Result<(String, u64)> {
    let text = std::fs::read_to_string(state_dir.join("src.json"))?;
    let cp: Value = serde_json::from_str(&text)?;
    let file = cp["position"]["file"].as_str().context("file")?.to_owned();
    Ok((file, cp["position"]["pos"].as_u64().context("pos")?))
}

/// The server's binlog end.
async fn binlog_end(conn: &mut mysql_async::Conn) -> Result<(String, u64)> {
    let row: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await?.context("binlog on")?;
    Ok((row.get(0).context("file")?, row.get(1).context("pos")?))
}

/// A row change written as a statement on a captured table stops the source, with the position, the table and the
/// fix, in /health and the log, and the checkpoint stays before it; the same on a table it does not capture is no
/// error; with `statement_dml = "skip"` the source goes past it and counts it.
#[tokio::test(flavor = "multi_thread")]
async fn a_statement_format_update_of_a_captured_table_stops_the_source() -> Result<()> {
    let db = ScratchDb::create("USERS", "stmt").await?;
    let other = ScratchDb::create("USERS", "stmt_other").await?;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await?;
    other.exec("CREATE TABLE u (id INT PRIMARY KEY, v INT)").await?;
    db.exec("INSERT INTO t VALUES (1, 10), (2, 20)").await?;
    other.exec("INSERT INTO u VALUES (1, 10)").await?;
    let mut capture = Capture::start(&db, Options::default())?;
    capture.wait_streaming().await?;
    let mut reader = capture.reader(&["t"])?;
    reader.read_events(2, DEADLINE).await?;

    // The session's own binlog_format (root may set it; it changes only this connection).
    let mut session = other.pool.get_conn().await?;
    session.query_drop("SET SESSION binlog_format = 'STATEMENT'").await?;
    session.query_drop("UPDATE u SET v = v + 1 WHERE id = 1").await?;
    // Still streaming: a row change after it arrives.
    db.exec("INSERT INTO t VALUES (3, 30)").await?;
    reader.read_events(3, DEADLINE).await?;
    let statement_at = binlog_end(&mut session).await?;
    session.query_drop(format!("UPDATE `{}`.t SET v = v + 1 WHERE id = 2", db.name)).await?;
    db.exec("INSERT INTO t VALUES (4, 40)").await?;

    let table = format!("{}.t", db.name);
    let health_url = format!("{}/health", capture.url);
    let expected = format!("a change of table {table} was written to the binlog as a statement");
    // Until a definite error of one source stops only that source, the process exits with it: then the log tells.
    let health = eventually(DEADLINE, || {
        let exited = capture.exited().ok().flatten().is_some();
        let (url, expected) = (health_url.clone(), expected.clone());
        async move {
            if exited {
                return Ok(None);
            }
            let health = http_get(&url).await.unwrap_or_default();
            ensure!(health.contains(&expected), "{health}");
            Ok(Some(health))
        }
    })
    .await?;
    if let Some(health) = &health {
        assert!(health.starts_with("HTTP/1.1 503") && health.contains("failed: "), "{health}");
    }
    // /health may show the failure a moment before the log line is written.
    let log = cdc_tests::eventually_blocking(DEADLINE, || {
        let log = capture.output();
        ensure!(log.contains(&expected), "{log}");
        Ok(log)
    })?;
    for text in [&expected, &format!("UPDATE `{}`.t SET v = v + 1 WHERE id = 2", db.name)] {
        assert!(log.contains(text.as_str()), "the log names it ({text}):\n{log}");
    }
    assert!(log.contains("binlog_format=ROW") && log.contains("statement_dml = "), "the fix:\n{log}");
    let (file, pos) = checkpoint_position(&capture.state_dir)?;
    let passed = (file.clone(), pos) > statement_at;
    assert!(!passed, "the checkpoint {file}:{pos} passed the statement at {statement_at:?}");
    // Nothing of the refused transaction or after it was published.
    reader.read_until(Duration::from_secs(2), |_| false).await.ok();
    assert_eq!(reader.events().len(), 3, "{:?}", reader.events());

    // statement_dml = "skip": the source goes past it, counts it, and streams what follows.
    capture.kill()?;
    let mut config = std::fs::read_to_string(&capture.config)?;
    config.push_str("statement_dml = \"skip\"\n");
    std::fs::write(&capture.config, config)?;
    capture.restart()?;
    reader.read_until(DEADLINE, |m| m.iter().any(|m| m.key == json!({"id": 4}))).await?;
    let updated = reader.events().into_iter().filter(|e| e["op"] == "u").count();
    assert_eq!(updated, 0, "the skipped statement's change is not in the stream");
    let metrics = http_get(&format!("{}/metrics", capture.url)).await?;
    assert!(metrics.contains(r#"cdc_capture_skipped_statements_total{source="src"} 1"#), "{metrics}");
    assert!(capture.output().contains("row change written as a statement skipped"), "{}", capture.output());
    drop(capture);
    session.disconnect().await?;
    other.drop_db().await?;
    db.drop_db().await
}

/// MariaDB with log_bin_compress=ON: compressed rows events (a large row's insert, update and delete) and
/// compressed query events (a TRUNCATE padded past the threshold) arrive with the right values.
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_compressed_events_arrive_with_their_values() -> Result<()> {
    let private = PrivateStack::new("compress_stack");
    compressed_scenario(&private.cmd, &private.home).await
}

async fn compressed_scenario(cmd: &StackCommand, home: &Path) -> Result<()> {
    cmd.ok(&["up"])?;
    let env = StackEnv::parse(&cmd.ok(&["env"])?);
    let admin = mysql_async::Pool::new(env.var("USERS_MYSQL_ADMIN_URL"));
    let mut conn = admin.get_conn().await?;
    conn.query_drop("SET GLOBAL log_bin_compress = ON").await?;
    let db = unique_name("compressed");
    conn.query_drop(format!("CREATE DATABASE `{db}`")).await?;
    conn.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, n INT, body LONGTEXT)")).await?;
    drop(conn);
    let pool = mysql_async::Pool::new(replace_db(env.var("USERS_MYSQL_ADMIN_URL"), &db).as_str());

    let dir = home.join("capture");
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let prefix = unique_name("cmp");
    let config = ConfigFile {
        prefix: &prefix,
        listen: &format!("127.0.0.1:{port}"),
        brokers: env.var("KAFKA_BROKERS"),
        url: &replace_db(env.var("USERS_MYSQL_CAPTURE_URL"), &db),
        server_id: 4243,
        top: r#"checkpoint_interval = "50ms""#,
        kafka: "",
        source: r#"heartbeat_interval = "500ms""#,
    }
    .write(&dir)?;
    let log_path = dir.join("capture.log");
    let mut child = spawn_logged(&config, &log_path)?;
    let result = async {
        let health = format!("http://127.0.0.1:{port}/health");
        eventually(DEADLINE, || {
            let health = health.clone();
            async move {
                let text = http_get(&health).await?;
                ensure!(text.contains("streaming"), "{text}");
                Ok(())
            }
        })
        .await?;

        let large = |c: char| c.to_string().repeat(5000);
        let mut conn = pool.get_conn().await?;
        conn.query_drop("INSERT INTO t VALUES (1, 1, 'small')").await?;
        conn.exec_drop("INSERT INTO t VALUES (2, 2, ?), (3, 3, ?)", (large('a'), large('b'))).await?;
        conn.exec_drop("UPDATE t SET n = 20, body = ? WHERE id = 2", (large('c'),)).await?;
        conn.query_drop("DELETE FROM t WHERE id = 3").await?;
        let padding = "x".repeat(400);
        conn.query_drop(format!("TRUNCATE TABLE t /* {padding} */")).await?;
        conn.exec_drop("INSERT INTO t VALUES (4, 4, ?)", (large('d'),)).await?;
        // The binlog holds compressed events of both kinds, or this test proves nothing.
        let (file, _) = binlog_end(&mut conn).await?;
        let types: Vec<String> = conn
            .query_map(format!("SHOW BINLOG EVENTS IN '{file}'"), |row: mysql_async::Row| {
                row.get::<String, _>(2).unwrap_or_default()
            })
            .await?;
        for kind in ["Query_compressed", "Write_rows_compressed", "Update_rows_compressed", "Delete_rows_compressed"] {
            ensure!(types.iter().any(|t| t.starts_with(kind)), "no {kind} event in {types:?}");
        }

        let topic = format!("{prefix}.{db}.t");
        let mut reader = TopicReader::new(env.var("KAFKA_BROKERS"), &[topic.as_str()])?;
        // Rows go to the partitions of their keys, a truncate to every partition: read all, order by position.
        reader
            .read_until(DEADLINE, |m| {
                let values = m.iter().filter_map(|m| m.value.as_ref());
                values.clone().filter(|e| e["op"] != "t").count() >= 6 && values.clone().any(|e| e["op"] == "t")
            })
            .await?;
        let mut events = reader.events();
        let at = |e: &Value| {
            let source = &e["source"];
            (source["file"].as_str().map(str::to_owned), source["pos"].as_u64(), source["row"].as_u64())
        };
        events.sort_by_key(|e| at(e));
        events.dedup_by_key(|e| at(e));
        let summary: Vec<(String, Value, Value)> = events
            .iter()
            .map(|e| {
                let image = if e["op"] == "d" { &e["before"] } else { &e["after"] };
                let body = image["body"].as_str().map_or(Value::Null, |b| json!(format!("{}x{}", &b[..1], b.len())));
                (e["op"].as_str().unwrap_or_default().to_owned(), image["id"].clone(), json!([image["n"], body]))
            })
            .collect();
        let expected = vec![
            ("c".to_owned(), json!(1), json!([1, "sx5"])),
            ("c".to_owned(), json!(2), json!([2, "ax5000"])),
            ("c".to_owned(), json!(3), json!([3, "bx5000"])),
            ("u".to_owned(), json!(2), json!([20, "cx5000"])),
            ("d".to_owned(), json!(3), json!([3, "bx5000"])),
            ("t".to_owned(), Value::Null, json!([null, null])),
            ("c".to_owned(), json!(4), json!([4, "dx5000"])),
        ];
        assert_eq!(summary, expected);
        let update = events.iter().find(|e| e["op"] == "u").expect("the update");
        assert_eq!(update["before"]["body"], json!(large('a')), "the update's before image");
        assert_eq!(update["after"]["body"], json!(large('c')));
        Ok::<_, anyhow::Error>(())
    }
    .await;
    child.kill().ok();
    child.wait().ok();
    if result.is_err() {
        eprintln!("capture log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    }
    pool.disconnect().await.ok();
    admin.disconnect().await.ok();
    result
}
