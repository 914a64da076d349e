//! `<service> replay-dead-letters`: every pending dead letter of a consumer ([`crate::dead_letters`]) runs through
//! the same batch apply as the consumer ([`crate::apply`]), oldest first. In the transaction of its effect, a letter
//! that applies (or whose key already has this or a newer change applied) gets `replayed_at` and `replay_result`;
//! one that fails again stays pending with its new error.

use std::time::Duration;

use anyhow::{bail, Result};
use cdc_common::backoff::Backoff;
use cdc_common::mysql::{mysql_error_kind, MySqlErrorKind};
use mysql_async::prelude::*;
use mysql_async::Pool;
use serde::Serialize;

use crate::apply::{apply_batch, Outcome};
use crate::handler::{Handler, Message};

/// What one replay did, by letter id.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Applied now.
    pub applied: Vec<u64>,
    /// Their key already had this or a newer change applied: nothing to do (an older change never overwrites a
    /// newer one).
    pub already_applied: Vec<u64>,
    /// Failed again; still pending, with this error.
    pub failed: Vec<FailedLetter>,
}

#[derive(Debug, Serialize)]
pub struct FailedLetter {
    pub id: u64,
    pub error: String,
}

/// Letters replayed per transaction.
const REPLAY_BATCH: u64 = 100;

/// Replays every pending letter of `consumer`, oldest first. A database that refuses for a
/// reason other than a letter's content is retried with backoff for about a minute, then reported as the error.
pub async fn replay<H: Handler>(pool: &Pool, consumer: &str, handler: &H) -> Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let mut after = 0_u64;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        type Row = (u64, String, i32, i64, Option<String>, String);
        let rows: Vec<Row> = pool
            .get_conn()
            .await?
            .exec(
                "SELECT id, topic, kafka_partition, kafka_offset, event_key, payload FROM dead_letters \
                 WHERE consumer = ? AND replayed_at IS NULL AND id > ? ORDER BY id LIMIT ?",
                (consumer, after, REPLAY_BATCH),
            )
            .await?;
        let Some(last) = rows.last() else { return Ok(report) };
        after = last.0;
        let batch: Vec<Message> = rows
            .into_iter()
            .map(|(id, topic, partition, offset, key, payload)| {
                let mut m = Message::new(&topic, partition, offset, key.as_deref().unwrap_or(""), payload.into_bytes(), Some(id));
                if key.is_none() {
                    m.parsed = Err("the letter was stored without its message key, so its order against other changes \
                                    of the key is unknown: apply it by hand and set replayed_at"
                        .into());
                }
                m
            })
            .collect();
        let outcomes = loop {
            match apply_batch(pool, consumer, handler, &batch).await {
                Ok(outcomes) => break outcomes,
                Err(e) if mysql_error_kind(&e) == MySqlErrorKind::Transient && backoff.attempts() < 10 => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "replaying dead letters failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => bail!("the database refuses the replay: {e}"),
            }
        };
        backoff.reset();
        for (message, outcome) in batch.iter().zip(outcomes) {
            let id = message.letter.unwrap_or_default();
            match outcome {
                Outcome::Applied => report.applied.push(id),
                Outcome::Duplicate => report.already_applied.push(id),
                Outcome::DeadLettered(error) => report.failed.push(FailedLetter { id, error }),
            }
        }
    }
}
