//! Capture throughput, printed as figures (not a timed test). Needs the local stack (it runs `scripts/stack up`).
//!
//! `cargo bench -p cdc-capture --bench throughput` loads 200,000 row events (inserts, updates, deletes in 100-row
//! transactions, mixed column types) into a scratch database and reports:
//! 1. decode only: binlog events to envelope JSON records, on one core, without Kafka: the best wall-clock time of
//!    three runs, and the best time on a CPU (which leaves out waiting for a core on a busy machine);
//! 2. the broker's own ingest rate for the same records from a plain rdkafka producer (the capture's producer
//!    settings, with librdkafka's queue at 16 MB where the capture's default is 4 MB);
//! 3. end to end: the capture binary from a checkpoint before the load until its checkpoint passes the load's end
//!    (binlog read, decoded, produced, acknowledged, checkpointed), and its peak RSS;
//! 4. one 1,000,000-row transaction through the capture, with its peak RSS.
//!
//! With `CDC_BENCH_EVENTS=<file>` it also records the load's binlog events there, for the `decode` bench (which
//! needs no stack and runs under a profiler).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cdc_capture::decode::ServerFlavor;
use cdc_capture::transform::{Record, Transformer};
use cdc_capture::{config::TableFilter, position::BinlogPosition, position::GtidSet};
use cdc_tests::{stack, unique_name, ScratchDb};
use futures_util::StreamExt;
use mysql_async::prelude::*;
use mysql_async::{BinlogStreamRequest, Conn, Opts};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

const TABLE: &str = "CREATE TABLE bench (
  id BIGINT UNSIGNED PRIMARY KEY, name VARCHAR(64) NOT NULL, price DECIMAL(12,2) NOT NULL, qty INT NOT NULL,
  created DATETIME(3) NOT NULL, updated TIMESTAMP(3) NULL, flag TINYINT NOT NULL, note TEXT, amount DOUBLE,
  status ENUM('new','paid','sent') NOT NULL)";

async fn master_status(conn: &mut Conn) -> Result<BinlogPosition> {
    let row: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await?.context("binlog on")?;
    Ok(BinlogPosition::new(row.get::<String, _>(0).unwrap_or_default(), row.get::<u64, _>(1).unwrap_or_default()))
}

async fn load(db: &ScratchDb) -> Result<(BinlogPosition, BinlogPosition, GtidSet)> {
    db.exec(TABLE).await?;
    let mut conn = db.pool.get_conn().await?;
    let start = master_status(&mut conn).await?;
    let gtid: Option<String> = conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&start.file, start.pos)).await?;
    let began = Instant::now();
    for t in 0..1000u64 {
        let rows: Vec<String> = (0..100u64)
            .map(|i| t * 100 + i + 1)
            .map(|id| {
                format!(
                    "({id}, 'product name {id}', {}.{:02}, {}, '2024-01-02 03:04:05.678', NOW(3), {}, 'note {id}', {}.5, 'new')",
                    id % 1000,
                    id % 100,
                    id % 50,
                    id % 2,
                    id
                )
            })
            .collect();
        conn.query_drop(format!("INSERT INTO bench VALUES {}", rows.join(","))).await?;
    }
    for t in 0..500u64 {
        let (lo, hi) = (t * 100 + 1, t * 100 + 100);
        conn.query_drop(format!("UPDATE bench SET qty = qty + 1, status = 'paid' WHERE id BETWEEN {lo} AND {hi}")).await?;
    }
    for t in 500..1000u64 {
        let (lo, hi) = (t * 100 + 1, t * 100 + 100);
        conn.query_drop(format!("DELETE FROM bench WHERE id BETWEEN {lo} AND {hi}")).await?;
    }
    let end = master_status(&mut conn).await?;
    println!("loaded 200,000 row events in 2,000 transactions in {:.1} s", began.elapsed().as_secs_f64());
    Ok((start, end, GtidSet::parse(&gtid.unwrap_or_default()).map_err(anyhow::Error::msg)?))
}

/// Reads the binlog from `start` to `end` into memory over the replication protocol.
async fn fetch(url: &str, start: &BinlogPosition, end: &BinlogPosition) -> Result<Vec<mysql_async::binlog::events::Event>> {
    let mut conn = Conn::new(Opts::from_url(url)?).await?;
    conn.query_drop("SET @mariadb_slave_capability = 4").await?;
    let request =
        BinlogStreamRequest::new(rand_server_id()).with_filename(start.file.as_bytes()).with_pos(start.pos).with_non_blocking();
    let mut stream = conn.get_binlog_stream(request).await?;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event?;
        let at_end = event.header().log_pos() as u64 >= end.pos;
        events.push(event);
        if at_end {
            break;
        }
    }
    Ok(events)
}

fn rand_server_id() -> u32 {
    50_000 + std::process::id() % 10_000
}

/// Time this thread has spent on a CPU, in seconds (`/proc/thread-self/schedstat`; 0 where it is missing).
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()))
        .map_or(0.0, |ns| ns / 1e9)
}

/// Best wall-clock time and best on-CPU time of three decode runs. On a shared machine the wall clock also counts
/// the time the thread waited for a core; the on-CPU time is what one core needs.
fn decode(events: &[mysql_async::binlog::events::Event], db: &str, start: &BinlogPosition) -> Result<(Vec<Record>, f64, f64)> {
    let filter = TableFilter::new(vec![format!("{db}.*")], vec![]).map_err(anyhow::Error::msg)?;
    let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
    let mut records = Vec::new();
    for _ in 0..3 {
        let mut t = Transformer::new("bench", "bench", filter.clone(), true, start, GtidSet::default(), ServerFlavor::MariaDb);
        let mut out = Vec::with_capacity(260_000);
        let (began, cpu) = (Instant::now(), thread_cpu_s());
        for e in events {
            t.handle(e, &mut out)?;
        }
        best = best.min(began.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(thread_cpu_s() - cpu);
        records = out;
    }
    Ok((records, best, best_cpu))
}

async fn baseline(brokers: &str, records: &[Record]) -> Result<f64> {
    let topic = unique_name("baseline");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    admin.create_topics(&[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))], &AdminOptions::new()).await?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "50000")
        .set("queue.buffering.max.kbytes", "16384")
        .set("compression.type", "none") // as the capture's default
        .create()?;
    let began = Instant::now();
    for r in records {
        let mut rec = BaseRecord::<[u8], [u8]>::to(&topic);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        let mut rec = rec;
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(began.elapsed().as_secs_f64())
}

/// Writes `events` as a binlog file, and the database and start position beside it (`<path>.json`).
fn record_events(path: &Path, events: &[mysql_async::binlog::events::Event], db: &str, start: &BinlogPosition) -> Result<()> {
    use mysql_common::binlog::consts::BinlogVersion;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    mysql_common::binlog::BinlogFileHeader.write(BinlogVersion::Version4, &mut out)?;
    for event in events {
        event.write(BinlogVersion::Version4, &mut out)?;
    }
    std::io::Write::flush(&mut out)?;
    let meta = serde_json::json!({ "db": db, "file": start.file, "pos": start.pos });
    std::fs::write(path.with_extension("json"), serde_json::to_vec(&meta)?)?;
    Ok(())
}

/// Peak RSS (VmHWM) of a process in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn checkpoint_pos(path: &Path) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some((v["position"]["file"].as_str()?.to_owned(), v["position"]["pos"].as_u64()?))
}

fn wait_checkpoint(path: &Path, end: &BinlogPosition, pid: u32, peak: &mut f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        *peak = peak.max(peak_rss_mb(pid));
        if let Some((file, pos)) = checkpoint_pos(path) {
            if file > end.file || (file == end.file && pos >= end.pos) {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the capture did not reach {end}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let env = stack();
    let db = ScratchDb::create("USERS", "bench").await?;
    let (start, end, gtid) = load(&db).await?;
    let events = fetch(&db.capture_url(), &start, &end).await?;
    if let Ok(path) = std::env::var("CDC_BENCH_EVENTS") {
        record_events(Path::new(&path), &events, &db.name, &start)?;
        println!("recorded {} binlog events in {path}", events.len());
    }
    let (records, decode_s, decode_cpu_s) = decode(&events, &db.name, &start)?;
    let rows = records.iter().filter(|r| r.value.is_some()).count();
    println!(
        "| decode only (binlog events to envelope JSON, 1 core) | {rows} row events | {decode_s:.3} s ({decode_cpu_s:.3} s on CPU) | {:.0} row events/s ({:.0} on CPU) |",
        rows as f64 / decode_s,
        rows as f64 / decode_cpu_s
    );
    let base_s = baseline(env.var("KAFKA_BROKERS"), &records).await?;
    let base_rate = records.len() as f64 / base_s;
    println!("| plain rdkafka producer, same {} messages | acks=all, idempotent | {:.2} s | {:.0} msg/s |", records.len(), base_s, base_rate);

    // End to end: the release capture binary from a checkpoint just before the load.
    let dir = std::env::temp_dir().join(unique_name("bench_capture"));
    std::fs::create_dir_all(dir.join("state"))?;
    let checkpoint = serde_json::json!({
        "server_id": 1, "position": {"file": start.file, "pos": start.pos}, "gtid_set": gtid.to_string(), "ts_ms": 0, "snapshot": null
    });
    std::fs::write(dir.join("state/bench.json"), serde_json::to_vec(&checkpoint)?)?;
    let config = dir.join("capture.toml");
    std::fs::write(
        &config,
        format!(
            "topic_prefix = \"{prefix}\"\nstate_dir = \"{state}\"\nlisten = \"127.0.0.1:0\"\n[kafka]\nbrokers = \"{brokers}\"\n\
             [[sources]]\nname = \"bench\"\nurl = \"{url}\"\nserver_id = {sid}\n",
            prefix = unique_name("bench"),
            state = dir.join("state").display(),
            brokers = env.var("KAFKA_BROKERS"),
            url = db.capture_url(),
            sid = rand_server_id() + 1,
        ),
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_capture"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let began = Instant::now();
    let mut peak = 0.0;
    wait_checkpoint(&dir.join("state/bench.json"), &end, child.id(), &mut peak)?;
    let e2e_s = began.elapsed().as_secs_f64();
    let e2e_rate = records.len() as f64 / e2e_s;
    println!(
        "| end to end (binlog to acknowledged and checkpointed) | {} messages | {:.2} s | {:.0} msg/s = {:.0}% of the plain producer |",
        records.len(),
        e2e_s,
        e2e_rate,
        100.0 * e2e_rate / base_rate
    );
    println!("| capture peak RSS during the 200,000 events | | | {peak:.1} MB |");

    // One transaction of 1,000,000 rows through the same running capture.
    let mut conn = db.pool.get_conn().await?;
    conn.query_drop("CREATE TABLE million (id BIGINT UNSIGNED PRIMARY KEY, name VARCHAR(32), n BIGINT)").await?;
    let began = Instant::now();
    conn.query_drop("INSERT INTO million SELECT seq, CONCAT('row ', seq), seq * 7 FROM seq_1_to_1000000").await?;
    let end = master_status(&mut conn).await?;
    println!("wrote one 1,000,000-row transaction in {:.1} s", began.elapsed().as_secs_f64());
    let began = Instant::now();
    wait_checkpoint(&dir.join("state/bench.json"), &end, child.id(), &mut peak)?;
    println!(
        "| one 1,000,000-row transaction, end to end | 1,000,000 messages | {:.1} s | peak RSS {peak:.1} MB |",
        began.elapsed().as_secs_f64()
    );
    child.kill()?;
    child.wait()?;
    drop(conn);
    db.drop_db().await?;
    Ok(())
}
