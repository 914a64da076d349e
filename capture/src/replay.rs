//! `capture replay`: the change events of a binlog window, exactly as the capture would publish them, without
//! Kafka.
//!
//! The window is read over the replication protocol (a dump with its own replica `server_id`, non-blocking, so it
//! ends at the binlog's end instead of waiting), and every event goes through the capture's own [`Transformer`] and
//! information_schema lookups (`stream::fill_schemas`): the records are byte for byte what the capture
//! produces, except the envelope's top-level `ts_ms`, which is the time of encoding. Table facts come from
//! information_schema as the capture gets them: when a table is first mapped, and again after a DDL in the window;
//! for an old window they describe the table as it is now (only JSON-ness of MariaDB columns and the primary key
//! depend on them; the binlog's own TABLE_MAP decides everything else).
//!
//! The window is `[from, to)`: events that begin at or after `from` and end at or before `to`. Both must be event
//! boundaries; `from` should be a transaction boundary (a checkpoint's position, or the end of a COMMIT/XID), since
//! rows read before their transaction's GTID event carry the position of the file's start. A `to` inside an event
//! is refused; a `to` inside a transaction ends the output there, with a warning.
//!
//! Counted: `rows`, the change events (create, update, delete, as the capture counts them in `cdc_capture_events`;
//! a primary-key update is a delete and a create), and `bytes`, the bytes of every record as it would be
//! published: key plus value of each record, tombstones and truncate events included (what the capture's byte
//! budget counts, see [`crate::queue`]), without topic names or Kafka framing.

use std::io::Write;
use std::time::Duration;

use cdc_contract::Op;
use futures_util::StreamExt;
use mysql_async::binlog::events::Event;
use mysql_async::prelude::*;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, Pool};

use crate::position::Flavor;
use crate::config::TableFilter;
use crate::decode::ServerFlavor;
use crate::epoch::file_seq;
use crate::error::{classify_mysql, CaptureError};
use crate::oversized::record_bytes;
use crate::position::{BinlogPosition, GtidSet};
use crate::timeouts;
use crate::transform::{Record, Transformer};

/// How the records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per record: `{"topic":..,"key":<key JSON or null>,"value":<value JSON or null>}`.
    Json,
    /// Nothing but the last line.
    None,
}

/// What a replay publishes as, as in the capture's configuration.
#[derive(Debug, Clone)]
pub struct Encoding {
    /// `source.name`.
    pub source_name: String,
    /// Topic prefix.
    pub topic_prefix: String,
    /// Captured tables.
    pub filter: TableFilter,
    /// Tombstones after deletes.
    pub tombstones: bool,
    /// `source.epoch`.
    pub epoch: u32,
}

/// What a replay counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Change events (c, u, d).
    pub rows: u64,
    /// Bytes of keys plus values of every record.
    pub bytes: u64,
    /// Records, tombstones included.
    pub records: u64,
}

impl Totals {
    /// Adds `records`.
    pub fn add(&mut self, records: &[Record]) {
        for r in records {
            self.records += 1;
            self.bytes += record_bytes(r) as u64;
            if matches!(r.op, Some((_, Op::Create | Op::Update | Op::Delete))) {
                self.rows += 1;
            }
        }
    }
}

/// A binlog position as `FILE:POS`.
pub fn parse_position(text: &str) -> Result<BinlogPosition, String> {
    let bad = || format!("{text:?} is not a binlog position FILE:POS (e.g. binlog.000003:1234)");
    let (file, pos) = text.rsplit_once(':').ok_or_else(bad)?;
    let pos: u64 = pos.parse().map_err(|_| bad())?;
    if file.is_empty() || file_seq(file).is_none() || pos < 4 {
        return Err(bad());
    }
    Ok(BinlogPosition::new(file, pos))
}

/// `(file number, offset)`, for ordering positions of one server.
pub fn place(position: &BinlogPosition) -> (u64, u64) {
    (file_seq(&position.file).unwrap_or(0), position.pos)
}

/// One server's binlog read from a position to its current end, with the schema lookups the transformer asks for.
pub struct BinlogWindow {
    name: String,
    flavor: Flavor,
    /// For information_schema lookups.
    pool: Pool,
    schema_conn: Option<Conn>,
    stream: BinlogStream,
    /// The server's `@@server_id`.
    pub server_id: u32,
    /// The server's binlog files and sizes when the window opened, oldest first.
    pub binlogs: Vec<(String, u64)>,
}

impl BinlogWindow {
    /// Connects to `opts` and starts a non-blocking dump at `from` as replica `replica_id`. Refuses a `from` whose
    /// file is purged or does not exist, or that lies past the file's end.
    pub async fn open(name: &str, opts: &Opts, replica_id: u32, from: &BinlogPosition) -> Result<BinlogWindow, CaptureError> {
        let my = |e| classify_mysql(name, e);
        let definite = |message: String| CaptureError::Definite { source_name: name.to_owned(), message };
        let pool = Pool::new(opts.clone());
        let mut conn = timeouts::mysql(name, "connecting", timeouts::MYSQL_CONNECT, pool.get_conn()).await?;
        let facts = conn.query_first::<(String, u32), _>("SELECT VERSION(), @@server_id");
        let (version, server_id) =
            timeouts::mysql(name, "the version query", timeouts::MYSQL_QUERY, facts).await?.unwrap_or_default();
        let flavor = if version.to_ascii_lowercase().contains("mariadb") { Flavor::MariaDb } else { Flavor::MySql };
        let logs = conn.query::<(String, u64), _>("SHOW BINARY LOGS");
        let binlogs = timeouts::mysql(name, "SHOW BINARY LOGS", timeouts::MYSQL_QUERY, logs).await?;
        drop(conn);
        check_listed(&binlogs, from, "--from").map_err(definite)?;
        let mut dump = timeouts::mysql(name, "connecting", timeouts::MYSQL_CONNECT, Conn::new(opts.clone())).await?;
        if flavor == Flavor::MariaDb {
            // Without this MariaDB replaces its GTID events by dummy events.
            let capability = dump.query_drop("SET @mariadb_slave_capability = 4");
            timeouts::mysql(name, "the binlog session setup", timeouts::MYSQL_QUERY, capability).await?;
        }
        let request = BinlogStreamRequest::new(replica_id)
            .with_filename(from.file.as_bytes())
            .with_pos(from.pos)
            .with_non_blocking();
        let stream = dump.get_binlog_stream(request);
        let stream = timeouts::within(name, "the binlog request", timeouts::MYSQL_QUERY, async { stream.await.map_err(my) })
            .await?;
        Ok(BinlogWindow { name: name.to_owned(), flavor, pool, schema_conn: None, stream, server_id, binlogs })
    }

    /// The server family.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The next event, with the schemas `transformer` needs for it looked up; `None` at the binlog's end.
    pub async fn next(&mut self, transformer: &mut Transformer) -> Result<Option<Event>, CaptureError> {
        let next = tokio::time::timeout(timeouts::MYSQL_QUERY, self.stream.next()).await.map_err(|_| {
            CaptureError::Timeout { source_name: self.name.clone(), what: "the binlog dump".into(), limit: timeouts::MYSQL_QUERY }
        })?;
        let Some(event) = next else { return Ok(None) };
        let event = event.map_err(|e| classify_mysql(&self.name, e))?;
        crate::stream::fill_schemas(&self.name, self.flavor, &self.pool, &mut self.schema_conn, transformer, &event).await?;
        Ok(Some(event))
    }

    /// Closes the connections, waiting at most [`timeouts::MYSQL_QUERY`].
    pub async fn close(self) {
        drop(self.schema_conn);
        drop(self.stream);
        let _ = tokio::time::timeout(timeouts::MYSQL_QUERY, self.pool.disconnect()).await;
    }
}

/// Whether `position` is on the server: its file listed and the offset within it.
pub fn check_listed(binlogs: &[(String, u64)], position: &BinlogPosition, what: &str) -> Result<(), String> {
    let listed = || binlogs.iter().map(|(f, s)| format!("{f} ({s} bytes)")).collect::<Vec<_>>().join(", ");
    match binlogs.iter().find(|(f, _)| *f == position.file) {
        Some((_, size)) if position.pos <= *size => Ok(()),
        Some((file, size)) => Err(format!(
            "{what} {position} is beyond the end of {file}, which holds {size} bytes (the binlog's end is {})",
            binlogs.last().map(|(f, s)| format!("{f}:{s}")).unwrap_or_default()
        )),
        None => {
            let oldest = binlogs.first().map(|(f, _)| place(&BinlogPosition::new(f.clone(), 0)));
            if oldest.is_some_and(|o| place(position) < o) {
                Err(format!("{what} {position}: binlog file {} is purged from the server (it has {})", position.file, listed()))
            } else {
                Err(format!("{what} {position}: the server has no binlog file {} (it has {})", position.file, listed()))
            }
        }
    }
}

/// Replays `[from, to)` of the server at `opts` into `out` in `format`; returns the totals (the caller prints the
/// last line).
pub async fn replay(
    opts: &Opts,
    replica_id: u32,
    encoding: &Encoding,
    (from, to): (&BinlogPosition, &BinlogPosition),
    format: Format,
    out: &mut impl Write,
) -> Result<Totals, CaptureError> {
    let name = encoding.source_name.as_str();
    let definite = |message: String| CaptureError::Definite { source_name: name.to_owned(), message };
    if place(to) < place(from) {
        return Err(definite(format!("--to {to} is before --from {from}")));
    }
    let mut window = BinlogWindow::open(name, opts, replica_id, from).await?;
    check_listed(&window.binlogs, to, "--to").map_err(definite)?;
    let flavor = match window.flavor() {
        Flavor::MariaDb => ServerFlavor::MariaDb,
        Flavor::MySql => ServerFlavor::MySql,
    };
    let mut transformer = Transformer::new(
        name,
        &encoding.topic_prefix,
        encoding.filter.clone(),
        encoding.tombstones,
        from,
        GtidSet::default(),
        flavor,
    )
    .resumed_as(encoding.epoch, 0);
    let to_seq = file_seq(&to.file).unwrap_or(0);
    let mut totals = Totals::default();
    let mut records = Vec::with_capacity(1024);
    let io = |e: std::io::Error| definite(format!("writing the output: {e}"));
    let result = loop {
        let Some(event) = window.next(&mut transformer).await? else {
            break Err(definite(format!(
                "the binlog ended before --to {to} (at {}:{}): is --to past the server's end?",
                transformer.file(),
                window.binlogs.last().map_or(0, |l| l.1)
            )));
        };
        let header = event.header();
        let end = header.log_pos() as u64;
        let seq = file_seq(transformer.file()).unwrap_or(0);
        // Artificial events (the first ROTATE, log_pos 0) are not in the binlog and always handled.
        if end != 0 && (seq > to_seq || (seq == to_seq && end.saturating_sub(header.event_size() as u64) >= to.pos)) {
            break Ok(());
        }
        if end != 0 && seq == to_seq && end > to.pos {
            let start = end.saturating_sub(header.event_size() as u64);
            break Err(definite(format!(
                "--to {to} is inside an event ({}:{start} to {end}): give an event boundary, such as {}:{end}",
                to.file, to.file
            )));
        }
        transformer.handle(&event, &mut records).map_err(|e| definite(e.to_string()))?;
        totals.add(&records);
        if format == Format::Json {
            write_json(out, &records).map_err(io)?;
        }
        records.clear();
        if end != 0 && seq == to_seq && end == to.pos {
            break Ok(());
        }
    };
    window.close().await;
    result?;
    if transformer.in_transaction() {
        tracing::warn!(%to, "the window ends inside a transaction: its later rows are not shown");
    }
    out.flush().map_err(io)?;
    Ok(totals)
}

/// Writes each record as one JSON line.
pub fn write_json(out: &mut impl Write, records: &[Record]) -> std::io::Result<()> {
    for r in records {
        out.write_all(b"{\"topic\":")?;
        // Topic names hold only letters, digits, '.', '_' and '-' (see the configuration).
        out.write_all(b"\"")?;
        out.write_all(r.topic.as_bytes())?;
        out.write_all(b"\",\"key\":")?;
        out.write_all(r.key.as_deref().unwrap_or(b"null"))?;
        out.write_all(b",\"value\":")?;
        out.write_all(r.value.as_deref().unwrap_or(b"null"))?;
        out.write_all(b"}\n")?;
    }
    Ok(())
}

/// A replica `server_id` for a replay: `requested`, or one derived from the process id in 1,000,000,000 to
/// 1,999,999,999, away from the ids servers and captures are usually given (a server drops the older of two
/// replicas with the same id).
pub fn replica_id(requested: Option<u32>) -> u32 {
    requested.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO).subsec_nanos();
        1_000_000_000 + (std::process::id().wrapping_mul(7919) ^ nanos) % 1_000_000_000
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_or_say_what_is_expected() {
        let cases = [
            ("binlog.000003:1234", Ok(("binlog.000003", 1234))),
            ("mysql-bin.000010:4", Ok(("mysql-bin.000010", 4))),
            ("binlog.000003", Err(())),
            ("binlog.000003:x", Err(())),
            ("binlog.000003:2", Err(())),
            ("binlog:44", Err(())),
            ("0-1-42", Err(())),
        ];
        for (text, want) in cases {
            let got = parse_position(text);
            match want {
                Ok((file, pos)) => assert_eq!(got.unwrap(), BinlogPosition::new(file, pos), "{text}"),
                Err(()) => assert!(got.unwrap_err().contains("FILE:POS"), "{text}"),
            }
        }
    }

    #[test]
    fn a_position_off_the_server_is_named_purged_missing_or_beyond_the_end() {
        let logs = vec![("binlog.000002".to_string(), 900), ("binlog.000003".to_string(), 500)];
        let at = |f: &str, p| BinlogPosition::new(f, p);
        assert!(check_listed(&logs, &at("binlog.000002", 900), "--to").is_ok());
        assert!(check_listed(&logs, &at("binlog.000003", 4), "--from").is_ok());
        let purged = check_listed(&logs, &at("binlog.000001", 4), "--from").unwrap_err();
        assert!(purged.contains("binlog file binlog.000001 is purged"), "{purged}");
        let missing = check_listed(&logs, &at("binlog.000009", 4), "--to").unwrap_err();
        assert!(missing.contains("has no binlog file binlog.000009"), "{missing}");
        let beyond = check_listed(&logs, &at("binlog.000003", 501), "--to").unwrap_err();
        assert!(beyond.contains("beyond the end of binlog.000003, which holds 500 bytes"), "{beyond}");
        assert!(beyond.contains("the binlog's end is binlog.000003:500"), "{beyond}");
    }

    #[test]
    fn records_are_counted_as_rows_and_bytes_as_published() {
        let record = |op: Option<Op>, key: Option<&str>, value: Option<&str>| Record {
            topic: "p.db.t".into(),
            route: crate::transform::Route::ByKey,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            op: op.map(|op| ("db.t".into(), op)),
        };
        let records = [
            record(Some(Op::Create), Some("{\"id\":1}"), Some("{\"op\":\"c\"}")),
            record(Some(Op::Delete), Some("{\"id\":1}"), Some("{\"op\":\"d\"}")),
            record(None, Some("{\"id\":1}"), None),
            record(Some(Op::Truncate), None, Some("{\"op\":\"t\"}")),
        ];
        let mut totals = Totals::default();
        totals.add(&records);
        assert_eq!(totals, Totals { rows: 2, bytes: 8 + 10 + 8 + 10 + 8 + 10, records: 4 });
        let mut out = Vec::new();
        write_json(&mut out, &records[1..3]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"topic\":\"p.db.t\",\"key\":{\"id\":1},\"value\":{\"op\":\"d\"}}\n{\"topic\":\"p.db.t\",\"key\":{\"id\":1},\"value\":null}\n"
        );
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("each line is JSON");
        }
    }
}
