//! The orders service: orders and their lines (REST), and the order side of the workflow.
//!
//! Its consumer takes three change topics:
//! - `<prefix>.users.users` and `<prefix>.catalog.products` feed local copies (`known_users`, `known_products`): a
//!   new order may only refer to users and products known here, and takes its unit prices from the copy;
//! - `<prefix>.catalog.reservations` carries the catalog's decision: `RESERVED` confirms a `PENDING` order,
//!   `REJECTED` rejects it, `EXPIRED` cancels it.
//!
//! Every status change is recorded in `order_history` with the change event that caused it. Reconciliation
//! (periodic, and `orders reconcile`) cancels `PENDING` orders older than the pending timeout and reports
//! `CONFIRMED` orders whose reservation is not held (the catalog repairs those). `orders force-cancel` (and `POST
//! /orders/{id}/force-cancel`) cancels an order as an operator, with an audit row ([`crate::operator`]).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mysql_async::prelude::*;
use mysql_async::{Pool, Transaction, TxOpts};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::{OpenApi, ToSchema};

use crate::config::Config;
use crate::consumer::{self, ConsumerConfig, Reconciliation};
use crate::handler::{column, ApplyError, BatchError, Cause, Handler, Incoming};
use crate::replay::{self, ReplayReport};
use crate::http::{ApiError, Body, ErrorBody, Id, Page, PageParams, Query, Started};
use crate::metrics::Metrics;
use crate::money::Money;
use crate::rows::{self, id_list};
use crate::users::TS;

mod batch;

/// At most this many lines per order.
pub const MAX_LINES: usize = 100;

/// An order with its lines and the history of its status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Order {
    #[serde(flatten)]
    pub order: OrderSummary,
    pub lines: Vec<OrderLine>,
    /// Oldest first.
    pub history: Vec<Transition>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub id: u64,
    pub product_id: u64,
    pub quantity: u32,
    #[schema(value_type = String, example = "9.99")]
    pub unit_price: Money,
}

/// One status an order took.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    pub status: String,
    pub reason: Option<String>,
    pub at: String,
    /// `api`, `reservation` (a change event of the catalog), `timeout`, `reconciliation` or `operator`.
    pub cause: String,
    /// The change event that caused it: topic and source position.
    pub event: Option<Cause>,
}

/// An order without lines and history, as lists show it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderSummary {
    pub id: u64,
    pub user_id: u64,
    /// PENDING, CONFIRMED, REJECTED or CANCELLED.
    pub status: String,
    #[schema(value_type = String, example = "19.98")]
    pub total: Money,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub user_id: u64,
    pub lines: Vec<NewLine>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLine {
    pub product_id: u64,
    pub quantity: u32,
}

/// `GET /orders?user_id=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderFilter {
    pub user_id: Option<u64>,
    pub limit: Option<u32>,
    pub after: Option<u64>,
}

#[derive(Clone)]
struct AppState {
    pool: Pool,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "orders", description = "Orders; confirmed or rejected by the catalog's reservations, through change events."),
    paths(create_order, get_order, list_orders, cancel_order),
    components(schemas(Order, OrderLine, Transition, Cause, OrderSummary, NewOrder, NewLine, ErrorBody, Page<OrderSummary>))
)]
struct ApiDoc;

/// Routes with their OpenAPI document, the workflow consumer and the reconciliation loop.
pub fn start(pool: Pool, config: Arc<Config>, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Started {
    let routes = Router::new()
        .route("/orders", get(list_orders).post(create_order))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .with_state(AppState { pool: pool.clone() });
    let handler = Arc::new(workflow(&config, metrics.clone()));
    let consumer = ConsumerConfig {
        name: config.group.clone(),
        brokers: config.brokers.clone(),
        topics: vec![handler.users.clone(), handler.products.clone(), handler.reservations.clone()],
        batch_max: config.batch_max,
        batch_linger: config.batch_linger,
        stop_before_offset_commit: config.stop_before_offset_commit,
    };
    let consume = tokio::spawn(consumer::run(pool.clone(), consumer, handler, metrics.clone(), shutdown.clone()));
    let (p, c, m) = (pool, config.clone(), metrics.clone());
    let sweep = tokio::spawn(consumer::every(config.reconcile_interval, shutdown, "reconciliation", move || {
        let (p, c, m) = (p.clone(), c.clone(), m.clone());
        async move { reconcile(&p, &c, &m).await.map(|_| ()) }
    }));
    (routes, ApiDoc::openapi(), vec![consume, sweep])
}

type OrderTuple = (u64, u64, String, String, String, String);

fn select_orders() -> String {
    format!(
        "SELECT id, user_id, CAST(status AS CHAR), CAST(total AS CHAR), DATE_FORMAT(created_at, {TS}), \
         DATE_FORMAT(updated_at, {TS}) FROM orders"
    )
}

fn money(text: &str) -> Result<Money, ApiError> {
    Money::parse(text).map_err(|e| ApiError::invalid(format!("stored amount: {e}")))
}

fn summary(t: OrderTuple) -> Result<OrderSummary, ApiError> {
    Ok(OrderSummary { id: t.0, user_id: t.1, status: t.2, total: money(&t.3)?, created_at: t.4, updated_at: t.5 })
}

async fn load(pool: &Pool, id: u64) -> Result<Order, ApiError> {
    load_on(&mut pool.get_conn().await?, id).await
}

/// [`load`] on a connection or in a transaction (which sees its own writes).
async fn load_on(conn: &mut impl Queryable, id: u64) -> Result<Order, ApiError> {
    let row: Option<OrderTuple> = conn.exec_first(format!("{} WHERE id = ?", select_orders()), (id,)).await?;
    let s = summary(row.ok_or_else(|| ApiError::not_found("order", id))?)?;
    let lines: Vec<(u64, u64, u32, String)> = conn
        .exec("SELECT id, product_id, quantity, CAST(unit_price AS CHAR) FROM order_lines WHERE order_id = ? ORDER BY id", (id,))
        .await?;
    let lines = lines
        .into_iter()
        .map(|(id, product_id, quantity, price)| Ok(OrderLine { id, product_id, quantity, unit_price: money(&price)? }))
        .collect::<Result<Vec<_>, ApiError>>()?;
    type HistoryTuple = (String, Option<String>, String, String, Option<String>, Option<String>, Option<u64>, Option<u64>);
    let history: Vec<HistoryTuple> = conn
        .exec(
            format!(
                "SELECT status, reason, DATE_FORMAT(at, {TS}), cause, event_topic, event_file, event_pos, event_row \
                 FROM order_history WHERE order_id = ? ORDER BY id"
            ),
            (id,),
        )
        .await?;
    let history = history
        .into_iter()
        .map(|(status, reason, at, cause, topic, file, pos, row)| Transition {
            status,
            reason,
            at,
            cause,
            event: match (topic, file, pos, row) {
                (Some(topic), Some(file), Some(pos), Some(row)) => Some(Cause { topic, file, pos, row }),
                _ => None,
            },
        })
        .collect();
    Ok(Order { order: s, lines, history })
}

/// Places an order: `PENDING`, priced from the local copy of the catalog. The catalog's reservation decides it.
#[utoipa::path(post, path = "/orders", request_body = NewOrder, responses(
    (status = 201, body = Order), (status = 400, body = ErrorBody),
    (status = 422, description = "unknown user or product (it may not have arrived yet)", body = ErrorBody)))]
async fn create_order(State(s): State<AppState>, Body(new): Body<NewOrder>) -> Result<(StatusCode, Json<Order>), ApiError> {
    if new.lines.is_empty() {
        return Err(ApiError::invalid("an order needs at least one line"));
    }
    if new.lines.len() > MAX_LINES {
        return Err(ApiError::invalid(format!("an order has at most {MAX_LINES} lines, not {}", new.lines.len())));
    }
    if let Some(line) = new.lines.iter().find(|l| l.quantity == 0) {
        return Err(ApiError::invalid(format!("quantity of product {} must be at least 1", line.product_id)));
    }
    let mut tx = s.pool.start_transaction(TxOpts::default()).await?;
    let user: Option<u64> = tx.exec_first("SELECT id FROM known_users WHERE id = ? AND deleted = 0", (new.user_id,)).await?;
    if user.is_none() {
        return Err(ApiError::unknown(format!(
            "user {} is not known to the orders service; if it was just created, its change event may not have arrived yet: retry shortly",
            new.user_id
        )));
    }
    // One read for the prices of every line.
    let prices: HashMap<u64, String> = tx
        .query(format!(
            "SELECT id, CAST(price AS CHAR) FROM known_products WHERE id IN ({}) AND deleted = 0",
            id_list(new.lines.iter().map(|l| l.product_id))
        ))
        .await?
        .into_iter()
        .collect();
    let mut priced = Vec::with_capacity(new.lines.len());
    let mut total = Money::ZERO;
    for line in &new.lines {
        let Some(price) = prices.get(&line.product_id) else {
            return Err(ApiError::unknown(format!(
                "product {} is not known to the orders service; if it was just created, its change event may not have arrived yet: retry shortly",
                line.product_id
            )));
        };
        let price = money(price)?;
        total = total.plus(price.times(line.quantity));
        priced.push((line, price));
    }
    let lines_json = serde_json::to_string(&new.lines).expect("lines serialize");
    tx.exec_drop(
        "INSERT INTO orders (user_id, status, total, items) VALUES (?, 'PENDING', ?, ?)",
        (new.user_id, total.to_string(), lines_json),
    )
    .await?;
    let id = tx.last_insert_id().unwrap_or(0);
    let lines = priced.into_iter().map(|(l, price)| vec![id.into(), l.product_id.into(), l.quantity.into(), price.to_string().into()]);
    rows::insert(&mut tx, "order_lines (order_id, product_id, quantity, unit_price)", "", lines.collect()).await?;
    record(&mut tx, id, "PENDING", None, "api", None).await?;
    // Read back in the transaction: no second connection per request.
    let order = load_on(&mut tx, id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(order)))
}

/// One order with its lines and history.
#[utoipa::path(get, path = "/orders/{id}", params(("id" = u64, Path)), responses((status = 200, body = Order), (status = 404, body = ErrorBody)))]
async fn get_order(State(s): State<AppState>, Id(id): Id) -> Result<Json<Order>, ApiError> {
    Ok(Json(load(&s.pool, id).await?))
}

/// Orders in id order, optionally of one user.
#[utoipa::path(get, path = "/orders", params(OrderFilter), responses((status = 200, body = Page<OrderSummary>)))]
async fn list_orders(State(s): State<AppState>, Query(f): Query<OrderFilter>) -> Result<Json<Page<OrderSummary>>, ApiError> {
    let limit = PageParams { limit: f.limit, after: f.after }.limit()?;
    let rows: Vec<OrderTuple> = s
        .pool
        .get_conn()
        .await?
        .exec(
            format!("{} WHERE id > ? AND (? IS NULL OR user_id = ?) ORDER BY id LIMIT ?", select_orders()),
            (f.after.unwrap_or(0), f.user_id, f.user_id, limit + 1),
        )
        .await?;
    let items = rows.into_iter().map(summary).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page::cut(items, limit, |o| o.id)))
}

/// Cancels a `PENDING` or `CONFIRMED` order; the catalog then releases its stock.
#[utoipa::path(post, path = "/orders/{id}/cancel", params(("id" = u64, Path)), responses(
    (status = 200, body = Order), (status = 404, body = ErrorBody), (status = 409, description = "already final", body = ErrorBody)))]
async fn cancel_order(State(s): State<AppState>, Id(id): Id) -> Result<Json<Order>, ApiError> {
    let mut tx = s.pool.start_transaction(TxOpts::default()).await?;
    let status: Option<String> = tx.exec_first("SELECT CAST(status AS CHAR) FROM orders WHERE id = ? FOR UPDATE", (id,)).await?;
    match status.as_deref() {
        None => return Err(ApiError::not_found("order", id)),
        Some("PENDING" | "CONFIRMED") => {
            transition(&mut tx, id, "CANCELLED", Some("cancelled on request"), "api", None).await?;
        }
        Some(other) => return Err(ApiError::conflict("final", format!("order {id} is {other} and cannot be cancelled"))),
    }
    tx.commit().await?;
    Ok(Json(load(&s.pool, id).await?))
}

/// Appends to an order's history.
async fn record(
    tx: &mut Transaction<'static>,
    order_id: u64,
    status: &str,
    reason: Option<&str>,
    cause: &str,
    event: Option<&Cause>,
) -> Result<(), mysql_async::Error> {
    tx.exec_drop(
        "INSERT INTO order_history (order_id, status, reason, cause, event_topic, event_file, event_pos, event_row) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            order_id,
            status,
            reason,
            cause,
            event.map(|e| &e.topic),
            event.map(|e| &e.file),
            event.map(|e| e.pos),
            event.map(|e| e.row),
        ),
    )
    .await
}

/// Sets an order's status (the caller holds its row lock and checked the current status) and records why.
pub(crate) async fn transition(
    tx: &mut Transaction<'static>,
    order_id: u64,
    to: &str,
    reason: Option<&str>,
    cause: &str,
    event: Option<&Cause>,
) -> Result<(), mysql_async::Error> {
    tx.exec_drop("UPDATE orders SET status = ? WHERE id = ?", (to, order_id)).await?;
    record(tx, order_id, to, reason, cause, event).await
}

// ---------------------------------------------------------------------------------------------------------------
// The workflow

struct Workflow {
    users: String,
    products: String,
    reservations: String,
    pending_timeout_us: u64,
    metrics: Arc<Metrics>,
}

fn workflow(config: &Config, metrics: Arc<Metrics>) -> Workflow {
    Workflow {
        users: config.topic(&config.users_db, "users"),
        products: config.topic(&config.catalog_db, "products"),
        reservations: config.topic(&config.catalog_db, "reservations"),
        pending_timeout_us: config.pending_timeout.as_micros() as u64,
        metrics,
    }
}

/// Replays the consumer's pending dead letters (`orders replay-dead-letters`).
pub async fn replay_dead_letters(pool: &Pool, config: &Config, metrics: Arc<Metrics>) -> Result<ReplayReport> {
    replay::replay(pool, &config.group, &workflow(config, metrics)).await
}

/// What changed, for metrics after the commit: the new status and the order's age at that moment.
type Decided = Option<(&'static str, f64)>;

impl Handler for Workflow {
    type Note = Decided;

    async fn apply<'a>(&'a self, tx: &'a mut Transaction<'static>, incoming: &'a Incoming) -> Result<Decided, ApplyError> {
        if incoming.event.op == cdc_contract::Op::Truncate {
            tracing::warn!(topic = %incoming.topic, "a truncate of a consumed table is ignored");
            return Ok(None);
        }
        let row = incoming.row()?;
        let after = incoming.event.after.as_ref();
        if incoming.topic == self.users {
            let id = column(row, "id", |v| v.as_u64())?;
            tx.exec_drop(
                "INSERT INTO known_users (id, deleted) VALUES (?, ?) ON DUPLICATE KEY UPDATE deleted = VALUES(deleted)",
                (id, after.is_none()),
            )
            .await?;
            Ok(None)
        } else if incoming.topic == self.products {
            let id = column(row, "id", |v| v.as_u64())?;
            let name = column(row, "name", |v| v.as_str().map(str::to_owned))?;
            let price = column(row, "price", |v| v.as_str().map(str::to_owned))?;
            tx.exec_drop(
                "INSERT INTO known_products (id, name, price, deleted) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
                 name = VALUES(name), price = VALUES(price), deleted = VALUES(deleted)",
                (id, name, price, after.is_none()),
            )
            .await?;
            Ok(None)
        } else if incoming.topic == self.reservations {
            self.reservation(tx, incoming).await
        } else {
            Err(ApplyError::Permanent(format!("no handler for topic {}", incoming.topic)))
        }
    }

    async fn apply_all<'a>(&'a self, tx: &'a mut Transaction<'static>, events: &'a [&'a Incoming]) -> Result<Vec<Decided>, BatchError> {
        batch::apply_all(self, tx, events).await
    }

    fn committed(&self, note: Decided) {
        if let Some((status, age)) = note {
            self.metrics.transition(status);
            if status == "CONFIRMED" || status == "REJECTED" {
                self.metrics.decided_after(age);
            }
        }
    }
}

impl Workflow {
    async fn reservation(&self, tx: &mut Transaction<'static>, incoming: &Incoming) -> Result<Decided, ApplyError> {
        let row = incoming.row()?;
        let order_id = column(row, "order_id", |v| v.as_u64())?;
        let Some(after) = &incoming.event.after else {
            tx.exec_drop("DELETE FROM known_reservations WHERE order_id = ?", (order_id,)).await?;
            return Ok(None);
        };
        let status = column(after, "status", |v| v.as_str().map(str::to_owned))?;
        let reason = after.get("reason").and_then(|v| v.as_str()).map(str::to_owned);
        tx.exec_drop(
            "INSERT INTO known_reservations (order_id, status, reason) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE status = VALUES(status), reason = VALUES(reason)",
            (order_id, &status, &reason),
        )
        .await?;
        let order: Option<String> =
            tx.exec_first("SELECT CAST(status AS CHAR) FROM orders WHERE id = ? FOR UPDATE", (order_id,)).await?;
        let Some(current) = order else { return Ok(None) }; // the order was deleted: nothing to move
        if current != "PENDING" {
            return Ok(None); // already decided, cancelled or timed out: a late outcome changes nothing here
        }
        // The age is read once the lock is held (NOW() is a statement's start time, and the locking read may have
        // waited): a confirmation is written within the pending timeout of created_at, which the catalog's expiry
        // relies on (docs/services.md, "No unit sold twice").
        let age_us: u64 = tx
            .exec_first("SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3)) FROM orders WHERE id = ?", (order_id,))
            .await?
            .unwrap_or(u64::MAX);
        let cause = incoming.cause();
        let Some((to, why)) = self.decision(&status, reason, age_us) else { return Ok(None) };
        transition(tx, order_id, to, why.as_deref(), "reservation", Some(&cause)).await?;
        Ok(Some((to, age_us as f64 / 1e6)))
    }

    /// The new status of a `PENDING` order for its reservation's `status`, given the order's age read under its row
    /// lock; `None` changes nothing.
    fn decision(&self, status: &str, reason: Option<String>, age_us: u64) -> Option<(&'static str, Option<String>)> {
        match status {
            "RESERVED" if age_us > self.pending_timeout_us => {
                Some(("CANCELLED", Some("stock was reserved only after the pending timeout".into())))
            }
            "RESERVED" => Some(("CONFIRMED", None)),
            "REJECTED" => Some(("REJECTED", reason)),
            "EXPIRED" => Some(("CANCELLED", Some("the stock reservation expired".into()))),
            _ => None,
        }
    }
}

/// - `stuck_pending`: `PENDING` orders older than the pending timeout; repaired by cancelling them (the catalog then
///   releases any stock it holds for them);
/// - `confirmed_without_reservation`: `CONFIRMED` orders whose reservation, as the catalog's events tell it, is not
///   held; reported here: the catalog, which owns the stock, re-reserves them or flags them for an operator.
pub async fn reconcile(pool: &Pool, config: &Config, metrics: &Metrics) -> Result<Reconciliation> {
    let mut report = Reconciliation::default();
    let timeout_us = config.pending_timeout.as_micros() as u64;
    let mut conn = pool.get_conn().await?;
    let stuck: Vec<u64> = conn
        .exec(
            "SELECT id FROM orders WHERE status = 'PENDING' AND created_at < NOW(3) - INTERVAL ? MICROSECOND ORDER BY id",
            (timeout_us,),
        )
        .await?;
    let unreserved: Vec<u64> = conn
        .query(
            "SELECT o.id FROM orders o LEFT JOIN known_reservations r ON r.order_id = o.id \
             WHERE o.status = 'CONFIRMED' AND (r.status IS NULL OR r.status <> 'RESERVED') ORDER BY o.id",
        )
        .await?;
    let oldest: Option<Option<u64>> = conn
        .query_first("SELECT TIMESTAMPDIFF(MICROSECOND, MIN(created_at), NOW(3)) FROM orders WHERE status = 'PENDING'")
        .await?;
    drop(conn);
    metrics.oldest_pending(oldest.flatten().unwrap_or(0) as f64 / 1e6);
    report.found("stuck_pending", stuck.clone());
    report.found("confirmed_without_reservation", unreserved);
    for id in stuck {
        let mut tx = pool.start_transaction(TxOpts::default()).await?;
        let status: Option<String> = tx
            .exec_first(
                "SELECT CAST(status AS CHAR) FROM orders WHERE id = ? AND created_at < NOW(3) - INTERVAL ? MICROSECOND FOR UPDATE",
                (id, timeout_us),
            )
            .await?;
        if status.as_deref() == Some("PENDING") {
            let reason = format!("no stock decision within the pending timeout ({})", humantime::format_duration(config.pending_timeout));
            transition(&mut tx, id, "CANCELLED", Some(&reason), "timeout", None).await?;
            report.repaired("stuck_pending", id);
            metrics.transition("CANCELLED");
        }
        tx.commit().await?;
    }
    report.publish(metrics);
    Ok(report)
}
