//! No unit sold twice: a CONFIRMED order keeps its reservation through a catalog crash past the TTL, under many
//! concurrent orders racing cancellations and expiries, and reconciliation restores a reservation that was lost.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use cdc_services::Service;
use cdc_tests::eventually;
use common::{metric, Shop, Svc, DEADLINE};
use mysql_async::prelude::*;

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
    let warm_held = u64::from(decided(&shop, warm).await? == "CONFIRMED"); // CONFIRMED, or CANCELLED when the new topic was picked up after the timeout
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
    let pool = cdc_services::cli::connect(Service::Catalog, &shop.catalog.config.mysql_url).await?;
    let report = cdc_services::catalog::reconcile(&pool, &shop.catalog.config, &cdc_services::metrics::Metrics::new("catalog")).await?;
    assert_eq!(report.found["expired_reservation"], Vec::<u64>::new(), "{report:?}");
    assert_eq!(shop.reservation(id).await?.1["status"], "RESERVED");
    shop.stock_becomes(product, 4 - 1 - warm_held).await?;
    assert_eq!(shop.order_status(id, "CONFIRMED").await?["status"], "CONFIRMED");
    pool.disconnect().await?;
    shop.finish().await
}
