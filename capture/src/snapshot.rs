//! The initial snapshot: every existing row of the captured tables as op `r`, consistent with the binlog position
//! streaming starts from.
//!
//! Why the handoff is exact: on MariaDB, `START TRANSACTION WITH CONSISTENT SNAPSHOT` fixes the InnoDB read view and
//! `binlog_snapshot_file`/`binlog_snapshot_position` name the binlog position of exactly that view (both are taken
//! under the binlog's commit lock). Rows are read in that view, and streaming starts at that position: every
//! transaction committed before it is in the rows read, every one after it is streamed, none is both. On MySQL,
//! which has no such status, the position is read under a brief `FLUSH TABLES WITH READ LOCK` (needs RELOAD).
//!
//! Rows are read in primary-key chunks (`WHERE pk > last ORDER BY pk LIMIT n`) inside that one transaction, so
//! memory is bounded by one chunk. After each chunk is acknowledged the checkpoint records the table and last key.
//! An interrupted snapshot resumes after the last acknowledged key, in a new read view, while streaming still starts
//! at the first snapshot's position: rows read in the new view may already contain changes that streaming then
//! replays; every key still converges to its final state, and no change is lost.
//!
//! Tables without a primary key are read in one ordered pass and, if interrupted, read again from the start.

use std::sync::Arc;

use cdc_contract::{topic_name, ChangeEvent, ColumnKeys, Op, Row, SnapshotMarker, Source, TableId, Value};
use mysql_async::prelude::*;
use mysql_async::{Conn, Pool};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, SnapshotProgress};
use crate::position::Flavor;
use crate::config::{Settings, SourceSettings};
use crate::decode::{protocol_value, SchemaColumn};
use crate::epoch::{self, EpochFile};
use crate::error::{classify_mysql, CaptureError};
use crate::metrics::SourceMetrics;
use crate::position::{BinlogPosition, GtidSet};
use crate::queue::BatchSender;
use crate::schema::{self, quote};
use crate::sink::Batch;
use crate::timeouts::{self, MYSQL_QUERY, SNAPSHOT_QUERY};
use crate::transform::{key_of, now_ms, Record, Route};

/// Opens the consistent read view (also for each chunk of an incremental snapshot) and returns the connection holding it and the binlog position it corresponds to.
pub(crate) async fn open_view(pool: &Pool, flavor: Flavor, name: &str) -> Result<(Conn, BinlogPosition, GtidSet), CaptureError> {
    let my = |e| classify_mysql(name, e);
    let mut conn = pool.get_conn().await.map_err(my)?;
    conn.query_drop("SET SESSION time_zone = '+00:00'").await.map_err(my)?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(my)?;
    let (position, gtid) = match flavor {
        Flavor::MariaDb => {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await.map_err(my)?;
            let status: Vec<(String, String)> =
                conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await.map_err(my)?;
            let get = |n: &str| status.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
            let file = get("binlog_snapshot_file").unwrap_or_default();
            let pos: u64 = get("binlog_snapshot_position").and_then(|p| p.parse().ok()).unwrap_or(0);
            let gtid: Option<String> =
                conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, pos)).await.map_err(my)?;
            (BinlogPosition::new(file, pos), gtid.unwrap_or_default())
        }
        Flavor::MySql => {
            conn.query_drop("FLUSH TABLES WITH READ LOCK").await.map_err(my)?;
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await.map_err(my)?;
            let row: Option<mysql_async::Row> = conn.query_first("SHOW BINARY LOG STATUS").await.map_err(my)?;
            conn.query_drop("UNLOCK TABLES").await.map_err(my)?;
            let row = row.ok_or_else(|| CaptureError::Definite {
                source_name: name.to_owned(),
                message: "SHOW BINARY LOG STATUS returned nothing: is the binlog enabled?".into(),
            })?;
            let file: String = row.get(0).unwrap_or_default();
            let pos: u64 = row.get(1).unwrap_or_default();
            let gtid: String = row.get(4).unwrap_or_default();
            (BinlogPosition::new(file, pos), gtid)
        }
    };
    let gtid_set = GtidSet::parse(&gtid.replace('\n', "")).map_err(|message| CaptureError::Definite {
        source_name: name.to_owned(),
        message,
    })?;
    Ok((conn, position, gtid_set))
}

/// Runs (or resumes) the snapshot; returns the checkpoint streaming starts from.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    settings: &Settings,
    source: &SourceSettings,
    flavor: Flavor,
    server_id: u32,
    pool: &Pool,
    resume: Option<Checkpoint>,
    epochs: &mut EpochFile,
    tx: &BatchSender,
    metrics: &Arc<SourceMetrics>,
    shutdown: &CancellationToken,
) -> Result<Checkpoint, CaptureError> {
    let name = source.name.as_str();
    let view = timeouts::within(name, "opening the read view", SNAPSHOT_QUERY, open_view(pool, flavor, name));
    let (mut conn, view_position, view_gtid) = view.await?;
    // Streaming starts where the first snapshot stood, also when this run resumes it.
    // A new snapshot maps above every version published before (an earlier history of the source, see
    // crate::epoch); a resumed one keeps its epoch.
    let (start, start_gtid, mut progress, epoch) = match resume {
        Some(cp) => (cp.position, cp.gtid_set, cp.snapshot.unwrap_or_default(), cp.epoch),
        None => {
            let seq = epoch::file_seq(&view_position.file).unwrap_or(0);
            let epoch = epoch::check_place(name, epochs.state().epoch_at(seq), seq)?;
            (view_position, view_gtid, SnapshotProgress::default(), epoch)
        }
    };
    if let Some(seq) = epoch::file_seq(&start.file) {
        epochs.publishing(epoch, seq)?;
    }
    let tables = schema::captured_tables(&mut conn, &source.filter);
    let tables = timeouts::mysql(name, "the table list", MYSQL_QUERY, tables).await?;
    tracing::info!(source = %name, position = %start, epoch, tables = tables.len(), resumed_rows = progress.rows, "snapshot started");
    let base =
        Checkpoint { server_id, epoch, position: start.clone(), gtid_set: start_gtid, ts_ms: now_ms(), snapshot: None, resnapshot: None };
    let snapshot_ts = now_ms();
    let mut pending: Option<(Batch, ChangeEvent)> = None;
    for table in &tables {
        let label = table.to_string();
        if progress.tables_done.contains(&label) {
            continue;
        }
        let columns = schema::columns(&mut conn, flavor, table);
        let columns = timeouts::mysql(name, "the schema lookup", MYSQL_QUERY, columns).await?;
        let pk_names = schema::primary_key(&mut conn, table);
        let pk_names = timeouts::mysql(name, "the schema lookup", MYSQL_QUERY, pk_names).await?;
        let pk: Vec<usize> =
            pk_names.iter().filter_map(|n| columns.iter().position(|c| &c.name == n)).collect();
        let mut after: Option<Vec<mysql_async::Value>> = match &progress.current {
            Some((t, key)) if *t == label && !pk.is_empty() => Some(json_to_params(key)),
            _ => None,
        };
        let names: Arc<[Arc<str>]> = columns.iter().map(|c| Arc::<str>::from(c.name.as_str())).collect();
        let keys = ColumnKeys::new(&names);
        let ctx =
            TableContext { source: name, server_id, epoch, table, start: &start, columns: &columns, names, keys, pk: &pk };
        let label_arc: Arc<str> = label.clone().into();
        let topic: Arc<str> = topic_name(&settings.topic_prefix, table).into();
        loop {
            if shutdown.is_cancelled() {
                return Ok(base);
            }
            let limit = if pk.is_empty() { None } else { Some(source.snapshot_chunk_rows) };
            let sql = chunk_query(table, &columns, &pk, None, after.is_some(), limit);
            let params = after.clone().map(|key| expand_params(&key)).unwrap_or_default();
            let rows: Vec<mysql_async::Row> =
                timeouts::mysql(name, "a snapshot chunk query", SNAPSHOT_QUERY, conn.exec(sql, params)).await?;
            let n = rows.len();
            let mut records = Vec::with_capacity(n);
            let mut last_event = None;
            for row in rows {
                let values: Vec<Value> = row
                    .unwrap()
                    .into_iter()
                    .zip(columns.iter())
                    .map(|(v, c)| protocol_value(c, v))
                    .collect();
                if !pk.is_empty() {
                    after = Some(pk.iter().map(|&i| to_param(&values[i])).collect());
                }
                progress.rows += 1;
                let (record, event) = ctx.record(&topic, &label_arc, values, progress.rows - 1, snapshot_ts);
                records.push(record);
                last_event = Some(event);
            }
            let done = limit.is_none_or(|l| n < l);
            if done {
                progress.tables_done.push(label.clone());
                progress.current = None;
            } else if let Some(key) = &after {
                progress.current = Some((label.clone(), params_to_json(key)));
            }
            metrics.count_snapshot_rows(n as u64);
            let checkpoint = Checkpoint { snapshot: Some(progress.clone()), ..base.clone() };
            // One chunk is held back until the next is read, so that the snapshot's very last row can be marked
            // `last`; memory stays bounded by two chunks.
            match (&mut pending, last_event) {
                (_, Some(event)) => {
                    let chunk = (Batch { records, checkpoint: Some(checkpoint), heartbeat: None }, event);
                    if let Some((batch, _)) = pending.replace(chunk) {
                        send(tx, name, batch).await?;
                    }
                }
                (Some((held, _)), None) => held.checkpoint = Some(checkpoint),
                (None, None) => send(tx, name, Batch { records, checkpoint: Some(checkpoint), heartbeat: None }).await?,
            }
            if done {
                break;
            }
        }
        tracing::info!(source = %name, table = %label, rows = progress.rows, "snapshot of table complete");
    }
    let done = Checkpoint { snapshot: None, ..base.clone() };
    match pending.take() {
        Some((mut batch, mut event)) => {
            event.source.snapshot = SnapshotMarker::Last;
            if let Some(record) = batch.records.last_mut() {
                record.value = Some(event.to_json());
            }
            batch.checkpoint = Some(done);
            send(tx, name, batch).await?;
        }
        None => send(tx, name, Batch { records: Vec::new(), checkpoint: Some(done), heartbeat: None }).await?,
    }
    timeouts::mysql(name, "the snapshot's COMMIT", MYSQL_QUERY, conn.query_drop("COMMIT")).await?;
    tracing::info!(source = %name, rows = progress.rows, position = %start, "snapshot complete");
    Ok(Checkpoint { snapshot: None, ..base })
}

async fn send(tx: &BatchSender, name: &str, batch: Batch) -> Result<(), CaptureError> {
    tx.send(batch)
        .await
        .map_err(|_| CaptureError::Definite { source_name: name.to_owned(), message: "the producer stopped".into() })
}

/// What building a snapshot record needs about its table.
pub(crate) struct TableContext<'a> {
    pub(crate) source: &'a str,
    pub(crate) server_id: u32,
    /// The snapshot's epoch.
    pub(crate) epoch: u32,
    pub(crate) table: &'a TableId,
    /// The position the reads carry (`source.file`/`pos`), which orders them against streamed events.
    pub(crate) start: &'a BinlogPosition,
    pub(crate) columns: &'a [SchemaColumn],
    pub(crate) names: Arc<[Arc<str>]>,
    /// `names` encoded as JSON keys, for record keys.
    pub(crate) keys: ColumnKeys,
    pub(crate) pk: &'a [usize],
}

impl TableContext<'_> {
    pub(crate) fn record(&self, topic: &Arc<str>, label: &Arc<str>, values: Vec<Value>, row: u64, ts_ms: i64) -> (Record, ChangeEvent) {
        debug_assert_eq!(values.len(), self.columns.len());
        let after = Row { columns: self.names.clone(), values };
        let key = key_of(self.pk, &self.keys, Some(&after.values));
        let event = ChangeEvent {
            before: None,
            after: Some(after),
            source: Source {
                connector: "mysql".into(),
                name: self.source.to_owned(),
                db: self.table.database.clone(),
                table: self.table.table.clone(),
                server_id: self.server_id,
                epoch: self.epoch,
                gtid: None,
                file: self.start.file.clone(),
                pos: self.start.pos,
                row,
                ts_ms,
                snapshot: SnapshotMarker::True,
            },
            op: Op::Read,
            ts_ms: now_ms(),
            transaction: None,
        };
        let record = Record {
            topic: topic.clone(),
            route: Route::ByKey,
            key,
            value: Some(event.to_json()),
            op: Some((label.clone(), Op::Read)),
        };
        (record, event)
    }
}

/// `SELECT cols FROM t [WHERE [(filter) AND] key > last] ORDER BY key [LIMIT n]`, the key comparison expanded so
/// that the range optimizer uses the primary key: `a > ? OR (a = ? AND b > ?)`. `filter` is an operator's SQL
/// condition (an incremental snapshot's `--where`), validated before use.
pub(crate) fn chunk_query(
    table: &TableId,
    columns: &[SchemaColumn],
    pk: &[usize],
    filter: Option<&str>,
    after: bool,
    limit: Option<usize>,
) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
    let mut sql = format!("SELECT {} FROM {}.{}", cols.join(", "), quote(&table.database), quote(&table.table));
    let key: Vec<String> = pk.iter().map(|&i| quote(&columns[i].name)).collect();
    let mut conditions = Vec::new();
    if let Some(filter) = filter {
        conditions.push(format!("({filter})"));
    }
    if after && !key.is_empty() {
        let terms = key_above(columns, pk);
        conditions.push(if filter.is_some() { format!("({terms})") } else { terms });
    }
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    if !key.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", key.join(", ")));
    }
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    sql
}

/// The key is above a key given as parameters ([`expand_params`]), expanded so that the range optimizer uses the
/// primary key: `(a > ?) OR (a = ? AND b > ?)`.
pub(crate) fn key_above(columns: &[SchemaColumn], pk: &[usize]) -> String {
    let key: Vec<String> = pk.iter().map(|&i| quote(&columns[i].name)).collect();
    let mut terms = Vec::new();
    for i in 0..key.len() {
        let mut parts: Vec<String> = key[..i].iter().map(|k| format!("{k} = ?")).collect();
        parts.push(format!("{} > ?", key[i]));
        terms.push(format!("({})", parts.join(" AND ")));
    }
    terms.join(" OR ")
}

/// The parameters of the expanded key comparison: for key (a, b): a, a, b.
pub(crate) fn expand_params(key: &[mysql_async::Value]) -> Vec<mysql_async::Value> {
    let mut params = Vec::new();
    for i in 0..key.len() {
        params.extend(key[..=i].iter().cloned());
    }
    params
}

/// A key value as a query parameter. Keys are integers or strings in practice; other types go as their text.
pub(crate) fn to_param(v: &Value) -> mysql_async::Value {
    match v {
        Value::Null => mysql_async::Value::NULL,
        Value::Bool(b) => mysql_async::Value::Int(*b as i64),
        Value::Int(i) => mysql_async::Value::Int(*i),
        Value::UInt(u) => mysql_async::Value::UInt(*u),
        Value::Float(f) => mysql_async::Value::Double(*f),
        Value::Text(t) => mysql_async::Value::Bytes(t.as_bytes().to_vec()),
    }
}

pub(crate) fn params_to_json(key: &[mysql_async::Value]) -> serde_json::Value {
    serde_json::Value::Array(
        key.iter()
            .map(|v| match v {
                mysql_async::Value::Int(i) => serde_json::json!(i),
                mysql_async::Value::UInt(u) => serde_json::json!(u),
                mysql_async::Value::Double(f) => serde_json::json!(f),
                mysql_async::Value::Bytes(b) => serde_json::json!(String::from_utf8_lossy(b)),
                _ => serde_json::Value::Null,
            })
            .collect(),
    )
}

pub(crate) fn json_to_params(key: &serde_json::Value) -> Vec<mysql_async::Value> {
    key.as_array()
        .map(|a| {
            a.iter()
                .map(|v| match v {
                    serde_json::Value::Number(n) if n.is_u64() => mysql_async::Value::UInt(n.as_u64().unwrap_or(0)),
                    serde_json::Value::Number(n) if n.is_i64() => mysql_async::Value::Int(n.as_i64().unwrap_or(0)),
                    serde_json::Value::Number(n) => mysql_async::Value::Double(n.as_f64().unwrap_or(0.0)),
                    serde_json::Value::String(s) => mysql_async::Value::Bytes(s.as_bytes().to_vec()),
                    _ => mysql_async::Value::NULL,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> SchemaColumn {
        SchemaColumn {
            name: name.into(),
            data_type: "int".into(),
            column_type: "int(11)".into(),
            charset: None,
            is_json: false,
            is_primary_key: true,
        }
    }

    #[test]
    fn chunk_queries_use_the_key_range() {
        let t = TableId::new("shop", "t");
        let cols = vec![col("a"), col("b"), col("c")];
        assert_eq!(chunk_query(&t, &cols, &[0], None, false, Some(10)), "SELECT `a`, `b`, `c` FROM `shop`.`t` ORDER BY `a` LIMIT 10");
        assert_eq!(
            chunk_query(&t, &cols, &[0, 1], None, true, Some(5)),
            "SELECT `a`, `b`, `c` FROM `shop`.`t` WHERE (`a` > ?) OR (`a` = ? AND `b` > ?) ORDER BY `a`, `b` LIMIT 5"
        );
        assert_eq!(chunk_query(&t, &cols, &[], None, false, None), "SELECT `a`, `b`, `c` FROM `shop`.`t`");
        assert_eq!(
            chunk_query(&t, &cols, &[0], Some("c > 1 OR c < 0"), false, Some(3)),
            "SELECT `a`, `b`, `c` FROM `shop`.`t` WHERE (c > 1 OR c < 0) ORDER BY `a` LIMIT 3"
        );
        assert_eq!(
            chunk_query(&t, &cols, &[0, 1], Some("c = 2"), true, Some(3)),
            "SELECT `a`, `b`, `c` FROM `shop`.`t` WHERE (c = 2) AND ((`a` > ?) OR (`a` = ? AND `b` > ?)) ORDER BY `a`, `b` LIMIT 3"
        );
        let key = vec![mysql_async::Value::UInt(1), mysql_async::Value::UInt(2)];
        assert_eq!(expand_params(&key).len(), 3);
        assert_eq!(json_to_params(&params_to_json(&key)), key);
    }
}
