//! Dead letters: change events that cannot apply by their content, kept in the service's `dead_letters` table with
//! their error, message key and payload, so that one bad message neither blocks the stream nor disappears.
//!
//! A letter is pending while `replayed_at` is NULL; `/health` warns and `cdc_service_dead_letters_pending{topic}`
//! counts while any are. `<service> replay-dead-letters` runs them again ([`crate::replay`]); `replay_attempts` and
//! `last_replay_at` count and date the tries.

use mysql_async::prelude::*;
use mysql_async::{Pool, Transaction};

use crate::handler::Message;

/// Stores `message` as a dead letter with `error`, or, replayed, keeps its letter pending with the new error.
pub(crate) async fn store(
    tx: &mut Transaction<'static>,
    consumer: &str,
    message: &Message,
    error: &str,
) -> Result<(), mysql_async::Error> {
    tracing::warn!(topic = %message.topic, partition = message.partition, offset = message.offset, error, "event cannot be applied; kept in dead_letters");
    match message.letter {
        None => {
            let payload = String::from_utf8_lossy(&message.payload);
            tx.exec_drop(
                "INSERT INTO dead_letters (consumer, topic, kafka_partition, kafka_offset, event_key, error, payload) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                (consumer, &message.topic, message.partition, message.offset, &message.key, error, payload.as_ref()),
            )
            .await
        }
        Some(id) => {
            tx.exec_drop(
                "UPDATE dead_letters SET error = ?, replay_attempts = replay_attempts + 1, last_replay_at = NOW(3) \
                 WHERE id = ?",
                (error, id),
            )
            .await
        }
    }
}

/// Marks a replayed letter done with `result`.
pub(crate) async fn replayed(tx: &mut Transaction<'static>, id: u64, result: &str) -> Result<(), mysql_async::Error> {
    tx.exec_drop(
        "UPDATE dead_letters SET replayed_at = NOW(3), last_replay_at = NOW(3), replay_attempts = replay_attempts + 1, \
         replay_result = ? WHERE id = ?",
        (result, id),
    )
    .await
}

/// The database's name and the pending letters of `consumer` in it, per topic.
pub async fn pending(pool: &Pool, consumer: &str) -> Result<(String, Vec<(String, u64)>), mysql_async::Error> {
    let mut conn = pool.get_conn().await?;
    let database: Option<String> = conn.query_first("SELECT DATABASE()").await?;
    let counts = conn
        .exec(
            "SELECT topic, COUNT(*) FROM dead_letters WHERE consumer = ? AND replayed_at IS NULL GROUP BY topic",
            (consumer,),
        )
        .await?;
    Ok((database.unwrap_or_default(), counts))
}
