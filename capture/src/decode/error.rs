//! The decoder's one error type.

/// Why a table map or a rows event could not be decoded.
///
/// Every variant is *definite*: the same bytes fail the same way on every retry, so a caller should stop (or skip the
/// table with a loud error) rather than retry. Fields say which table (the binlog table id) and, where it applies,
/// which column (0-based, in table order) was being decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The table map event is malformed (bad metadata block, optional metadata that does not match the columns).
    #[error("table {table_id}: malformed table map: {reason}")]
    TableMap {
        /// Binlog table id.
        table_id: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The table map uses a column type this decoder does not know.
    #[error("table {table_id}, column {column}: unknown column type {type_code}")]
    UnknownColumnType {
        /// Binlog table id.
        table_id: u64,
        /// Column index.
        column: usize,
        /// The `MYSQL_TYPE_*` code from the table map.
        type_code: u8,
    },
    /// A rows event was decoded with the layout of another table.
    #[error("rows event for table {event_table_id} decoded with the layout of table {layout_table_id}")]
    TableMismatch {
        /// Table id of the layout.
        layout_table_id: u64,
        /// Table id of the rows event.
        event_table_id: u64,
    },
    /// The rows event and the table map disagree on the number of columns.
    #[error("table {table_id}: rows event has {event_columns} columns, table map has {layout_columns}")]
    ColumnCount {
        /// Binlog table id.
        table_id: u64,
        /// Column count of the rows event.
        event_columns: u64,
        /// Column count of the table map.
        layout_columns: usize,
    },
    /// The row data ends in the middle of a row.
    #[error("table {table_id}: row data truncated at byte {offset}{}", column_suffix(*column))]
    Truncated {
        /// Binlog table id.
        table_id: u64,
        /// The column being read, or `None` while reading a row's null bitmap.
        column: Option<usize>,
        /// Offset into the rows event's row data where the read started.
        offset: usize,
    },
    /// A value's bytes are not a valid encoding of its column type.
    #[error("table {table_id}, column {column}: corrupt value: {reason}")]
    Corrupt {
        /// Binlog table id.
        table_id: u64,
        /// Column index.
        column: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// A well-formed input this decoder deliberately does not handle.
    #[error("table {table_id}{}: unsupported: {feature}", column.map(|c| format!(", column {c}")).unwrap_or_default())]
    Unsupported {
        /// Binlog table id.
        table_id: u64,
        /// The column whose type is not supported, or `None` for a whole event.
        column: Option<usize>,
        /// What is not supported.
        feature: &'static str,
    },
}

fn column_suffix(column: Option<usize>) -> String {
    match column {
        Some(c) => format!(", column {c}"),
        None => String::from(", null bitmap"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_table_and_column() {
        let e = DecodeError::Truncated { table_id: 7, column: Some(3), offset: 12 };
        assert_eq!(e.to_string(), "table 7: row data truncated at byte 12, column 3");
        let e = DecodeError::Truncated { table_id: 7, column: None, offset: 0 };
        assert_eq!(e.to_string(), "table 7: row data truncated at byte 0, null bitmap");
        let e = DecodeError::Corrupt { table_id: 1, column: 2, reason: "bad decimal digit group" };
        assert_eq!(e.to_string(), "table 1, column 2: corrupt value: bad decimal digit group");
        let e = DecodeError::Unsupported { table_id: 1, column: None, feature: "PARTIAL_UPDATE_ROWS_EVENT" };
        assert_eq!(e.to_string(), "table 1: unsupported: PARTIAL_UPDATE_ROWS_EVENT");
        let e = DecodeError::Unsupported { table_id: 1, column: Some(4), feature: "typed array column" };
        assert_eq!(e.to_string(), "table 1, column 4: unsupported: typed array column");
    }
}
