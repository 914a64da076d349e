//! Orders per second through the whole workflow (create -> CONFIRMED), with p50 and p99 latency.
//!
//! `scripts/stack up && cargo bench -p cdc-services --bench workflow`: the three services run in this process on
//! scratch databases of the stack's MariaDB servers, with a capture between them (as the tests do). Latency is read
//! from the orders' own history (`PENDING` and `CONFIRMED` times, both from the orders database's clock).
//!
//! Two phases: a steady rate (open loop, `BENCH_RATE` orders/s for `BENCH_SECONDS`), then a burst of `BENCH_BURST` orders from 16
//! concurrent clients for the throughput ceiling.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use common::Shop;
use mysql_async::prelude::*;
use serde_json::json;

const PRODUCTS: u64 = 20;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn place(http: reqwest::Client, url: String, user: u64, product: u64) -> Result<()> {
    let body = json!({"user_id": user, "lines": [{"product_id": product, "quantity": 1}]});
    let resp = http.post(url).json(&body).send().await?;
    let status = resp.status();
    ensure!(status.as_u16() == 201, "POST /orders: {status} {}", resp.text().await.unwrap_or_default());
    Ok(())
}

/// Waits until every order is decided; returns the creation-to-confirmation latencies in ms, sorted, and the span
/// from the first creation to the last confirmation.
async fn settle(shop: &Shop, from_id: u64, count: u64) -> Result<(Vec<f64>, f64)> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut conn = shop.sources.orders.pool.get_conn().await?;
    loop {
        let pending: Option<u64> = conn
            .exec_first("SELECT COUNT(*) FROM orders WHERE id > ? AND status = 'PENDING'", (from_id,))
            .await?;
        if pending == Some(0) {
            break;
        }
        ensure!(Instant::now() < deadline, "{pending:?} orders still PENDING");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(u64, f64)> = conn
        .exec(
            "SELECT o.id, TIMESTAMPDIFF(MICROSECOND, p.at, c.at) / 1000 FROM orders o \
             JOIN order_history p ON p.order_id = o.id AND p.status = 'PENDING' \
             JOIN order_history c ON c.order_id = o.id AND c.status = 'CONFIRMED' WHERE o.id > ?",
            (from_id,),
        )
        .await?;
    ensure!(rows.len() as u64 == count, "{} of {count} orders confirmed", rows.len());
    let span: Option<f64> = conn
        .exec_first(
            "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(h.at), MAX(h.at)) / 1e6 FROM order_history h \
             JOIN orders o ON o.id = h.order_id WHERE o.id > ?",
            (from_id,),
        )
        .await?;
    let mut ms: Vec<f64> = rows.into_iter().map(|r| r.1).collect();
    ms.sort_by(f64::total_cmp);
    Ok((ms, span.unwrap_or(0.0)))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn last_id(shop: &Shop) -> Result<u64> {
    Ok(shop.sources.orders.pool.get_conn().await?.query_first("SELECT COALESCE(MAX(id), 0) FROM orders").await?.unwrap_or(0))
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let rate = env_or("BENCH_RATE", 50);
        let seconds = env_or("BENCH_SECONDS", 20);
        let burst = env_or("BENCH_BURST", 2000);
        let shop = Shop::start("bench_workflow", |_, _| {}).await?;
        let user = shop.user("bench@example.com").await?;
        let mut products = Vec::new();
        for i in 0..PRODUCTS {
            products.push(shop.product(&format!("BENCH-{i}"), "1.00", 1_000_000).await?);
        }
        for &p in &products {
            shop.wait_known(user, p).await?;
        }

        // Warm-up, not measured: the first order creates the orders topic, which the catalog's consumer then joins.
        let url = format!("{}/orders", shop.orders.url);
        let from = last_id(&shop).await?;
        for &p in products.iter().take(5) {
            place(shop.http.clone(), url.clone(), user, p).await?;
        }
        settle(&shop, from, 5).await?;

        // Steady rate.
        let from = last_id(&shop).await?;
        let total = rate * seconds;
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut sent = tokio::task::JoinSet::new();
        for i in 0..total {
            tick.tick().await;
            sent.spawn(place(shop.http.clone(), url.clone(), user, products[(i % PRODUCTS) as usize]));
        }
        while let Some(r) = sent.join_next().await {
            r??;
        }
        let offered = total as f64 / started.elapsed().as_secs_f64();
        let (ms, _) = settle(&shop, from, total).await?;
        println!(
            "steady {offered:.0} orders/s offered for {seconds} s: {} orders, create -> CONFIRMED p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            ms.len(),
            pct(&ms, 0.5),
            pct(&ms, 0.99),
            ms[ms.len() - 1]
        );

        // Burst.
        let from = last_id(&shop).await?;
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..16_u64 {
            let (http, url, products) = (shop.http.clone(), url.clone(), products.clone());
            clients.spawn(async move {
                let mut i = c;
                while i < burst {
                    place(http.clone(), url.clone(), user, products[(i % PRODUCTS) as usize]).await?;
                    i += 16;
                }
                Ok::<(), anyhow::Error>(())
            });
        }
        while let Some(r) = clients.join_next().await {
            r??;
        }
        let (ms, span) = settle(&shop, from, burst).await?;
        println!(
            "burst of {burst} orders from 16 clients: {:.0} orders/s created to confirmed ({span:.1} s), p50 {:.0} ms, p99 {:.0} ms",
            burst as f64 / span,
            pct(&ms, 0.5),
            pct(&ms, 0.99)
        );
        shop.finish().await
    })
}
