//! A batch of change events applied in one local transaction, exactly once per event.
//!
//! In one transaction: the newest applied version of every key of the batch is read from `applied_events`
//! (row-locked, one query per topic); each event, in the batch's order (which is partition order, so per-key order),
//! is applied by the handler only if it is newer than what is applied for its key (a redelivery, a replay or an
//! older event changes nothing); then the new versions are written (one statement) and the transaction commits.
//!
//! An event whose *content* cannot apply (not a change event, a missing column, data the schema refuses: see
//! [`mysql_error_kind`]) must not take the others down with it: the transaction is rolled back and the batch runs
//! again with that event stored in `dead_letters` instead of applied, in the same transaction as the others' effects.
//! The handler may apply the batch's events with statements that cover many of them ([`Handler::apply_all`]); when
//! such a statement refuses the data, the batch runs again with its events applied one by one, to find the event.
//! Any other database error rolls the whole batch back and is returned: the caller retries the batch, and nothing
//! of it (effects, dead letters, offsets) is committed meanwhile.

use std::collections::{BTreeSet, HashMap};

use cdc_common::mysql::{mysql_error_kind, MySqlErrorKind};
use mysql_async::prelude::*;
use mysql_async::{Pool, Transaction, TxOpts};

use crate::handler::{apply_each, ApplyError, BatchError, Handler, Message};
use crate::dead_letters;

/// What became of one message of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Its key already had this or a newer version applied.
    Duplicate,
    /// Stored in (or, replayed, kept in) `dead_letters` with this error.
    DeadLettered(String),
}

/// Applies `batch` in one transaction (see the module doc). `Err` is a database error that is not about an
/// event's content: nothing was committed, and the caller retries the batch.
///
/// The events to apply go to [`Handler::apply_all`] together. When one of its statements that covers several
/// events refuses their data, the batch runs again with the events applied one by one, which finds the event.
pub async fn apply_batch<H: Handler>(
    pool: &Pool,
    consumer: &str,
    handler: &H,
    batch: &[Message],
) -> Result<Vec<Outcome>, mysql_async::Error> {
    let mut refused: HashMap<usize, String> = HashMap::new();
    let mut one_by_one = false;
    loop {
        match attempt(pool, consumer, handler, batch, &refused, one_by_one).await {
            Ok((outcomes, notes)) => {
                for note in notes {
                    handler.committed(note);
                }
                return Ok(outcomes);
            }
            // Each round refuses one more event, so this ends within the batch's length.
            Err(Failed::Content(index, reason)) => {
                refused.insert(index, reason);
            }
            Err(Failed::Located) => one_by_one = true,
            Err(Failed::Database(e)) => return Err(e),
        }
    }
}

enum Failed {
    /// The event at this index cannot apply by its content.
    Content(usize, String),
    /// A statement for several events refused their data: apply them one by one to find which.
    Located,
    Database(mysql_async::Error),
}

impl From<mysql_async::Error> for Failed {
    fn from(e: mysql_async::Error) -> Failed {
        Failed::Database(e)
    }
}

/// One try of the batch with the `refused` events dead-lettered. A returned error drops the transaction, which
/// rolls it back.
async fn attempt<H: Handler>(
    pool: &Pool,
    consumer: &str,
    handler: &H,
    batch: &[Message],
    refused: &HashMap<usize, String>,
    one_by_one: bool,
) -> Result<(Vec<Outcome>, Vec<H::Note>), Failed> {
    let mut tx = pool.start_transaction(TxOpts::default()).await?;
    let mut versions = applied_versions(&mut tx, consumer, batch).await?;
    // Per key, the index of its newest applied event in this batch: written to applied_events at the end.
    let mut newest: HashMap<(&str, &str), usize> = HashMap::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    // The events to apply, in batch order, and their indexes in the batch.
    let (mut indexes, mut events) = (Vec::new(), Vec::new());
    for (index, message) in batch.iter().enumerate() {
        let (incoming, version) = match (&message.parsed, refused.get(&index)) {
            (_, Some(reason)) | (Err(reason), None) => {
                dead_letters::store(&mut tx, consumer, message, reason).await?;
                outcomes.push(Outcome::DeadLettered(reason.clone()));
                continue;
            }
            (Ok((incoming, version)), None) => (incoming, *version),
        };
        let slot = (message.topic.as_str(), message.key.as_str());
        if versions.get(&slot).is_some_and(|&seen| seen >= version) {
            if let Some(id) = message.letter {
                dead_letters::replayed(&mut tx, id, "already applied (this or a newer change of the key)").await?;
            }
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        // Applied below, or the attempt fails and runs again.
        versions.insert(slot, version);
        newest.insert(slot, index);
        if let Some(id) = message.letter {
            dead_letters::replayed(&mut tx, id, "applied").await?;
        }
        outcomes.push(Outcome::Applied);
        indexes.push(index);
        events.push(incoming);
    }
    let applied = if one_by_one { apply_each(handler, &mut tx, &events).await } else { handler.apply_all(&mut tx, &events).await };
    let notes = match applied {
        Ok(notes) => notes,
        Err(BatchError::Event(i, ApplyError::Permanent(reason))) => return Err(Failed::Content(indexes[i], reason)),
        Err(BatchError::Event(i, ApplyError::Database(e))) if mysql_error_kind(&e) == MySqlErrorKind::Data => {
            return Err(Failed::Content(indexes[i], format!("the database refuses the event's data: {e}")));
        }
        Err(BatchError::Event(_, ApplyError::Database(e))) => return Err(Failed::Database(e)),
        Err(BatchError::Set(e)) if mysql_error_kind(&e) == MySqlErrorKind::Data && !one_by_one => return Err(Failed::Located),
        Err(BatchError::Set(e)) => return Err(Failed::Database(e)),
    };
    let mut applied: Vec<usize> = newest.into_values().collect();
    applied.sort_unstable();
    record_applied(&mut tx, consumer, batch, &applied).await?;
    tx.commit().await?;
    Ok((outcomes, notes))
}

/// The applied version of every key of the batch, row-locked until the transaction ends.
async fn applied_versions<'m>(
    tx: &mut Transaction<'static>,
    consumer: &str,
    batch: &'m [Message],
) -> Result<HashMap<(&'m str, &'m str), u64>, mysql_async::Error> {
    let mut keys: HashMap<&'m str, BTreeSet<&'m str>> = HashMap::new();
    for m in batch.iter().filter(|m| m.parsed.is_ok()) {
        keys.entry(m.topic.as_str()).or_default().insert(m.key.as_str());
    }
    let mut versions = HashMap::new();
    for (topic, keys) in keys {
        let marks = vec!["?"; keys.len()].join(", ");
        let mut params: Vec<mysql_async::Value> = vec![consumer.into(), topic.into()];
        params.extend(keys.iter().map(|k| mysql_async::Value::from(*k)));
        let rows: Vec<(String, u64)> = tx
            .exec(
                format!(
                    "SELECT event_key, version FROM applied_events WHERE consumer = ? AND topic = ? \
                     AND event_key IN ({marks}) FOR UPDATE"
                ),
                params,
            )
            .await?;
        for (key, version) in rows {
            if let Some(&k) = keys.get(key.as_str()) {
                versions.insert((topic, k), version);
            }
        }
    }
    Ok(versions)
}

/// Writes the position of each event at `indexes` as its key's newest applied event.
async fn record_applied(
    tx: &mut Transaction<'static>,
    consumer: &str,
    batch: &[Message],
    indexes: &[usize],
) -> Result<(), mysql_async::Error> {
    for chunk in indexes.chunks(500) {
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut params: Vec<mysql_async::Value> = Vec::with_capacity(chunk.len() * 9);
        for &i in chunk {
            let m = &batch[i];
            let Ok((incoming, version)) = &m.parsed else { continue };
            let s = &incoming.event.source;
            params.extend([
                consumer.into(),
                m.topic.as_str().into(),
                m.key.as_str().into(),
                (*version).into(),
                s.file.as_str().into(),
                s.pos.into(),
                s.row.into(),
                m.partition.into(),
                m.offset.into(),
            ]);
        }
        tx.exec_drop(
            format!(
                "INSERT INTO applied_events (consumer, topic, event_key, version, source_file, source_pos, source_row, \
                 kafka_partition, kafka_offset) VALUES {rows} ON DUPLICATE KEY UPDATE \
                 version = VALUES(version), source_file = VALUES(source_file), source_pos = VALUES(source_pos), \
                 source_row = VALUES(source_row), kafka_partition = VALUES(kafka_partition), \
                 kafka_offset = VALUES(kafka_offset), applied_at = CURRENT_TIMESTAMP(3)"
            ),
            params,
        )
        .await?;
    }
    Ok(())
}
