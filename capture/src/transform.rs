//! Binlog events to broker records: transaction boundaries, source coordinates and envelopes. No I/O.
//!
//! [`Transformer::handle`] takes the events of one server in binlog order and appends the records they produce.
//! It returns a [`Checkpoint`] at every transaction end (and at server heartbeats outside a transaction): the
//! position from which streaming may resume once every record before it is acknowledged.
//!
//! Source coordinates are deterministic: `file`/`pos` name the transaction's first event (its GTID event), `row`
//! counts the captured rows within the transaction from 0, so a transaction sent again after a crash carries the
//! same coordinates and consumers can drop duplicates.
//!
//! No row change is passed over silently (`transform/events.rs` lists every event type): MySQL transaction payloads
//! and MariaDB compressed events are decompressed and handled like the events they stand for
//! (`transform/compressed.rs`); events that may carry rows the capture cannot decode (statement-format row changes on
//! captured tables, partial JSON or partial row images, incidents, unknown types) are [`TransformError`]s, unless
//! `statement_dml = "skip"` says to count and skip statement-format row changes (`transform/statements.rs`).
//!
//! An update that changes the primary key is emitted as a delete of the old key (plus tombstone) and a create of the
//! new one, as Debezium does, so per-key ordering on partitions holds.
//!
//! Encoding is the hot path (every row event of every captured table). Envelopes are written with the contract's
//! JSON writer ([`ChangeEventRef`]) straight from the decoded values, into one reused buffer: column names are encoded
//! once per table version ([`ColumnKeys`]), the `source` fields once per rows event ([`EncodedSource`]), and the
//! decoded value vectors go back to an [`ImagePool`] so later rows decode into them. A row event then costs about
//! two allocations, its key and its value, and the bytes are exactly what serde_json writes for the same event.

use std::collections::HashMap;
use std::sync::Arc;

use cdc_contract::{
    topic_name, ChangeEventRef, ColumnKeys, Op, SourceBlock, TableId,
    TransactionRef, Value,
};
use mysql_async::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_async::binlog::EventType;

use prometheus_client::metrics::counter::Counter;

use crate::checkpoint::Checkpoint;
use crate::config::{StatementDml, TableFilter};
use crate::ddl::{classify, Statement};
use crate::decode::{decode_rows_pooled, DecodeError, ImagePool, RowImage, SchemaColumn, ServerFlavor, TableLayout};
use crate::position::{format_uuid, BinlogPosition, Gtid, GtidSet};

mod compressed;
mod emit;
mod error;
mod events;
mod schemas;
mod statements;

pub use cdc_common::now_ms;
pub use emit::key_of;
pub use error::TransformError;
use emit::{source, Buffers, Emitter, Order};
use events::Disposition;
use schemas::{payload_key, PayloadKey};

/// MariaDB's GTID event, which mysql_common leaves unparsed.
const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB's GTID flag for a statement outside BEGIN/COMMIT (DDL).
const MARIADB_FL_STANDALONE: u8 = 1;

/// Where a record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The partition of the key (the producer's partitioner).
    ByKey,
    /// Every partition of the topic (truncates, watermarks).
    AllPartitions,
}

/// One broker message.
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic.
    pub topic: Arc<str>,
    /// Partitioning.
    pub route: Route,
    /// Key bytes (JSON of the primary key); `None` for tables without one.
    pub key: Option<Vec<u8>>,
    /// Value bytes (the envelope); `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// For metrics: table and operation of a change event.
    pub op: Option<(Arc<str>, Op)>,
}

/// A table seen in a TABLE_MAP event.
struct MappedTable {
    id: TableId,
    /// `db.table`, for metric labels.
    label: Arc<str>,
    topic: Arc<str>,
    layout: TableLayout,
    /// The layout's column names, encoded once as JSON keys.
    keys: ColumnKeys,
    /// Whether the filter selects it.
    captured: bool,
    /// The TABLE_MAP event's bytes, to notice a changed mapping under a reused id.
    raw: Vec<u8>,
}

/// The transaction being read.
struct Txn {
    /// Transaction id for the `transaction` block: the GTID, or `file:pos` without one.
    id: Arc<str>,
    gtid: Option<Gtid>,
    gtid_text: Option<String>,
    begin: BinlogPosition,
    /// Commit time in ms, when the GTID event carries it (MySQL 8); otherwise the event timestamps.
    commit_ts_ms: Option<i64>,
    /// A MariaDB standalone statement (DDL) ends with its QUERY event.
    standalone: bool,
    /// Events emitted so far (`total_order`).
    total: u64,
    /// Events emitted per table (`data_collection_order`).
    per_table: HashMap<TableId, u64>,
    /// Captured rows so far (`source.row`).
    row: u64,
}

/// Turns the binlog events of one server into records.
pub struct Transformer {
    /// `source.name`.
    source_name: String,
    /// Topic prefix.
    prefix: String,
    /// Which tables are captured.
    filter: TableFilter,
    /// Emit tombstones after deletes.
    tombstones: bool,
    /// The binlog file being read.
    file: String,
    /// Tables by binlog table id, replaced at every TABLE_MAP whose id is new or changed.
    tables: HashMap<u64, MappedTable>,
    /// Facts from information_schema (JSON columns on MariaDB), by table; dropped when a DDL touches the table.
    schemas: HashMap<TableId, Arc<[SchemaColumn]>>,
    /// The open transaction.
    txn: Option<Txn>,
    /// Transactions seen, committed.
    gtid_set: GtidSet,
    /// server_id of the source server (from event headers).
    server_id: u32,
    /// The source's epoch (`source.epoch`, see [`crate::epoch`]).
    epoch: u32,
    /// server_id of the server read from, for checkpoints (0: taken from event headers).
    reader_server_id: u32,
    /// Reused buffer of decoded images.
    images: Vec<RowImage>,
    /// Value vectors of emitted images, decoded into again.
    pool: ImagePool,
    /// Commit time of the last transaction.
    last_commit_ts_ms: i64,
    /// Reused encoding buffers: an envelope is written here, then copied into its record at its exact size.
    buffers: Buffers,
    /// Which server family wrote the binlog (its table maps list column facts differently).
    flavor: ServerFlavor,
    /// Whether a FORMAT_DESCRIPTION event was read: from then on the reader strips event checksums itself.
    format_seen: bool,
    /// What a statement-format row change on a captured table does.
    statement_dml: StatementDml,
    /// Statement-format row changes skipped.
    skipped_statements: Counter,
    /// The inner events of the transaction payload [`Transformer::missing_schema`] looked at last, for `handle`.
    payload_cache: Option<(PayloadKey, Vec<Event>)>,
}


impl Transformer {
    /// A transformer that starts reading at `start` with `gtid_set` already committed.
    pub fn new(
        source_name: &str,
        prefix: &str,
        filter: TableFilter,
        tombstones: bool,
        start: &BinlogPosition,
        gtid_set: GtidSet,
        flavor: ServerFlavor,
    ) -> Transformer {
        Transformer {
            source_name: source_name.to_owned(),
            prefix: prefix.to_owned(),
            filter,
            tombstones,
            file: start.file.clone(),
            tables: HashMap::new(),
            schemas: HashMap::new(),
            txn: None,
            gtid_set,
            server_id: 0,
            epoch: 0,
            reader_server_id: 0,
            images: Vec::new(),
            pool: ImagePool::default(),
            last_commit_ts_ms: 0,
            buffers: Buffers::default(),
            flavor,
            format_seen: false,
            statement_dml: StatementDml::default(),
            skipped_statements: Counter::default(),
            payload_cache: None,
        }
    }

    /// Events get `epoch` in `source.epoch` and checkpoints name `server_id`, the server read from (0: the server id
    /// of the events read).
    pub fn resumed_as(mut self, epoch: u32, server_id: u32) -> Transformer {
        self.epoch = epoch;
        self.reader_server_id = server_id;
        self
    }

    /// Supplies information_schema facts for a table.
    pub fn set_schema(&mut self, table: TableId, columns: Vec<SchemaColumn>) {
        self.schemas.insert(table, columns.into());
    }

    /// The binlog file being read.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// Commit time of the last committed transaction, ms since the epoch (0 before the first).
    pub fn last_commit_ts_ms(&self) -> i64 {
        self.last_commit_ts_ms
    }

    /// The checkpoint for a position at which no transaction is open.
    pub fn checkpoint_at(&self, pos: u64) -> Checkpoint {
        Checkpoint {
            server_id: if self.reader_server_id != 0 { self.reader_server_id } else { self.server_id },
            epoch: self.epoch,
            position: BinlogPosition::new(self.file.clone(), pos),
            gtid_set: self.gtid_set.clone(),
            ts_ms: self.last_commit_ts_ms,
            snapshot: None,
            resnapshot: None,
        }
    }

    /// Handles one event; appends its records to `out`. Returns a checkpoint when a transaction ended here (or
    /// at a heartbeat outside a transaction).
    ///
    /// A transaction payload's inner events, and a MariaDB compressed event once inflated, are handled like the
    /// events they stand for, at the position of the event that carries them: a transaction in a payload begins at
    /// its GTID event and its checkpoint is the end of the payload.
    pub fn handle(&mut self, event: &Event, out: &mut Vec<Record>) -> Result<Option<Checkpoint>, TransformError> {
        let header = event.header();
        let end = header.log_pos() as u64;
        let start = end.saturating_sub(header.event_size() as u64);
        let raw_type = header.event_type_raw();
        if raw_type == compressed::TRANSACTION_PAYLOAD {
            let key = payload_key(&self.file, event);
            let events = match self.payload_cache.take() {
                Some((at, events)) if at == key => events,
                _ => compressed::payload_events(event).map_err(|error| TransformError::Parse {
                    position: format!("{}:{start}", self.file),
                    what: "TRANSACTION_PAYLOAD",
                    error,
                })?,
            };
            let mut checkpoint = None;
            for inner in &events {
                if let Some(at) = self.apply(inner, start, end, out)? {
                    checkpoint = Some(at);
                }
            }
            return Ok(checkpoint);
        }
        if compressed::is_mariadb_compressed(raw_type) {
            let inner = compressed::mariadb_uncompressed(event).map_err(|error| TransformError::Parse {
                position: format!("{}:{start}", self.file),
                what: events::name(raw_type),
                error,
            })?;
            return self.apply(&inner, start, end, out);
        }
        self.apply(event, start, end, out)
    }

    /// Handles one (uncompressed) event that occupies `start..end` of the binlog file.
    fn apply(
        &mut self,
        event: &Event,
        start: u64,
        end: u64,
        out: &mut Vec<Record>,
    ) -> Result<Option<Checkpoint>, TransformError> {
        let header = event.header();
        if header.server_id() != 0 {
            self.server_id = header.server_id();
        }
        let pos_of = |file: &str| format!("{file}:{start}");
        let raw_type = header.event_type_raw();
        match events::disposition(raw_type, header.flags_raw()) {
            Disposition::Decode => {}
            Disposition::Ignore => return Ok(None),
            Disposition::Refuse(reason) => {
                return Err(TransformError::Refused {
                    position: pos_of(&self.file),
                    event_type: raw_type,
                    name: events::name(raw_type),
                    reason,
                })
            }
        }
        if raw_type == EventType::FORMAT_DESCRIPTION_EVENT as u8 {
            self.format_seen = true;
        }
        if raw_type == MARIADB_GTID_EVENT {
            let data = event.data();
            if data.len() < 13 {
                return Err(TransformError::Parse {
                    position: pos_of(&self.file),
                    what: "MariaDB GTID",
                    error: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short GTID event"),
                });
            }
            let seq = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
            let domain = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
            let flags = data[12];
            let gtid = Gtid::MariaDb { domain, server: header.server_id(), seq };
            self.begin(Some(gtid), start, None, flags & MARIADB_FL_STANDALONE != 0);
            return Ok(None);
        }
        let data = match event.read_data() {
            Ok(data) => data,
            Err(error) => return Err(TransformError::Parse { position: pos_of(&self.file), what: "binlog", error }),
        };
        let Some(data) = data else {
            let error = std::io::Error::new(std::io::ErrorKind::InvalidData, format!("event type {raw_type}"));
            return Err(TransformError::Parse { position: pos_of(&self.file), what: "unknown", error });
        };
        match data {
            EventData::RotateEvent(rotate) => {
                // The first, fake ROTATE (log_pos 0) is read before the FORMAT_DESCRIPTION, so its name still
                // carries the 4 checksum bytes the server appends. The fake ROTATE the server sends when it moves to
                // a new file comes after one: the reader knows the checksum algorithm and has removed them already.
                let raw = rotate.name_raw();
                let name = if end == 0 && !self.format_seen && raw.len() > 4 {
                    clean_file_name(raw)
                } else {
                    String::from_utf8_lossy(raw).into_owned()
                };
                self.file = name;
                Ok(None)
            }
            EventData::GtidEvent(g) => {
                // A tagged GTID (MySQL 8.3+) is `uuid:tag:gno`; its set keeps the tag with the UUID.
                let uuid = match g.tag() {
                    Some(tag) => format!("{}:{tag}", format_uuid(&g.sid())),
                    None => format_uuid(&g.sid()),
                };
                let gtid = Gtid::MySql { uuid, gno: g.gno() };
                let ts = g.original_commit_timestamp();
                let commit_ts = (ts > 0).then_some((ts / 1000) as i64);
                // A MySQL transaction is a single statement (DDL) unless a BEGIN follows its GTID event.
                self.begin(Some(gtid), start, commit_ts, true);
                Ok(None)
            }
            EventData::AnonymousGtidEvent(g) => {
                // MySQL without GTIDs: the transaction still begins here, as with a GTID.
                let ts = g.0.original_commit_timestamp();
                let commit_ts = (ts > 0).then_some((ts / 1000) as i64);
                self.begin(None, start, commit_ts, true);
                Ok(None)
            }
            EventData::XaPrepareLogEvent(_) => Ok(self.commit(end, header.timestamp())),
            EventData::ExecuteLoadQueryEvent(q) => {
                // LOAD DATA in statement format: the file came in BEGIN_LOAD_QUERY/APPEND_BLOCK events.
                let sql = q.query();
                match classify(&q.schema(), &sql) {
                    Statement::RowChange(tables) => self.statement_row_change(&tables, &sql, pos_of(&self.file))?,
                    _ => self.statement_row_change(&[], &sql, pos_of(&self.file))?,
                }
                Ok(None)
            }
            EventData::QueryEvent(q) => {
                let sql = q.query();
                match classify(&q.schema(), &sql) {
                    Statement::Begin => {
                        match self.txn.as_mut() {
                            Some(txn) => txn.standalone = false,
                            None => self.begin(None, start, None, false),
                        }
                        Ok(None)
                    }
                    Statement::Commit => Ok(self.commit(end, header.timestamp())),
                    statement => {
                        if self.txn.is_none() {
                            self.begin(None, start, None, true);
                        }
                        match statement {
                            Statement::Truncate(table) => self.truncate(table, header.timestamp(), out),
                            Statement::SchemaChange(tables) => {
                                for t in &tables {
                                    self.schemas.remove(t);
                                }
                                self.tables.retain(|_, m| !tables.contains(&m.id));
                            }
                            Statement::RowChange(tables) => {
                                self.statement_row_change(&tables, &sql, pos_of(&self.file))?
                            }
                            _ => {}
                        }
                        let standalone = self.txn.as_ref().is_some_and(|t| t.standalone);
                        Ok(if standalone { self.commit(end, header.timestamp()) } else { None })
                    }
                }
            }
            EventData::TableMapEvent(tme) => {
                if let Err(error) = self.map_table(&tme, event.data()) {
                    return Err(TransformError::Decode { position: pos_of(&self.file), error });
                }
                Ok(None)
            }
            EventData::RowsEvent(rows) => {
                self.rows(&rows, header.timestamp(), start, out)?;
                Ok(None)
            }
            EventData::XidEvent(_) => Ok(self.commit(end, header.timestamp())),
            EventData::HeartbeatEvent if self.txn.is_none() && end > 0 => Ok(Some(self.checkpoint_at(end))),
            _ => Ok(None),
        }
    }

    fn begin(&mut self, gtid: Option<Gtid>, start: u64, commit_ts_ms: Option<i64>, standalone: bool) {
        let begin = BinlogPosition::new(self.file.clone(), start);
        let gtid_text = gtid.as_ref().map(ToString::to_string);
        let id: Arc<str> = gtid_text.clone().unwrap_or_else(|| begin.to_string()).into();
        self.txn = Some(Txn {
            id,
            gtid,
            gtid_text,
            begin,
            commit_ts_ms,
            standalone,
            total: 0,
            per_table: HashMap::new(),
            row: 0,
        });
    }

    fn commit(&mut self, end: u64, timestamp: u32) -> Option<Checkpoint> {
        let txn = self.txn.take()?;
        if let Some(gtid) = &txn.gtid {
            self.gtid_set.add(gtid);
        }
        self.last_commit_ts_ms = txn.commit_ts_ms.unwrap_or(timestamp as i64 * 1000);
        Some(self.checkpoint_at(end))
    }

    fn map_table(&mut self, tme: &TableMapEvent<'_>, raw: &[u8]) -> Result<(), DecodeError> {
        // A table id maps one table version until a DDL; servers reuse ids, so the layout is kept only while the
        // TABLE_MAP bytes are identical (a memcmp of ~100 bytes per transaction).
        if self.tables.get(&tme.table_id()).is_some_and(|t| t.raw == raw) {
            return Ok(());
        }
        let id = TableId::new(tme.database_name(), tme.table_name());
        let captured = self.filter.matches(&id.database, &id.table);
        let schema = self.schemas.get(&id).cloned();
        let layout = TableLayout::with_flavor(tme, schema.as_deref(), self.flavor)?;
        let label: Arc<str> = id.to_string().into();
        let topic: Arc<str> = topic_name(&self.prefix, &id).into();
        let keys = ColumnKeys::new(layout.column_names());
        self.tables.insert(tme.table_id(), MappedTable { id, label, topic, layout, keys, captured, raw: raw.to_vec() });
        Ok(())
    }

    fn rows(
        &mut self,
        rows: &RowsEventData<'_>,
        timestamp: u32,
        start: u64,
        out: &mut Vec<Record>,
    ) -> Result<(), TransformError> {
        let Some(table) = self.tables.get(&rows.table_id()) else { return Ok(()) };
        if !table.captured {
            return Ok(());
        }
        if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
            let position = format!("{}:{start}", self.file);
            return Err(TransformError::PartialJson { position, table: table.id.to_string() });
        }
        if self.txn.is_none() {
            // Row events outside BEGIN/GTID happen only when reading starts mid-transaction; they are emitted with
            // the position of the rows event itself.
            let start = BinlogPosition::new(self.file.clone(), 0);
            let id: Arc<str> = start.to_string().into();
            self.txn = Some(Txn {
                id,
                gtid: None,
                gtid_text: None,
                begin: start,
                commit_ts_ms: None,
                standalone: false,
                total: 0,
                per_table: HashMap::new(),
                row: 0,
            });
        }
        let mut images = std::mem::take(&mut self.images);
        images.clear();
        decode_rows_pooled(&table.layout, rows, &mut images, &mut self.pool)
            .map_err(|error| TransformError::Decode { position: format!("{}:{start}", self.file), error })?;
        if images.iter().any(|i| i.partial) {
            let position = format!("{}:{start}", self.file);
            return Err(TransformError::PartialImage { position, table: table.id.to_string() });
        }
        let txn = self.txn.as_mut().expect("opened above");
        let ts_ms = txn.commit_ts_ms.unwrap_or(timestamp as i64 * 1000);
        let emitter = Emitter { table, now: now_ms(), tombstones: self.tombstones };
        // Every row of a rows event is of one table: its `data_collection_order` is looked up once per event.
        let mut order = Order { total: txn.total, table: txn.per_table.get(&table.id).copied().unwrap_or(0) };
        let buffers = &mut self.buffers;
        // What the rows share in `source` (all but `row`) is encoded once per rows event.
        buffers.source.set(&source(&self.source_name, (self.server_id, self.epoch), &table.id, txn, ts_ms));
        let key = |values: &[Value]| key_of(table.layout.primary_key(), &table.keys, Some(values));
        for image in images.drain(..) {
            match (image.before.as_deref(), image.after.as_deref()) {
                (None, Some(new)) => emitter.emit(txn, &mut order, buffers, Op::Create, None, Some(new), key(new), out),
                (Some(old), None) => emitter.emit(txn, &mut order, buffers, Op::Delete, Some(old), None, key(old), out),
                (Some(old), Some(new)) if !buffers.same_key(table, old, new) => {
                    // A primary key change: delete the old key, create the new one.
                    emitter.emit(txn, &mut order, buffers, Op::Delete, Some(old), None, key(old), out);
                    let create = Emitter { tombstones: false, ..emitter };
                    create.emit(txn, &mut order, buffers, Op::Create, None, Some(new), key(new), out);
                }
                (Some(old), Some(new)) => {
                    emitter.emit(txn, &mut order, buffers, Op::Update, Some(old), Some(new), key(new), out)
                }
                (None, None) => {}
            }
            self.pool.recycle(image);
        }
        if order.total > txn.total {
            txn.total = order.total;
            match txn.per_table.get_mut(&table.id) {
                Some(n) => *n = order.table,
                None => {
                    txn.per_table.insert(table.id.clone(), order.table);
                }
            }
        }
        self.images = images;
        Ok(())
    }

    fn truncate(&mut self, table: TableId, timestamp: u32, out: &mut Vec<Record>) {
        if !self.filter.matches(&table.database, &table.table) {
            return;
        }
        let txn = self.txn.as_mut().expect("a statement opens a transaction");
        let ts_ms = txn.commit_ts_ms.unwrap_or(timestamp as i64 * 1000);
        let (total_order, data_collection_order) = txn.next_order(&table);
        let event = ChangeEventRef {
            before: None,
            after: None,
            source: SourceBlock::Fields(source(&self.source_name, (self.server_id, self.epoch), &table, txn, ts_ms)),
            op: Op::Truncate,
            ts_ms: now_ms(),
            transaction: Some(TransactionRef { id: &txn.id, total_order, data_collection_order }),
        };
        let mut value = Vec::with_capacity(512);
        event.write_json(&mut value);
        let label: Arc<str> = table.to_string().into();
        out.push(Record {
            topic: topic_name(&self.prefix, &table).into(),
            route: Route::AllPartitions,
            key: None,
            value: Some(value),
            op: Some((label, Op::Truncate)),
        });
    }
}

impl Txn {
    /// Counts one more event of `table`: its `total_order` and `data_collection_order`.
    fn next_order(&mut self, table: &TableId) -> (u64, u64) {
        self.total += 1;
        let order = match self.per_table.get_mut(table) {
            Some(order) => order,
            None => self.per_table.entry(table.clone()).or_default(),
        };
        *order += 1;
        (self.total, *order)
    }
}

/// The file name of a fake ROTATE read before checksums were known: drop the 4 trailing checksum bytes.
fn clean_file_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len() - 4]).into_owned()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod event_tests;
