//! Every time limit of the capture, in one place, and the helpers that apply them.
//!
//! A server stopped with SIGSTOP (or one behind a dead network path) keeps its TCP connections open, so no call
//! to it ever fails by itself: each MySQL call is bounded here and fails with the transient
//! [`CaptureError::Timeout`], after which the source resumes from its checkpoint with the usual backoff. The binlog
//! stream has a read deadline derived from the heartbeat period ([`read_deadline`]). Broker calls are bounded
//! likewise; a broker that stops acknowledging turns `/health` to 503 after [`BROKER_ACK`] without restarting
//! anything (the producer keeps its connections and resumes when the broker does). Shutdown is bounded by
//! [`DRAIN`] and [`SHUTDOWN`].

use std::future::Future;
use std::time::Duration;

use crate::error::{classify_mysql, CaptureError};

/// Connecting to a MySQL server, handshake included.
pub const MYSQL_CONNECT: Duration = Duration::from_secs(5);
/// One small MySQL query: binlog stream setup, schema lookups, the binlog monitor's look, disconnecting.
pub const MYSQL_QUERY: Duration = Duration::from_secs(5);
/// The start-up checks of a source as a whole (a connection and about ten small queries).
pub const MYSQL_CHECKS: Duration = Duration::from_secs(10);
/// One snapshot query: opening the read view (which may wait for `FLUSH TABLES WITH READ LOCK` on MySQL) or
/// reading one chunk of `snapshot_chunk_rows` rows. A frozen server during a snapshot is noticed after this long.
pub const SNAPSHOT_QUERY: Duration = Duration::from_secs(60);
/// One broker request of the admin client or a metadata look-up.
pub const BROKER_REQUEST: Duration = Duration::from_secs(10);
/// `/health` reports a source unavailable while its oldest unacknowledged batch is older than this. An idle source
/// produces a heartbeat every `heartbeat_interval`, so a frozen broker is noticed on idle sources too.
pub const BROKER_ACK: Duration = Duration::from_secs(5);
/// On shutdown, how long the writer waits for the broker to acknowledge what was sent. What is not acknowledged by
/// then is sent again after the next start (it lies after the saved checkpoint), which is safe.
pub const DRAIN: Duration = Duration::from_secs(5);
/// How long the process waits for every source to stop after SIGTERM/SIGINT before it exits anyway.
pub const SHUTDOWN: Duration = Duration::from_secs(9);
/// The shortest binlog read deadline, whatever the heartbeat period.
pub const MIN_READ_DEADLINE: Duration = Duration::from_secs(5);

/// The binlog read deadline of a source: with no event (not even a heartbeat, which the server sends every
/// `heartbeat_interval` while idle) for this long, the connection or the server is taken as frozen: three
/// heartbeat periods, and at least [`MIN_READ_DEADLINE`].
pub fn read_deadline(heartbeat_interval: Duration) -> Duration {
    (heartbeat_interval * 3).max(MIN_READ_DEADLINE)
}

/// Awaits a MySQL call of `source` for at most `limit`; classifies its error or reports the timeout.
pub async fn mysql<T>(
    source: &str,
    what: &str,
    limit: Duration,
    call: impl Future<Output = mysql_async::Result<T>>,
) -> Result<T, CaptureError> {
    within(source, what, limit, async { call.await.map_err(|e| classify_mysql(source, e)) }).await
}

/// Awaits a step of `source` for at most `limit`, or fails with [`CaptureError::Timeout`].
pub async fn within<T>(
    source: &str,
    what: &str,
    limit: Duration,
    step: impl Future<Output = Result<T, CaptureError>>,
) -> Result<T, CaptureError> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => Err(CaptureError::Timeout { source_name: source.to_owned(), what: what.to_owned(), limit }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_deadline_is_three_heartbeats_and_at_least_five_seconds() {
        let cases = [(100, 5_000), (500, 5_000), (1_000, 5_000), (2_000, 6_000), (10_000, 30_000)];
        for (heartbeat_ms, deadline_ms) in cases {
            assert_eq!(
                read_deadline(Duration::from_millis(heartbeat_ms)),
                Duration::from_millis(deadline_ms),
                "heartbeat {heartbeat_ms} ms"
            );
        }
    }

    #[tokio::test]
    async fn a_call_that_never_answers_is_a_transient_timeout_naming_the_source() {
        let never = std::future::pending::<mysql_async::Result<()>>();
        let error = mysql("orders", "the binlog monitor", Duration::from_millis(20), never).await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert_eq!(error.to_string(), "source orders: the binlog monitor did not answer within 20ms");
        let answered = within("orders", "x", MYSQL_QUERY, async { Ok(7) }).await.unwrap();
        assert_eq!(answered, 7);
    }
}
