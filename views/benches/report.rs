//! Read and write costs of the reporting schema at scale, printed as figures (not a timed test). Needs only the
//! local stack's ClickHouse (it runs `scripts/stack up`); no Kafka, no MySQL: the data is generated in ClickHouse.
//!
//! `cargo bench -p cdc-views --bench report` (`CDC_BENCH_LINES=1000000,10000000` for both sizes) does, per size, on
//! a scratch database migrated by the view service's own code (`migrate::ensure`):
//! 1. generates N order lines, N/4 orders, N/40 users, N/400 products in the entity tables (the proportions of the
//!    measurement in the issue: 400,000 lines, 100,000 orders, 25,000 users, 2,500 products); product 1 is
//!    referenced by 100,000 lines;
//! 2. **ingest**: the key indexes filled from the entity tables, then `report_lines` written through the view
//!    service's write path ([`cdc_views::join`]) in batches of 20,000 lines (a full batch of the service,
//!    `batch_max_events`) with their orders: the rate of a backlog. Above `CDC_BENCH_INGEST` lines (1,000,000)
//!    `report_lines` is filled server-side instead (`report::fill`, what migration 2 and a dropped table do);
//! 3. **updates**: 10% of the orders confirmed, written by the service's write path in batches of 20,000 orders:
//!    lines rewritten per second; this leaves a cancel row per rewritten line, unmerged;
//! 4. **queries**: every SQL block of docs/analytics.md but freshness, one order's lines and one customer's lines,
//!    through `order_report`, against a flat MergeTree copy of it (`ORDER BY (order_id, line_id)`), median of
//!    `CDC_BENCH_RUNS` (5) runs, with `enable_optimize_predicate_expression = 1` (as the analyst profile of the stack
//!    has it), with the cancels unmerged and again after one round of the view service's compaction
//!    ([`cdc_views::compact::round`], the default limit); with
//!    `CDC_BENCH_LEGACY=1` also through the joining view of the schema before;
//! 5. **fan-out**: a rename of product 1 (100,000 lines) and an email change, written as the service does: time,
//!    and rows written.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cdc_tests::{stack, unique_name};
use cdc_views::join::Joiner;
use cdc_views::report::Keys;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Keys per batch: the service's `batch_max_events`.
const BATCH: usize = 20_000;

struct Bench {
    client: clickhouse::Client,
    db: String,
}

impl Bench {
    async fn exec(&self, sql: &str) -> Result<Duration> {
        let began = Instant::now();
        self.client
            .query(sql)
            .with_setting("max_query_size", "67108864")
            .with_setting("min_insert_block_size_rows", "1000000000")
            .with_setting("min_insert_block_size_bytes", "100000000000")
            .with_setting("max_execution_time", "3600")
            .execute()
            .await
            .with_context(|| sql.chars().take(300).collect::<String>())?;
        Ok(began.elapsed())
    }

    async fn count(&self, sql: &str) -> Result<u64> {
        self.client.query(sql).fetch_one::<u64>().await.with_context(|| sql.to_owned())
    }

    /// Median time of `runs` executions of a SELECT, its result read in full.
    async fn time(&self, sql: &str, runs: usize) -> Result<Duration> {
        let mut times = Vec::new();
        for _ in 0..runs {
            let began = Instant::now();
            let mut cursor = self.client.query(sql).fetch_bytes("TabSeparated")?;
            while cursor.next().await?.is_some() {}
            times.push(began.elapsed());
        }
        times.sort();
        Ok(times[times.len() / 2])
    }

    /// Writes what `keys` reach the way the view service does, in batches of `BATCH` keys, returning the time.
    async fn recompute(&self, keys: &Keys) -> Result<Duration> {
        let began = Instant::now();
        for chunk in keys.chunks(BATCH) {
            Joiner { client: &self.client, db: &self.db, writer: 1, settle: false }.refresh(&chunk).await?;
        }
        Ok(began.elapsed())
    }

    async fn report_rows(&self) -> Result<u64> {
        self.count(&format!("SELECT toUInt64(count()) FROM {}.report_lines", self.db)).await
    }
}

async fn size(client: &clickhouse::Client, lines: u64, runs: usize) -> Result<()> {
    let db = unique_name("bench_report");
    let b = Bench { client: client.clone(), db: db.clone() };
    cdc_views::migrate::ensure(client, &db, None).await?;
    let (orders, users, products) = (lines / 4, (lines / 40).max(1), (lines / 400).max(2));
    let every = (lines / 100_000).max(1);
    let v = |k: u64| format!("toUInt64(2) * 281474976710656 + toUInt64(number + {k}) * 65536 + 1");
    println!("\n== {lines} lines, {orders} orders, {users} users, {products} products (database {db}; load average {})", loadavg());
    let began = Instant::now();
    b.exec(&format!(
        "INSERT INTO {db}.users_state SELECT number + 1, concat('u', toString(number + 1), '@x.io'), concat('User ', toString(number + 1)), \
         ['DE', 'FR', 'US', 'NL'][number % 4 + 1], 1, {}, 0 FROM numbers({users})",
        v(0)
    ))
    .await?;
    b.exec(&format!(
        "INSERT INTO {db}.products_state SELECT number + 1, concat('SKU', toString(number + 1)), concat('Product ', toString(number + 1)), \
         concat('cat', toString(number % 20)), toDecimal64(number % 300 + 1, 2), {}, 0 FROM numbers({products})",
        v(0)
    ))
    .await?;
    b.exec(&format!(
        "INSERT INTO {db}.orders_state SELECT number + 1, intHash64(number) % {users} + 1, \
         ['PENDING', 'CONFIRMED', 'CONFIRMED', 'REJECTED', 'CANCELLED'][number % 5 + 1], toDecimal64(0, 2), \
         toDateTime(1764000000 + intDiv(number * 2592000, {orders})), {}, 0 FROM numbers({orders})",
        v(0)
    ))
    .await?;
    b.exec(&format!(
        "INSERT INTO {db}.lines_state SELECT number + 1, intDiv(number, 4) + 1, \
         if(number % {every} = 0, 1, intHash64(number + 7) % ({products} - 1) + 2), number % 5 + 1, toDecimal64(number % 200 + 1, 2), {}, 0 \
         FROM numbers({lines})",
        v(0)
    ))
    .await?;
    println!("generated the entity tables in {:.1} s", began.elapsed().as_secs_f64());

    // 2. Ingest.
    let mut fill = Duration::ZERO;
    let ingest = lines <= env_or("CDC_BENCH_INGEST", 1_000_000u64);
    for object in cdc_views::schema::objects(&db) {
        if object.name != "report_lines" || !ingest {
            for sql in &object.refill {
                let began = Instant::now();
                cdc_views::migrate::execute(&b.client, &db, sql).await.with_context(|| sql.clone())?;
                fill += began.elapsed();
            }
        }
    }
    println!("fill (key indexes{} from the entity tables, server-side): {:.1} s", if ingest { "" } else { " and report_lines" }, fill.as_secs_f64());
    if ingest {
        let mut took = Duration::ZERO;
        let per = BATCH as u64;
        for first in (1..=lines).step_by(BATCH) {
            let last = (first + per - 1).min(lines);
            let keys = Keys { lines: (first..=last).collect(), orders: ((first - 1) / 4 + 1..=(last - 1) / 4 + 1).collect(), ..Keys::default() };
            took += b.recompute(&keys).await?;
        }
        println!(
            "ingest of the backlog through the write path: {lines} lines and {orders} orders in batches of {BATCH} lines in {:.1} s = {:.0} lines/s, {:.0} events/s (lines and orders)",
            took.as_secs_f64(),
            lines as f64 / took.as_secs_f64(),
            (lines + orders) as f64 / took.as_secs_f64()
        );
    }

    // 3. Updates: 10% of the orders confirmed.
    b.exec(&format!(
        "INSERT INTO {db}.orders_state SELECT id, user_id, 'CONFIRMED', total, created_at, version + 65536, 0 \
         FROM {db}.orders_state WHERE id % 10 = 0"
    ))
    .await?;
    let keys = Keys { orders: (1..=orders).filter(|id| id % 10 == 0).collect(), ..Keys::default() };
    let before = b.report_rows().await?;
    let took = b.recompute(&keys).await?;
    let written = b.report_rows().await? - before;
    println!(
        "updates: {} orders confirmed, recomputed in {:.1} s: {written} rows written (new rows and cancels) = {:.0} orders/s, {:.0} lines/s",
        keys.orders.len(),
        took.as_secs_f64(),
        keys.orders.len() as f64 / took.as_secs_f64(),
        (written / 2) as f64 / took.as_secs_f64()
    );
    let again = b.recompute(&keys).await?;
    println!("the same recomputation again (a redelivered batch): {:.1} s, {} rows written", again.as_secs_f64(), b.report_rows().await? - before - written);

    // 4. Queries.
    b.exec(&format!("CREATE TABLE {db}.flat ENGINE = MergeTree ORDER BY (order_id, line_id) AS SELECT * FROM {db}.order_report")).await?;
    let legacy = env_or("CDC_BENCH_LEGACY", 0u8) == 1;
    if legacy {
        let first = cdc_views::schema::migrations(&db).remove(0);
        let view = first.statements.iter().find(|s| s.contains(".order_report AS")).context("the joining view")?;
        b.exec(&view.replace(".order_report AS", ".order_report_joining AS")).await?;
    }
    let order = orders / 2 + 1;
    let customer = b.count(&format!("SELECT toUInt64(any(user_id)) FROM {db}.flat WHERE order_id = {order}")).await?;
    let mut queries: Vec<(String, String)> = common::analytics::doc_queries()?
        .into_iter()
        .filter(|q| q.sql.contains("order_report"))
        .map(|q| (q.name, q.sql))
        .collect();
    queries.push(("One order's lines".into(), format!("SELECT * FROM reporting.order_report WHERE order_id = {order}")));
    queries.push(("One customer's lines".into(), format!("SELECT * FROM reporting.order_report WHERE user_id = {customer}")));
    let cancels = b.count(&format!("SELECT toUInt64(count()) FROM {db}.report_lines WHERE sign = -1")).await?;
    for (state, compact) in [(format!("{cancels} cancel rows unmerged"), false), ("after a compaction round".to_owned(), true)] {
        if compact {
            // What the view service does within `compact_every` (default limit).
            let began = Instant::now();
            let metrics = cdc_views::metrics::Metrics::new();
            let limit = cdc_views::config::Config::default().compact_cancels;
            let chosen = cdc_views::compact::round(&b.client, &db, None, limit, &metrics).await?;
            let left = b.count(&format!("SELECT toUInt64(count()) FROM {db}.report_lines WHERE sign = -1")).await?;
            println!(
                "compaction round (limit {limit}): {} partitions of {} compacted in {:.1} s, {left} cancel rows left",
                chosen.len(),
                lines.div_ceil(4 * cdc_views::schema::REPORT_PARTITION_ORDERS),
                began.elapsed().as_secs_f64()
            );
        }
        println!("queries, median of {runs} ({state}; load average {}):", loadavg());
        println!("  {:<42} {:>12} {:>12} {:>7} {:>14}", "query", "order_report", "flat copy", "ratio", "joining view");
        for (name, sql) in &queries {
            let on = |table: &str| sql.replace("reporting.order_report", &format!("{db}.{table}"));
            let report = b.time(&on("order_report"), runs).await?;
            let flat = b.time(&on("flat"), runs).await?;
            let joining = if legacy && !compact { format!("{:.0} ms", ms(b.time(&on("order_report_joining"), runs.min(3)).await?)) } else { "-".into() };
            println!("  {name:<42} {:>9.0} ms {:>9.0} ms {:>6.2}x {joining:>14}", ms(report), ms(flat), ms(report) / ms(flat));
        }
    }
    let same: u64 = b
        .count(&format!(
            "SELECT toUInt64(count()) FROM (SELECT * FROM {db}.order_report UNION ALL SELECT * FROM {db}.flat) GROUP BY line_id, order_status \
             HAVING count() != 2"
        ))
        .await
        .unwrap_or(0);
    println!("order_report and its flat copy differ in {same} lines");

    // 5. Fan-out of a rename and an email change.
    let referenced = b.count(&format!("SELECT toUInt64(count()) FROM {db}.order_report WHERE product_id = 1")).await?;
    b.exec(&format!(
        "INSERT INTO {db}.products_state SELECT id, sku, 'Renamed', category, price, version + 65536, 0 FROM {db}.products_state WHERE id = 1"
    ))
    .await?;
    let before = b.report_rows().await?;
    let took = b.recompute(&Keys { products: [1].into(), ..Keys::default() }).await?;
    let renamed = b.count(&format!("SELECT toUInt64(count()) FROM {db}.order_report WHERE product_name = 'Renamed'")).await?;
    println!(
        "rename of product 1, referenced by {referenced} lines: {:.2} s, {} rows written; {renamed} lines show the new name",
        took.as_secs_f64(),
        b.report_rows().await? - before
    );
    b.exec(&format!(
        "INSERT INTO {db}.users_state SELECT id, 'changed@x.io', name, country, has_country, version + 65536, 0 FROM {db}.users_state WHERE id = {customer}"
    ))
    .await?;
    let before = b.report_rows().await?;
    let took = b.recompute(&Keys { users: [customer].into(), ..Keys::default() }).await?;
    println!("email change of user {customer}: {:.0} ms, {} rows written", ms(took), b.report_rows().await? - before);
    b.exec(&format!("DROP DATABASE {db}")).await?;
    Ok(())
}

async fn run() -> Result<()> {
    let sizes: Vec<u64> = std::env::var("CDC_BENCH_LINES")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .map(|s| s.trim().parse().context("CDC_BENCH_LINES: numbers"))
        .collect::<Result<_>>()?;
    let runs = env_or("CDC_BENCH_RUNS", 5usize);
    let client = clickhouse::Client::default()
        .with_url(stack().var("CLICKHOUSE_URL"))
        .with_validation(false)
        .with_setting("enable_optimize_predicate_expression", "1");
    println!("reporting schema at scale; load average {}", loadavg());
    for lines in sizes {
        size(&client, lines, runs).await?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}
