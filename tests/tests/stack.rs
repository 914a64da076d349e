//! The local stack: its verbs behave as documented, and each component answers its own protocol.
//!
//! The lifecycle test runs a private stack (own directory, own ports) so that stopping and killing components does
//! not disturb tests that use the shared one.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cdc_tests::{describe, eventually, free_port_base, stack, unique_name, StackCommand, StackEnv};
use mysql_async::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

const MYSQLS: [&str; 3] = ["USERS", "CATALOG", "ORDERS"];

#[tokio::test]
async fn every_mariadb_answers_sql_with_row_binlogs() -> Result<()> {
    let env = stack();
    for (i, svc) in MYSQLS.iter().enumerate() {
        let pool = mysql_async::Pool::new(env.var(&format!("{svc}_MYSQL_ADMIN_URL")));
        let mut conn = pool.get_conn().await?;
        let vars: Vec<(String, String)> = conn
            .query(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
                 ('binlog_format','binlog_row_image','binlog_row_metadata','log_bin','server_id','time_zone')",
            )
            .await?;
        let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str()).unwrap_or("");
        assert_eq!(get("binlog_format"), "ROW", "{svc}");
        assert_eq!(get("binlog_row_image"), "FULL", "{svc}");
        assert_eq!(get("binlog_row_metadata"), "FULL", "{svc}");
        assert_eq!(get("log_bin"), "ON", "{svc}");
        assert_eq!(get("server_id"), (i + 1).to_string(), "{svc}: distinct server ids");
        assert_eq!(get("time_zone"), "+00:00", "{svc}");
        let one: Option<u8> = conn.query_first("SELECT 1").await?;
        assert_eq!(one, Some(1));
        drop(conn);
        pool.disconnect().await?;
    }
    Ok(())
}

#[tokio::test]
async fn service_accounts_reach_only_their_database() -> Result<()> {
    let env = stack();
    let pool = mysql_async::Pool::new(env.var("USERS_MYSQL_URL"));
    let mut conn = pool.get_conn().await?;
    let tables: Vec<String> = conn.query("SHOW TABLES").await?;
    assert!(tables.contains(&"users".to_string()), "migrations created users.users: {tables:?}");
    let denied = conn.query_drop("SELECT * FROM mysql.user").await;
    assert!(denied.is_err(), "the users service account must not read other databases");
    drop(conn);
    pool.disconnect().await?;

    let capture = mysql_async::Pool::new(env.var("ORDERS_MYSQL_CAPTURE_URL"));
    let mut conn = capture.get_conn().await?;
    let grants: Vec<String> = conn.query("SHOW GRANTS").await?;
    let all = grants.join("\n");
    assert!(all.contains("REPLICATION SLAVE") && all.contains("BINLOG MONITOR"), "{all}");
    assert!(conn.query_drop("CREATE DATABASE capture_must_not").await.is_err(), "capture account is read-only");
    drop(conn);
    capture.disconnect().await?;
    Ok(())
}

async fn kafka_round_trip(brokers: &str, topic: &str, messages: usize) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().context("admin client")?;
    let results = admin
        .create_topics(&[NewTopic::new(topic, 3, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()?;
    for i in 0..messages {
        let key = format!("{{\"id\":{i}}}");
        let value = format!("{{\"n\":{i}}}");
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&value), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    Ok(())
}

async fn consume_all(brokers: &str, topic: &str, expected: usize) -> Result<Vec<String>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_name("group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < expected {
        ensure!(Instant::now() < deadline, "consumed {} of {expected} messages from {topic}", got.len());
        if let Ok(msg) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            let msg = msg?;
            got.push(String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned());
        }
    }
    Ok(got)
}

#[tokio::test]
async fn kafka_produce_consume_round_trip() -> Result<()> {
    let env = stack();
    let topic = unique_name("roundtrip");
    kafka_round_trip(env.var("KAFKA_BROKERS"), &topic, 20).await?;
    let mut got = consume_all(env.var("KAFKA_BROKERS"), &topic, 20).await?;
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("{{\"n\":{i}}}")).collect();
    want.sort();
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test]
async fn clickhouse_answers_through_the_crate_and_analyst_is_read_only() -> Result<()> {
    let env = stack();
    let client = clickhouse::Client::default().with_url(env.var("CLICKHOUSE_URL")).with_validation(false);
    let one: u8 = client.query("SELECT toUInt8(1)").fetch_one().await?;
    assert_eq!(one, 1);
    let analyst = client
        .clone()
        .with_user(env.var("CLICKHOUSE_ANALYST_USER"))
        .with_password(env.var("CLICKHOUSE_ANALYST_PASSWORD"));
    let err = analyst.query("CREATE TABLE reporting.analyst_must_not (a UInt8) ENGINE = Memory").execute().await;
    assert!(err.is_err(), "the analyst account must be read-only");
    let writer = client
        .with_user(env.var("CLICKHOUSE_WRITER_USER"))
        .with_password(env.var("CLICKHOUSE_WRITER_PASSWORD"))
        .with_database("reporting");
    let table = unique_name("writer");
    writer.query(&format!("CREATE TABLE {table} (a UInt8) ENGINE = Memory")).execute().await?;
    writer.query(&format!("DROP TABLE {table}")).execute().await?;
    Ok(())
}

fn status_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() == 4).then(|| (cols[0].to_owned(), cols[3].to_owned()))
        })
        .collect()
}

fn assert_all(out: &str, state: &str) {
    let lines = status_lines(out);
    assert_eq!(lines.len(), 5, "five infrastructure components:\n{out}");
    for (name, s) in lines {
        assert_eq!(s, state, "{name}:\n{out}");
    }
}

#[tokio::test]
async fn lifecycle_of_a_private_stack() -> Result<()> {
    stack(); // installs packages and the broker once; the private stack reuses them
    let home = std::env::temp_dir().join(unique_name("stack_home"));
    let base = free_port_base();
    // ClickHouse's data elsewhere, as on tmpfs.
    let ch_data = std::env::temp_dir().join(unique_name("stack_ch_data"));
    let cmd = StackCommand::private(&home, base).with_env("STACK_CLICKHOUSE_DATA", &ch_data.display().to_string());
    let result = lifecycle(&cmd, base, &ch_data).await;
    let _ = cmd.run(&["down", "--wipe"]);
    let _ = std::fs::remove_dir_all(&ch_data);
    result
}

async fn lifecycle(cmd: &StackCommand, base: u16, ch_data: &std::path::Path) -> Result<()> {
    // A taken port: clear message, nothing left running.
    {
        let _squatter = TcpListener::bind(("127.0.0.1", base + 92))?;
        let out = cmd.run(&["up"])?;
        assert!(!out.status.success(), "up must fail on a taken port");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("port {} for kafka is taken", base + 92)), "{}", describe(&out));
        assert!(err.contains("STACK_PORT_BASE"), "the message says how to fix it: {err}");
        let status = cmd.run(&["status"])?;
        assert_eq!(status.status.code(), Some(3), "{}", describe(&status));
        assert_all(&String::from_utf8_lossy(&status.stdout), "down");
    }

    let started = Instant::now();
    let out = cmd.ok(&["up"])?;
    println!("up of a private stack: {:?}", started.elapsed());
    assert_all(&out, "healthy");
    let env = StackEnv::parse(&cmd.ok(&["env"])?);
    let link = std::path::Path::new(env.var("STACK_HOME")).join("clickhouse/data");
    assert_eq!(std::fs::read_link(&link)?, ch_data, "ClickHouse's data is where STACK_CLICKHOUSE_DATA says");
    assert!(ch_data.join("metadata").is_dir(), "ClickHouse keeps its data there");
    assert!(env.var("KAFKA_BROKERS").ends_with(&format!(":{}", base + 92)));

    // A second up is a no-op that prints the status.
    let again = cmd.run(&["up"])?;
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("starting"), "{}", describe(&again));
    assert_all(&String::from_utf8_lossy(&again.stdout), "healthy");

    // Data written before a kill and a restart survives: a MariaDB row and Kafka messages.
    let users = mysql_async::Pool::new(env.var("USERS_MYSQL_URL"));
    users.get_conn().await?.query_drop("INSERT INTO users (email, name) VALUES ('a@example.com', 'A')").await?;
    users.disconnect().await?;
    let topic = unique_name("durable");
    kafka_round_trip(env.var("KAFKA_BROKERS"), &topic, 10).await?;

    cmd.ok(&["kill", "kafka"])?;
    cmd.ok(&["kill", "mysql-users"])?;
    let status = cmd.run(&["status"])?;
    assert_eq!(status.status.code(), Some(3));
    let lines = status_lines(&String::from_utf8_lossy(&status.stdout));
    let state = |n: &str| lines.iter().find(|(c, _)| c == n).map(|(_, s)| s.clone()).unwrap_or_default();
    assert_eq!(state("kafka"), "down");
    assert_eq!(state("mysql-users"), "down");
    assert_eq!(state("clickhouse"), "healthy");

    cmd.ok(&["restart", "kafka"])?;
    cmd.ok(&["restart", "mysql-users"])?;
    assert_all(&cmd.ok(&["status"])?, "healthy");
    let got = consume_all(env.var("KAFKA_BROKERS"), &topic, 10).await?;
    assert_eq!(got.len(), 10, "messages written before the kill are still there");
    let users = mysql_async::Pool::new(env.var("USERS_MYSQL_URL"));
    let count = eventually(Duration::from_secs(10), || {
        let users = users.clone();
        async move {
            let n: Option<u64> = users.get_conn().await?.query_first("SELECT COUNT(*) FROM users").await?;
            Ok(n)
        }
    })
    .await?;
    assert_eq!(count, Some(1));
    users.disconnect().await?;

    // A graceful restart of ClickHouse, then down keeps data and a later up starts again.
    cmd.ok(&["restart", "clickhouse"])?;
    cmd.ok(&["down"])?;
    let status = cmd.run(&["status"])?;
    assert_eq!(status.status.code(), Some(3));
    assert_all(&String::from_utf8_lossy(&status.stdout), "down");
    let started = Instant::now();
    assert_all(&cmd.ok(&["up"])?, "healthy");
    println!("warm up of a private stack: {:?}", started.elapsed());
    let got = consume_all(env.var("KAFKA_BROKERS"), &topic, 10).await?;
    assert_eq!(got.len(), 10, "messages survive down/up");

    // ClickHouse's data gone while the rest stays (tmpfs after a reboot): up refuses and says what to do.
    cmd.ok(&["down"])?;
    let aside = ch_data.with_extension("aside");
    std::fs::rename(ch_data, &aside)?;
    let out = cmd.run(&["up"])?;
    std::fs::rename(&aside, ch_data)?;
    assert!(!out.status.success(), "up must refuse a ClickHouse without its data: {}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("down --wipe"), "{}", describe(&out));

    cmd.ok(&["down", "--wipe"])?;
    let home = env.var("STACK_HOME");
    assert!(!std::path::Path::new(home).exists(), "--wipe deletes {home}");
    assert!(!ch_data.exists(), "--wipe deletes ClickHouse's data in {}", ch_data.display());
    Ok(())
}
