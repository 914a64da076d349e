//! Compaction of `report_lines` on the real local stack (ClickHouse 18.16): cancel rows written in parts of their
//! own are counted per partition, and a round compacts the partitions with the most until the rest fit the limit,
//! with `order_report` showing the same rows before and after.

use anyhow::{ensure, Context, Result};
use cdc_tests::{stack, unique_name};
use cdc_views::compact;
use cdc_views::metrics::Metrics;
use cdc_views::schema::REPORT_PARTITION_ORDERS;

fn clickhouse() -> clickhouse::Client {
    clickhouse::Client::default().with_url(stack().var("CLICKHOUSE_URL")).with_validation(false)
}

async fn exec(sql: &str) -> Result<()> {
    clickhouse().query(sql).execute().await.with_context(|| sql.to_owned())
}

/// `lines` rows of order `order` (line ids from `first`) at `version`, with `sign`, as one INSERT (one part).
async fn rows(db: &str, order: u64, first: u64, lines: u64, version: u64, name: &str, sign: i8) -> Result<()> {
    exec(&format!(
        "INSERT INTO {db}.report_lines (order_id, line_id, order_status, product_name, quantity, version, writer, deleted, sign) \
         SELECT {order}, {first} + number, 'PENDING', '{name}', 1, {version}, 1, 0, {sign} FROM system.numbers LIMIT {lines}"
    ))
    .await
}

async fn report(db: &str) -> Result<Vec<(u64, u64, String)>> {
    Ok(clickhouse()
        .query(&format!("SELECT order_id, line_id, assumeNotNull(product_name) FROM {db}.order_report ORDER BY order_id, line_id"))
        .fetch_all::<(u64, u64, String)>()
        .await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_round_compacts_the_partitions_with_most_cancels_and_the_report_is_unchanged() -> Result<()> {
    let db = unique_name("t_compact");
    let client = clickhouse();
    cdc_views::migrate::ensure(&client, &db, None).await?;
    let (small, large) = (1u64, 3 * REPORT_PARTITION_ORDERS + 1);
    // Partition 0: 300 lines renamed (300 cancels); partition 3: 2,000 lines renamed (2,000 cancels). Each rename is
    // its new rows and the cancels of the old ones, in one part, as the view service writes them.
    for (order, lines) in [(small, 300), (large, 2_000)] {
        rows(&db, order, 1, lines, 10, "old", 1).await?;
        rows(&db, order, 1, lines, 10, "old", -1).await?;
        rows(&db, order, 1, lines, 20, "new", 1).await?;
    }
    let before = report(&db).await?;
    ensure!(before.len() == 2_300 && before.iter().all(|(_, _, name)| name == "new"), "report before: {} rows", before.len());
    let mut pending = compact::pending(&client, &db).await?;
    pending.sort();
    println!("pending cancels per partition: {pending:?}");

    let metrics = Metrics::new();
    let chosen = compact::round(&client, &db, None, 500, &metrics).await?;
    let left: u64 = compact::pending(&client, &db).await?.iter().map(|(_, n)| n).sum();
    // A background merge may have collapsed some cancels before the round counted them; the round must still leave
    // at most the limit, and pick partition 3 whenever it still held more than the limit.
    ensure!(left <= 500, "{left} cancels left after a round with limit 500 (chose {chosen:?})");
    if pending.iter().any(|&(p, n)| p == 3 && n > 500) {
        ensure!(chosen.first() == Some(&3), "partition 3 held {pending:?} cancels, the round chose {chosen:?}");
    }
    ensure!(!chosen.contains(&0), "partition 0 (300 cancels) compacted needlessly: {chosen:?}");
    let rendered = metrics.render(0);
    ensure!(rendered.contains(&format!("cdc_view_report_cancels_pending {left}")), "{rendered}");
    ensure!(report(&db).await? == before, "the report changed in the compaction");
    exec(&format!("DROP DATABASE {db}")).await
}
