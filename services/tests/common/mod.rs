//! A shop per test: the three services in-process on scratch databases, with a capture between them.
#![allow(dead_code)] // each test binary uses a part

use std::time::Duration;

use anyhow::{bail, Context, Result};
use cdc_services::cli::{start, Running};
use cdc_services::config::Config;
use cdc_services::Service;
use cdc_tests::{eventually, stack, unique_name, Sources};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub(crate) const DEADLINE: Duration = Duration::from_secs(90);

/// One running service.
pub(crate) struct Svc {
    pub(crate) url: String,
    pub(crate) config: Config,
    service: Service,
    shutdown: CancellationToken,
    running: Option<Running>,
}

impl Svc {
    pub(crate) async fn start(service: Service, config: Config) -> Result<Svc> {
        let shutdown = CancellationToken::new();
        let running = start(service, config.clone(), shutdown.clone()).await?;
        Ok(Svc { url: format!("http://{}", running.addr), config, service, shutdown, running: Some(running) })
    }

    /// Stops it and waits until its tasks ended.
    pub(crate) async fn stop(&mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.done.await??;
        }
        Ok(())
    }

    /// Its /metrics text.
    pub(crate) async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.url)).await?.text().await?)
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Sources, capture and the three services.
pub(crate) struct Shop {
    pub(crate) sources: Sources,
    pub(crate) users: Svc,
    pub(crate) catalog: Svc,
    pub(crate) orders: Svc,
    pub(crate) http: reqwest::Client,
}

/// Tables of the services' bookkeeping that the capture leaves out (as the stack's capture does).
pub(crate) const EXCLUDE: &[&str] = &["*.applied_events", "*.known_*"];

impl Shop {
    /// Starts everything; `tune` adjusts each service's configuration.
    pub(crate) async fn start(name: &str, tune: impl Fn(Service, &mut Config)) -> Result<Shop> {
        let sources = Sources::start(name, EXCLUDE).await?;
        let users = Svc::start(Service::Users, Shop::config_for(&sources, Service::Users, &tune)).await?;
        let catalog = Svc::start(Service::Catalog, Shop::config_for(&sources, Service::Catalog, &tune)).await?;
        let orders = Svc::start(Service::Orders, Shop::config_for(&sources, Service::Orders, &tune)).await?;
        Ok(Shop { sources, users, catalog, orders, http: reqwest::Client::new() })
    }

    /// The configuration of `service` on this shop's databases and topics.
    pub(crate) fn config_for(sources: &Sources, service: Service, tune: &impl Fn(Service, &mut Config)) -> Config {
        let db = match service {
            Service::Users => &sources.users,
            Service::Catalog => &sources.catalog,
            Service::Orders => &sources.orders,
        };
        let mut c = Config::new(service, &db.url(), stack().var("KAFKA_BROKERS"));
        c.topic_prefix = sources.prefix.clone();
        c.users_db = sources.users.name.clone();
        c.catalog_db = sources.catalog.name.clone();
        c.orders_db = sources.orders.name.clone();
        c.group = unique_name(service.name());
        c.reconcile_interval = Duration::from_millis(200);
        tune(service, &mut c);
        c
    }

    /// Sends a request; returns the status and the JSON body (Null when empty).
    pub(crate) async fn call(&self, method: &str, url: &str, body: Option<&str>) -> Result<(u16, Value)> {
        let mut req = self.http.request(method.parse()?, url);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_owned());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))? };
        Ok((status, value))
    }

    pub(crate) async fn post(&self, url: &str, body: Value) -> Result<(u16, Value)> {
        self.call("POST", url, Some(&body.to_string())).await
    }

    /// Creates a user; returns its id.
    pub(crate) async fn user(&self, email: &str) -> Result<u64> {
        let (status, body) = self.post(&format!("{}/users", self.users.url), json!({"email": email, "name": "Test", "country": "DE"})).await?;
        if status != 201 {
            bail!("POST /users: {status} {body}");
        }
        Ok(body["id"].as_u64().expect("id"))
    }

    /// Creates a product; returns its id.
    pub(crate) async fn product(&self, sku: &str, price: &str, stock: u32) -> Result<u64> {
        let body = json!({"sku": sku, "name": format!("Product {sku}"), "category": "tools", "price": price, "stock": stock});
        let (status, body) = self.post(&format!("{}/products", self.catalog.url), body).await?;
        if status != 201 {
            bail!("POST /products: {status} {body}");
        }
        Ok(body["id"].as_u64().expect("id"))
    }

    /// Places an order, retrying while the orders service does not know the user or a product yet.
    pub(crate) async fn order(&self, user: u64, lines: &[(u64, u32)]) -> Result<Value> {
        let lines: Vec<Value> = lines.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect();
        let body = json!({"user_id": user, "lines": lines});
        eventually(DEADLINE, || async {
            let (status, resp) = self.post(&format!("{}/orders", self.orders.url), body.clone()).await?;
            match status {
                201 => Ok(resp),
                422 if resp["error"] == "unknown_reference" => bail!("not known yet: {resp}"),
                _ => Err(anyhow::anyhow!("POST /orders: {status} {resp}")).context("unexpected answer"),
            }
        })
        .await
    }

    /// Waits until an order has `status`; returns it.
    pub(crate) async fn order_status(&self, id: u64, status: &str) -> Result<Value> {
        eventually(DEADLINE, || async {
            let (_, order) = self.call("GET", &format!("{}/orders/{id}", self.orders.url), None).await?;
            if order["status"] == status { Ok(order) } else { bail!("order {id} is {}", order["status"]) }
        })
        .await
    }

    /// The product's current stock.
    pub(crate) async fn stock(&self, id: u64) -> Result<u64> {
        let (status, p) = self.call("GET", &format!("{}/products/{id}", self.catalog.url), None).await?;
        if status != 200 {
            bail!("GET /products/{id}: {status} {p}");
        }
        Ok(p["stock"].as_u64().expect("stock"))
    }

    /// Waits until the product's stock is `want`.
    pub(crate) async fn stock_becomes(&self, id: u64, want: u64) -> Result<()> {
        eventually(DEADLINE, || async {
            let have = self.stock(id).await?;
            if have == want { Ok(()) } else { bail!("stock of {id} is {have}, want {want}") }
        })
        .await
    }

    /// Waits until the orders service's copies know the user and the product.
    pub(crate) async fn wait_known(&self, user: u64, product: u64) -> Result<()> {
        use mysql_async::prelude::*;
        eventually(DEADLINE, || async {
            let mut conn = self.sources.orders.pool.get_conn().await?;
            let u: Option<u64> = conn.exec_first("SELECT id FROM known_users WHERE id = ?", (user,)).await?;
            let p: Option<u64> = conn.exec_first("SELECT id FROM known_products WHERE id = ?", (product,)).await?;
            if u.is_some() && p.is_some() { Ok(()) } else { bail!("user {user}: {u:?}, product {product}: {p:?}") }
        })
        .await
    }

    /// The catalog's reservation of an order.
    pub(crate) async fn reservation(&self, order: u64) -> Result<(u16, Value)> {
        self.call("GET", &format!("{}/reservations/{order}", self.catalog.url), None).await
    }

    pub(crate) async fn finish(mut self) -> Result<()> {
        self.users.stop().await?;
        self.catalog.stop().await?;
        self.orders.stop().await?;
        self.sources.finish().await
    }
}

/// The value of a counter or gauge line in a metrics text whose name and labels contain every part of `parts`.
pub(crate) fn metric(text: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `get` until its JSON body satisfies `done`.
pub(crate) async fn eventually_json<F, Fut>(get: F, done: impl Fn(&Value) -> bool) -> Result<Value>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(u16, Value)>>,
{
    eventually(DEADLINE, || async {
        let (status, body) = get().await?;
        if done(&body) { Ok(body) } else { bail!("{status} {body}") }
    })
    .await
}
