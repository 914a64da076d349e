//! What the consumer applies an event with: a service's [`Handler`], the change event it gets ([`Incoming`], decoded
//! from a [`Message`]), and how an event fails ([`ApplyError`]: by its content, or by the database).

use std::future::Future;

use cdc_contract::{ChangeEvent, Row, Value};
use mysql_async::Transaction;
use serde::{Deserialize, Serialize};

/// One change event taken from a topic.
#[derive(Debug)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The message key (the primary key as JSON).
    pub key: String,
    pub event: ChangeEvent,
}

/// The change event that caused an effect: recorded next to it (an order's history) so it can be traced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Cause {
    pub topic: String,
    pub file: String,
    pub pos: u64,
    pub row: u64,
}

impl Incoming {
    pub fn cause(&self) -> Cause {
        let s = &self.event.source;
        Cause { topic: self.topic.clone(), file: s.file.clone(), pos: s.pos, row: s.row }
    }

    /// The row image that identifies the changed row: `after`, or `before` for a delete.
    pub fn row(&self) -> Result<&Row, ApplyError> {
        self.event
            .after
            .as_ref()
            .or(self.event.before.as_ref())
            .ok_or_else(|| ApplyError::Permanent("the event carries no row image".into()))
    }
}

/// Why an event did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// By its content it never will: goes to `dead_letters`.
    #[error("{0}")]
    Permanent(String),
    /// The database refused: the MySQL classifier decides (data the schema refuses is dead-lettered, anything else
    /// retries the batch).
    #[error(transparent)]
    Database(#[from] mysql_async::Error),
}

/// A required column of a row image, converted.
pub fn column<'r, T>(row: &'r Row, name: &str, convert: impl Fn(&'r Value) -> Option<T>) -> Result<T, ApplyError> {
    let value = row.get(name).ok_or_else(|| ApplyError::Permanent(format!("the row has no column `{name}`")))?;
    convert(value).ok_or_else(|| ApplyError::Permanent(format!("column `{name}` has an unexpected value {value:?}")))
}

/// What a consumer does with one event, inside the batch's transaction, which also records the event as applied.
/// The consumer calls it only for an event newer than what is applied for its key, in partition order; earlier
/// events of the batch are visible in `tx`.
pub trait Handler: Send + Sync + 'static {
    /// Something to do once the transaction committed (metrics of what changed).
    type Note: Send;

    fn apply<'a>(
        &'a self,
        tx: &'a mut Transaction<'static>,
        incoming: &'a Incoming,
    ) -> impl Future<Output = Result<Self::Note, ApplyError>> + Send + 'a;

    /// Applies several such events, in their order (the batch's events to apply). The default applies them one
    /// by one; a handler may override it with statements that cover many events at once, as long as the effect is
    /// that of applying them in order per key. Its notes go to [`Handler::committed`], in any number.
    fn apply_all<'a>(
        &'a self,
        tx: &'a mut Transaction<'static>,
        events: &'a [&'a Incoming],
    ) -> impl Future<Output = Result<Vec<Self::Note>, BatchError>> + Send + 'a
    where
        Self: Sized,
    {
        apply_each(self, tx, events)
    }

    /// Called after the commit.
    fn committed(&self, note: Self::Note);
}

/// Why [`Handler::apply_all`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The event at this index of the slice failed.
    #[error("event {0}: {1}")]
    Event(usize, ApplyError),
    /// A statement covering several events failed; it does not say which event (a data error is located by
    /// applying the events one by one).
    #[error(transparent)]
    Set(#[from] mysql_async::Error),
}

/// Applies `events` one by one with [`Handler::apply`].
pub async fn apply_each<H: Handler>(
    handler: &H,
    tx: &mut Transaction<'static>,
    events: &[&Incoming],
) -> Result<Vec<H::Note>, BatchError> {
    let mut notes = Vec::with_capacity(events.len());
    for (i, incoming) in events.iter().enumerate() {
        notes.push(handler.apply(tx, incoming).await.map_err(|e| BatchError::Event(i, e))?);
    }
    Ok(notes)
}

/// A message taken from a topic, or a stored dead letter replayed.
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The message key (the primary key as JSON).
    pub key: String,
    pub payload: Vec<u8>,
    /// The event and its version, or why the payload is not a change event the consumer can order.
    pub parsed: Result<(Incoming, u64), String>,
    /// The id of the dead letter being replayed; its audit columns change in the batch's transaction.
    pub letter: Option<u64>,
}

impl Message {
    /// Decodes `payload`.
    pub fn new(topic: &str, partition: i32, offset: i64, key: &str, payload: Vec<u8>, letter: Option<u64>) -> Message {
        let parsed = match serde_json::from_slice::<ChangeEvent>(&payload) {
            Err(e) => Err(format!("not a change event: {e}")),
            Ok(event) => match event.version() {
                None => Err(format!("binlog file name `{}` has no sequence number", event.source.file)),
                Some(version) => {
                    let (topic, key) = (topic.to_owned(), key.to_owned());
                    Ok((Incoming { topic, partition, offset, key, event }, version))
                }
            },
        };
        Message { topic: topic.to_owned(), partition, offset, key: key.to_owned(), payload, parsed, letter }
    }
}
