//! Errors of the capture, split by what the caller should do: [`CaptureError::is_transient`] errors are retried
//! with backoff (resuming from the checkpoint is always safe), all others stop the source with a message that names
//! the remedy. One classifier per client library: [`mysql_error_kind`] (used by [`classify_mysql`] and by the
//! services' consumers) and [`classify_kafka`].

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::checkpoint::CheckpointError;
use crate::decode::DecodeError;

/// An error of one source's pipeline.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A server setting the capture depends on has the wrong value.
    #[error("source {source_name}: {setting} is {found:?}, the capture needs {required}; {remedy}")]
    ServerSetting { source_name: String, setting: String, found: String, required: String, remedy: String },
    /// The capture account lacks privileges.
    #[error("source {source_name}: the capture account lacks {missing}; run: GRANT {missing} ON *.* TO <capture user>")]
    Privileges { source_name: String, missing: String },
    /// The binlog no longer holds the checkpoint's position.
    #[error(
        "source {source_name}: binlog file {needed} needed by the checkpoint is no longer on the server (oldest: \
         {oldest}); changes since the checkpoint are lost to the binlog. Re-snapshot: stop the capture, move \
         {checkpoint} away (keep the .epoch file beside it, which keeps row versions growing) and start it again"
    )]
    BinlogPurged { source_name: String, needed: String, oldest: String, checkpoint: String },
    /// The checkpoint's position is not valid on the server (another server, or its binlog was reset), and its
    /// GTID set cannot be resumed from either.
    #[error(
        "source {source_name}: cannot resume: {why}. Re-snapshot: stop the capture, move {checkpoint} away (keep the \
         .epoch file beside it, which keeps row versions growing) and start it again{hint}"
    )]
    CannotResume { source_name: String, why: String, checkpoint: String, hint: String },
    /// Row versions would no longer fit their 16 bits of `epoch + file_seq`.
    #[error(
        "source {source_name}: row versions are exhausted: epoch {epoch} + binlog file number {file_seq} is above \
         65535, so versions would wrap and consumers would ignore changes. Rebuild the consumers' state from a new \
         snapshot after deleting the source's .json and .epoch files in the state directory"
    )]
    VersionsExhausted { source_name: String, epoch: u64, file_seq: u64 },
    /// A binlog event cannot be decoded.
    #[error("source {source_name}: cannot decode the event at {position}: {error}")]
    Decode { source_name: String, position: String, error: DecodeError },
    /// A record is larger than the producer accepts (see [`crate::oversized`]).
    #[error("source {source_name}: {record}")]
    OversizedRecord { source_name: String, record: crate::oversized::Oversized },
    /// The checkpoint cannot be read or written.
    #[error("source {source_name}: {error}")]
    Checkpoint { source_name: String, error: CheckpointError },
    /// A MySQL error; transient when the connection was lost or the server is restarting.
    #[error("source {source_name}: mysql: {error}")]
    MySql { source_name: String, error: mysql_async::Error, transient: bool },
    /// A broker error; transient when the broker may come back.
    #[error("kafka: {error}")]
    Kafka { error: KafkaError, transient: bool },
    /// A server or the broker did not answer within its time limit (see [`crate::timeouts`]): frozen, overloaded or
    /// cut off. Transient: the source resumes from its checkpoint once it answers again.
    #[error("source {source_name}: {what} did not answer within {}", humantime_serde::re::humantime::format_duration(*.limit))]
    Timeout { source_name: String, what: String, limit: std::time::Duration },
    /// Something else that cannot be retried, with its explanation.
    #[error("source {source_name}: {message}")]
    Definite { source_name: String, message: String },
}

impl CaptureError {
    /// Whether retrying (resuming from the checkpoint) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            CaptureError::MySql { transient, .. } | CaptureError::Kafka { transient, .. } => *transient,
            CaptureError::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Classifies a MySQL error of `source_name`.
pub fn classify_mysql(source_name: &str, error: mysql_async::Error) -> CaptureError {
    let transient = mysql_error_kind(&error) == MySqlErrorKind::Transient;
    CaptureError::MySql { source_name: source_name.to_owned(), error, transient }
}

/// What a MySQL error says about running the same statements again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MySqlErrorKind {
    /// The connection or the server's state refused it (lost or killed connection, shutdown, read-only, lock wait,
    /// deadlock, too many connections): the same statements may succeed later.
    Transient,
    /// The statement's data does not fit the schema (duplicate key, foreign key, NULL in a NOT NULL column, a value
    /// out of range or too long, a check constraint): the same data fails again.
    Data,
    /// Anything else (privileges, a missing table or column, a bad URL): needs an operator.
    Definite,
}

/// The one MySQL error classifier of the workspace.
pub fn mysql_error_kind(error: &mysql_async::Error) -> MySqlErrorKind {
    use MySqlErrorKind::*;
    match error {
        mysql_async::Error::Io(_) => Transient,
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed) => Transient,
        mysql_async::Error::Driver(mysql_async::DriverError::PoolDisconnected) => Transient,
        mysql_async::Error::Driver(_) => Definite,
        mysql_async::Error::Server(e) => match e.code {
            // The server's own environment (codes below 1000, mysys: a temporary file it cannot create or delete,
            // disk full, out of memory), which may clear; resuming from the checkpoint is safe either way.
            1..=999
            // too many connections (server, user), server shutdown, network read/write errors, lost connection,
            // server gone away, cannot connect, lock wait, deadlock, query interrupted or timed out, connection
            // killed, read-only (--read-only, read-only mode), statement to re-prepare, idle disconnect
            | 1040 | 1203 | 1053 | 1158..=1161 | 2002 | 2003 | 2006 | 2013 | 1205 | 1213 | 1317 | 3024 | 1969 | 1927
            | 1290 | 1836 | 1615 | 4031 => Transient,
            // NULL in NOT NULL, duplicate key, foreign keys, out of range, truncated, incorrect value, no default,
            // too long, value out of range in an expression, check constraints (MySQL, MariaDB)
            1048 | 1062 | 1216 | 1217 | 1451 | 1452 | 1264 | 1265 | 1292 | 1366 | 1364 | 1406 | 1690 | 3819 | 4025 => {
                Data
            }
            _ => Definite,
        },
        mysql_async::Error::Url(_) | mysql_async::Error::Other(_) => Definite,
    }
}

/// Classifies a broker error: unreachable brokers and timeouts are transient; bad configuration, authorization
/// and oversized messages are not.
pub fn classify_kafka(error: KafkaError) -> CaptureError {
    let code = error.rdkafka_error_code();
    let transient = match code {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::Fatal,
        ) => false,
        Some(_) => true,
        None => !matches!(error, KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)),
    };
    CaptureError::Kafka { error, transient }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError { code, message: String::new(), state: "HY000".into() })
    }

    /// Regression: a server failing to delete one of its temporary files (`ERROR 6`) stopped the source for good.
    #[test]
    fn server_errors_are_transient_only_where_a_retry_can_help() {
        let cases = [
            (6, true),     // Error on delete of a temporary file
            (20, true),    // disk full
            (1040, true),  // too many connections
            (1290, true),  // read-only
            (1045, false), // access denied
            (1236, false), // binlog position unusable
            (1146, false), // no such table
        ];
        for (code, transient) in cases {
            assert_eq!(classify_mysql("s", server_error(code)).is_transient(), transient, "code {code}");
        }
    }

    #[test]
    fn mysql_errors_are_transient_data_or_definite() {
        use MySqlErrorKind::*;
        let cases = [
            (1290, Transient), // --read-only
            (1836, Transient), // read-only mode
            (1927, Transient), // connection killed
            (2013, Transient), // lost connection
            (2006, Transient), // server gone away
            (1053, Transient), // shutdown in progress
            (1205, Transient), // lock wait timeout
            (1213, Transient), // deadlock
            (1040, Transient), // too many connections
            (1062, Data),      // duplicate key
            (1452, Data),      // foreign key
            (1690, Data),      // BIGINT UNSIGNED out of range
            (4025, Data),      // MariaDB CHECK constraint
            (1406, Data),      // too long
            (1142, Definite),  // command denied
            (1146, Definite),  // no such table
            (1054, Definite),  // unknown column
        ];
        for (code, kind) in cases {
            assert_eq!(mysql_error_kind(&server_error(code)), kind, "code {code}");
        }
        let closed = mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed);
        assert_eq!(mysql_error_kind(&closed), Transient);
        let refused = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::ErrorKind::ConnectionRefused.into()));
        assert_eq!(mysql_error_kind(&refused), Transient);
    }
}
