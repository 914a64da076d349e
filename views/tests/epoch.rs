//! The report after `RESET MASTER` on a source server and the documented re-snapshot: later changes still show.
//!
//! RESET MASTER changes global server state, so this binary runs its whole pipeline (three MariaDB servers, broker,
//! ClickHouse, the capture in-process and a view process) on a private stack: it points the harness at that stack
//! before anything asks for one. It holds this one test, since the harness keeps one stack per process.

mod common;

use anyhow::{ensure, Context, Result};
use cdc_tests::{eventually, free_port_base, unique_name, StackCommand};
use common::{Pipeline, DEADLINE};
use mysql_async::prelude::*;

/// Regression: after RESET MASTER, binlog positions restarted at file 1 and every later change of a row had a lower
/// version than the one in ClickHouse, so the report kept the old row forever.
#[tokio::test(flavor = "multi_thread")]
async fn the_report_shows_updates_after_reset_master_and_a_resnapshot() -> Result<()> {
    let home = std::env::temp_dir().join(unique_name("views_epoch_stack"));
    let base = free_port_base();
    // The harness reads these on its first use of the stack (tools and the broker binary are installed once per
    // machine and reused); no project processes run on the private stack, the test starts its own.
    std::env::set_var("STACK_HOME", &home);
    std::env::set_var("STACK_PORT_BASE", base.to_string());
    std::env::set_var("STACK_APPS", "");
    let result = scenario().await;
    let _ = StackCommand::private(&home, base).run(&["down", "--wipe"]);
    result
}

async fn scenario() -> Result<()> {
    let mut p = Pipeline::start("epoch").await?;
    let mut users = p.users.pool.get_conn().await?;
    // Some binlog files first, so that positions after the reset (file 1) are clearly lower than before.
    for _ in 0..3 {
        users.query_drop("FLUSH BINARY LOGS").await?;
    }
    users.query_drop("INSERT INTO users (email, name) VALUES ('a@x.io', 'Before')").await?;
    p.catalog.exec("INSERT INTO products (sku, name, category, price, stock) VALUES ('S', 'P', 'c', 1.00, 1)").await?;
    p.orders.exec("INSERT INTO orders (user_id, status, total) VALUES (1, 'CONFIRMED', 100)").await?;
    p.orders.exec("INSERT INTO order_lines (order_id, product_id, quantity, unit_price) VALUES (1, 1, 1, 1.00)").await?;
    let views = p.views("epoch")?;
    let name = |want: &'static str| {
        let views = &views;
        async move {
            eventually(DEADLINE, || async {
                let rows = views.report().await?;
                ensure!(rows.len() == 1 && rows[0].user_name.as_deref() == Some(want), "report: {rows:?}");
                Ok(())
            })
            .await
        }
    };
    name("Before").await?;
    users.query_drop("UPDATE users SET name = 'Streamed' WHERE id = 1").await?;
    name("Streamed").await?;

    // The capture goes down, the server's binlog is reset, a change happens meanwhile.
    p.kill_capture().await;
    users.query_drop("RESET MASTER").await?;
    users.query_drop("UPDATE users SET name = 'During' WHERE id = 1").await?;
    // The documented re-snapshot: move the source's checkpoint away, keep its epoch file.
    let state = p.dir.join("capture-state");
    ensure!(state.join("users.epoch").exists(), "the epoch file is there");
    std::fs::rename(state.join("users.json"), p.dir.join("users.json.before-reset")).context("moving the checkpoint")?;
    p.restart_capture();
    name("During").await?;
    users.query_drop("UPDATE users SET name = 'After' WHERE id = 1").await?;
    name("After").await?;
    let epoch: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(state.join("users.epoch"))?)?;
    ensure!(epoch["epoch"].as_u64() > Some(0), "the re-snapshot raised the epoch: {epoch}");
    println!("report shows the changes after RESET MASTER and a re-snapshot; users epoch file: {epoch}");
    drop(users);
    drop(views);
    p.finish().await
}
