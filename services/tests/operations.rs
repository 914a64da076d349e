//! Operator commands with their audit rows, reconciliation repairing a CONFIRMED order without stock, and the HTTP
//! layers (cross-site refusal, request timeout, bounded metric labels).

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cdc_services::Service;
use cdc_tests::eventually;
use common::{metric, Shop, DEADLINE};
use mysql_async::prelude::*;
use serde_json::{json, Value};

/// The audit rows of `subject` in `db`: (actor, reason, action, before, after).
async fn audit(db: &cdc_tests::ScratchDb, subject: &str) -> Result<Vec<(String, String, String, Value, Value)>> {
    let rows: Vec<(String, String, String, String, String)> = db
        .pool
        .get_conn()
        .await?
        .exec("SELECT actor, reason, action, before_state, after_state FROM operator_audit WHERE subject = ? ORDER BY id", (subject,))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(a, r, w, b, f)| (a, r, w, serde_json::from_str(&b).unwrap(), serde_json::from_str(&f).unwrap()))
        .collect())
}

/// Runs a service binary's subcommand; returns the exit status, stdout and stderr.
fn command(service: Service, url: &str, args: &[&str]) -> Result<(bool, String, String)> {
    let binary = match service {
        Service::Orders => env!("CARGO_BIN_EXE_orders"),
        _ => env!("CARGO_BIN_EXE_catalog"),
    };
    let out = std::process::Command::new(binary)
        .args(["--mysql-url", url])
        .args(args)
        .output()?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

async fn release(shop: &Shop, order: u64, body: Value) -> Result<(u16, Value)> {
    shop.post(&format!("{}/reservations/{order}/release", shop.catalog.url), body).await
}

async fn sql(db: &cdc_tests::ScratchDb, statement: &str) -> Result<()> {
    db.pool.get_conn().await?.query_drop(statement).await?;
    Ok(())
}

/// The state the old expiry left behind (a CONFIRMED order whose unit was given back) is repaired: re-reserved when
/// the stock allows; else flagged for an operator until the operator adds stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciliation_re_reserves_a_confirmed_order_or_flags_it_until_stock_is_added() -> Result<()> {
    let shop = Shop::start("svc_repair", |_, _| {}).await?;
    let user = shop.user("rep@example.com").await?;
    let product = shop.product("REP-1", "3.00", 5).await?;
    shop.wait_known(user, product).await?;
    let a = shop.order(user, &[(product, 2)]).await?["id"].as_u64().unwrap();
    let b = shop.order(user, &[(product, 1)]).await?["id"].as_u64().unwrap();
    shop.order_status(a, "CONFIRMED").await?;
    shop.order_status(b, "CONFIRMED").await?;
    shop.stock_becomes(product, 2).await?;

    // A's reservation lost and its units given back: re-reserved.
    sql(&shop.sources.catalog, &format!(
        "START TRANSACTION; UPDATE reservations SET status = 'EXPIRED' WHERE order_id = {a}; \
         UPDATE products SET stock = stock + 2 WHERE id = {product}; COMMIT"
    ))
    .await?;
    common::eventually_json(|| shop.reservation(a), |r| r["status"] == "RESERVED").await?;
    assert_eq!(shop.stock(product).await?, 2);
    let m = shop.catalog.metrics().await?;
    assert!(metric(&m, &["cdc_reconcile_repaired_total", "confirmed_without_reservation"]) >= 1.0, "{m}");

    // B's reservation lost and its unit sold elsewhere (stock 0): flagged, nothing taken.
    sql(&shop.sources.catalog, &format!(
        "START TRANSACTION; UPDATE reservations SET status = 'EXPIRED' WHERE order_id = {b}; \
         UPDATE products SET stock = 0 WHERE id = {product}; COMMIT"
    ))
    .await?;
    let detail: String = eventually(DEADLINE, || async {
        let d: Option<String> =
            shop.sources.catalog.pool.get_conn().await?.exec_first("SELECT detail FROM flagged_orders WHERE order_id = ?", (b,)).await?;
        d.ok_or_else(|| anyhow::anyhow!("order {b} not flagged yet"))
    })
    .await?;
    assert!(detail.contains("insufficient stock"), "{detail}");
    eventually(DEADLINE, || async {
        let m = shop.catalog.metrics().await?;
        let backlog = metric(&m, &["cdc_reconcile_findings", "confirmed_without_reservation"]);
        if backlog == 1.0 { Ok(()) } else { bail!("backlog {backlog}") }
    })
    .await?;
    assert_eq!(shop.reservation(b).await?.1["status"], "EXPIRED");
    assert_eq!(shop.stock(product).await?, 0);

    // The operator adds a unit: reconciliation re-reserves B and clears the flag.
    let (status, entry) = shop
        .post(
            &format!("{}/products/{product}/stock-adjustments", shop.catalog.url),
            json!({"delta": 1, "actor": "ops", "reason": "found one in the back"}),
        )
        .await?;
    assert_eq!(status, 200, "{entry}");
    common::eventually_json(|| shop.reservation(b), |r| r["status"] == "RESERVED").await?;
    assert_eq!(shop.stock(product).await?, 0);
    let flags: Option<u64> = shop.sources.catalog.pool.get_conn().await?.query_first("SELECT COUNT(*) FROM flagged_orders").await?;
    assert_eq!(flags, Some(0));
    shop.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_commands_act_and_write_their_audit_rows() -> Result<()> {
    let mut shop = Shop::start("svc_ops", |_, _| {}).await?;
    let user = shop.user("ops@example.com").await?;
    let product = shop.product("OPS-1", "1.00", 10).await?;
    shop.wait_known(user, product).await?;
    let (orders_url, catalog_url) = (shop.orders.config.mysql_url.clone(), shop.catalog.config.mysql_url.clone());

    // force-cancel (CLI) of a CONFIRMED order: cancelled, audited, the catalog gives its stock back.
    let c = shop.order(user, &[(product, 3)]).await?["id"].as_u64().unwrap();
    shop.order_status(c, "CONFIRMED").await?;
    let id = c.to_string();
    let (ok, out, err) = command(Service::Orders, &orders_url, &["force-cancel", "--order", &id, "--actor", "alice", "--reason", "customer called"])?;
    assert!(ok, "{out}{err}");
    let entry: Value = serde_json::from_str(&out)?;
    assert_eq!((entry["action"].as_str(), entry["after"]["status"].as_str()), (Some("force_cancel"), Some("CANCELLED")), "{entry}");
    let cancelled = shop.order_status(c, "CANCELLED").await?;
    let last = cancelled["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["cause"], "operator", "{cancelled}");
    assert_eq!(
        audit(&shop.sources.orders, &format!("order {c}")).await?,
        vec![("alice".into(), "customer called".into(), "force_cancel".into(), json!({"status": "CONFIRMED"}), json!({"status": "CANCELLED"}))]
    );
    shop.stock_becomes(product, 10).await?;
    let (ok, _, err) = command(Service::Orders, &orders_url, &["force-cancel", "--order", &id, "--actor", "alice", "--reason", "again"])?;
    assert!(!ok && err.contains("cannot be cancelled"), "{err}");
    let (ok, _, err) = command(Service::Catalog, &catalog_url, &["force-cancel", "--order", &id, "--actor", "a", "--reason", "r"])?;
    assert!(!ok && err.contains("orders service"), "{err}");

    // release (REST): refused for a CONFIRMED order; done, and audited, for one the orders service has not decided.
    let e = shop.order(user, &[(product, 1)]).await?["id"].as_u64().unwrap();
    shop.order_status(e, "CONFIRMED").await?;
    eventually(DEADLINE, || async {
        let (status, body) = release(&shop, e, json!({"actor": "bob", "reason": "stuck"})).await?;
        if status == 409 && body["error"] == "confirmed" { Ok(()) } else { bail!("{status} {body}") }
    })
    .await?;
    shop.orders.stop().await?;
    let mut conn = shop.sources.orders.pool.get_conn().await?;
    let lines = format!(r#"[{{"product_id":{product},"quantity":4}}]"#);
    conn.exec_drop("INSERT INTO orders (user_id, status, total, items) VALUES (?, 'PENDING', '4.00', ?)", (user, lines)).await?;
    let d: u64 = conn.query_first("SELECT LAST_INSERT_ID()").await?.unwrap();
    drop(conn);
    common::eventually_json(|| shop.reservation(d), |r| r["status"] == "RESERVED").await?;
    shop.stock_becomes(product, 5).await?;
    let (status, body) = release(&shop, d, json!({"actor": "bob"})).await?;
    assert_eq!(status, 422, "a reason is required: {body}");
    let (status, body) = release(&shop, d, json!({"actor": " ", "reason": "x"})).await?;
    assert_eq!(status, 400, "{body}");
    let (status, body) = release(&shop, d, json!({"actor": "bob", "reason": "legacy order stuck"})).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(shop.reservation(d).await?.1["status"], "RELEASED");
    assert_eq!(shop.stock(product).await?, 9);
    let rows = audit(&shop.sources.catalog, &format!("order {d}")).await?;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].0.as_str(), rows[0].2.as_str(), rows[0].3["status"].as_str()), ("bob", "release_reservation", Some("RESERVED")));
    assert_eq!(rows[0].3["lines"], json!([[product, 4]]));
    let (status, body) = release(&shop, d, json!({"actor": "bob", "reason": "twice"})).await?;
    assert_eq!((status, body["error"].as_str()), (409, Some("not_held")), "{body}");

    // adjust-stock (CLI): by a delta under the row lock; never below zero.
    let p = product.to_string();
    let (ok, out, err) = command(Service::Catalog, &catalog_url, &["adjust-stock", "--product", &p, "--delta", "-2", "--actor", "carol", "--reason", "damaged"])?;
    assert!(ok, "{out}{err}");
    assert_eq!(shop.stock(product).await?, 7);
    let (ok, _, err) = command(Service::Catalog, &catalog_url, &["adjust-stock", "--product", &p, "--delta", "-8", "--actor", "carol", "--reason", "x"])?;
    assert!(!ok && err.contains("negative"), "{err}");
    assert_eq!(shop.stock(product).await?, 7);
    assert_eq!(
        audit(&shop.sources.catalog, &format!("product {product}")).await?,
        vec![("carol".into(), "damaged".into(), "adjust_stock".into(), json!({"stock": 9}), json!({"stock": 7, "delta": -2}))]
    );
    shop.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_site_requests_are_refused_handlers_time_out_and_metric_labels_stay_bounded() -> Result<()> {
    let shop = Shop::start("svc_http", |_, c| {
        c.request_timeout = Duration::from_millis(700);
        c.allowed_origins = vec!["https://shop.example".into()];
    })
    .await?;
    let products = format!("{}/products", shop.catalog.url);
    let body = |sku: &str| json!({"sku": sku, "name": "n", "category": "c", "price": "1.00", "stock": 1}).to_string();
    let send = |method: &str, url: &str, content_type: Option<&str>, origin: Option<&str>, body: String| {
        let mut req = shop.http.request(method.parse().unwrap(), url).body(body);
        if let Some(c) = content_type {
            req = req.header("content-type", c);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    // (method, content type, origin, expected status, error kind)
    let cases = [
        ("POST", Some("application/json"), Some("https://evil.example"), 403, "forbidden_origin"),
        ("POST", Some("text/plain"), None, 415, "invalid_input"),
        ("POST", Some("application/x-www-form-urlencoded"), Some("https://shop.example"), 415, "invalid_input"),
        ("POST", Some("application/json"), Some("https://shop.example"), 201, ""),
        ("POST", Some("application/json"), None, 201, ""),
    ];
    for (i, (method, content_type, origin, want, kind)) in cases.into_iter().enumerate() {
        let resp = send(method, &products, content_type, origin, body(&format!("HTTP-{i}"))).await?;
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await?;
        assert_eq!(status, want, "{method} {content_type:?} {origin:?}: {answer}");
        if !kind.is_empty() {
            assert_eq!(answer["error"], kind, "{answer}");
        }
    }
    let count: Option<u64> = shop.sources.catalog.pool.get_conn().await?.query_first("SELECT COUNT(*) FROM products").await?;
    assert_eq!(count, Some(2), "only the two allowed requests wrote");
    let resp = send("DELETE", &format!("{products}/1"), None, Some("https://evil.example"), String::new()).await?;
    assert_eq!(resp.status().as_u16(), 403);

    // A handler blocked on a row lock is abandoned after the timeout with a 503 that says so.
    let id: u64 = shop.sources.catalog.pool.get_conn().await?.query_first("SELECT MIN(id) FROM products").await?.unwrap();
    let mut lock = shop.sources.catalog.pool.start_transaction(Default::default()).await?;
    lock.exec_drop("SELECT id FROM products WHERE id = ? FOR UPDATE", (id,)).await?;
    let started = Instant::now();
    let (status, answer) = shop.call("PATCH", &format!("{products}/{id}"), Some(r#"{"name": "renamed"}"#)).await?;
    let took = started.elapsed();
    assert_eq!((status, answer["error"].as_str()), (503, Some("timeout")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("700ms"), "{answer}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    lock.rollback().await?;
    let (status, answer) = shop.call("PATCH", &format!("{products}/{id}"), Some(r#"{"name": "renamed"}"#)).await?;
    assert_eq!(status, 200, "{answer}");

    // Raw paths and odd methods do not become labels.
    for path in ["/nope/1", "/nope/2", "/products/abc", "/products/1/x"] {
        shop.call("GET", &format!("{}{path}", shop.catalog.url), None).await?;
    }
    shop.http.request("PROPFIND".parse()?, &products).send().await?;
    let m = shop.catalog.metrics().await?;
    let requests: Vec<&str> = m.lines().filter(|l| l.starts_with("cdc_service_http_requests_total")).collect();
    assert!(!requests.iter().any(|l| l.contains("nope") || l.contains("abc") || l.contains("PROPFIND")), "{requests:#?}");
    assert!(metric(&m, &["cdc_service_http_requests_total", "route=\"unmatched\""]) >= 3.0, "{requests:#?}");
    assert!(metric(&m, &["cdc_service_http_requests_total", "method=\"OTHER\""]) >= 1.0, "{requests:#?}");
    assert!(metric(&m, &["cdc_service_http_requests_total", "route=\"/products/{id}\"", "status=\"503\""]) >= 1.0, "{requests:#?}");
    shop.finish().await
}
