//! Operator actions, as CLI subcommands and REST endpoints: force-cancel an order (orders), release a reservation
//! and adjust a product's stock by a delta (catalog). Each takes who (`actor`) and why (`reason`), and writes an
//! `operator_audit` row (who, why, what, the state before and after, when) in the transaction of the action: an
//! action without its audit row cannot commit, nor the other way round.

use anyhow::{anyhow, Result};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use clap::Subcommand;
use mysql_async::prelude::*;
use mysql_async::{Pool, Transaction, TxOpts};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

use crate::config::{connect, Config, Service};
use crate::handler::ApplyError;
use crate::http::{ApiError, Body, ErrorBody, Id};
use crate::users::check_text;
use crate::{catalog, orders};

/// Operator subcommands; each prints its audit row as JSON.
#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// orders: cancels a PENDING or CONFIRMED order (the catalog then releases its stock).
    ForceCancel {
        #[arg(long)]
        order: u64,
        /// Who acts (recorded).
        #[arg(long)]
        actor: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// catalog: gives back the stock of a held reservation (refused when the order is known CONFIRMED: cancel it).
    ReleaseReservation {
        #[arg(long)]
        order: u64,
        #[arg(long)]
        actor: String,
        #[arg(long)]
        reason: String,
    },
    /// catalog: adds `delta` (negative to remove) to a product's available stock, under its row lock.
    AdjustStock {
        #[arg(long)]
        product: u64,
        #[arg(long, allow_hyphen_values = true)]
        delta: i64,
        #[arg(long)]
        actor: String,
        #[arg(long)]
        reason: String,
    },
}

/// Who acts and why (the body of every operator endpoint).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Who acts, e.g. a user name.
    pub actor: String,
    /// Why, for the audit trail.
    pub reason: String,
}

/// `POST /products/{id}/stock-adjustments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustment {
    /// Units to add to the available stock (negative to remove).
    pub delta: i64,
    pub actor: String,
    pub reason: String,
}

/// One row of `operator_audit`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: u64,
    pub actor: String,
    pub reason: String,
    /// `force_cancel`, `release_reservation` or `adjust_stock`.
    pub action: String,
    /// What was acted on, e.g. `order 7`, `product 3`.
    pub subject: String,
    #[schema(value_type = Object)]
    pub before: Value,
    #[schema(value_type = Object)]
    pub after: Value,
}

impl Operator {
    fn check(&self) -> Result<(), ApiError> {
        check_text("actor", &self.actor, 128)?;
        check_text("reason", &self.reason, 512)
    }
}

/// Writes the audit row of an action inside its transaction.
async fn audit(tx: &mut Transaction<'static>, who: &Operator, action: &str, subject: String, before: Value, after: Value) -> Result<AuditEntry, ApiError> {
    tx.exec_drop(
        "INSERT INTO operator_audit (actor, reason, action, subject, before_state, after_state) VALUES (?, ?, ?, ?, ?, ?)",
        (&who.actor, &who.reason, action, &subject, before.to_string(), after.to_string()),
    )
    .await?;
    let id = tx.last_insert_id().unwrap_or(0);
    tracing::info!(actor = %who.actor, reason = %who.reason, action, subject, "operator action");
    Ok(AuditEntry { id, actor: who.actor.clone(), reason: who.reason.clone(), action: action.into(), subject, before, after })
}

fn applied(e: ApplyError) -> ApiError {
    match e {
        ApplyError::Database(e) => e.into(),
        ApplyError::Permanent(m) => ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
    }
}

/// Cancels a PENDING or CONFIRMED order as an operator.
pub async fn force_cancel(pool: &Pool, order_id: u64, who: &Operator) -> Result<AuditEntry, ApiError> {
    who.check()?;
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let status: Option<String> =
        tx.exec_first("SELECT CAST(status AS CHAR) FROM orders WHERE id = ? FOR UPDATE", (order_id,)).await?;
    let status = status.ok_or_else(|| ApiError::not_found("order", order_id))?;
    if status != "PENDING" && status != "CONFIRMED" {
        return Err(ApiError::conflict("final", format!("order {order_id} is {status} and cannot be cancelled")));
    }
    let why = format!("force-cancelled by {}: {}", who.actor, who.reason);
    orders::transition(&mut tx, order_id, "CANCELLED", Some(&why), "operator", None).await?;
    let entry = audit(&mut tx, who, "force_cancel", format!("order {order_id}"), json!({"status": status}), json!({"status": "CANCELLED"})).await?;
    tx.commit().await?;
    Ok(entry)
}

/// Releases a held reservation as an operator; refused while the catalog knows the order as CONFIRMED (its unit is
/// sold: cancel the order instead, and the catalog releases it).
pub async fn release_reservation(pool: &Pool, order_id: u64, who: &Operator) -> Result<AuditEntry, ApiError> {
    who.check()?;
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let known: Option<String> = tx.exec_first("SELECT status FROM known_orders WHERE id = ? FOR UPDATE", (order_id,)).await?;
    let held: Option<String> = tx.exec_first("SELECT status FROM reservations WHERE order_id = ? FOR UPDATE", (order_id,)).await?;
    let held = held.ok_or_else(|| ApiError::not_found("reservation of order", order_id))?;
    if held != "RESERVED" {
        return Err(ApiError::conflict("not_held", format!("the reservation of order {order_id} is {held}, not held")));
    }
    if known.as_deref() == Some("CONFIRMED") {
        return Err(ApiError::conflict(
            "confirmed",
            format!("order {order_id} is CONFIRMED: force-cancel it in the orders service and its stock is released"),
        ));
    }
    let lines: Vec<(u64, u32)> =
        tx.exec("SELECT product_id, quantity FROM reservation_lines WHERE order_id = ? ORDER BY product_id", (order_id,)).await?;
    let why = format!("released by {}: {}", who.actor, who.reason);
    catalog::release(&mut tx, order_id, "RELEASED", &why).await.map_err(applied)?;
    let before = json!({"status": held, "order_status": known, "lines": lines});
    let entry = audit(&mut tx, who, "release_reservation", format!("order {order_id}"), before, json!({"status": "RELEASED"})).await?;
    tx.commit().await?;
    Ok(entry)
}

/// Adds `delta` to a product's available stock under its row lock (so it composes with concurrent reservations).
pub async fn adjust_stock(pool: &Pool, product: u64, delta: i64, who: &Operator) -> Result<AuditEntry, ApiError> {
    who.check()?;
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let stock: Option<u32> = tx.exec_first("SELECT stock FROM products WHERE id = ? FOR UPDATE", (product,)).await?;
    let stock = stock.ok_or_else(|| ApiError::not_found("product", product))?;
    let after = i64::from(stock) + delta;
    if after < 0 {
        return Err(ApiError::conflict("insufficient_stock", format!("product {product} has {stock} units available; {delta} would make it negative")));
    }
    let after = u32::try_from(after).map_err(|_| ApiError::invalid(format!("stock {after} is above {}", u32::MAX)))?;
    tx.exec_drop("UPDATE products SET stock = ? WHERE id = ?", (after, product)).await?;
    let entry = audit(&mut tx, who, "adjust_stock", format!("product {product}"), json!({"stock": stock}), json!({"stock": after, "delta": delta})).await?;
    tx.commit().await?;
    Ok(entry)
}

#[derive(OpenApi)]
#[openapi(paths(force_cancel_route), components(schemas(Operator, AuditEntry, ErrorBody)))]
pub struct OrdersDoc;

#[derive(OpenApi)]
#[openapi(paths(release_route, adjust_route), components(schemas(Operator, StockAdjustment, AuditEntry, ErrorBody)))]
pub struct CatalogDoc;

/// The orders service's operator endpoints.
pub fn orders_routes(pool: Pool) -> Router {
    Router::new().route("/orders/{id}/force-cancel", post(force_cancel_route)).with_state(pool)
}

/// The catalog's operator endpoints.
pub fn catalog_routes(pool: Pool) -> Router {
    Router::new()
        .route("/reservations/{order_id}/release", post(release_route))
        .route("/products/{id}/stock-adjustments", post(adjust_route))
        .with_state(pool)
}

/// Cancels a PENDING or CONFIRMED order as an operator, with an audit row.
#[utoipa::path(post, path = "/orders/{id}/force-cancel", params(("id" = u64, Path)), request_body = Operator, responses(
    (status = 200, body = AuditEntry), (status = 404, body = ErrorBody), (status = 409, description = "already final", body = ErrorBody)))]
async fn force_cancel_route(State(pool): State<Pool>, Id(id): Id, Body(who): Body<Operator>) -> Result<Json<AuditEntry>, ApiError> {
    Ok(Json(force_cancel(&pool, id, &who).await?))
}

/// Releases a held reservation as an operator, with an audit row.
#[utoipa::path(post, path = "/reservations/{order_id}/release", params(("order_id" = u64, Path)), request_body = Operator, responses(
    (status = 200, body = AuditEntry), (status = 404, body = ErrorBody), (status = 409, description = "not held, or the order is CONFIRMED", body = ErrorBody)))]
async fn release_route(State(pool): State<Pool>, Id(id): Id, Body(who): Body<Operator>) -> Result<Json<AuditEntry>, ApiError> {
    Ok(Json(release_reservation(&pool, id, &who).await?))
}

/// Adds a delta to a product's available stock, with an audit row.
#[utoipa::path(post, path = "/products/{id}/stock-adjustments", params(("id" = u64, Path)), request_body = StockAdjustment, responses(
    (status = 200, body = AuditEntry), (status = 404, body = ErrorBody), (status = 409, description = "the stock would go negative", body = ErrorBody)))]
async fn adjust_route(State(pool): State<Pool>, Id(id): Id, Body(a): Body<StockAdjustment>) -> Result<Json<AuditEntry>, ApiError> {
    let who = Operator { actor: a.actor, reason: a.reason };
    Ok(Json(adjust_stock(&pool, id, a.delta, &who).await?))
}

/// Runs one operator subcommand of `service` against its database; returns the audit row.
pub async fn run(service: Service, config: &Config, command: OperatorCommand) -> Result<AuditEntry> {
    let needs = match &command {
        OperatorCommand::ForceCancel { .. } => Service::Orders,
        OperatorCommand::ReleaseReservation { .. } | OperatorCommand::AdjustStock { .. } => Service::Catalog,
    };
    if service != needs {
        return Err(anyhow!("this is a command of the {} service, not of {}", needs.name(), service.name()));
    }
    let pool = connect(service, &config.mysql_url).await?;
    let done = match command {
        OperatorCommand::ForceCancel { order, actor, reason } => force_cancel(&pool, order, &Operator { actor, reason }).await,
        OperatorCommand::ReleaseReservation { order, actor, reason } => {
            release_reservation(&pool, order, &Operator { actor, reason }).await
        }
        OperatorCommand::AdjustStock { product, delta, actor, reason } => {
            adjust_stock(&pool, product, delta, &Operator { actor, reason }).await
        }
    };
    pool.disconnect().await.ok();
    done.map_err(|e| anyhow!("{} ({})", e.body.message, e.body.error))
}
