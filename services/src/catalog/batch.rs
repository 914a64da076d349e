//! The catalog consumer's events applied with statements that cover many events ([`Handler::apply_all`]).
//!
//! The events are taken in runs in which no order occurs twice (an order's second event starts the next run, so
//! per key order holds). Per run:
//! - one upsert records every order's status and `pending_since_ms` in `known_orders`;
//! - releases: the reservations of the orders that became `CANCELLED`, `REJECTED` or were deleted are row-locked
//!   (one locking read); the held ones give their stock back (one `UPDATE ... JOIN`) and are marked `RELEASED`;
//! - decisions: of the `PENDING` orders not decided yet, every product they want is row-locked in id order (one
//!   locking read); the orders are decided one after the other, in event order, against the stock left by the ones
//!   before (all or nothing per order, as [`super::shortage`] decides one by one); then the stock is taken (one
//!   `UPDATE`), and the reservation lines and reservations are written (one multi-row `INSERT` each).
//!
//! Stock cannot go negative: the decisions run under the products' row locks, and the column is unsigned.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use mysql_async::prelude::*;
use mysql_async::{Transaction, Value};

use super::{shortage, wanted, Reserve, KNOWN_ORDERS, REMEMBER};
use crate::handler::{column, ApplyError, BatchError, Incoming};
use crate::rows::{id_list, insert, insert_exprs};

/// What an order's change event asks of the catalog.
pub(super) struct OrderChange<'e> {
    pub(super) order_id: u64,
    /// The order's status, `DELETED` for a delete.
    pub(super) status: String,
    /// For a `PENDING` order: the newer of its `created_at` and the event's commit time, in the orders database's
    /// clock (the orders service confirms only within its pending timeout of `created_at`).
    pub(super) pending_since: Option<i64>,
    pub(super) action: Action<'e>,
}

pub(super) enum Action<'e> {
    /// Reserve the order's lines (its `items`), unless it is decided already.
    Decide(Option<&'e str>),
    /// Give back a held reservation, with this reason.
    Release(String),
    Nothing,
}

impl<'e> OrderChange<'e> {
    /// `None` for a truncate (reservations are left to reconciliation).
    pub(super) fn of(incoming: &'e Incoming) -> Result<Option<OrderChange<'e>>, ApplyError> {
        if incoming.event.op == cdc_contract::Op::Truncate {
            tracing::warn!(topic = %incoming.topic, "orders table truncated; reservations are left to reconciliation");
            return Ok(None);
        }
        let order_id = column(incoming.row()?, "id", |v| v.as_u64())?;
        let Some(after) = &incoming.event.after else {
            let action = Action::Release("the order was deleted".into());
            return Ok(Some(OrderChange { order_id, status: "DELETED".into(), pending_since: None, action }));
        };
        let status = column(after, "status", |v| v.as_str().map(str::to_owned))?;
        let created_ms = after.get("created_at").and_then(|v| v.as_u64()).map_or(0, |v| v as i64);
        let pending_since = (status == "PENDING").then(|| created_ms.max(incoming.event.source.ts_ms));
        let action = match status.as_str() {
            "PENDING" => Action::Decide(after.get("items").and_then(|v| v.as_str())),
            "CANCELLED" | "REJECTED" => Action::Release(format!("the order is {status}")),
            _ => Action::Nothing,
        };
        Ok(Some(OrderChange { order_id, status, pending_since, action }))
    }
}

pub(super) async fn apply_all(reserve: &Reserve, tx: &mut Transaction<'static>, events: &[&Incoming]) -> Result<Vec<()>, BatchError> {
    let mut changes = Vec::with_capacity(events.len());
    for (i, incoming) in events.iter().enumerate() {
        if let Some(change) = OrderChange::of(incoming).map_err(|e| BatchError::Event(i, e))? {
            changes.push(change);
        }
    }
    let mut rest = changes.as_slice();
    while !rest.is_empty() {
        let mut seen = HashSet::new();
        let run = rest.iter().take_while(|c| seen.insert(c.order_id)).count();
        apply_run(reserve, tx, &rest[..run]).await?;
        rest = &rest[run..];
    }
    Ok(Vec::new())
}

/// Applies the changes of distinct orders (see the module doc).
async fn apply_run(reserve: &Reserve, tx: &mut Transaction<'static>, run: &[OrderChange<'_>]) -> Result<(), mysql_async::Error> {
    let known = run.iter().map(|c| vec![c.order_id.into(), c.status.as_str().into(), c.pending_since.into()]).collect();
    insert(tx, KNOWN_ORDERS, REMEMBER, known).await?;
    let releases: Vec<(u64, &str)> = run
        .iter()
        .filter_map(|c| match &c.action {
            Action::Release(reason) => Some((c.order_id, reason.as_str())),
            _ => None,
        })
        .collect();
    release(tx, &releases).await?;
    let pending: Vec<(u64, Option<&str>)> = run
        .iter()
        .filter_map(|c| match c.action {
            Action::Decide(lines) => Some((c.order_id, lines)),
            _ => None,
        })
        .collect();
    decide(tx, &pending, reserve.ttl_ms).await
}

/// Gives back the stock of the held reservations among `orders` (order, reason) and marks them `RELEASED`.
async fn release(tx: &mut Transaction<'static>, orders: &[(u64, &str)]) -> Result<(), mysql_async::Error> {
    if orders.is_empty() {
        return Ok(());
    }
    let held: BTreeSet<u64> = tx
        .query::<(u64, String), _>(format!(
            "SELECT order_id, CAST(status AS CHAR) FROM reservations WHERE order_id IN ({}) ORDER BY order_id FOR UPDATE",
            id_list(orders.iter().map(|o| o.0))
        ))
        .await?
        .into_iter()
        .filter(|(_, status)| status == "RESERVED")
        .map(|(id, _)| id)
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    // A product deleted meanwhile has no stock to give back to.
    tx.query_drop(format!(
        "UPDATE products p JOIN (SELECT product_id, SUM(quantity) AS quantity FROM reservation_lines \
         WHERE order_id IN ({}) GROUP BY product_id) l ON l.product_id = p.id SET p.stock = p.stock + l.quantity",
        id_list(held.iter().copied())
    ))
    .await?;
    let mut by_reason: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for &(id, reason) in orders.iter().filter(|o| held.contains(&o.0)) {
        by_reason.entry(reason).or_default().push(id);
    }
    for (reason, ids) in by_reason {
        tx.exec_drop(format!("UPDATE reservations SET status = 'RELEASED', reason = ? WHERE order_id IN ({})", id_list(ids)), (reason,))
            .await?;
    }
    Ok(())
}

/// The units wanted per product, or why the order is rejected.
type Wanted = Result<BTreeMap<u64, u64>, String>;

/// Reserves every line of each order not decided yet, or rejects it without taking any, in the given order.
async fn decide(tx: &mut Transaction<'static>, orders: &[(u64, Option<&str>)], ttl_ms: u64) -> Result<(), mysql_async::Error> {
    if orders.is_empty() {
        return Ok(());
    }
    let decided: HashSet<u64> = tx
        .query::<u64, _>(format!("SELECT order_id FROM reservations WHERE order_id IN ({})", id_list(orders.iter().map(|o| o.0))))
        .await?
        .into_iter()
        .collect();
    let todo: Vec<(u64, Wanted)> =
        orders.iter().filter(|o| !decided.contains(&o.0)).map(|&(id, lines)| (id, wanted(lines))).collect();
    let products: BTreeSet<u64> = todo.iter().filter_map(|t| t.1.as_ref().ok()).flat_map(|w| w.keys().copied()).collect();
    let mut stock: BTreeMap<u64, u64> = BTreeMap::new();
    if !products.is_empty() {
        let rows: Vec<(u64, u32)> = tx
            .query(format!("SELECT id, stock FROM products WHERE id IN ({}) ORDER BY id FOR UPDATE", id_list(products)))
            .await?;
        stock = rows.into_iter().map(|(id, have)| (id, u64::from(have))).collect();
    }
    let mut taken: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut lines, mut reservations): (Vec<Vec<Value>>, Vec<Vec<Value>>) = (Vec::new(), Vec::new());
    let expires_us = ttl_ms * 1000;
    for (order_id, wanted) in todo {
        let checked = wanted.and_then(|w| shortage(&w, &stock).map_or(Ok(w), Err));
        match checked {
            Err(reason) => reservations.push(vec![order_id.into(), "REJECTED".into(), reason.into(), expires_us.into()]),
            Ok(wanted) => {
                for (product, quantity) in wanted {
                    *stock.get_mut(&product).expect("checked by shortage") -= quantity;
                    *taken.entry(product).or_insert(0) += quantity;
                    lines.push(vec![order_id.into(), product.into(), quantity.into()]);
                }
                reservations.push(vec![order_id.into(), "RESERVED".into(), Value::NULL, expires_us.into()]);
            }
        }
    }
    if !taken.is_empty() {
        let cases: String = taken.iter().map(|(id, q)| format!(" WHEN {id} THEN {q}")).collect();
        tx.query_drop(format!(
            "UPDATE products SET stock = stock - CASE id{cases} END WHERE id IN ({})",
            id_list(taken.keys().copied())
        ))
        .await?;
    }
    insert(tx, "reservation_lines (order_id, product_id, quantity)", "", lines).await?;
    let into = "reservations (order_id, status, reason, expires_at)";
    insert_exprs(tx, into, "?, ?, ?, NOW(3) + INTERVAL ? MICROSECOND", "", reservations).await
}
