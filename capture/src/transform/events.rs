//! Which binlog event types the capture decodes, which it may ignore, and which it refuses: the one list.
//!
//! An event type is ignored only when it cannot carry a row change the capture would have to emit (headers,
//! bookkeeping, context that a following QUERY event uses). Every type that can carry row changes is decoded, or
//! refused with a definite error; so is every type number neither MySQL nor MariaDB defines, unless the server marked
//! the event ignorable (`LOG_EVENT_IGNORABLE_F`), which promises that a replica may skip it.

/// `LOG_EVENT_IGNORABLE_F`: a replica that does not know the event type may skip it.
const IGNORABLE_FLAG: u16 = 0x80;

/// What the transformer does with an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Decoded: transaction boundaries, positions, table maps, rows, statements.
    Decode,
    /// Carries no row change and nothing the capture needs.
    Ignore,
    /// Can carry row changes the capture cannot decode: the source stops with this reason and remedy.
    Refuse(&'static str),
}

/// Events that carry rows only as LOAD DATA of MySQL before 5.0.3.
const OLD_LOAD: &str = "a LOAD DATA event of MySQL before 5.0 (statement format), which the capture cannot decode; \
                        set binlog_format=ROW on the server and re-snapshot the affected tables";
const PRE_GA_ROWS: &str = "a rows event of MySQL 5.1 before GA, which the capture cannot decode; upgrade the server \
                           and re-snapshot";

/// The disposition of an event of type `event_type` with header flags `flags`.
pub(crate) fn disposition(event_type: u8, flags: u16) -> Disposition {
    use Disposition::*;
    match event_type {
        // QUERY, ROTATE, FORMAT_DESCRIPTION, XID, EXECUTE_LOAD_QUERY (a LOAD DATA statement), TABLE_MAP.
        2 | 4 | 15 | 16 | 18 | 19 => Decode,
        // WRITE/UPDATE/DELETE_ROWS v1 and v2; HEARTBEAT (a checkpoint while idle); GTID, ANONYMOUS_GTID (both begin
        // a transaction); XA_PREPARE (ends the first
        // phase of an XA transaction); PARTIAL_UPDATE_ROWS (decoded up to the table: refused when captured);
        // TRANSACTION_PAYLOAD; GTID_TAGGED.
        23..=25 | 30..=32 | 27 | 33 | 34 | 38 | 39 | 40 | 42 => Decode,
        // MariaDB: GTID; QUERY_COMPRESSED, WRITE/UPDATE/DELETE_ROWS_COMPRESSED(_V1).
        162 | 165..=171 => Decode,
        // START_V3 (pre-5.0 header), STOP (server shutdown), INTVAR, RAND and USER_VAR (context of a statement that
        // follows), APPEND_BLOCK and BEGIN_LOAD_QUERY (the file of a LOAD DATA statement that follows), DELETE_FILE.
        1 | 3 | 5 | 13 | 14 | 9 | 17 | 11 => Ignore,
        // IGNORABLE, ROWS_QUERY (the statement text of rows events), PREVIOUS_GTIDS, TRANSACTION_CONTEXT and
        // VIEW_CHANGE (group replication), HEARTBEAT_V2.
        28 | 29 | 35 | 36 | 37 | 41 => Ignore,
        // MariaDB: ANNOTATE_ROWS, BINLOG_CHECKPOINT, GTID_LIST, START_ENCRYPTION (the server decrypts for replicas).
        160 | 161 | 163 | 164 => Ignore,
        6 | 8 | 10 | 12 => Refuse(OLD_LOAD),
        20..=22 => Refuse(PRE_GA_ROWS),
        26 => Refuse(
            "an INCIDENT event: the server recorded that changes may be missing from its binlog (e.g. LOST_EVENTS); \
             the captured data can no longer be trusted: re-snapshot the source (stop the capture, move its \
             checkpoint away, start it again)",
        ),
        _ if flags & IGNORABLE_FLAG != 0 => Ignore,
        _ => Refuse(
            "an event type the capture does not know, which may carry row changes; upgrade the capture, or if the \
             server feature that writes it can be turned off, turn it off and re-snapshot",
        ),
    }
}

/// The name of an event type, for messages.
pub(crate) fn name(event_type: u8) -> &'static str {
    match event_type {
        0 => "UNKNOWN_EVENT",
        1 => "START_EVENT_V3",
        6 => "LOAD_EVENT",
        7 => "SLAVE_EVENT",
        8 => "CREATE_FILE_EVENT",
        10 => "EXEC_LOAD_EVENT",
        12 => "NEW_LOAD_EVENT",
        20 => "PRE_GA_WRITE_ROWS_EVENT",
        21 => "PRE_GA_UPDATE_ROWS_EVENT",
        22 => "PRE_GA_DELETE_ROWS_EVENT",
        26 => "INCIDENT_EVENT",
        39 => "PARTIAL_UPDATE_ROWS_EVENT",
        40 => "TRANSACTION_PAYLOAD_EVENT",
        165 => "QUERY_COMPRESSED_EVENT",
        166 => "WRITE_ROWS_COMPRESSED_EVENT_V1",
        167 => "UPDATE_ROWS_COMPRESSED_EVENT_V1",
        168 => "DELETE_ROWS_COMPRESSED_EVENT_V1",
        169 => "WRITE_ROWS_COMPRESSED_EVENT",
        170 => "UPDATE_ROWS_COMPRESSED_EVENT",
        171 => "DELETE_ROWS_COMPRESSED_EVENT",
        _ => "event",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_a_disposition() {
        use Disposition::*;
        let refused = |t: u8| matches!(disposition(t, 0), Refuse(_));
        let cases: &[(u8, Disposition)] = &[
            (2, Decode),
            (15, Decode),
            (16, Decode),
            (19, Decode),
            (23, Decode),
            (30, Decode),
            (32, Decode),
            (33, Decode),
            (39, Decode),
            (40, Decode),
            (42, Decode),
            (162, Decode),
            (165, Decode),
            (171, Decode),
            (3, Ignore),
            (5, Ignore),
            (27, Decode),
            (29, Ignore),
            (34, Decode),
            (35, Ignore),
            (41, Ignore),
            (160, Ignore),
            (161, Ignore),
            (163, Ignore),
            (164, Ignore),
        ];
        for &(t, want) in cases {
            assert_eq!(disposition(t, 0), want, "type {t}");
        }
        for t in [0, 6, 7, 8, 10, 12, 20, 21, 22, 26, 43, 100, 159, 172, 200, 255] {
            assert!(refused(t), "type {t} must be refused");
        }
        // An unknown type that the server flagged ignorable may be skipped; a known refused one may not.
        assert_eq!(disposition(172, IGNORABLE_FLAG), Ignore);
        assert!(matches!(disposition(26, IGNORABLE_FLAG), Refuse(_)));
    }
}
