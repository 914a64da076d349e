//! Encoding one change event: the reused buffers, the `source` block and the record of each row of a rows event.

use cdc_contract::{
    ChangeEventRef, ColumnKeys, EncodedSource, Op, RowRef, SnapshotMarker, SourceBlock, SourceRef, TableId, TransactionRef,
    Value,
};

use super::{MappedTable, Record, Route, Txn};

/// Reused buffers for encoding envelopes and comparing keys.
#[derive(Default)]
pub(super) struct Buffers {
    /// The envelope being written.
    pub(super) value: Vec<u8>,
    /// The `source` fields of the rows event being emitted.
    pub(super) source: EncodedSource,
    /// The keys of an update's two images.
    pub(super) before_key: Vec<u8>,
    pub(super) after_key: Vec<u8>,
}

impl Buffers {
    /// Whether an update keeps its key (the key's JSON, which also decides the partition).
    pub(super) fn same_key(&mut self, table: &MappedTable, before: &[Value], after: &[Value]) -> bool {
        let pk = table.layout.primary_key();
        self.before_key.clear();
        self.after_key.clear();
        table.keys.write_object(&mut self.before_key, pk, before);
        table.keys.write_object(&mut self.after_key, pk, after);
        self.before_key == self.after_key
    }
}

/// Event counters of a transaction while one rows event is emitted.
pub(super) struct Order {
    /// `total_order` of the last event.
    pub(super) total: u64,
    /// `data_collection_order` of the table's last event.
    pub(super) table: u64,
}

/// What the change events of one rows event share.
#[derive(Clone, Copy)]
pub(super) struct Emitter<'a> {
    pub(super) table: &'a MappedTable,
    /// Capture time.
    pub(super) now: i64,
    /// Whether a delete is followed by a tombstone.
    pub(super) tombstones: bool,
}

impl Emitter<'_> {
    /// Appends one change event with `key` (and its tombstone) to `out`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit(
        &self,
        txn: &mut Txn,
        order: &mut Order,
        buffers: &mut Buffers,
        op: Op,
        before: Option<&[Value]>,
        after: Option<&[Value]>,
        key: Option<Vec<u8>>,
        out: &mut Vec<Record>,
    ) {
        let table = self.table;
        order.total += 1;
        order.table += 1;
        let (total_order, data_collection_order) = (order.total, order.table);
        let event = ChangeEventRef {
            before: before.map(|values| RowRef::encoded(&table.keys, values)),
            after: after.map(|values| RowRef::encoded(&table.keys, values)),
            source: SourceBlock::Encoded(&buffers.source, txn.row),
            op,
            ts_ms: self.now,
            transaction: Some(TransactionRef { id: &txn.id, total_order, data_collection_order }),
        };
        buffers.value.clear();
        event.write_json(&mut buffers.value);
        txn.row += 1;
        let tombstone = (self.tombstones && op == Op::Delete).then(|| key.clone()).flatten();
        out.push(Record {
            topic: table.topic.clone(),
            route: Route::ByKey,
            key,
            value: Some(buffers.value.as_slice().to_vec()),
            op: Some((table.label.clone(), op)),
        });
        if let Some(key) = tombstone {
            out.push(Record { topic: table.topic.clone(), route: Route::ByKey, key: Some(key), value: None, op: None });
        }
    }
}

/// The `source` block of a streamed event of `table` in `txn`.
pub(super) fn source<'a>(name: &'a str, (server_id, epoch): (u32, u32), table: &'a TableId, txn: &'a Txn, ts_ms: i64) -> SourceRef<'a> {
    SourceRef {
        connector: "mysql",
        name,
        db: &table.database,
        table: &table.table,
        server_id,
        epoch,
        gtid: txn.gtid_text.as_deref(),
        file: &txn.begin.file,
        pos: txn.begin.pos,
        row: txn.row,
        ts_ms,
        snapshot: SnapshotMarker::False,
    }
}

/// The key of a row: a JSON object of its primary key columns (`{"id":42}`), `None` without a primary key.
pub fn key_of(pk: &[usize], keys: &ColumnKeys, values: Option<&[Value]>) -> Option<Vec<u8>> {
    let values = values?;
    if pk.is_empty() {
        return None;
    }
    let mut key = Vec::with_capacity(16 * pk.len());
    keys.write_object(&mut key, pk, values);
    Some(key)
}
