//! The way in from the HTTP server to a source's binlog reader for a resnapshot ([`crate::resnapshot`]): requests,
//! their answers, and the progress shown in `/health`. Apart from the resnapshot itself, so that the shared state of
//! [`crate::metrics`] can hold it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// How long a request waits for the source's reader to validate it.
const ANSWER: Duration = Duration::from_secs(30);

/// One source's resnapshot control, shared by the HTTP server and the source's reader across its restarts.
pub struct Control {
    /// Requests to the reader; one may wait while the reader is busy.
    requests: mpsc::Sender<Request>,
    /// The reader's end, taken by each run of the reader for its lifetime.
    pub(crate) receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>,
    /// The current or last resnapshot, for `/health`.
    status: Mutex<Option<Status>>,
}

/// A request to re-snapshot a table.
pub(crate) struct Request {
    /// `db.table` as given.
    pub(crate) table: String,
    /// The `--where` condition.
    pub(crate) filter: Option<String>,
    /// Where the reader answers: the resnapshot's first status, or why it cannot run.
    pub(crate) reply: oneshot::Sender<Result<Status, RequestError>>,
}

/// The state of a resnapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Chunks are being read and emitted.
    Running,
    /// Every chunk was emitted.
    Done,
    /// Stopped by a definite error (see `error`); streaming goes on.
    Abandoned,
}

/// Progress of a resnapshot, as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// `db.table`.
    pub table: String,
    /// The `--where` condition.
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// Running, done or abandoned.
    pub state: Phase,
    /// Chunks emitted.
    pub chunks: u64,
    /// Rows emitted as reads.
    pub rows: u64,
    /// Rows of chunks not emitted because the stream emitted a newer change of their key.
    pub dropped: u64,
    /// Primary key of the last row emitted (JSON array in key column order).
    pub last_key: Option<serde_json::Value>,
    /// The key it reads up to (the table's highest when it started); what lies between `last_key` and it remains.
    pub end_key: Option<serde_json::Value>,
    /// Why it was abandoned.
    pub error: Option<String>,
}

/// Why a resnapshot request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// No source of that name.
    #[error("no source named {0:?} in this capture")]
    UnknownSource(String),
    /// The source is not streaming (starting, in its initial snapshot, retrying or failed).
    #[error("source {source_name} is {state}, not streaming; a resnapshot runs beside streaming: retry once /health shows it streaming")]
    NotStreaming { source_name: String, state: String },
    /// A resnapshot is already running on the source.
    #[error("source {source_name}: a resnapshot of {table} is running ({rows} rows so far); wait until /health shows it done")]
    Busy { source_name: String, table: String, rows: u64 },
    /// The request is wrong: the table, its key or the condition.
    #[error("source {source_name}: {message}")]
    Invalid { source_name: String, message: String },
    /// The server could not be asked; retry.
    #[error("source {source_name}: {message}; retry")]
    Unavailable { source_name: String, message: String },
}

impl RequestError {
    /// The HTTP status of the refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            RequestError::UnknownSource(_) => 404,
            RequestError::NotStreaming { .. } | RequestError::Busy { .. } => 409,
            RequestError::Invalid { .. } => 400,
            RequestError::Unavailable { .. } => 503,
        }
    }
}

impl Default for Control {
    fn default() -> Control {
        let (requests, receiver) = mpsc::channel(1);
        Control { requests, receiver: Arc::new(tokio::sync::Mutex::new(receiver)), status: Mutex::new(None) }
    }
}

impl Control {
    /// Asks the reader of `source_name` to re-snapshot `table` (`db.table`) limited by `filter`; returns the first
    /// status once the reader validated the request.
    pub async fn request(
        &self,
        source_name: &str,
        table: &str,
        filter: Option<String>,
    ) -> Result<Status, RequestError> {
        if let Some(status) = self.status().filter(|s| s.state == Phase::Running) {
            return Err(RequestError::Busy { source_name: source_name.to_owned(), table: status.table, rows: status.rows });
        }
        let (reply, answer) = oneshot::channel();
        let request = Request { table: table.to_owned(), filter, reply };
        let unavailable = || RequestError::NotStreaming {
            source_name: source_name.to_owned(),
            state: format!("not taking requests (no answer within {} s)", ANSWER.as_secs()),
        };
        self.requests.try_send(request).map_err(|_| unavailable())?;
        match tokio::time::timeout(ANSWER, answer).await {
            Ok(Ok(answer)) => answer,
            _ => Err(unavailable()),
        }
    }

    /// The current or last resnapshot.
    pub fn status(&self) -> Option<Status> {
        self.status.lock().expect("status lock").clone()
    }

    pub(crate) fn set_status(&self, status: Status) {
        *self.status.lock().expect("status lock") = Some(status);
    }
}
