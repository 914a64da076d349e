//! The order workflow end to end: services on scratch databases, the capture carrying every cross-service effect.

mod common;

use std::time::Duration;

use anyhow::Result;
use cdc_services::Service;
use common::{metric, Shop, Svc};
use mysql_async::prelude::*;
use serde_json::Value;

fn statuses(order: &Value) -> Vec<(String, String)> {
    order["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|t| (t["status"].as_str().unwrap().to_owned(), t["cause"].as_str().unwrap().to_owned()))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirm_reject_and_cancel() -> Result<()> {
    let shop = Shop::start("svc_flow", |_, _| {}).await?;
    let user = shop.user("ada@example.com").await?;
    let product = shop.product("HAMMER-1", "2.50", 5).await?;

    // Enough stock: confirmed, stock taken, priced from the orders service's copy of the catalog.
    let order = shop.order(user, &[(product, 2)]).await?;
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["total"], "5.00");
    assert_eq!(order["lines"][0]["unit_price"], "2.50");
    let id = order["id"].as_u64().unwrap();
    let confirmed = shop.order_status(id, "CONFIRMED").await?;
    assert_eq!(statuses(&confirmed), vec![pair("PENDING", "api"), pair("CONFIRMED", "reservation")]);
    let event = &confirmed["history"][1]["event"];
    assert_eq!(event["topic"], format!("{}.{}.reservations", shop.sources.prefix, shop.sources.catalog.name));
    assert!(event["pos"].as_u64().unwrap() > 0 && event["file"].as_str().unwrap().contains('.'), "{event}");
    assert_eq!(shop.stock(product).await?, 3);
    assert_eq!(shop.reservation(id).await?.1["status"], "RESERVED");

    // Too little stock: rejected with the reason, nothing taken.
    let big = shop.order(user, &[(product, 4)]).await?;
    let big_id = big["id"].as_u64().unwrap();
    let rejected = shop.order_status(big_id, "REJECTED").await?;
    let reason = rejected["history"][1]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("insufficient stock") && reason.contains("4 requested, 3 available"), "{reason}");
    assert_eq!(shop.stock(product).await?, 3);

    // Cancelling a confirmed order gives its stock back; a final order cannot be cancelled again.
    let (status, cancelled) = shop.post(&format!("{}/orders/{id}/cancel", shop.orders.url), Value::Null).await?;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    shop.stock_becomes(product, 5).await?;
    assert_eq!(shop.reservation(id).await?.1["status"], "RELEASED");
    let (status, body) = shop.post(&format!("{}/orders/{id}/cancel", shop.orders.url), Value::Null).await?;
    assert_eq!(status, 409, "{body}");
    let (status, _) = shop.post(&format!("{}/orders/{big_id}/cancel", shop.orders.url), Value::Null).await?;
    assert_eq!(status, 409);

    // Listing by user.
    let (_, list) = shop.call("GET", &format!("{}/orders?user_id={user}", shop.orders.url), None).await?;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let metrics = shop.orders.metrics().await?;
    assert!(metric(&metrics, &["cdc_orders_transitions_total", "CONFIRMED"]) >= 1.0, "{metrics}");
    assert!(metric(&metrics, &["cdc_orders_decision_seconds_count"]) >= 2.0, "{metrics}");
    shop.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_orders_time_out_and_reservations_expire() -> Result<()> {
    let mut shop = Shop::start("svc_timeout", |_, c| {
        c.pending_timeout = Duration::from_secs(3);
        c.reservation_ttl = Duration::from_secs(6);
    })
    .await?;
    let user = shop.user("bob@example.com").await?;
    let product = shop.product("SAW-1", "10.00", 4).await?;
    shop.wait_known(user, product).await?;

    // Without the catalog, an order stays PENDING until the timeout cancels it; once the catalog is back it
    // reserves from the PENDING event and releases on the CANCELLED one.
    shop.catalog.stop().await?;
    let order = shop.order(user, &[(product, 2)]).await?;
    let id = order["id"].as_u64().unwrap();
    let cancelled = shop.order_status(id, "CANCELLED").await?;
    assert_eq!(statuses(&cancelled), vec![pair("PENDING", "api"), pair("CANCELLED", "timeout")]);
    let config = shop.catalog.config.clone();
    shop.catalog = Svc::start(Service::Catalog, config).await?;
    common::eventually_json(|| shop.reservation(id), |r| r["status"] == "RELEASED").await?;
    shop.stock_becomes(product, 4).await?;

    // Without the orders service, a reservation whose order stays PENDING expires and gives its stock back. The
    // order is written by SQL here, as a legacy system would; the orders service, once back, cancels it.
    shop.orders.stop().await?;
    let lines = format!(r#"[{{"product_id":{product},"quantity":3}}]"#);
    let mut conn = shop.sources.orders.pool.get_conn().await?;
    conn.exec_drop("INSERT INTO orders (user_id, status, total, items) VALUES (?, 'PENDING', '30.00', ?)", (user, lines)).await?;
    let id: u64 = conn.query_first("SELECT LAST_INSERT_ID()").await?.unwrap();
    conn.exec_drop("INSERT INTO order_lines (order_id, product_id, quantity, unit_price) VALUES (?, ?, 3, '10.00')", (id, product)).await?;
    drop(conn);
    common::eventually_json(|| shop.reservation(id), |r| r["status"] == "RESERVED").await?;
    common::eventually_json(|| shop.reservation(id), |r| r["status"] == "EXPIRED").await?;
    shop.stock_becomes(product, 4).await?;
    let config = shop.orders.config.clone();
    shop.orders = Svc::start(Service::Orders, config).await?;
    let cancelled = shop.order_status(id, "CANCELLED").await?;
    assert!(!statuses(&cancelled).iter().any(|(s, _)| s == "CONFIRMED"), "{cancelled}");
    let metrics = shop.catalog.metrics().await?;
    assert!(metric(&metrics, &["cdc_reconcile_repaired_total", "expired_reservation"]) >= 1.0, "{metrics}");
    shop.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_stopped_between_its_commits_does_not_reserve_twice() -> Result<()> {
    let mut shop = Shop::start("svc_redeliver", |service, c| {
        if service == Service::Catalog {
            c.stop_before_offset_commit = Some(1);
        }
    })
    .await?;
    let user = shop.user("cy@example.com").await?;
    let product = shop.product("DRILL-1", "99.90", 10).await?;
    let order = shop.order(user, &[(product, 3)]).await?;
    let id = order["id"].as_u64().unwrap();
    // The catalog reserved (database committed) and stopped before committing the offset.
    common::eventually_json(|| shop.reservation(id), |r| r["status"] == "RESERVED").await?;
    shop.catalog.stop().await?;
    let stock: Option<u64> =
        shop.sources.catalog.pool.get_conn().await?.exec_first("SELECT stock FROM products WHERE id = ?", (product,)).await?;
    assert_eq!(stock, Some(7));
    let mut config = shop.catalog.config.clone();
    config.stop_before_offset_commit = None;
    shop.catalog = Svc::start(Service::Catalog, config).await?;
    // Redelivered, recognised, skipped.
    cdc_tests::eventually(common::DEADLINE, || async {
        let m = shop.catalog.metrics().await?;
        let dup = metric(&m, &["cdc_service_events_duplicate_total"]);
        if dup >= 1.0 { Ok(()) } else { anyhow::bail!("no duplicate yet:\n{m}") }
    })
    .await?;
    shop.order_status(id, "CONFIRMED").await?;
    assert_eq!(shop.stock(product).await?, 7);
    shop.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_orders_for_ten_units() -> Result<()> {
    let shop = Shop::start("svc_race", |_, _| {}).await?;
    let user = shop.user("dee@example.com").await?;
    let product = shop.product("NAIL-1", "0.05", 10).await?;
    shop.wait_known(user, product).await?;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, url) = (shop.http.clone(), format!("{}/orders", shop.orders.url));
        let body = serde_json::json!({"user_id": user, "lines": [{"product_id": product, "quantity": 1}]}).to_string();
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).header("content-type", "application/json").body(body).send().await?;
            anyhow::ensure!(r.status().as_u16() == 201, "{}", r.status());
            let v: Value = r.json().await?;
            Ok::<u64, anyhow::Error>(v["id"].as_u64().unwrap())
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await??);
    }
    let mut confirmed = 0;
    for id in &ids {
        let order = cdc_tests::eventually(common::DEADLINE, || async {
            let (_, o) = shop.call("GET", &format!("{}/orders/{id}", shop.orders.url), None).await?;
            if o["status"] == "PENDING" { anyhow::bail!("still pending") } else { Ok(o) }
        })
        .await?;
        match order["status"].as_str().unwrap() {
            "CONFIRMED" => confirmed += 1,
            "REJECTED" => {}
            other => panic!("order {id} is {other}"),
        }
    }
    assert_eq!(confirmed, 10);
    assert_eq!(shop.stock(product).await?, 0);
    shop.finish().await
}
