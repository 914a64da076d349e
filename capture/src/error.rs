//! Errors of the capture, split by what the caller should do: [`CaptureError::is_transient`] errors are retried
//! with backoff (resuming from the checkpoint is always safe), all others stop the source with a message that names
//! the remedy. One classifier per client library: [`mysql_error_kind`] (in `cdc-common`, shared with the services'
//! consumers; re-exported here, used by [`classify_mysql`]) and [`classify_kafka`].

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub use cdc_common::mysql::{mysql_error_kind, MySqlErrorKind};

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
}
