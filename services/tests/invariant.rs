//! No unit sold twice: a CONFIRMED order keeps its reservation through a catalog crash past the TTL, under many
//! concurrent orders racing cancellations and expiries, and reconciliation restores a reservation that was lost.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use cdc_services::Service;
use cdc_tests::eventually;
use common::{Shop, Svc, DEADLINE};
use mysql_async::prelude::*;
use serde_json::Value;

/// The catalog's view of one order: its known status, and how far the orders stream is applied past its TTL.
async fn catalog_knows(shop: &Shop, order: u64) -> Result<(String, i64)> {
    let mut conn = shop.sources.catalog.pool.get_conn().await?;
    let known: Option<(String, Option<i64>)> =
        conn.exec_first("SELECT status, pending_since_ms FROM known_orders WHERE id = ?", (order,)).await?;
    let covered: Option<i64> = conn.query_first("SELECT MAX(covered_ms) FROM known_progress").await?.flatten();
    let (status, since) = known.unwrap_or_else(|| ("unknown".into(), None));
    let ttl = shop.catalog.config.reservation_ttl.as_millis() as i64;
    Ok((status, covered.unwrap_or(0) - since.unwrap_or(i64::MAX / 2) - ttl))
}

/// Waits until the order is no longer PENDING; returns its status.
async fn decided(shop: &Shop, id: u64) -> Result<String> {
    eventually(DEADLINE, || async {
        let (_, o) = shop.call("GET", &format!("{}/orders/{id}", shop.orders.url), None).await?;
        match o["status"].as_str() {
            Some("PENDING") | None => bail!("order {id} is {}", o["status"]),
            Some(s) => Ok(s.to_owned()),
        }
    })
    .await
}

/// Guards against the catalog expiring the reservation of a CONFIRMED order. Stopped right after reserving (its
/// database commit done, its offset not) and started again after the TTL, it used to expire the reservation at its
/// first reconciliation pass, before its consumer had applied the CONFIRMED event, and give the sold unit back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catalog_back_after_the_ttl_keeps_the_unit_of_a_confirmed_order() -> Result<()> {
    let mut shop = Shop::start("svc_crash", |_, c| {
        c.pending_timeout = Duration::from_secs(3);
        c.reservation_ttl = Duration::from_secs(6);
    })
    .await?;
    let user = shop.user("crash@example.com").await?;
    let product = shop.product("CRASH-1", "5.00", 4).await?;
    shop.wait_known(user, product).await?;
    // A first order, so that every topic exists and is assigned before the timeouts count.
    let warm = shop.order(user, &[(product, 1)]).await?["id"].as_u64().unwrap();
    common::eventually_json(|| shop.reservation(warm), |r| r["status"].is_string()).await?;
    let warm_status = decided(&shop, warm).await?; // CONFIRMED, or CANCELLED when the new topic was picked up after the timeout
    let warm_held = u64::from(warm_status == "CONFIRMED");
    // The catalog has applied the warm order's last change, so the first event the restarted catalog applies (and
    // then stops before committing its offset) is the next order's, not that one.
    eventually(DEADLINE, || async {
        let (status, _) = catalog_knows(&shop, warm).await?;
        if status == warm_status { Ok(()) } else { bail!("the catalog knows the warm order as {status}, not {warm_status}") }
    })
    .await?;
    shop.catalog.stop().await?;
    let mut config = shop.catalog.config.clone();
    config.stop_before_offset_commit = Some(1);
    shop.catalog = Svc::start(Service::Catalog, config).await?;
    let id = shop.order(user, &[(product, 1)]).await?["id"].as_u64().unwrap();
    common::eventually_json(|| shop.reservation(id), |r| r["status"] == "RESERVED").await?;
    shop.catalog.stop().await?;
    shop.order_status(id, "CONFIRMED").await?;
    // Past the TTL in the catalog's clock.
    eventually(DEADLINE, || async {
        let past: Option<bool> = shop
            .sources
            .catalog
            .pool
            .get_conn()
            .await?
            .exec_first("SELECT expires_at < NOW(3) - INTERVAL 1 SECOND FROM reservations WHERE order_id = ?", (id,))
            .await?;
        if past == Some(true) { Ok(()) } else { bail!("not past the TTL yet") }
    })
    .await?;
    let mut config = shop.catalog.config.clone();
    config.stop_before_offset_commit = None;
    shop.catalog = Svc::start(Service::Catalog, config).await?;
    // Reconciliation runs every 200 ms from the start, while the consumer joins its group and catches up: the
    // reservation stays held until the catalog knows CONFIRMED and has applied the orders stream past the TTL.
    eventually(DEADLINE, || async {
        let (_, r) = shop.reservation(id).await?;
        assert_eq!(r["status"], "RESERVED", "the reservation of a CONFIRMED order was given up: {r}");
        let (status, past_ttl_ms) = catalog_knows(&shop, id).await?;
        if status == "CONFIRMED" && past_ttl_ms > 0 { Ok(()) } else { bail!("catalog knows {status}, {past_ttl_ms} ms past the TTL") }
    })
    .await?;
    let pool = cdc_services::config::connect(Service::Catalog, &shop.catalog.config.mysql_url).await?;
    let report = cdc_services::catalog::reconcile(&pool, &shop.catalog.config, &cdc_services::metrics::Metrics::new("catalog")).await?;
    assert_eq!(report.found["expired_reservation"], Vec::<u64>::new(), "{report:?}");
    assert_eq!(shop.reservation(id).await?.1["status"], "RESERVED");
    shop.stock_becomes(product, 4 - 1 - warm_held).await?;
    assert_eq!(shop.order_status(id, "CONFIRMED").await?["status"], "CONFIRMED");
    pool.disconnect().await?;
    shop.finish().await
}

/// 200 orders over four products with too little stock, a third of them cancelled at random moments, 50 of them
/// written by SQL while the orders service is down and the products are restocked, so that their reservations
/// expire (some cancelled by SQL while expiring). Afterwards every order is decided, and per product: the stock
/// ever put in equals the stock plus the held reservations, the held units are exactly the CONFIRMED orders' units,
/// and those never exceed the stock put in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_orders_racing_cancellations_and_expiries_never_oversell() -> Result<()> {
    use rand::Rng;
    const INITIAL: u64 = 20;
    const ADDED: u64 = 15;
    let mut shop = Shop::start("svc_oversell", |_, c| {
        c.pending_timeout = Duration::from_secs(5);
        c.reservation_ttl = Duration::from_secs(8);
    })
    .await?;
    let user = shop.user("many@example.com").await?;
    let mut products = Vec::new();
    for i in 0..4 {
        let p = shop.product(&format!("MANY-{i}"), "1.00", INITIAL as u32).await?;
        shop.wait_known(user, p).await?;
        products.push(p);
    }
    let random_lines = |rng: &mut rand::rngs::ThreadRng| -> Vec<(u64, u32)> {
        let first = rng.random_range(0..products.len());
        let mut lines = vec![(products[first], rng.random_range(1..=3))];
        if rng.random_bool(0.3) {
            lines.push((products[(first + 1) % products.len()], rng.random_range(1..=2)));
        }
        lines
    };
    let mut placed: BTreeMap<u64, Vec<(u64, u32)>> = BTreeMap::new();
    // A first order, so that every topic exists and is assigned before the timeouts count.
    let warm = shop.order(user, &[(products[0], 1)]).await?["id"].as_u64().unwrap();
    common::eventually_json(|| shop.reservation(warm), |r| r["status"].is_string()).await?;
    decided(&shop, warm).await?;
    placed.insert(warm, vec![(products[0], 1)]);

    // 150 through the API, a third cancelled 0-800 ms after they were placed.
    let mut tasks = Vec::new();
    for _ in 0..150 {
        let lines = random_lines(&mut rand::rng());
        let cancel_after = rand::rng().random_bool(0.33).then(|| Duration::from_millis(rand::rng().random_range(0..800)));
        let (http, url) = (shop.http.clone(), shop.orders.url.clone());
        tasks.push(tokio::spawn(async move {
            let body: Vec<Value> = lines.iter().map(|(p, q)| serde_json::json!({"product_id": p, "quantity": q})).collect();
            let body = serde_json::json!({"user_id": user, "lines": body}).to_string();
            let r = http.post(format!("{url}/orders")).header("content-type", "application/json").body(body).send().await?;
            anyhow::ensure!(r.status().as_u16() == 201, "POST /orders: {}", r.status());
            let id = r.json::<Value>().await?["id"].as_u64().unwrap();
            if let Some(after) = cancel_after {
                tokio::time::sleep(after).await; // the race itself, not a wait for a result
                let r = http.post(format!("{url}/orders/{id}/cancel")).header("content-type", "application/json").send().await?;
                anyhow::ensure!([200, 409].contains(&r.status().as_u16()), "cancel: {}", r.status());
            }
            Ok::<_, anyhow::Error>((id, lines))
        }));
    }
    for t in tasks {
        let (id, lines) = t.await??;
        placed.insert(id, lines);
    }

    // 50 by SQL while the orders service is down: their reservations expire; some are cancelled meanwhile. The
    // stock added first lets at least ADDED / 3 of them reserve (an order takes at most 3 units of a product),
    // whatever the API orders left; every unit reserved while the orders service is down can only expire.
    shop.orders.stop().await?;
    for &p in &products {
        let url = format!("{}/products/{p}/stock-adjustments", shop.catalog.url);
        let (status, entry) = shop.post(&url, serde_json::json!({"delta": ADDED, "actor": "test", "reason": "restock"})).await?;
        anyhow::ensure!(status == 200, "stock adjustment: {status} {entry}");
    }
    let mut conn = shop.sources.orders.pool.get_conn().await?;
    let mut sql_cancels = Vec::new();
    for _ in 0..50 {
        let lines = random_lines(&mut rand::rng());
        let items: Vec<Value> = lines.iter().map(|(p, q)| serde_json::json!({"product_id": p, "quantity": q})).collect();
        conn.exec_drop("INSERT INTO orders (user_id, status, total, items) VALUES (?, 'PENDING', '1.00', ?)", (user, Value::from(items).to_string()))
            .await?;
        let id: u64 = conn.query_first("SELECT LAST_INSERT_ID()").await?.unwrap();
        for (p, q) in &lines {
            conn.exec_drop("INSERT INTO order_lines (order_id, product_id, quantity, unit_price) VALUES (?, ?, ?, '1.00')", (id, p, q))
                .await?;
        }
        if rand::rng().random_bool(0.3) {
            sql_cancels.push(id);
        }
        placed.insert(id, lines);
    }
    drop(conn);
    let catalog = shop.sources.catalog.pool.clone();
    let expired = eventually(DEADLINE, || async {
        let n: Option<u64> = catalog.get_conn().await?.query_first("SELECT COUNT(*) FROM reservations WHERE status = 'EXPIRED'").await?;
        match n {
            Some(n) if n >= ADDED / 3 => Ok(n),
            n => bail!("{n:?} reservations expired"),
        }
    })
    .await?;
    let mut conn = shop.sources.orders.pool.get_conn().await?;
    for id in &sql_cancels {
        conn.exec_drop("UPDATE orders SET status = 'CANCELLED' WHERE id = ? AND status = 'PENDING'", (id,)).await?;
    }
    drop(conn);
    let config = shop.orders.config.clone();
    shop.orders = Svc::start(Service::Orders, config).await?;

    // Every order decided, and the catalog agrees with each: held exactly for the CONFIRMED ones.
    let ids: Vec<String> = placed.keys().map(u64::to_string).collect();
    let statuses = eventually(DEADLINE, || async {
        let statuses: BTreeMap<u64, String> = shop
            .sources
            .orders
            .pool
            .get_conn()
            .await?
            .query(format!("SELECT id, CAST(status AS CHAR) FROM orders WHERE id IN ({})", ids.join(",")))
            .await?
            .into_iter()
            .collect();
        let held: BTreeMap<u64, String> = catalog
            .get_conn()
            .await?
            .query(format!("SELECT order_id, CAST(status AS CHAR) FROM reservations WHERE order_id IN ({})", ids.join(",")))
            .await?
            .into_iter()
            .collect();
        for id in placed.keys() {
            let (status, reservation) = (statuses.get(id).map_or("missing", String::as_str), held.get(id).map(String::as_str));
            if status == "PENDING" || (status == "CONFIRMED") != (reservation == Some("RESERVED")) {
                bail!("order {id} is {status} with reservation {reservation:?}");
            }
        }
        Ok(statuses)
    })
    .await?;
    let count = |s: &str| statuses.values().filter(|v| *v == s).count();
    eprintln!(
        "orders: {} confirmed, {} rejected, {} cancelled; {expired} reservations expired",
        count("CONFIRMED"),
        count("REJECTED"),
        count("CANCELLED")
    );
    assert!(count("CONFIRMED") > 0 && count("REJECTED") > 0 && count("CANCELLED") > 0, "{statuses:?}");
    for &product in &products {
        let stock = shop.stock(product).await?;
        let held_units: u64 = catalog
            .get_conn()
            .await?
            .exec_first(
                "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS UNSIGNED) FROM reservation_lines l \
                 JOIN reservations r ON r.order_id = l.order_id WHERE r.status = 'RESERVED' AND l.product_id = ?",
                (product,),
            )
            .await?
            .unwrap_or(0);
        let sold: u64 = placed
            .iter()
            .filter(|(id, _)| statuses[*id] == "CONFIRMED")
            .flat_map(|(_, lines)| lines.iter().filter(|(p, _)| *p == product).map(|(_, q)| u64::from(*q)))
            .sum();
        assert_eq!(stock + held_units, INITIAL + ADDED, "product {product}: stock {stock} + held {held_units}");
        assert_eq!(sold, held_units, "product {product}: CONFIRMED units vs held units");
        assert!(sold <= INITIAL + ADDED, "product {product} oversold: {sold}");
    }
    shop.finish().await
}
