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
//! An update that changes the primary key is emitted as a delete of the old key (plus tombstone) and a create of the
//! new one, as Debezium does, so per-key ordering on partitions holds.

use std::collections::HashMap;
use std::sync::Arc;

use cdc_contract::{
    topic_name, ChangeEvent, Op, Row, SnapshotMarker, Source, TableId, TransactionBlock, Value,
};
use mysql_async::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_async::binlog::EventType;

use crate::checkpoint::Checkpoint;
use crate::config::TableFilter;
use crate::ddl::{classify, Statement};
use crate::decode::{decode_rows, DecodeError, RowImage, SchemaColumn, ServerFlavor, TableLayout};
use crate::position::{format_uuid, BinlogPosition, Gtid, GtidSet};

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

/// Errors of the transformation; all are definite.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A row event cannot be decoded.
    #[error("{position}: {error}")]
    Decode { position: String, error: DecodeError },
    /// The binlog is not a full row image.
    #[error("{position}: table {table} has a partial row image; set binlog_row_image=FULL on the server")]
    PartialImage { position: String, table: String },
    /// An event could not be parsed.
    #[error("{position}: unreadable {what} event: {error}")]
    Parse { position: String, what: &'static str, error: std::io::Error },
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
    /// Reused buffer of decoded images.
    images: Vec<RowImage>,
    /// Commit time of the last transaction.
    last_commit_ts_ms: i64,
    /// Which server family wrote the binlog (its table maps list column facts differently).
    flavor: ServerFlavor,
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
            images: Vec::new(),
            last_commit_ts_ms: 0,
            flavor,
        }
    }

    /// The table a TABLE_MAP event maps when it is captured and its information_schema facts are not known yet;
    /// the caller fetches them and calls [`Transformer::set_schema`] before [`Transformer::handle`].
    pub fn missing_schema(&self, event: &Event) -> Option<TableId> {
        if event.header().event_type_raw() != EventType::TABLE_MAP_EVENT as u8 {
            return None;
        }
        let tme = event.read_event::<TableMapEvent<'_>>().ok()?;
        let id = TableId::new(tme.database_name(), tme.table_name());
        (self.filter.matches(&id.database, &id.table) && !self.schemas.contains_key(&id)).then_some(id)
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
            server_id: self.server_id,
            position: BinlogPosition::new(self.file.clone(), pos),
            gtid_set: self.gtid_set.clone(),
            ts_ms: self.last_commit_ts_ms,
            snapshot: None,
        }
    }

    /// Handles one event; appends its records to `out`. Returns a checkpoint when a transaction ended here (or
    /// at a heartbeat outside a transaction).
    pub fn handle(&mut self, event: &Event, out: &mut Vec<Record>) -> Result<Option<Checkpoint>, TransformError> {
        let header = event.header();
        let end = header.log_pos() as u64;
        let start = end.saturating_sub(header.event_size() as u64);
        if header.server_id() != 0 {
            self.server_id = header.server_id();
        }
        let pos_of = |file: &str| format!("{file}:{start}");
        let raw_type = header.event_type_raw();
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
        let data = match data {
            Some(data) => data,
            None => return Ok(None),
        };
        match data {
            EventData::RotateEvent(rotate) => {
                // The first, fake ROTATE (log_pos 0) is read before the FORMAT_DESCRIPTION, so its name still
                // carries the 4 checksum bytes the server appends.
                let raw = rotate.name_raw();
                let name = if end == 0 && raw.len() > 4 {
                    clean_file_name(raw)
                } else {
                    String::from_utf8_lossy(raw).into_owned()
                };
                self.file = name;
                Ok(None)
            }
            EventData::GtidEvent(g) => {
                let gtid = Gtid::MySql { uuid: format_uuid(&g.sid()), gno: g.gno() };
                let ts = g.original_commit_timestamp();
                let commit_ts = (ts > 0).then_some((ts / 1000) as i64);
                self.begin(Some(gtid), start, commit_ts, false);
                Ok(None)
            }
            EventData::QueryEvent(q) => {
                let sql = q.query();
                match classify(&q.schema(), &sql) {
                    Statement::Begin => {
                        if self.txn.is_none() {
                            self.begin(None, start, None, false);
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
        self.tables.insert(tme.table_id(), MappedTable { id, label, topic, layout, captured, raw: raw.to_vec() });
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
        decode_rows(&table.layout, rows, &mut images)
            .map_err(|error| TransformError::Decode { position: format!("{}:{start}", self.file), error })?;
        if images.iter().any(|i| i.partial) {
            let position = format!("{}:{start}", self.file);
            return Err(TransformError::PartialImage { position, table: table.id.to_string() });
        }
        let txn = self.txn.as_mut().expect("opened above");
        let ts_ms = txn.commit_ts_ms.unwrap_or(timestamp as i64 * 1000);
        let now = now_ms();
        for image in images.drain(..) {
            let before = image.before.map(|values| Row { columns: table.layout.column_names().clone(), values });
            let after = image.after.map(|values| Row { columns: table.layout.column_names().clone(), values });
            let op = match (&before, &after) {
                (None, Some(_)) => Op::Create,
                (Some(_), Some(_)) => Op::Update,
                _ => Op::Delete,
            };
            let pk = table.layout.primary_key();
            if op == Op::Update && key_of(pk, before.as_ref()) != key_of(pk, after.as_ref()) {
                // A primary key change: delete the old key, create the new one.
                emit(table, txn, &self.source_name, self.server_id, ts_ms, now, Op::Delete, before, None, self.tombstones, out);
                emit(table, txn, &self.source_name, self.server_id, ts_ms, now, Op::Create, None, after, false, out);
            } else {
                emit(table, txn, &self.source_name, self.server_id, ts_ms, now, op, before, after, self.tombstones, out);
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
        txn.total += 1;
        let order = txn.per_table.entry(table.clone()).or_default();
        *order += 1;
        let order = *order;
        let event = ChangeEvent {
            before: None,
            after: None,
            source: source(&self.source_name, self.server_id, &table, txn, ts_ms, SnapshotMarker::False),
            op: Op::Truncate,
            ts_ms: now_ms(),
            transaction: Some(TransactionBlock {
                id: txn.id.to_string(),
                total_order: txn.total,
                data_collection_order: order,
            }),
        };
        let label: Arc<str> = table.to_string().into();
        out.push(Record {
            topic: topic_name(&self.prefix, &table).into(),
            route: Route::AllPartitions,
            key: None,
            value: Some(serde_json::to_vec(&event).expect("an event serializes")),
            op: Some((label, Op::Truncate)),
        });
    }
}

/// Appends one change event (and its tombstone) for `table` to `out`.
#[allow(clippy::too_many_arguments)]
fn emit(
    table: &MappedTable,
    txn: &mut Txn,
    source_name: &str,
    server_id: u32,
    ts_ms: i64,
    now: i64,
    op: Op,
    before: Option<Row>,
    after: Option<Row>,
    tombstone: bool,
    out: &mut Vec<Record>,
) {
    let pk = table.layout.primary_key();
    let key = key_of(pk, after.as_ref().or(before.as_ref()));
    txn.total += 1;
    let order = txn.per_table.entry(table.id.clone()).or_default();
    *order += 1;
    let order = *order;
    let event = ChangeEvent {
        before,
        after,
        source: source(source_name, server_id, &table.id, txn, ts_ms, SnapshotMarker::False),
        op,
        ts_ms: now,
        transaction: Some(TransactionBlock { id: txn.id.to_string(), total_order: txn.total, data_collection_order: order }),
    };
    txn.row += 1;
    out.push(Record {
        topic: table.topic.clone(),
        route: Route::ByKey,
        key: key.clone(),
        value: Some(serde_json::to_vec(&event).expect("an event serializes")),
        op: Some((table.label.clone(), op)),
    });
    if tombstone && op == Op::Delete && key.is_some() {
        out.push(Record { topic: table.topic.clone(), route: Route::ByKey, key, value: None, op: None });
    }
}

fn source(name: &str, server_id: u32, table: &TableId, txn: &Txn, ts_ms: i64, snapshot: SnapshotMarker) -> Source {
    Source {
        connector: "mysql".into(),
        name: name.to_owned(),
        db: table.database.clone(),
        table: table.table.clone(),
        server_id,
        gtid: txn.gtid_text.clone(),
        file: txn.begin.file.clone(),
        pos: txn.begin.pos,
        row: txn.row,
        ts_ms,
        snapshot,
    }
}

/// The key of a row: a JSON object of its primary key columns, `None` without a primary key.
pub fn key_of(pk: &[usize], row: Option<&Row>) -> Option<Vec<u8>> {
    let row = row?;
    if pk.is_empty() {
        return None;
    }
    let key = Row {
        columns: pk.iter().map(|&i| row.columns[i].clone()).collect::<Vec<_>>().into(),
        values: pk.iter().map(|&i| row.values.get(i).cloned().unwrap_or(Value::Null)).collect(),
    };
    Some(serde_json::to_vec(&key).expect("a key serializes"))
}

/// The file name of a fake ROTATE read before checksums were known: drop the 4 trailing checksum bytes.
fn clean_file_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len() - 4]).into_owned()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
