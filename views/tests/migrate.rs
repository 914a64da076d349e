//! Schema migrations and repair against the real local stack (ClickHouse 18.16): a deployment of the schema before
//! migrations existed (entity tables joined by a VIEW, no `schema_migrations`) migrates when the new view service
//! starts, with `report_lines` filled from the entity tables; and a table dropped under a running view service is
//! recreated and refilled instead of stalling the stream.

mod common;

use anyhow::{ensure, Context, Result};
use cdc_tests::{eventually, stack};
use common::{Pipeline, Views, DEADLINE};

fn clickhouse() -> clickhouse::Client {
    clickhouse::Client::default().with_url(stack().var("CLICKHOUSE_URL")).with_validation(false)
}

async fn exec(sql: &str) -> Result<()> {
    clickhouse().query(sql).execute().await.with_context(|| sql.to_owned())
}

/// Users, products, orders with lines, and some updates and deletes.
async fn write(p: &Pipeline, tag: &str) -> Result<()> {
    p.users
        .exec(&format!("INSERT INTO users (email, name, country) VALUES ('a{tag}@x.io', 'A {tag}', 'DE'), ('b{tag}@x.io', 'B {tag}', NULL)"))
        .await?;
    p.catalog
        .exec(&format!(
            "INSERT INTO products (sku, name, category, price, stock) VALUES ('S1{tag}', 'One {tag}', 'c1', 1.50, 9), ('S2{tag}', 'Two {tag}', 'c2', 2.00, 9)"
        ))
        .await?;
    for (user, product) in [(1, 1), (2, 2), (1, 2), (3, 1)] {
        p.orders
            .exec(&format!(
                "START TRANSACTION; INSERT INTO orders (user_id, status, total) VALUES ({user}, 'PENDING', 0); SET @o = LAST_INSERT_ID();
                 INSERT INTO order_lines (order_id, product_id, quantity, unit_price) VALUES (@o, {product}, 2, 1.50), (@o, {}, 1, 2.00); COMMIT;",
                3 - product
            ))
            .await?;
    }
    p.orders.exec("UPDATE orders SET status = 'CONFIRMED' ORDER BY id DESC LIMIT 2").await?;
    p.orders.exec("DELETE FROM order_lines ORDER BY id LIMIT 1").await?;
    p.users.exec(&format!("UPDATE users SET email = 'changed{tag}@x.io' ORDER BY id LIMIT 1")).await?;
    Ok(())
}

async fn converges(p: &Pipeline, views: &Views) -> Result<()> {
    let want = p.expected().await?;
    ensure!(!want.is_empty(), "the workload wrote lines");
    eventually(DEADLINE, || async {
        let got = views.report().await?;
        ensure!(got == want, "report has {} rows, MySQL join {}", got.len(), want.len());
        Ok(())
    })
    .await
    .with_context(|| format!("the view's output:\n{}", views.output()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_of_the_joining_view_migrates_and_the_report_stays_exact() -> Result<()> {
    let p = Pipeline::start("migrate").await?;
    write(&p, "a").await?;
    let mut views = p.views("migrate")?;
    converges(&p, &views).await?;
    views.kill()?;

    // Back to the schema before migrations: the entity tables as they are, order_report joining them when read.
    let db = views.database.clone();
    for table in ["report_lines", "lines_by_order", "lines_by_product", "orders_by_user", "schema_migrations", "order_report"] {
        exec(&format!("DROP TABLE {db}.{table}")).await?;
    }
    let first = cdc_views::schema::migrations(&db).remove(0);
    let legacy = first.statements.iter().find(|s| s.contains(".order_report AS")).context("the first order_report")?;
    exec(legacy).await?;
    let want = p.expected().await?;
    ensure!(views.report().await? == want, "the joining view shows the report before the migration");

    // Changes while the old deployment is stopped, then the new view service starts on it.
    write(&p, "b").await?;
    p.catalog.exec("UPDATE products SET name = 'Renamed' ORDER BY id LIMIT 1").await?;
    views.restart()?;
    converges(&p, &views).await?;
    let versions: Vec<u32> =
        clickhouse().query(&format!("SELECT version FROM {db}.schema_migrations ORDER BY version")).fetch_all().await?;
    let last = cdc_views::schema::migrations(&db).last().map(|m| m.version).unwrap_or_default();
    ensure!(versions == (1..=last).collect::<Vec<_>>(), "recorded migrations {versions:?}");
    let query: String = clickhouse()
        .query("SELECT create_table_query FROM system.tables WHERE database = ? AND name = 'order_report'")
        .bind(&db)
        .fetch_one()
        .await?;
    ensure!(query.contains("report_lines") && !query.contains("argMax"), "order_report after the migration: {query}");
    let lines: u64 = clickhouse().query(&format!("SELECT count() FROM {db}.report_lines")).fetch_one().await?;
    ensure!(lines > 0, "report_lines was filled");

    // A restart applies nothing again.
    views.restart()?;
    write(&p, "c").await?;
    converges(&p, &views).await?;
    let count: u64 = clickhouse().query(&format!("SELECT count() FROM {db}.schema_migrations")).fetch_one().await?;
    ensure!(count == u64::from(last), "{count} migration records");
    drop(views);
    p.finish().await
}

/// Before, a dropped table failed every insert forever (the schema was created only at start).
#[tokio::test(flavor = "multi_thread")]
async fn a_table_dropped_under_a_running_view_is_recreated_and_refilled() -> Result<()> {
    let p = Pipeline::start("dropped").await?;
    write(&p, "a").await?;
    let views = p.views("dropped")?;
    converges(&p, &views).await?;
    let db = views.database.clone();
    exec(&format!("DROP TABLE {db}.report_lines")).await?;
    exec(&format!("DROP TABLE {db}.lines_by_product")).await?;
    // The next batch fails on the missing tables, which are recreated and refilled before it is retried.
    p.catalog.exec("UPDATE products SET name = 'After the drop' ORDER BY id LIMIT 1").await?;
    write(&p, "b").await?;
    converges(&p, &views).await?;
    ensure!(views.output().contains("recreating"), "the view says what it recreated:\n{}", views.output());
    drop(views);
    p.finish().await
}
