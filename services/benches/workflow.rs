//! Orders per second through the whole workflow (create -> decided: CONFIRMED or REJECTED), with latency
//! percentiles and where the time goes.
//!
//! `STACK_HOME=.stack cargo bench -p cdc-services --bench workflow` (after `scripts/stack up`): the three services
//! run in this process on scratch databases of the stack's MariaDB servers, with a capture between them (as the
//! tests do). Latency is read from the databases' own clocks: the order's `PENDING` and decision times
//! (`order_history`), split at the catalog's reservation time (`reservations.created_at`) into the two hops
//! orders -> catalog and catalog -> orders (each: binlog, capture, broker, consumer batch).
//!
//! Two phases: a steady open-loop rate (`BENCH_RATE` orders/s, default 500, for `BENCH_SECONDS`, default 30), then
//! a burst of `BENCH_BURST` orders (default 5000) from `BENCH_CLIENTS` concurrent clients (default 32) for the
//! throughput ceiling. The last lines are a summary.

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

/// Places an order; returns how long the orders API took to answer, in ms.
async fn place(http: reqwest::Client, url: String, user: u64, product: u64) -> Result<f64> {
    let body = json!({"user_id": user, "lines": [{"product_id": product, "quantity": 1}]});
    let started = Instant::now();
    let resp = http.post(url).json(&body).send().await?;
    let status = resp.status();
    ensure!(status.as_u16() == 201, "POST /orders: {status} {}", resp.text().await.unwrap_or_default());
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Latencies of the orders of one phase, in ms, each sorted.
struct Settled {
    /// Creation to decision.
    decided: Vec<f64>,
    /// Creation to the catalog's reservation.
    to_catalog: Vec<f64>,
    /// Reservation to decision.
    to_orders: Vec<f64>,
    /// From the first creation to the last decision, in s.
    span: f64,
}

/// Waits until every order after `from_id` is decided (`count` of them) and reads their latencies.
async fn settle(shop: &Shop, from_id: u64, count: u64) -> Result<Settled> {
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
    let rows: Vec<(u64, f64, i64)> = conn
        .exec(
            "SELECT o.id, TIMESTAMPDIFF(MICROSECOND, p.at, c.at) / 1000, \
             TIMESTAMPDIFF(MICROSECOND, '1970-01-01', p.at) FROM orders o \
             JOIN order_history p ON p.order_id = o.id AND p.status = 'PENDING' \
             JOIN order_history c ON c.order_id = o.id AND c.status IN ('CONFIRMED', 'REJECTED') WHERE o.id > ?",
            (from_id,),
        )
        .await?;
    ensure!(rows.len() as u64 == count, "{} of {count} orders decided", rows.len());
    let decided_at: std::collections::HashMap<u64, (f64, i64)> = rows.iter().map(|r| (r.0, (r.1, r.2))).collect();
    let reserved: Vec<(u64, i64)> = shop
        .sources
        .catalog
        .pool
        .get_conn()
        .await?
        .exec("SELECT order_id, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', created_at) FROM reservations WHERE order_id > ?", (from_id,))
        .await?;
    let (mut to_catalog, mut to_orders) = (Vec::new(), Vec::new());
    for (id, at) in reserved {
        if let Some(&(total, created)) = decided_at.get(&id) {
            let hop = (at - created) as f64 / 1000.0;
            to_catalog.push(hop);
            to_orders.push(total - hop);
        }
    }
    let span: Option<f64> = conn
        .exec_first(
            "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(h.at), MAX(h.at)) / 1e6 FROM order_history h \
             JOIN orders o ON o.id = h.order_id WHERE o.id > ? AND h.status <> 'CANCELLED'",
            (from_id,),
        )
        .await?;
    let mut decided: Vec<f64> = rows.into_iter().map(|r| r.1).collect();
    for v in [&mut decided, &mut to_catalog, &mut to_orders] {
        v.sort_by(f64::total_cmp);
    }
    Ok(Settled { decided, to_catalog, to_orders, span: span.unwrap_or(0.0) })
}

fn percentiles(sorted: &[f64]) -> String {
    if sorted.is_empty() {
        return "none".into();
    }
    format!(
        "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(sorted, 0.5),
        pct(sorted, 0.95),
        pct(sorted, 0.99),
        sorted[sorted.len() - 1]
    )
}

/// Consumer batches of a service so far: (batches, events).
async fn batches(svc: &common::Svc) -> Result<(f64, f64)> {
    let m = svc.metrics().await?;
    Ok((common::metric(&m, &["cdc_service_batch_events_count"]), common::metric(&m, &["cdc_service_batch_events_sum"])))
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
        let rate = env_or("BENCH_RATE", 500);
        let seconds = env_or("BENCH_SECONDS", 30);
        let burst = env_or("BENCH_BURST", 5000);
        let clients = env_or("BENCH_CLIENTS", 32);
        let shop = Shop::start("bench_workflow", |_, c| {
            // Measured orders must not time out while a backlog drains.
            c.pending_timeout = Duration::from_secs(600);
            c.reservation_ttl = Duration::from_secs(1200);
        })
        .await?;
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

        // Steady rate, open loop: an order every 1/rate s whatever the answers.
        let from = last_id(&shop).await?;
        let (catalog_before, orders_before) = (batches(&shop.catalog).await?, batches(&shop.orders).await?);
        let total = rate * seconds;
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut sent = tokio::task::JoinSet::new();
        for i in 0..total {
            tick.tick().await;
            sent.spawn(place(shop.http.clone(), url.clone(), user, products[(i % PRODUCTS) as usize]));
        }
        let mut api = Vec::new();
        while let Some(r) = sent.join_next().await {
            api.push(r??);
        }
        api.sort_by(f64::total_cmp);
        let offered = total as f64 / started.elapsed().as_secs_f64();
        let steady = settle(&shop, from, total).await?;
        let (catalog_after, orders_after) = (batches(&shop.catalog).await?, batches(&shop.orders).await?);
        let per_batch = |a: (f64, f64), b: (f64, f64)| (b.1 - a.1) / (b.0 - a.0).max(1.0);
        println!("steady: {total} orders at {offered:.0} orders/s offered for {seconds} s");
        println!("  create -> decided:          {}", percentiles(&steady.decided));
        println!("  create -> catalog reserved: {}", percentiles(&steady.to_catalog));
        println!("  reserved -> orders decided: {}", percentiles(&steady.to_orders));
        println!("  POST /orders answered:      {}", percentiles(&api));
        println!(
            "  events per consumer batch: catalog {:.1}, orders {:.1}",
            per_batch(catalog_before, catalog_after),
            per_batch(orders_before, orders_after)
        );

        // Burst: `clients` clients placing orders back to back.
        let from = last_id(&shop).await?;
        let started = Instant::now();
        let mut running = tokio::task::JoinSet::new();
        for c in 0..clients {
            let (http, url, products) = (shop.http.clone(), url.clone(), products.clone());
            running.spawn(async move {
                let mut i = c;
                while i < burst {
                    place(http.clone(), url.clone(), user, products[(i % PRODUCTS) as usize]).await?;
                    i += clients;
                }
                Ok::<(), anyhow::Error>(())
            });
        }
        while let Some(r) = running.join_next().await {
            r??;
        }
        let created = burst as f64 / started.elapsed().as_secs_f64();
        let b = settle(&shop, from, burst).await?;
        println!("burst: {burst} orders from {clients} clients, created at {created:.0} orders/s");
        println!("  create -> decided:          {}", percentiles(&b.decided));
        println!("  create -> catalog reserved: {}", percentiles(&b.to_catalog));
        println!("  reserved -> orders decided: {}", percentiles(&b.to_orders));
        println!("summary:");
        println!(
            "  steady {offered:.0} orders/s for {seconds} s: decision p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms (target p99 < 1000 ms: {})",
            pct(&steady.decided, 0.5),
            pct(&steady.decided, 0.95),
            pct(&steady.decided, 0.99),
            if pct(&steady.decided, 0.99) < 1000.0 { "met" } else { "missed" }
        );
        println!(
            "  burst of {burst}: {:.0} orders/s created to decided ({:.1} s), p99 {:.0} ms",
            burst as f64 / b.span,
            b.span,
            pct(&b.decided, 0.99)
        );
        shop.finish().await
    })
}
