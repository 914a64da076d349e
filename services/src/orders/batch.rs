//! The orders consumer's events applied with statements that cover many events ([`Handler::apply_all`]).
//!
//! - Users and products: the local copies hold a key's newest row image, so of a key's events in the batch only the
//!   last one (partition order) is written, all keys in one multi-row upsert.
//! - Reservations: taken in runs in which no order occurs twice (a key's second event starts the next run, so per
//!   key order holds). Per run: one statement for the `known_reservations` upserts and one for the deletes; the
//!   orders concerned are row-locked in id order with one locking read; *after* that read holds every lock, their
//!   age is read (one statement), each decision is taken as [`Workflow::decision`] takes it one by one, and the new
//!   statuses (one `UPDATE` per status) and history rows (one `INSERT`) are written. The batch commits right after,
//!   so a confirmation is written within the pending timeout of its order's age check, as the catalog's expiry rule
//!   needs.
//!
//! Parsing errors are reported per event (dead-lettered); a statement that refuses the data makes the caller apply
//! the events one by one to find which event it is.

use std::collections::{BTreeMap, HashMap, HashSet};

use mysql_async::prelude::*;
use mysql_async::{Transaction, Value};

use crate::rows::{id_list, insert};

use super::{Decided, Workflow};
use crate::handler::{column, ApplyError, BatchError, Cause, Incoming};

/// One reservation event: the order, and the reservation's status and reason (`None`: the reservation was deleted).
struct Reservation<'e> {
    order_id: u64,
    state: Option<(String, Option<String>)>,
    incoming: &'e Incoming,
}

pub(super) async fn apply_all(wf: &Workflow, tx: &mut Transaction<'static>, events: &[&Incoming]) -> Result<Vec<Decided>, BatchError> {
    // The newest image per key of the copies (id -> deleted; id -> name, price, deleted).
    let mut users: BTreeMap<u64, bool> = BTreeMap::new();
    let mut products: BTreeMap<u64, (String, String, bool)> = BTreeMap::new();
    let mut reservations = Vec::new();
    for (i, incoming) in events.iter().enumerate() {
        let parsed = parse(wf, incoming, &mut users, &mut products, &mut reservations);
        parsed.map_err(|e| BatchError::Event(i, e))?;
    }
    let users = users.into_iter().map(|(id, del)| vec![id.into(), del.into()]).collect();
    insert(tx, "known_users (id, deleted)", "ON DUPLICATE KEY UPDATE deleted = VALUES(deleted)", users).await?;
    let products = products.into_iter().map(|(id, (name, price, del))| vec![id.into(), name.into(), price.into(), del.into()]);
    insert(
        tx,
        "known_products (id, name, price, deleted)",
        "ON DUPLICATE KEY UPDATE name = VALUES(name), price = VALUES(price), deleted = VALUES(deleted)",
        products.collect(),
    )
    .await?;
    let mut notes = Vec::new();
    let mut rest = reservations.as_slice();
    while !rest.is_empty() {
        let mut seen = HashSet::new();
        let run = rest.iter().take_while(|r| seen.insert(r.order_id)).count();
        notes.extend(decide(wf, tx, &rest[..run]).await?);
        rest = &rest[run..];
    }
    Ok(notes)
}

/// Takes one event into the copies' newest images or the reservations.
fn parse<'e>(
    wf: &Workflow,
    incoming: &'e Incoming,
    users: &mut BTreeMap<u64, bool>,
    products: &mut BTreeMap<u64, (String, String, bool)>,
    reservations: &mut Vec<Reservation<'e>>,
) -> Result<(), ApplyError> {
    if incoming.event.op == cdc_contract::Op::Truncate {
        tracing::warn!(topic = %incoming.topic, "a truncate of a consumed table is ignored");
        return Ok(());
    }
    let row = incoming.row()?;
    let after = incoming.event.after.as_ref();
    if incoming.topic == wf.users {
        users.insert(column(row, "id", |v| v.as_u64())?, after.is_none());
    } else if incoming.topic == wf.products {
        let id = column(row, "id", |v| v.as_u64())?;
        let name = column(row, "name", |v| v.as_str().map(str::to_owned))?;
        let price = column(row, "price", |v| v.as_str().map(str::to_owned))?;
        products.insert(id, (name, price, after.is_none()));
    } else if incoming.topic == wf.reservations {
        let order_id = column(row, "order_id", |v| v.as_u64())?;
        let state = match after {
            None => None,
            Some(after) => Some((
                column(after, "status", |v| v.as_str().map(str::to_owned))?,
                after.get("reason").and_then(|v| v.as_str()).map(str::to_owned),
            )),
        };
        reservations.push(Reservation { order_id, state, incoming });
    } else {
        return Err(ApplyError::Permanent(format!("no handler for topic {}", incoming.topic)));
    }
    Ok(())
}

/// Applies a run of reservation events of distinct orders (see the module doc).
async fn decide(wf: &Workflow, tx: &mut Transaction<'static>, run: &[Reservation<'_>]) -> Result<Vec<Decided>, BatchError> {
    let deleted: Vec<u64> = run.iter().filter(|r| r.state.is_none()).map(|r| r.order_id).collect();
    if !deleted.is_empty() {
        tx.query_drop(format!("DELETE FROM known_reservations WHERE order_id IN ({})", id_list(deleted))).await?;
    }
    let known: Vec<(u64, &str, Option<&str>)> =
        run.iter().filter_map(|r| r.state.as_ref().map(|(s, why)| (r.order_id, s.as_str(), why.as_deref()))).collect();
    if known.is_empty() {
        return Ok(Vec::new());
    }
    insert(
        tx,
        "known_reservations (order_id, status, reason)",
        "ON DUPLICATE KEY UPDATE status = VALUES(status), reason = VALUES(reason)",
        known.iter().map(|&(id, status, why)| vec![id.into(), status.into(), why.into()]).collect(),
    )
    .await?;
    let mut ids: Vec<u64> = known.iter().map(|k| k.0).collect();
    ids.sort_unstable();
    // Every lock first; then the ages (NOW() is a statement's start time, and the locking read may have waited).
    let status: Vec<(u64, String)> = tx
        .query(format!("SELECT id, CAST(status AS CHAR) FROM orders WHERE id IN ({}) ORDER BY id FOR UPDATE", id_list(ids)))
        .await?;
    let pending: Vec<u64> = status.into_iter().filter(|(_, s)| s == "PENDING").map(|(id, _)| id).collect();
    if pending.is_empty() {
        return Ok(Vec::new()); // deleted, decided, cancelled or timed out: a late outcome changes nothing
    }
    let ages: HashMap<u64, Option<u64>> = tx
        .query::<(u64, Option<u64>), _>(format!(
            "SELECT id, TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3)) FROM orders WHERE id IN ({})",
            id_list(pending)
        ))
        .await?
        .into_iter()
        .collect();
    let mut to: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    let mut history: Vec<Vec<Value>> = Vec::new();
    let mut notes = Vec::new();
    for r in run {
        let (Some((status, reason)), Some(age)) = (&r.state, ages.get(&r.order_id)) else { continue };
        let age_us = age.unwrap_or(u64::MAX);
        let Some((next, why)) = wf.decision(status, reason.clone(), age_us) else { continue };
        to.entry(next).or_default().push(r.order_id);
        let Cause { topic, file, pos, row } = r.incoming.cause();
        history.push(vec![r.order_id.into(), next.into(), why.into(), "reservation".into(), topic.into(), file.into(), pos.into(), row.into()]);
        notes.push(Some((next, age_us as f64 / 1e6)));
    }
    for (next, ids) in to {
        tx.exec_drop(format!("UPDATE orders SET status = ? WHERE id IN ({})", id_list(ids)), (next,)).await?;
    }
    let into = "order_history (order_id, status, reason, cause, event_topic, event_file, event_pos, event_row)";
    insert(tx, into, "", history).await?;
    Ok(notes)
}
