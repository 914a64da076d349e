//! The catalog service: products with their stock (REST), and the stock side of the order workflow.
//!
//! Its consumer takes the orders service's change events (`<prefix>.orders.orders`). For a new `PENDING` order it
//! decides in one local transaction: every line's stock is available, so it is taken and a `RESERVED` reservation
//! written; or nothing is taken and a `REJECTED` reservation says which product is short. When the order becomes
//! `CANCELLED` or `REJECTED`, or is deleted, a held reservation is released and its stock given back. The
//! reservations table is captured too: its change events are how the orders service learns the outcome.
//!
//! Reconciliation (periodic, and `catalog reconcile`): reservations still held for an order that is final or gone
//! are released; a reservation expires only once the orders stream is applied past the point where its order,
//! still `PENDING`, outlived the TTL ([`crate::progress`]), so the reservation of a `CONFIRMED` order never expires;
//! a `CONFIRMED` order whose reservation is not held is re-reserved, or flagged for an operator.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mysql_async::prelude::*;
use mysql_async::{Pool, Transaction};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::{OpenApi, ToSchema};

use crate::config::Config;
use crate::consumer::{self, ConsumerConfig, Reconciliation};
use crate::handler::{ApplyError, BatchError, Handler, Incoming};
use crate::replay::{self, ReplayReport};
use crate::http::{is_duplicate, ApiError, Body, ErrorBody, Id, Page, PageParams, Query, Started};
use crate::metrics::Metrics;
use crate::money::Money;
use crate::progress::{self, ProgressConfig};
use crate::users::{check_text, TS};

mod batch;
use batch::{Action, OrderChange};

/// A product with its available stock.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: u64,
    pub sku: String,
    pub name: String,
    pub category: String,
    #[schema(value_type = String, example = "9.99")]
    pub price: Money,
    /// Units available (not reserved).
    pub stock: u32,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /products`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub category: String,
    #[schema(value_type = String, example = "9.99")]
    pub price: Money,
    pub stock: u32,
}

/// `PATCH /products/{id}`: absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub category: Option<String>,
    #[schema(value_type = Option<String>, example = "9.99")]
    pub price: Option<Money>,
    pub stock: Option<u32>,
}

/// The catalog's decision for one order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub order_id: u64,
    /// RESERVED, REJECTED, RELEASED or EXPIRED.
    pub status: String,
    pub reason: Option<String>,
    pub expires_at: String,
    pub lines: Vec<ReservedLine>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReservedLine {
    pub product_id: u64,
    pub quantity: u32,
}

fn check_sku(sku: &str) -> Result<(), ApiError> {
    if sku.is_empty() || sku.len() > 64 || !sku.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(ApiError::invalid(format!("sku `{sku}` must be 1 to 64 letters, digits, '-', '_' or '.'")));
    }
    Ok(())
}

type ProductTuple = (u64, String, String, String, String, u32, String, String);

fn select_products() -> String {
    format!(
        "SELECT id, sku, name, category, CAST(price AS CHAR), stock, DATE_FORMAT(created_at, {TS}), \
         DATE_FORMAT(updated_at, {TS}) FROM products"
    )
}

fn product(t: ProductTuple) -> Result<Product, ApiError> {
    let price = Money::parse(&t.4).map_err(|e| ApiError::invalid(format!("stored price: {e}")))?;
    Ok(Product { id: t.0, sku: t.1, name: t.2, category: t.3, price, stock: t.5, created_at: t.6, updated_at: t.7 })
}

#[derive(Clone)]
struct AppState {
    pool: Pool,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "catalog", description = "Products and stock; reserves stock for orders from their change events."),
    paths(create_product, get_product, list_products, patch_product, delete_product, get_reservation),
    components(schemas(Product, NewProduct, ProductPatch, Reservation, ReservedLine, ErrorBody, Page<Product>))
)]
struct ApiDoc;

/// Routes with their OpenAPI document, the workflow consumer and the reconciliation loop.
pub fn start(pool: Pool, config: Arc<Config>, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Started {
    let routes = Router::new()
        .route("/products", get(list_products).post(create_product))
        .route("/products/{id}", get(get_product).patch(patch_product).delete(delete_product))
        .route("/reservations/{order_id}", get(get_reservation))
        .with_state(AppState { pool: pool.clone() });
    let consumer = ConsumerConfig {
        name: config.group.clone(),
        brokers: config.brokers.clone(),
        topics: vec![config.topic(&config.orders_db, "orders")],
        batch_max: config.batch_max,
        batch_linger: config.batch_linger,
        stop_before_offset_commit: config.stop_before_offset_commit,
    };
    let handler = Arc::new(reserve(&config));
    let consume = tokio::spawn(consumer::run(pool.clone(), consumer, handler, metrics.clone(), shutdown.clone()));
    let watch = ProgressConfig {
        brokers: config.brokers.clone(),
        group: config.group.clone(),
        heartbeats: cdc_contract::heartbeat_topic(&config.topic_prefix),
        topic: config.topic(&config.orders_db, "orders"),
    };
    let progress = tokio::spawn(progress::run(pool.clone(), watch, shutdown.clone()));
    let (p, c, m) = (pool, config.clone(), metrics.clone());
    let sweep = tokio::spawn(consumer::every(config.reconcile_interval, shutdown, "reconciliation", move || {
        let (p, c, m) = (p.clone(), c.clone(), m.clone());
        async move { reconcile(&p, &c, &m).await.map(|_| ()) }
    }));
    (routes, ApiDoc::openapi(), vec![consume, progress, sweep])
}

async fn load(pool: &Pool, id: u64) -> Result<Product, ApiError> {
    let row: Option<ProductTuple> =
        pool.get_conn().await?.exec_first(format!("{} WHERE id = ?", select_products()), (id,)).await?;
    product(row.ok_or_else(|| ApiError::not_found("product", id))?)
}

/// Creates a product.
#[utoipa::path(post, path = "/products", request_body = NewProduct, responses(
    (status = 201, body = Product), (status = 400, body = ErrorBody), (status = 409, description = "sku taken", body = ErrorBody)))]
async fn create_product(State(s): State<AppState>, Body(new): Body<NewProduct>) -> Result<(StatusCode, Json<Product>), ApiError> {
    check_sku(&new.sku)?;
    check_text("name", &new.name, 255)?;
    check_text("category", &new.category, 64)?;
    let mut conn = s.pool.get_conn().await?;
    conn.exec_drop(
        "INSERT INTO products (sku, name, category, price, stock) VALUES (?, ?, ?, ?, ?)",
        (&new.sku, &new.name, &new.category, new.price.to_string(), new.stock),
    )
    .await
    .map_err(|e| {
        if is_duplicate(&e) { ApiError::conflict("duplicate", format!("a product with sku `{}` already exists", new.sku)) } else { e.into() }
    })?;
    let id = conn.last_insert_id().unwrap_or(0);
    drop(conn);
    Ok((StatusCode::CREATED, Json(load(&s.pool, id).await?)))
}

/// One product with its stock.
#[utoipa::path(get, path = "/products/{id}", params(("id" = u64, Path)), responses((status = 200, body = Product), (status = 404, body = ErrorBody)))]
async fn get_product(State(s): State<AppState>, Id(id): Id) -> Result<Json<Product>, ApiError> {
    Ok(Json(load(&s.pool, id).await?))
}

/// Products in id order, a page at a time.
#[utoipa::path(get, path = "/products", params(PageParams), responses((status = 200, body = Page<Product>)))]
async fn list_products(State(s): State<AppState>, Query(page): Query<PageParams>) -> Result<Json<Page<Product>>, ApiError> {
    let limit = page.limit()?;
    let rows: Vec<ProductTuple> = s
        .pool
        .get_conn()
        .await?
        .exec(format!("{} WHERE id > ? ORDER BY id LIMIT ?", select_products()), (page.after.unwrap_or(0), limit + 1))
        .await?;
    let items = rows.into_iter().map(product).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page::cut(items, limit, |p| p.id)))
}

/// Changes a product's name, category, price or stock.
#[utoipa::path(patch, path = "/products/{id}", params(("id" = u64, Path)), request_body = ProductPatch, responses(
    (status = 200, body = Product), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn patch_product(State(s): State<AppState>, Id(id): Id, Body(patch): Body<ProductPatch>) -> Result<Json<Product>, ApiError> {
    if let Some(name) = &patch.name {
        check_text("name", name, 255)?;
    }
    if let Some(category) = &patch.category {
        check_text("category", category, 64)?;
    }
    s.pool
        .get_conn()
        .await?
        .exec_drop(
            "UPDATE products SET name = COALESCE(?, name), category = COALESCE(?, category), \
             price = COALESCE(?, price), stock = COALESCE(?, stock) WHERE id = ?",
            (&patch.name, &patch.category, patch.price.map(|p| p.to_string()), patch.stock, id),
        )
        .await?;
    Ok(Json(load(&s.pool, id).await?))
}

/// Deletes a product.
#[utoipa::path(delete, path = "/products/{id}", params(("id" = u64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_product(State(s): State<AppState>, Id(id): Id) -> Result<StatusCode, ApiError> {
    let mut conn = s.pool.get_conn().await?;
    conn.exec_drop("DELETE FROM products WHERE id = ?", (id,)).await?;
    if conn.affected_rows() == 0 {
        return Err(ApiError::not_found("product", id));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The catalog's reservation decision for an order.
#[utoipa::path(get, path = "/reservations/{order_id}", params(("order_id" = u64, Path)), responses(
    (status = 200, body = Reservation), (status = 404, description = "no decision yet", body = ErrorBody)))]
async fn get_reservation(State(s): State<AppState>, Id(order_id): Id) -> Result<Json<Reservation>, ApiError> {
    let mut conn = s.pool.get_conn().await?;
    let row: Option<(String, Option<String>, String)> = conn
        .exec_first(format!("SELECT status, reason, DATE_FORMAT(expires_at, {TS}) FROM reservations WHERE order_id = ?"), (order_id,))
        .await?;
    let (status, reason, expires_at) = row.ok_or_else(|| ApiError::not_found("reservation of order", order_id))?;
    let lines: Vec<(u64, u32)> = conn
        .exec("SELECT product_id, quantity FROM reservation_lines WHERE order_id = ? ORDER BY product_id", (order_id,))
        .await?;
    let lines = lines.into_iter().map(|(product_id, quantity)| ReservedLine { product_id, quantity }).collect();
    Ok(Json(Reservation { order_id, status, reason, expires_at, lines }))
}

// ---------------------------------------------------------------------------------------------------------------
// The workflow

/// A line as the order row lists it (the `items` JSON column).
#[derive(Debug, Deserialize)]
struct OrderedLine {
    product_id: u64,
    quantity: u32,
}

/// Applies order change events to stock.
struct Reserve {
    ttl_ms: u64,
}

fn reserve(config: &Config) -> Reserve {
    Reserve { ttl_ms: config.reservation_ttl.as_millis() as u64 }
}

/// Replays the consumer's pending dead letters (`catalog replay-dead-letters`).
pub async fn replay_dead_letters(pool: &Pool, config: &Config) -> Result<ReplayReport> {
    replay::replay(pool, &config.group, &reserve(config)).await
}

impl Handler for Reserve {
    type Note = ();

    async fn apply<'a>(&'a self, tx: &'a mut Transaction<'static>, incoming: &'a Incoming) -> Result<(), ApplyError> {
        let Some(change) = OrderChange::of(incoming)? else { return Ok(()) };
        remember(tx, change.order_id, &change.status, change.pending_since).await?;
        match change.action {
            Action::Decide(lines) => {
                let decided: Option<String> =
                    tx.exec_first("SELECT status FROM reservations WHERE order_id = ?", (change.order_id,)).await?;
                if decided.is_none() {
                    decide(tx, change.order_id, lines, self.ttl_ms).await?;
                }
                Ok(())
            }
            Action::Release(reason) => release(tx, change.order_id, "RELEASED", &reason).await,
            Action::Nothing => Ok(()),
        }
    }

    async fn apply_all<'a>(&'a self, tx: &'a mut Transaction<'static>, events: &'a [&'a Incoming]) -> Result<Vec<()>, BatchError> {
        batch::apply_all(self, tx, events).await
    }

    fn committed(&self, (): ()) {}
}

/// Records the order's newest status, and for a PENDING one the newest `pending_since_ms` (see [`crate::progress`]).
async fn remember(tx: &mut Transaction<'static>, order_id: u64, status: &str, pending_since: Option<i64>) -> Result<(), ApplyError> {
    tx.exec_drop(format!("INSERT INTO {KNOWN_ORDERS} VALUES (?, ?, ?) {REMEMBER}"), (order_id, status, pending_since)).await?;
    Ok(())
}

const KNOWN_ORDERS: &str = "known_orders (id, status, pending_since_ms)";
/// The newest status, and the newest `pending_since_ms` of the order's `PENDING` events.
const REMEMBER: &str = "ON DUPLICATE KEY UPDATE status = VALUES(status), \
     pending_since_ms = GREATEST(COALESCE(pending_since_ms, 0), COALESCE(VALUES(pending_since_ms), 0))";

/// Reserves every line's stock, or rejects the order without taking any.
async fn decide(tx: &mut Transaction<'static>, order_id: u64, lines: Option<&str>, ttl_ms: u64) -> Result<(), ApplyError> {
    let wanted = match wanted(lines) {
        Ok(wanted) => wanted,
        Err(reason) => return reject(tx, order_id, &reason, ttl_ms).await,
    };
    if let Err(reason) = take_stock(tx, &wanted).await? {
        return reject(tx, order_id, &reason, ttl_ms).await;
    }
    for (&product, &quantity) in &wanted {
        tx.exec_drop("INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES (?, ?, ?)", (order_id, product, quantity))
            .await?;
    }
    tx.exec_drop(
        "INSERT INTO reservations (order_id, status, expires_at) VALUES (?, 'RESERVED', NOW(3) + INTERVAL ? MICROSECOND)",
        (order_id, ttl_ms * 1000),
    )
    .await?;
    Ok(())
}

/// The units wanted per product of an order's `items`, or why the order is rejected.
fn wanted(lines: Option<&str>) -> Result<BTreeMap<u64, u64>, String> {
    match lines.map(serde_json::from_str::<Vec<OrderedLine>>) {
        Some(Ok(lines)) if !lines.is_empty() => {
            let mut wanted = BTreeMap::new();
            for l in lines {
                *wanted.entry(l.product_id).or_insert(0) += u64::from(l.quantity);
            }
            Ok(wanted)
        }
        Some(Err(e)) => Err(format!("the order's lines cannot be read: {e}")),
        _ => Err("the order lists no lines".into()),
    }
}

/// Which product of `wanted` is short in `stock` (product -> available units), if any.
fn shortage(wanted: &BTreeMap<u64, u64>, stock: &BTreeMap<u64, u64>) -> Option<String> {
    wanted.iter().find_map(|(&product, &quantity)| match stock.get(&product) {
        None => Some(format!("product {product} does not exist")),
        Some(&have) if have < quantity => {
            Some(format!("insufficient stock for product {product}: {quantity} requested, {have} available"))
        }
        Some(_) => None,
    })
}

/// Locks the products in id order (no deadlock between concurrent decisions) and takes the stock of every line,
/// or takes none and says which product is short.
async fn take_stock(tx: &mut Transaction<'static>, wanted: &BTreeMap<u64, u64>) -> Result<Result<(), String>, mysql_async::Error> {
    let ids: Vec<String> = wanted.keys().map(u64::to_string).collect();
    let stock: Vec<(u64, u32)> = tx
        .query(format!("SELECT id, stock FROM products WHERE id IN ({}) ORDER BY id FOR UPDATE", ids.join(",")))
        .await?;
    let stock: BTreeMap<u64, u64> = stock.into_iter().map(|(id, have)| (id, u64::from(have))).collect();
    if let Some(reason) = shortage(wanted, &stock) {
        return Ok(Err(reason));
    }
    for (&product, &quantity) in wanted {
        tx.exec_drop("UPDATE products SET stock = stock - ? WHERE id = ?", (quantity, product)).await?;
    }
    Ok(Ok(()))
}

async fn reject(tx: &mut Transaction<'static>, order_id: u64, reason: &str, ttl_ms: u64) -> Result<(), ApplyError> {
    tx.exec_drop(
        "INSERT INTO reservations (order_id, status, reason, expires_at) \
         VALUES (?, 'REJECTED', ?, NOW(3) + INTERVAL ? MICROSECOND)",
        (order_id, reason, ttl_ms * 1000),
    )
    .await?;
    Ok(())
}

/// Gives back the stock of a held reservation and marks it `status`; nothing when none is held.
pub(crate) async fn release(tx: &mut Transaction<'static>, order_id: u64, status: &str, reason: &str) -> Result<(), ApplyError> {
    let held: Option<String> = tx
        .exec_first("SELECT status FROM reservations WHERE order_id = ? FOR UPDATE", (order_id,))
        .await?;
    if held.as_deref() != Some("RESERVED") {
        return Ok(());
    }
    // A product deleted meanwhile has no stock to give back to.
    tx.exec_drop(
        "UPDATE products p JOIN reservation_lines l ON l.product_id = p.id SET p.stock = p.stock + l.quantity \
         WHERE l.order_id = ?",
        (order_id,),
    )
    .await?;
    tx.exec_drop("UPDATE reservations SET status = ?, reason = ? WHERE order_id = ?", (status, reason, order_id)).await?;
    Ok(())
}

/// Finds reservations that disagree with their order, and repairs them:
/// - `reservation_of_final_order`: held while the order is CANCELLED, REJECTED or deleted: released;
/// - `expired_reservation`: held while the order stayed PENDING past the TTL *at a consumed point of the orders
///   stream* ([`progress::may_expire`]): released as EXPIRED;
/// - `confirmed_without_reservation`: the order is CONFIRMED but its reservation is not held: re-reserved if the
///   stock allows, else recorded in `flagged_orders` for an operator (and left in the backlog gauge).
pub async fn reconcile(pool: &Pool, config: &Config, metrics: &Metrics) -> Result<Reconciliation> {
    let mut report = Reconciliation::default();
    let rule = ExpiryRule {
        topic: config.topic(&config.orders_db, "orders"),
        consumer: config.group.clone(),
        ttl_ms: config.reservation_ttl.as_millis() as i64,
    };
    let mut conn = pool.get_conn().await?;
    let final_orders: Vec<(u64, String)> = conn
        .query(
            "SELECT r.order_id, k.status FROM reservations r JOIN known_orders k ON k.id = r.order_id \
             WHERE r.status = 'RESERVED' AND k.status IN ('CANCELLED', 'REJECTED', 'DELETED') ORDER BY r.order_id",
        )
        .await?;
    let due: Vec<u64> = conn
        .query(
            "SELECT r.order_id FROM reservations r JOIN known_orders k ON k.id = r.order_id \
             WHERE r.status = 'RESERVED' AND r.expires_at < NOW(3) AND k.status = 'PENDING' ORDER BY r.order_id",
        )
        .await?;
    let unreserved: Vec<u64> = conn
        .query(
            "SELECT k.id FROM known_orders k LEFT JOIN reservations r ON r.order_id = k.id \
             WHERE k.status = 'CONFIRMED' AND (r.status IS NULL OR r.status <> 'RESERVED') ORDER BY k.id",
        )
        .await?;
    drop(conn);
    report.found("reservation_of_final_order", final_orders.iter().map(|o| o.0).collect());
    for (order_id, status) in final_orders {
        let mut tx = pool.start_transaction(Default::default()).await?;
        release(&mut tx, order_id, "RELEASED", &format!("reconciliation: the order is {status}")).await?;
        tx.commit().await?;
        report.repaired("reservation_of_final_order", order_id);
    }
    let mut expired = Vec::new();
    for order_id in due {
        if rule.expire(pool, order_id).await? {
            expired.push(order_id);
        }
    }
    report.found("expired_reservation", expired.clone());
    for order_id in expired {
        report.repaired("expired_reservation", order_id);
    }
    report.found("confirmed_without_reservation", unreserved.clone());
    for order_id in unreserved {
        if re_reserve(pool, order_id).await? {
            report.repaired("confirmed_without_reservation", order_id);
        }
    }
    report.publish(metrics);
    Ok(report)
}

/// When a held reservation of a PENDING order may expire.
struct ExpiryRule {
    /// The orders topic, whose consumed progress counts.
    topic: String,
    /// The consumer group (as `dead_letters.consumer`).
    consumer: String,
    ttl_ms: i64,
}

impl ExpiryRule {
    /// Expires the reservation if [`progress::may_expire`] allows it, decided under the rows' locks; true if it did.
    async fn expire(&self, pool: &Pool, order_id: u64) -> Result<bool> {
        let mut tx = pool.start_transaction(Default::default()).await?;
        // Reservations written before pending_since_ms was recorded count from their own creation.
        let row: Option<(String, String, i64, bool)> = tx
            .exec_first(
                "SELECT k.status, r.status, COALESCE(k.pending_since_ms, FLOOR(UNIX_TIMESTAMP(r.created_at) * 1000)), \
                 r.expires_at < NOW(3) FROM known_orders k JOIN reservations r ON r.order_id = k.id WHERE k.id = ? FOR UPDATE",
                (order_id,),
            )
            .await?;
        let Some((status, _, since, due)) = row.filter(|r| r.1 == "RESERVED") else { return Ok(false) };
        // Read in one snapshot: a dead letter is stored before the offsets (and so the progress) pass it.
        let covered: Option<i64> =
            tx.exec_first("SELECT covered_ms FROM known_progress WHERE topic = ?", (&self.topic,)).await?;
        let dead_letters: u64 = tx
            .exec_first("SELECT COUNT(*) FROM dead_letters WHERE consumer = ? AND topic = ? AND replayed_at IS NULL", (&self.consumer, &self.topic))
            .await?
            .unwrap_or(0);
        let facts = progress::ExpiryFacts {
            status: &status,
            pending_since_ms: Some(since),
            covered_ms: covered,
            due,
            dead_letters,
            ttl_ms: self.ttl_ms,
        };
        if let Some(hold) = progress::may_expire(facts) {
            tracing::debug!(order_id, ?hold, "reservation past its TTL held");
            return Ok(false);
        }
        release(&mut tx, order_id, "EXPIRED", "the order stayed PENDING past the reservation TTL").await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Restores the reservation of a CONFIRMED order if the stock allows; else flags the order for an operator.
/// True when re-reserved.
async fn re_reserve(pool: &Pool, order_id: u64) -> Result<bool> {
    let mut tx = pool.start_transaction(Default::default()).await?;
    let status: Option<String> = tx.exec_first("SELECT status FROM known_orders WHERE id = ? FOR UPDATE", (order_id,)).await?;
    if status.as_deref() != Some("CONFIRMED") {
        return Ok(false);
    }
    let held: Option<String> = tx.exec_first("SELECT status FROM reservations WHERE order_id = ? FOR UPDATE", (order_id,)).await?;
    let problem = match held.as_deref() {
        Some("RESERVED") => return Ok(false),
        Some("EXPIRED" | "RELEASED") => {
            let lines: Vec<(u64, u64)> =
                tx.exec("SELECT product_id, quantity FROM reservation_lines WHERE order_id = ?", (order_id,)).await?;
            if lines.is_empty() {
                "the reservation lists no lines".to_owned()
            } else {
                match take_stock(&mut tx, &lines.into_iter().collect()).await? {
                    Ok(()) => {
                        tx.exec_drop(
                            "UPDATE reservations SET status = 'RESERVED', reason = ? WHERE order_id = ?",
                            ("reconciliation: re-reserved for a CONFIRMED order", order_id),
                        )
                        .await?;
                        tx.exec_drop("DELETE FROM flagged_orders WHERE order_id = ?", (order_id,)).await?;
                        tx.commit().await?;
                        tracing::warn!(order_id, "re-reserved the stock of a CONFIRMED order whose reservation was not held");
                        return Ok(true);
                    }
                    Err(short) => format!("cannot re-reserve: {short}"),
                }
            }
        }
        Some(other) => format!("the catalog's decision was {other}"),
        None => "the catalog never decided the order (it was not PENDING when it arrived)".to_owned(),
    };
    tx.exec_drop(
        "INSERT INTO flagged_orders (order_id, kind, detail) VALUES (?, 'confirmed_without_reservation', ?) \
         ON DUPLICATE KEY UPDATE detail = VALUES(detail)",
        (order_id, &problem),
    )
    .await?;
    if tx.affected_rows() == 1 {
        tracing::error!(order_id, problem, "a CONFIRMED order holds no stock and needs an operator (flagged_orders)");
    }
    tx.commit().await?;
    Ok(false)
}
