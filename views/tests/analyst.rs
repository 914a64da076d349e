//! The stack's `analyst` ClickHouse user (the readers' account, `scripts/stack`) on the real local stack (ClickHouse
//! 18.16): it gets `enable_optimize_predicate_expression = 1` from its `readonly` profile, and that setting is what
//! makes one order's lookup through `order_report` cheap.
//!
//! - As `analyst` over HTTP, `system.settings` shows the setting as `1` (the server default on 18.16 is `0`).
//! - On a scratch database migrated by `cdc_views::migrate::ensure`, with report rows inserted directly into
//!   `report_lines`, `SELECT * FROM <db>.order_report WHERE order_id = X FORMAT JSON` is run by the default user
//!   with the setting 1 and with 0 (the analyst may read only `reporting` and may not change settings), and the
//!   `rows_read` statistic of each is compared: with 1 the outer filter reaches the view's query and the primary key
//!   (`order_id` first) serves it. Measured on 18.16 with 100,000 rows: 8,192 rows read (one granule) with 1,
//!   100,000 with 0; the test requires at most a quarter of the table with 1 and all of it with 0.
//!
//! The scratch database is dropped at the end.

use anyhow::{ensure, Context, Result};
use cdc_tests::{stack, unique_name};
use serde_json::Value;

fn clickhouse() -> clickhouse::Client {
    clickhouse::Client::default().with_url(stack().var("CLICKHOUSE_URL")).with_validation(false)
}

async fn exec(sql: &str) -> Result<()> {
    clickhouse().query(sql).execute().await.with_context(|| sql.to_owned())
}

/// `sql` over HTTP as `user` with more URL parameters (`extra`: `name=value` pairs), its result as JSON.
async fn http(user: Option<(&str, &str)>, extra: &[(&str, &str)], sql: &str) -> Result<Value> {
    let mut request = reqwest::Client::new().post(stack().var("CLICKHOUSE_URL")).query(extra).body(sql.to_owned());
    if let Some((user, password)) = user {
        request = request.query(&[("user", user), ("password", password)]);
    }
    let response = request.send().await?;
    let status = response.status();
    let body = response.text().await?;
    ensure!(status.is_success(), "{sql}: HTTP {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("{sql}: {body}"))
}

fn analyst() -> (&'static str, &'static str) {
    let env = stack();
    (env.var("CLICKHOUSE_ANALYST_USER"), env.var("CLICKHOUSE_ANALYST_PASSWORD"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_analyst_gets_predicate_pushdown_and_one_orders_lookup_reads_a_few_granules() -> Result<()> {
    let (user, password) = analyst();
    let setting = "SELECT value FROM system.settings WHERE name = 'enable_optimize_predicate_expression' FORMAT JSON";
    let got = http(Some((user, password)), &[], setting).await?;
    ensure!(got["data"][0]["value"] == "1", "{user} sees enable_optimize_predicate_expression as {}", got["data"]);

    let db = unique_name("analyst");
    cdc_views::migrate::ensure(&clickhouse(), &db, None).await?;
    // 2,000 orders of 50 lines each, one part: 100,000 rows, about 12 granules of 8,192.
    let (orders, lines) = (2_000u64, 50u64);
    let total = orders * lines;
    exec(&format!(
        "INSERT INTO {db}.report_lines (order_id, line_id, order_status, product_name, quantity, version, writer, deleted, sign) \
         SELECT intDiv(number, {lines}) + 1, number + 1, 'PENDING', 'p', 1, 10, 1, 0, 1 FROM system.numbers LIMIT {total}"
    ))
    .await?;
    let order = orders / 2;
    let lookup = format!("SELECT * FROM {db}.order_report WHERE order_id = {order} FORMAT JSON");
    let read = async {
        let mut read = Vec::new();
        for value in ["1", "0"] {
            let got = http(None, &[("enable_optimize_predicate_expression", value)], &lookup).await?;
            ensure!(got["rows"] == lines, "order {order} has {} lines with the setting {value}, expected {lines}", got["rows"]);
            let rows_read = got["statistics"]["rows_read"].as_u64().context("statistics.rows_read")?;
            println!("enable_optimize_predicate_expression = {value}: rows_read {rows_read} of {total}");
            read.push(rows_read);
        }
        anyhow::Ok(read)
    }
    .await;
    // Dropped whatever the lookups gave.
    exec(&format!("DROP DATABASE {db}")).await?;
    let read = read?;
    let (with, without) = (read[0], read[1]);
    // With it, the granule holding the order (8,192 rows on 18.16); without, every row.
    ensure!(with * 4 <= total, "with the setting the lookup read {with} of {total} rows");
    ensure!(without >= total, "without the setting the lookup read {without} of {total} rows: the difference is not observable");
    Ok(())
}
