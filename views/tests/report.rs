//! The report against the real local stack: exact under a random workload, a kill of the view service, a replay
//! into an empty database, and a product rename referenced by many lines.

mod common;

use std::time::Instant;

use anyhow::{ensure, Result};
use cdc_tests::eventually;
use common::{Pipeline, ReportRow, DEADLINE};
use mysql_async::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random inserts, updates and deletes across the three databases, including renames, NULL countries, deleted
/// users and products referenced by lines, deleted orders and lines, and lines of products that never existed.
async fn workload(p: &Pipeline, rng: &mut StdRng, steps: usize, tag: &str) -> Result<()> {
    let mut users = p.users.pool.get_conn().await?;
    let mut catalog = p.catalog.pool.get_conn().await?;
    let mut orders = p.orders.pool.get_conn().await?;
    for step in 0..steps {
        match rng.random_range(0..12) {
            0 => {
                let country = if rng.random_bool(0.3) { "NULL".to_string() } else { format!("'{}'", ["DE", "FR", "US"][rng.random_range(0..3)]) };
                users
                    .query_drop(format!(
                        "INSERT INTO users (email, name, country) VALUES ('u{tag}{step}@x.io', 'User {step}', {country})"
                    ))
                    .await?
            }
            1 => users.query_drop(format!("UPDATE users SET email = CONCAT('e{tag}{step}-', id, '@x.io'), name = 'Renamed {step}' ORDER BY RAND() LIMIT 1")).await?,
            2 => users.query_drop("UPDATE users SET country = IF(country IS NULL, 'IT', NULL) ORDER BY RAND() LIMIT 1").await?,
            3 if rng.random_bool(0.3) => users.query_drop("DELETE FROM users ORDER BY RAND() LIMIT 1").await?,
            4 => {
                catalog
                    .query_drop(format!(
                        "INSERT INTO products (sku, name, category, price, stock) VALUES ('s{tag}{step}', 'P {step}', 'cat{}', {}.{:02}, 10)",
                        rng.random_range(0..4),
                        rng.random_range(1..100),
                        rng.random_range(0..100)
                    ))
                    .await?
            }
            5 => catalog.query_drop(format!("UPDATE products SET name = 'Renamed P {step}', category = 'cat9' ORDER BY RAND() LIMIT 1")).await?,
            6 if rng.random_bool(0.3) => catalog.query_drop("DELETE FROM products ORDER BY RAND() LIMIT 1").await?,
            7 | 8 => {
                let user: u64 = rng.random_range(1..(step as u64 / 4 + 3));
                orders
                    .query_drop(format!(
                        "START TRANSACTION; INSERT INTO orders (user_id, status, total) VALUES ({user}, 'PENDING', 0);
                         SET @o = LAST_INSERT_ID();
                         INSERT INTO order_lines (order_id, product_id, quantity, unit_price) VALUES
                           (@o, {}, {}, 9.99), (@o, {}, {}, 0.50);
                         COMMIT;",
                        rng.random_range(1..(step as u64 / 4 + 3)),
                        rng.random_range(1..5),
                        rng.random_range(1..(step as u64 / 4 + 3)),
                        rng.random_range(1..5)
                    ))
                    .await?
            }
            9 => orders.query_drop("UPDATE orders SET status = ELT(1 + FLOOR(RAND() * 4), 'PENDING', 'CONFIRMED', 'REJECTED', 'CANCELLED') ORDER BY RAND() LIMIT 1").await?,
            10 => orders.query_drop("UPDATE order_lines SET quantity = quantity + 1, unit_price = unit_price + 1 ORDER BY RAND() LIMIT 1").await?,
            11 if rng.random_bool(0.3) => {
                if rng.random_bool(0.5) {
                    orders.query_drop("DELETE FROM orders ORDER BY RAND() LIMIT 1").await?
                } else {
                    orders.query_drop("DELETE FROM order_lines ORDER BY RAND() LIMIT 1").await?
                }
            }
            _ => {}
        }
    }
    Ok(())
}

async fn converges(p: &Pipeline, views: &common::Views) -> Result<Vec<ReportRow>> {
    let want = p.expected().await?;
    eventually(DEADLINE, || async {
        let got = views.report().await?;
        ensure!(got == want, "report has {} rows, MySQL join {}; first difference: {:?}", got.len(), want.len(),
            got.iter().zip(&want).find(|(g, w)| g != w));
        Ok(())
    })
    .await?;
    Ok(want)
}

#[tokio::test(flavor = "multi_thread")]
async fn random_workload_matches_the_mysql_join_across_a_kill_and_a_replay() -> Result<()> {
    let p = Pipeline::start("report").await?;
    let mut rng = StdRng::seed_from_u64(42);
    // Existing rows before anything runs: they arrive through the snapshot.
    workload(&p, &mut rng, 150, "a").await?;
    let mut views = p.views("report_a")?;
    workload(&p, &mut rng, 300, "b").await?;
    let rows = converges(&p, &views).await?;
    assert!(rows.len() > 50, "the workload produced a report worth comparing: {}", rows.len());
    assert!(rows.iter().any(|r| r.user_email.is_none()), "some lines have no user");
    assert!(rows.iter().any(|r| r.product_name.is_none()), "some lines have no product");

    // Kill the view service mid-stream, keep writing, restart it.
    let writer = {
        let mut rng = StdRng::seed_from_u64(7);
        let p = &p;
        async move { workload(p, &mut rng, 300, "c").await }
    };
    let killer = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        views.kill()?;
        anyhow::Ok(())
    };
    let (w, k) = tokio::join!(writer, killer);
    w?;
    k?;
    views.restart()?;
    converges(&p, &views).await?;

    // Replay every topic from the beginning into an empty database.
    let replay = p.views("report_replay")?;
    let rows = converges(&p, &replay).await?;
    println!("report of {} lines equal to the MySQL join after a kill and after a replay", rows.len());
    drop(views);
    drop(replay);
    p.finish().await
}

/// A TRUNCATE of a source table reaches every line (recomputed server-side, one statement per range of line ids).
#[tokio::test(flavor = "multi_thread")]
async fn a_truncate_of_the_products_empties_their_columns_and_newer_rows_show() -> Result<()> {
    let p = Pipeline::start("truncate").await?;
    let mut rng = StdRng::seed_from_u64(11);
    workload(&p, &mut rng, 150, "a").await?;
    let views = p.views("truncate")?;
    let rows = converges(&p, &views).await?;
    ensure!(rows.iter().any(|r| r.product_name.is_some()), "some lines have a product");
    p.catalog.exec("TRUNCATE TABLE products").await?;
    let rows = converges(&p, &views).await?;
    ensure!(!rows.is_empty() && rows.iter().all(|r| r.product_name.is_none()), "after the truncate no line has a product");
    // A product inserted after the truncate shows in the lines that reference its id.
    let id = rows[0].product_id;
    p.catalog.exec(&format!("INSERT INTO products (id, sku, name, category, price, stock) VALUES ({id}, 'T', 'After', 'c', 1.00, 1)")).await?;
    let rows = converges(&p, &views).await?;
    let after = rows.iter().filter(|r| r.product_name.as_deref() == Some("After")).count();
    ensure!(after > 0, "no line shows the product inserted after the truncate");
    println!("after a truncate of products: {} lines, {after} show the product inserted after it", rows.len());
    drop(views);
    p.finish().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_product_rename_reaches_every_joined_row() -> Result<()> {
    let p = Pipeline::start("rename").await?;
    p.users.exec("INSERT INTO users (email, name) VALUES ('a@x.io', 'A')").await?;
    p.catalog.exec("INSERT INTO products (sku, name, category, price, stock) VALUES ('S', 'Old name', 'c', 1.00, 1)").await?;
    let mut conn = p.orders.pool.get_conn().await?;
    for chunk in 0..10 {
        conn.query_drop("INSERT INTO orders (user_id, status, total) VALUES (1, 'CONFIRMED', 1000)").await?;
        let values: Vec<String> = (0..1000).map(|_| format!("({}, 1, 1, 1.00)", chunk + 1)).collect();
        conn.query_drop(format!("INSERT INTO order_lines (order_id, product_id, quantity, unit_price) VALUES {}", values.join(","))).await?;
    }
    // Pool::disconnect in finish() waits for every connection to come back.
    drop(conn);
    let views = p.views("rename")?;
    converges(&p, &views).await?;
    let began = Instant::now();
    p.catalog.exec("UPDATE products SET name = 'New name' WHERE id = 1").await?;
    eventually(DEADLINE, || async {
        let rows = views.report().await?;
        ensure!(rows.len() == 10_000 && rows.iter().all(|r| r.product_name.as_deref() == Some("New name")), "not yet");
        Ok(())
    })
    .await?;
    println!("a rename of a product referenced by 10,000 lines: visible in all of them after {:?} (10,000 rows and 10,000 cancel rows recomputed server-side)", began.elapsed());
    drop(views);
    p.finish().await
}
