//! The transformer's one error type.

use crate::decode::DecodeError;

/// Errors of the transformation; all are definite.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A row event cannot be decoded.
    #[error("{position}: {error}")]
    Decode { position: String, error: DecodeError },
    /// The binlog is not a full row image.
    #[error("{position}: table {table} has a partial row image; set binlog_row_image=FULL on the server")]
    PartialImage { position: String, table: String },
    /// An event could not be parsed (or decompressed).
    #[error("{position}: unreadable {what} event: {error}")]
    Parse { position: String, what: &'static str, error: std::io::Error },
    /// A row change on a captured table was written as a statement (`binlog_format` STATEMENT or MIXED).
    #[error(
        "{position}: a change of table {table} was written to the binlog as a statement, not as rows, so the capture \
         cannot tell which rows changed: {statement:?}. Fix: set binlog_format=ROW globally \
         (SET GLOBAL binlog_format='ROW' and in the server's configuration) and in every session or application that \
         sets it itself. To get past this statement: set statement_dml = \"skip\" for this source, restart, and once \
         the capture is past it re-snapshot {table} (its changes are not in the stream); or re-snapshot the whole \
         source (stop the capture, move its checkpoint away, start it again)"
    )]
    StatementRowChange { position: String, table: String, statement: String },
    /// MySQL wrote only the changed parts of JSON values (`binlog_row_value_options=PARTIAL_JSON`).
    #[error(
        "{position}: table {table} has a PARTIAL_UPDATE_ROWS event (binlog_row_value_options=PARTIAL_JSON): only \
         the changed parts of its JSON values are in the binlog; set binlog_row_value_options='' on the server \
         (SET GLOBAL and its configuration) and re-snapshot {table}"
    )]
    PartialJson { position: String, table: String },
    /// An event type that can carry row changes which the capture cannot decode.
    #[error("{position}: {name} (event type {event_type}) is {reason}")]
    Refused { position: String, event_type: u8, name: &'static str, reason: &'static str },
}
