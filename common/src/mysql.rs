//! The one MySQL error classifier of the workspace: what a `mysql_async` error says about running the same
//! statements again. The capture retries [`MySqlErrorKind::Transient`] errors from its checkpoint; the services'
//! consumers retry them, and park an event whose error is [`MySqlErrorKind::Data`] as a dead letter.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError { code, message: String::new(), state: "HY000".into() })
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
