//! Reading a resnapshot's table: validating the request, and the task that reads one chunk per read view.

use std::sync::Arc;

use cdc_contract::{topic_name, ColumnKeys, TableId, Value};
use mysql_async::prelude::*;
use mysql_async::Pool;
use tokio::sync::{mpsc, Notify};

use crate::position::Flavor;
use crate::config::TableFilter;
use crate::decode::{protocol_value, SchemaColumn};
use crate::error::{classify_mysql, CaptureError};
use crate::position::BinlogPosition;
use crate::schema::{self, quote};
use crate::snapshot::{chunk_query, expand_params, key_above, open_view, params_to_json, to_param};
use crate::timeouts::{self, MYSQL_CONNECT, MYSQL_QUERY, SNAPSHOT_QUERY};

/// The table being re-snapshotted, as the reader and the chunk task need it.
pub(super) struct Table {
    pub(super) id: TableId,
    /// `db.table`, for metrics and progress.
    pub(super) label: Arc<str>,
    pub(super) topic: Arc<str>,
    pub(super) columns: Arc<[SchemaColumn]>,
    pub(super) names: Arc<[Arc<str>]>,
    /// `names` encoded as JSON keys, for record keys.
    pub(super) keys: ColumnKeys,
    /// Indexes of the primary key columns, in key order.
    pub(super) pk: Arc<[usize]>,
    /// The `--where` condition.
    pub(super) filter: Option<String>,
}

/// One chunk read in its own view.
pub(crate) struct Chunk {
    /// The binlog position of the chunk's read view: every transaction ending at or before it is in `rows`.
    pub(super) view: BinlogPosition,
    /// The rows, in key order, values in column order.
    pub(super) rows: Vec<Vec<Value>>,
    /// The key of the last row (JSON array), `None` for an empty chunk.
    pub(super) last_key: Option<serde_json::Value>,
    /// Whether this is the last chunk (fewer rows than the chunk size).
    pub(super) done: bool,
}

/// Why a table cannot be re-snapshotted.
pub(super) enum Refusal {
    /// The request is wrong (the message says how).
    Invalid(String),
    /// The server could not be asked.
    Server(CaptureError),
}

/// Checks a request against the server and returns the table: `db.table` names a table the source captures, which
/// exists and has a primary key, and `filter` is a valid condition on it.
pub(super) async fn prepare(
    pool: &Pool,
    flavor: Flavor,
    source_name: &str,
    prefix: &str,
    captured: &TableFilter,
    table: &str,
    filter: Option<String>,
) -> Result<Table, Refusal> {
    let invalid = Refusal::Invalid;
    let unavailable = Refusal::Server;
    let Some((database, name)) = table.split_once('.').filter(|(d, t)| !d.is_empty() && !t.is_empty()) else {
        return Err(invalid(format!("--table {table:?} is not of the form database.table")));
    };
    let id = TableId::new(database, name);
    if !captured.matches(database, name) {
        return Err(invalid(format!(
            "table {id} is not captured by this source (its include/exclude patterns leave it out); only captured \
             tables can be re-snapshotted"
        )));
    }
    let filter = match filter.map(|f| f.trim().to_owned()) {
        Some(f) if f.is_empty() => return Err(invalid("--where is empty; leave it out to read every row".into())),
        other => other,
    };
    let mut conn = timeouts::mysql(source_name, "connecting", MYSQL_CONNECT, pool.get_conn()).await.map_err(unavailable)?;
    let lookup = schema::columns(&mut conn, flavor, &id);
    let columns = timeouts::mysql(source_name, "the schema lookup", MYSQL_QUERY, lookup).await.map_err(unavailable)?;
    if columns.is_empty() {
        return Err(invalid(format!("table {id} does not exist on the source's server")));
    }
    let lookup = schema::primary_key(&mut conn, &id);
    let pk_names = timeouts::mysql(source_name, "the schema lookup", MYSQL_QUERY, lookup).await.map_err(unavailable)?;
    let pk: Vec<usize> = pk_names.iter().filter_map(|n| columns.iter().position(|c| &c.name == n)).collect();
    if pk.is_empty() {
        return Err(invalid(format!(
            "table {id} has no primary key: an incremental snapshot reads and orders rows by primary key; add one, \
             or re-snapshot the whole source (stop the capture, move its checkpoint away, start it again)"
        )));
    }
    if let Some(condition) = &filter {
        // Prepared, not run: a syntax error or an unknown column is refused here, before anything is emitted, and a
        // prepared statement is one statement only.
        let check = format!("SELECT 1 FROM {}.{} WHERE ({condition}) LIMIT 0", quote(database), quote(name));
        match tokio::time::timeout(MYSQL_QUERY, conn.exec_drop(check, ())).await {
            Ok(Ok(())) => {}
            Ok(Err(mysql_async::Error::Server(e))) => {
                return Err(invalid(format!(
                    "--where {condition:?} is not a valid condition on {id}: {} (error {}); it is a SQL condition \
                     on the table's columns, as after WHERE",
                    e.message, e.code
                )))
            }
            Ok(Err(e)) => return Err(unavailable(classify_mysql(source_name, e))),
            Err(_) => return Err(invalid(format!("--where {condition:?} could not be checked within 5 s"))),
        }
    }
    let names: Arc<[Arc<str>]> = columns.iter().map(|c| Arc::<str>::from(c.name.as_str())).collect();
    Ok(Table {
        label: id.to_string().into(),
        topic: topic_name(prefix, &id).into(),
        keys: ColumnKeys::new(&names),
        names,
        columns: columns.into(),
        pk: pk.into(),
        filter,
        id,
    })
}

/// The highest key of `table` within its `--where` condition, now (a JSON array); `None` when no row matches.
pub(super) async fn end_key(pool: &Pool, source_name: &str, table: &Table) -> Result<Option<serde_json::Value>, CaptureError> {
    let key: Vec<String> = table.pk.iter().map(|&i| quote(&table.columns[i].name)).collect();
    let filter = table.filter.as_ref().map(|f| format!(" WHERE ({f})")).unwrap_or_default();
    let sql = format!(
        "SELECT {} FROM {}.{}{filter} ORDER BY {} LIMIT 1",
        key.join(", "),
        quote(&table.id.database),
        quote(&table.id.table),
        key.iter().map(|k| format!("{k} DESC")).collect::<Vec<_>>().join(", ")
    );
    let mut conn = timeouts::mysql(source_name, "connecting", MYSQL_CONNECT, pool.get_conn()).await?;
    let row: Option<mysql_async::Row> =
        timeouts::mysql(source_name, "the resnapshot's end key", SNAPSHOT_QUERY, conn.exec_first(sql, ())).await?;
    Ok(row.map(|row| {
        let values = row.unwrap().into_iter().zip(table.pk.iter()).map(|(v, &i)| to_param(&protocol_value(&table.columns[i], v)));
        params_to_json(&values.collect::<Vec<_>>())
    }))
}

/// What the chunk task needs.
pub(super) struct Reader {
    pub(super) pool: Pool,
    pub(super) flavor: Flavor,
    pub(super) source_name: String,
    pub(super) id: TableId,
    pub(super) columns: Arc<[SchemaColumn]>,
    pub(super) pk: Arc<[usize]>,
    pub(super) filter: Option<String>,
    /// Rows per chunk.
    pub(super) limit: usize,
    /// Read up to this key (as query parameters); `None`: nothing to read.
    pub(super) end: Option<Vec<mysql_async::Value>>,
}

impl Reader {
    /// Reads chunk after chunk from after `after` (a key as query parameters), sending each to the binlog reader and
    /// waiting for `go` (the previous chunk was emitted) before opening the next view. Ends after the last chunk or
    /// the first error (sent too), or when the binlog reader is gone.
    pub(super) async fn run(
        self,
        mut after: Option<Vec<mysql_async::Value>>,
        chunks: mpsc::Sender<Result<Chunk, CaptureError>>,
        go: Arc<Notify>,
    ) {
        loop {
            let chunk = self.read(&mut after).await;
            let last = chunk.as_ref().map_or(true, |c| c.done);
            if chunks.send(chunk).await.is_err() || last {
                return;
            }
            go.notified().await;
        }
    }

    /// One chunk after `after`, in a read view of its own; moves `after` to its last key.
    async fn read(&self, after: &mut Option<Vec<mysql_async::Value>>) -> Result<Chunk, CaptureError> {
        let name = self.source_name.as_str();
        let view = open_view(&self.pool, self.flavor, name);
        let (mut conn, view, _) = timeouts::within(name, "opening a resnapshot read view", SNAPSHOT_QUERY, view).await?;
        // The operator's condition, and not above the end key: rows inserted above it are streamed anyway.
        let mut condition: Vec<String> = self.filter.iter().map(|f| format!("({f})")).collect();
        condition.push(match &self.end {
            Some(_) => format!("NOT ({})", key_above(&self.columns, &self.pk)),
            None => "FALSE".into(),
        });
        let condition = condition.join(" AND ");
        let sql = chunk_query(&self.id, &self.columns, &self.pk, Some(&condition), after.is_some(), Some(self.limit));
        let mut params = self.end.as_deref().map(expand_params).unwrap_or_default();
        params.extend(after.as_deref().map(expand_params).unwrap_or_default());
        let rows: Vec<mysql_async::Row> =
            timeouts::mysql(name, "a resnapshot chunk query", SNAPSHOT_QUERY, conn.exec(sql, params)).await?;
        timeouts::mysql(name, "a resnapshot chunk's COMMIT", MYSQL_QUERY, conn.query_drop("COMMIT")).await?;
        let done = rows.len() < self.limit;
        let rows: Vec<Vec<Value>> = rows
            .into_iter()
            .map(|row| row.unwrap().into_iter().zip(self.columns.iter()).map(|(v, c)| protocol_value(c, v)).collect())
            .collect();
        let last_key = rows.last().map(|values| {
            let key: Vec<mysql_async::Value> = self.pk.iter().map(|&i| to_param(&values[i])).collect();
            let json = params_to_json(&key);
            *after = Some(key);
            json
        });
        Ok(Chunk { view, rows, last_key, done })
    }
}
