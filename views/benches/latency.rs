//! View service throughput and end-to-end latency, printed as figures (not a timed test). Needs the local stack (it
//! runs `scripts/stack up`).
//!
//! `cargo bench -p cdc-views --bench latency` runs one pipeline (three scratch MariaDB databases, an in-process
//! capture, a `views` process on its own ClickHouse database) and measures:
//! 1. **drain**: change events applied per second when the view starts with a backlog already in Kafka (100,000
//!    row changes: orders with three lines each);
//! 2. **steady**: at a fixed rate of row changes per second (2,000 and 5,000 by default), the time from MySQL
//!    COMMIT (when the client's COMMIT returns) to the order being visible in `order_report` with all three of its
//!    lines, p50 / p99 / max over every transaction after a 3 s warm-up; events applied per second; the view
//!    process's RSS (max sampled, and VmHWM) and CPU.
//!
//! Load: every 10 ms one transaction on the orders database with rate/100 row changes: new orders (one row) with
//! three lines each (three rows), and as many status updates of earlier orders; every 100 ms one new user and one
//! product price change on the other two servers.
//!
//! Visibility is polled every 20 ms (`CDC_BENCH_POLL_MS`), so a latency is measured up to 20 ms late (10 ms on
//! average): a poll costs ClickHouse 18.16 about 1 ms of CPU per query however few rows it reads, and polling every
//! 10 ms took a fifth of a core from the 2-core machine under test. `order_report` reads `report_lines`, which the
//! view service writes after the entity tables, so by default (`CDC_BENCH_POLL=report`) the bench polls
//! `order_report` itself (`SELECT order_id, count() ... WHERE order_id > <oldest unseen> GROUP BY order_id`, with
//! `enable_optimize_predicate_expression = 1` as readers have it, so the primary key serves it).
//! `CDC_BENCH_POLL=tables` polls `orders_state` and `lines_state` by primary-key range instead (the entity rows are
//! written first: this measures less than a reader sees), and every 5 s checks through `order_report` that the
//! newest order seen is there with its three lines (a mismatch is reported).
//! Other variables: `CDC_BENCH_RATES` (`2000,5000`),
//! `CDC_BENCH_SECONDS` (30 per rate), `CDC_BENCH_BACKLOG` (100000), `CDC_BENCH_VIEWS` (extra TOML lines for the view
//! service, e.g. `batch_wait = "20ms"`; default: its defaults), `CDC_BENCH_PARTITIONS` (partitions of the capture's
//! topics; default: the capture's default), `CDC_BENCH_PRODUCER` (extra producer properties of the capture,
//! `key=value,...`, e.g. `linger.ms=20`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cdc_tests::stack;
use common::{Pipeline, Views};
use mysql_async::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LINES_PER_ORDER: u64 = 3;
const TICK: Duration = Duration::from_millis(10);
const WARMUP: Duration = Duration::from_secs(3);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `GET url` over plain HTTP/1.0; the body.
async fn http_get(url: &str) -> Result<String> {
    let rest = url.strip_prefix("http://").context("an http:// URL")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// `cdc_view_events_total` of a view process.
async fn events_applied(views: &Views) -> Result<u64> {
    let body = http_get(&format!("{}/metrics", views.url)).await?;
    body.lines()
        .find_map(|l| l.strip_prefix("cdc_view_events_total ").and_then(|v| v.trim().parse::<f64>().ok()))
        .map(|v| v as u64)
        .context("no cdc_view_events_total in /metrics")
}

/// (VmRSS, VmHWM) in bytes.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((kb("VmRSS:")? * 1024, kb("VmHWM:")? * 1024))
}

/// CPU time (user + system) of a process.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10) // USER_HZ = 100
}

/// CPU time and name of every process, to tell which others were busy during a phase (the machine is shared).
fn processes() -> BTreeMap<u32, (String, Duration)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let name = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map_or("?".into(), |(n, _)| n.to_owned());
        out.insert(pid, (name, cpu(pid)));
    }
    out
}

/// The busiest processes between two [`processes`] snapshots, as "name share%" of one core.
fn busiest(before: &BTreeMap<u32, (String, Duration)>, elapsed: Duration, skip: &[u32]) -> String {
    let mut busy: Vec<(f64, String)> = processes()
        .into_iter()
        .filter(|(pid, _)| !skip.contains(pid))
        .map(|(pid, (name, t))| {
            let was = before.get(&pid).map_or(Duration::ZERO, |b| b.1);
            (t.saturating_sub(was).as_secs_f64() / elapsed.as_secs_f64() * 100.0, name)
        })
        .filter(|(share, _)| *share >= 5.0)
        .collect();
    busy.sort_by(|a, b| b.0.total_cmp(&a.0));
    busy.iter().take(6).map(|(share, name)| format!("{name} {share:.0}%")).collect::<Vec<_>>().join(", ")
}

/// The machine's CPU time so far from /proc/stat's `cpu` line, in ticks: (total, idle + iowait, steal). Steal is
/// time the hypervisor gave this virtual machine's CPUs to others: a share of it skews every figure.
fn cpu_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| l.split_whitespace().filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default();
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    (fields.iter().take(8).sum(), at(3) + at(4), at(7))
}

/// "idle X%, steal Y%" of the machine's CPU time between a [`cpu_ticks`] snapshot and now.
fn machine_share(before: (u64, u64, u64)) -> String {
    let now = cpu_ticks();
    let total = now.0.saturating_sub(before.0).max(1) as f64;
    format!(
        "machine idle {:.0}%, steal {:.0}%",
        now.1.saturating_sub(before.1) as f64 / total * 100.0,
        now.2.saturating_sub(before.2) as f64 / total * 100.0
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// Messages in the capture's topics (sum of high watermarks).
fn published(brokers: &str, topics: &[String]) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let mut total = 0;
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
                total += high - low;
            }
        }
    }
    Ok(total)
}

/// The capture's topics of the four tables.
fn topics(p: &Pipeline) -> Vec<String> {
    vec![
        format!("{}.{}.users", p.prefix, p.users.name),
        format!("{}.{}.products", p.prefix, p.catalog.name),
        format!("{}.{}.orders", p.prefix, p.orders.name),
        format!("{}.{}.order_lines", p.prefix, p.orders.name),
    ]
}

/// New orders `first..first + n` with three lines each, as one INSERT per table.
fn orders_sql(first: u64, n: u64, users: u64, products: u64) -> String {
    let orders: Vec<String> = (first..first + n)
        .map(|o| format!("({o}, {}, 'PENDING', {}.00)", o % users + 1, (o % 90) + 10))
        .collect();
    let lines: Vec<String> = (first..first + n)
        .flat_map(|o| (0..LINES_PER_ORDER).map(move |i| (o, (o - 1) * LINES_PER_ORDER + i + 1)))
        .map(|(o, l)| format!("({l}, {o}, {}, {}, {}.{:02})", l % products + 1, l % 5 + 1, l % 200 + 1, l % 100))
        .collect();
    format!(
        "INSERT INTO orders (id, user_id, status, total) VALUES {};\nINSERT INTO order_lines (id, order_id, product_id, quantity, unit_price) VALUES {};\n",
        orders.join(","),
        lines.join(",")
    )
}

/// The view service's own profile over its log lines `lines` (debug lines "batch applied" of `cdc_views::runtime`).
fn profile(lines: &[&str], seconds: f64) -> String {
    let mut in_service: Vec<(u64, u64)> = Vec::new(); // (ms, events)
    let (mut write, mut before) = (Vec::new(), Vec::new());
    for line in lines.iter().filter(|l| l.contains("batch applied")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<u64>().ok())
        };
        let events = field("events").unwrap_or(0);
        if let Some(ms) = field("in_service_ms") {
            in_service.push((ms, events));
        }
        write.extend(field("write_ms"));
        before.extend(field("before_service_ms"));
    }
    if write.is_empty() {
        return "no batch lines (run with RUST_LOG unset or including cdc_views::runtime=debug)".into();
    }
    in_service.sort_unstable();
    let total: u64 = in_service.iter().map(|(_, n)| n).sum();
    let weighted = |p: f64| {
        let mut seen = 0;
        in_service.iter().find(|(_, n)| {
            seen += n;
            seen as f64 >= p * total as f64
        })
        .map_or(0, |(ms, _)| *ms)
    };
    let pct = |v: &mut Vec<u64>, p: f64| {
        v.sort_unstable();
        v.get(((v.len() - 1) as f64 * p).round() as usize).copied().unwrap_or(0)
    };
    format!(
        "{} batches ({:.0}/s, {:.0} events each on average); time in the view service (first receipt to ClickHouse ack,          events-weighted) p50 {} ms, p99 {} ms; ClickHouse write p50 {} ms, p99 {} ms; before the service (producer          timestamp to receipt) p50 {} ms, p99 {} ms",
        write.len(),
        write.len() as f64 / seconds,
        total as f64 / write.len() as f64,
        weighted(0.5),
        weighted(0.99),
        pct(&mut write, 0.5),
        pct(&mut write, 0.99),
        pct(&mut before, 0.5),
        pct(&mut before, 0.99)
    )
}

struct Steady {
    rate: u64,
    achieved: f64,
    samples: Vec<Duration>,
    unseen: usize,
    events_per_s: f64,
    rss_max: u64,
    hwm: u64,
    cpu_share: f64,
    load_before: String,
    /// The machine's idle and steal shares during the phase.
    machine: String,
    load_after: String,
    /// Other busy processes during the phase.
    others: String,
    /// The view service's profile from its debug log.
    profile: String,
    /// Spot checks of `order_report` against the entity tables, and how many disagreed.
    checked: u64,
    mismatches: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// A transaction of the steady load: its orders and when its COMMIT returned.
struct Committed {
    orders: std::ops::Range<u64>,
    at: Instant,
}

#[allow(clippy::too_many_arguments)]
async fn steady(
    p: &Pipeline,
    views: &Views,
    rate: u64,
    seconds: u64,
    next_order: &mut u64,
    users: u64,
    products: u64,
    poll_report: bool,
) -> Result<Steady> {
    let pid = views.pid().context("views runs")?;
    let per_tick = (rate / 100).max(2);
    let orders_per_tick = (per_tick / (LINES_PER_ORDER + 2)).max(1);
    let updates_per_tick = per_tick.saturating_sub(orders_per_tick * (LINES_PER_ORDER + 1));
    let client = clickhouse::Client::default()
        .with_url(stack().var("CLICKHOUSE_URL"))
        .with_validation(false)
        .with_setting("enable_optimize_predicate_expression", "1");
    let db = views.database.clone();
    let first_order = *next_order;
    let events_before = events_applied(views).await?;
    let cpu_before = cpu(pid);
    let load_before = loadavg();
    let ticks_before = cpu_ticks();
    let procs_before = processes();
    let log_lines_before = views.output().lines().count();
    let began = Instant::now();
    let end = began + Duration::from_secs(seconds);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Committed>();
    let writer = {
        let (orders_pool, users_pool, catalog_pool) = (p.orders.pool.clone(), p.users.pool.clone(), p.catalog.pool.clone());
        let mut next = *next_order;
        tokio::spawn(async move {
            let mut orders = orders_pool.get_conn().await?;
            let mut users_conn = users_pool.get_conn().await?;
            let mut catalog = catalog_pool.get_conn().await?;
            let mut rows = 0u64;
            let mut tick = 0u64;
            loop {
                let target = began + TICK * tick as u32;
                if target >= end {
                    break;
                }
                tokio::time::sleep_until(target.into()).await;
                let mut sql = String::from("START TRANSACTION;\n");
                sql.push_str(&orders_sql(next, orders_per_tick, users, products));
                if updates_per_tick > 0 && next > first_order + 1000 {
                    let ids: Vec<String> = (0..updates_per_tick).map(|i| (next - 1000 + i).to_string()).collect();
                    sql.push_str(&format!("UPDATE orders SET status = 'CONFIRMED' WHERE id IN ({});\n", ids.join(",")));
                    rows += updates_per_tick;
                }
                sql.push_str("COMMIT;");
                orders.query_drop(&sql).await?;
                let at = Instant::now();
                let _ = tx.send(Committed { orders: next..next + orders_per_tick, at });
                rows += orders_per_tick * (LINES_PER_ORDER + 1);
                next += orders_per_tick;
                if tick.is_multiple_of(10) {
                    users_conn
                        .query_drop(format!("INSERT INTO users (email, name, country) VALUES ('b{next}@x.io', 'Bench {next}', 'DE')"))
                        .await?;
                    catalog
                        .query_drop(format!("UPDATE products SET price = price + 0.01 WHERE id = {}", tick / 10 % products + 1))
                        .await?;
                    rows += 2;
                }
                tick += 1;
            }
            anyhow::Ok((next, rows))
        })
    };

    // With CDC_BENCH_VERBOSE, once a second: messages in the capture's topics (broker high watermarks) and events
    // the view applied, to tell a stalled producer or broker from a stalled consumer.
    let progress = std::env::var_os("CDC_BENCH_VERBOSE").map(|_| {
        let (brokers, topics, url) = (stack().var("KAFKA_BROKERS").to_owned(), topics(p), views.url.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (b, t) = (brokers.clone(), topics.clone());
                let published = tokio::task::spawn_blocking(move || published(&b, &t)).await.ok().and_then(Result::ok);
                let body = http_get(&format!("{url}/metrics")).await.unwrap_or_default();
                let applied = body.lines().find_map(|l| l.strip_prefix("cdc_view_events_total ")).unwrap_or("?").trim().to_owned();
                eprintln!("  +{:.0} s: published {published:?}, applied {applied}", began.elapsed().as_secs_f64());
            }
        })
    });

    // Poll visibility until every committed transaction is visible (or a deadline), sampling the view's memory.
    let mut pending: Vec<Committed> = Vec::new();
    let mut samples = Vec::new();
    let mut orders_seen: HashSet<u64> = HashSet::new();
    let mut lines_seen: HashSet<u64> = HashSet::new();
    let mut complete: HashSet<u64> = HashSet::new(); // orders with all lines (report mode)
    let mut low_order = first_order - 1; // every order up to this one is visible
    let mut rss_max = 0;
    let (mut polls, mut checked, mut mismatches) = (0u64, 0u64, 0u64);
    let mut writer_done = false;
    let deadline = end + Duration::from_secs(60);
    let poll_every = Duration::from_millis(env_or("CDC_BENCH_POLL_MS", 20));
    let mut next_poll = Instant::now();
    loop {
        tokio::time::sleep_until(next_poll.into()).await;
        next_poll += poll_every;
        while let Ok(c) = rx.try_recv() {
            pending.push(c);
        }
        if writer.is_finished() {
            writer_done = true;
        }
        if let Some((rss, _)) = memory(pid) {
            rss_max = rss_max.max(rss);
        }
        if poll_report {
            let sql = format!(
                "SELECT order_id, toUInt64(count()) FROM {db}.order_report WHERE order_id > {low_order} GROUP BY order_id"
            );
            for (order, lines) in client.query(&sql).fetch_all::<(u64, u64)>().await? {
                if lines == LINES_PER_ORDER {
                    complete.insert(order);
                }
            }
        } else {
            let lines_low = low_order * LINES_PER_ORDER;
            let o = format!("SELECT id FROM {db}.orders_state WHERE id > {low_order}");
            let l = format!("SELECT id FROM {db}.lines_state WHERE id > {lines_low}");
            orders_seen.extend(client.query(&o).fetch_all::<u64>().await?);
            lines_seen.extend(client.query(&l).fetch_all::<u64>().await?);
        }
        let now = Instant::now();
        let visible = |o: u64| {
            if poll_report {
                complete.contains(&o)
            } else {
                orders_seen.contains(&o) && (1..=LINES_PER_ORDER).all(|i| lines_seen.contains(&((o - 1) * LINES_PER_ORDER + i)))
            }
        };
        pending.retain(|c| {
            if c.orders.clone().all(visible) {
                if c.at.duration_since(began) >= WARMUP {
                    samples.push(now.duration_since(c.at));
                }
                false
            } else {
                true
            }
        });
        while visible(low_order + 1) {
            low_order += 1;
        }
        if !poll_report && low_order >= first_order && polls % (5000 / poll_every.as_millis().max(1) as u64).max(1) == 0 {
            // The entity tables say `low_order` is visible: so must the report.
            let sql = format!("SELECT toUInt64(count()) FROM {db}.order_report WHERE order_id = {low_order}");
            checked += 1;
            if client.query(&sql).fetch_one::<u64>().await? != LINES_PER_ORDER {
                mismatches += 1;
            }
        }
        polls += 1;
        if writer_done && pending.is_empty() && rx.is_empty() {
            break;
        }
        if now > deadline {
            break;
        }
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let (next, rows) = writer.await??;
    let elapsed = began.elapsed();
    *next_order = next;
    let written = began.elapsed().min(Duration::from_secs(seconds));
    let events = events_applied(views).await? - events_before;
    let cpu_used = cpu(pid) - cpu_before;
    let hwm = memory(pid).map_or(0, |m| m.1);
    samples.sort();
    Ok(Steady {
        rate,
        achieved: rows as f64 / written.as_secs_f64(),
        unseen: pending.len(),
        samples,
        events_per_s: events as f64 / elapsed.as_secs_f64(),
        rss_max,
        hwm,
        cpu_share: cpu_used.as_secs_f64() / elapsed.as_secs_f64(),
        load_before,
        machine: machine_share(ticks_before),
        load_after: loadavg(),
        others: busiest(&procs_before, elapsed, &[pid]),
        profile: profile(&views.output().lines().skip(log_lines_before).collect::<Vec<_>>(), elapsed.as_secs_f64()),
        checked,
        mismatches,
    })
}

async fn run() -> Result<()> {
    let rates: Vec<u64> = std::env::var("CDC_BENCH_RATES")
        .unwrap_or_else(|_| "2000,5000".into())
        .split(',')
        .map(|r| r.trim().parse().context("CDC_BENCH_RATES: numbers"))
        .collect::<Result<_>>()?;
    let seconds: u64 = env_or("CDC_BENCH_SECONDS", 30);
    let backlog: u64 = env_or("CDC_BENCH_BACKLOG", 100_000);
    let poll_report = std::env::var("CDC_BENCH_POLL").map_or(true, |v| v != "tables");
    let extra = std::env::var("CDC_BENCH_VIEWS").unwrap_or_default();
    let (users, products) = (1000u64, 200u64);

    let partitions: Option<i32> = std::env::var("CDC_BENCH_PARTITIONS").ok().map(|v| v.parse()).transpose()?;
    let producer = std::env::var("CDC_BENCH_PRODUCER").unwrap_or_default();
    let p = Pipeline::start_with("bench_views", |config| {
        if let Some(n) = partitions {
            config.kafka.partitions = n;
        }
        for (k, v) in producer.split(',').filter_map(|kv| kv.split_once('=')) {
            config.kafka.properties.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    })
    .await?;
    println!(
        "capture: partitions per topic {}, extra producer properties {:?}",
        partitions.map_or("default".into(), |n| n.to_string()),
        producer
    );
    println!("load average before: {}", loadavg());
    // Dimensions, then the backlog: orders with their lines in transactions of 100 row changes.
    let values: Vec<String> = (1..=users).map(|u| format!("('u{u}@x.io', 'User {u}', 'FR')")).collect();
    p.users.exec(&format!("INSERT INTO users (email, name, country) VALUES {}", values.join(","))).await?;
    let values: Vec<String> =
        (1..=products).map(|i| format!("('SKU{i}', 'Product {i}', 'cat{}', {}.99, 1000)", i % 7, i % 300)).collect();
    p.catalog.exec(&format!("INSERT INTO products (sku, name, category, price, stock) VALUES {}", values.join(","))).await?;
    let per_tx = 100 / (LINES_PER_ORDER + 1);
    let backlog_orders = backlog / (LINES_PER_ORDER + 1);
    let mut conn = p.orders.pool.get_conn().await?;
    let mut next_order = 1;
    while next_order <= backlog_orders {
        let n = per_tx.min(backlog_orders - next_order + 1);
        conn.query_drop(format!("START TRANSACTION;\n{}COMMIT;", orders_sql(next_order, n, users, products))).await?;
        next_order += n;
    }
    drop(conn);
    let total = (users + products + backlog_orders * (LINES_PER_ORDER + 1)) as i64;
    let brokers = stack().var("KAFKA_BROKERS").to_owned();
    let topics = topics(&p);
    let waited = Instant::now();
    loop {
        let topics = topics.clone();
        let brokers = brokers.clone();
        let n = match tokio::task::spawn_blocking(move || published(&brokers, &topics)).await? {
            Ok(n) => n,
            Err(e) => {
                eprintln!("reading watermarks: {e:#}");
                0
            }
        };
        if n >= total {
            break;
        }
        if waited.elapsed() > Duration::from_secs(600) {
            bail!("the capture published {n} of {total} messages in 600 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 1. Drain: the view starts with every event of the backlog waiting.
    let views = p.views_with("bench_views", &extra)?;
    let pid = views.pid().context("views runs")?;
    let began = Instant::now();
    let mut rss_max = 0;
    loop {
        if let Some((rss, _)) = memory(pid) {
            rss_max = rss_max.max(rss);
        }
        if events_applied(&views).await.unwrap_or(0) >= total as u64 {
            break;
        }
        if began.elapsed() > Duration::from_secs(600) {
            bail!("the view did not apply the backlog in 600 s:\n{}", views.output());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = began.elapsed();
    let drain_cpu = cpu(pid);
    println!(
        "drain: {total} change events applied in {:.2} s = {:.0} events/s (includes start-up and the consumer group join); \
         views CPU {:.2} s, RSS max {:.1} MB, load average {}",
        drain.as_secs_f64(),
        total as f64 / drain.as_secs_f64(),
        drain_cpu.as_secs_f64(),
        mb(rss_max),
        loadavg()
    );

    // 2. Steady rates.
    let mut results = BTreeMap::new();
    for rate in rates {
        let s = steady(&p, &views, rate, seconds, &mut next_order, users, products, poll_report).await?;
        println!(
            "steady {} row changes/s (achieved {:.0}/s, {} s, polling {}): COMMIT to visible p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} transactions{}; \
             {:.0} events/s applied; views RSS max {:.1} MB (VmHWM {:.1} MB), CPU {:.0}% of a core; load average {} -> {}",
            s.rate,
            s.achieved,
            seconds,
            if poll_report { "order_report" } else { "entity tables" },
            percentile(&s.samples, 0.5).as_secs_f64() * 1000.0,
            percentile(&s.samples, 0.99).as_secs_f64() * 1000.0,
            s.samples.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
            s.samples.len(),
            if s.unseen > 0 { format!(" ({} never became visible)", s.unseen) } else { String::new() },
            s.events_per_s,
            mb(s.rss_max),
            mb(s.hwm),
            s.cpu_share * 100.0,
            s.load_before,
            s.load_after
        );
        println!(
            "  busiest other processes meanwhile (% of one core; this bench runs the capture in-process): {}; {}",
            s.others, s.machine
        );
        println!("  view service: {}", s.profile);
        if !poll_report {
            println!("  order_report spot checks: {} of {} disagreed with the entity tables", s.mismatches, s.checked);
        }
        results.insert(rate, s);
    }

    // The report holds every order written (each with its lines).
    let client = clickhouse::Client::default().with_url(stack().var("CLICKHOUSE_URL")).with_validation(false);
    let lines: u64 =
        client.query(&format!("SELECT toUInt64(count()) FROM {}.order_report", views.database)).fetch_one().await?;
    println!("order_report holds {lines} lines; {} were written", (next_order - 1) * LINES_PER_ORDER);
    drop(views);
    p.finish().await
}

fn main() -> Result<()> {
    // The in-process capture's warnings and errors (RUST_LOG overrides).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    if std::env::var_os("RUST_LOG").is_none() {
        // The view process inherits it: its per-batch debug lines are the profile the bench prints. Set before any
        // other thread runs.
        std::env::set_var("RUST_LOG", "info,cdc_views::runtime=debug");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}
