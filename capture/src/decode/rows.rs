//! Row images straight from a rows event's bytes.
//!
//! Layout of a rows event body after its header (the same for v1, types 23-25, and v2, types 30-32, whose extra
//! data `mysql_common` has already skipped): the columns-present bitmap(s) — one for WRITE and DELETE, two for
//! UPDATE (before, then after) — then rows until the end of the event. Each row image is a null bitmap with one bit
//! per *present* column, then the non-null present columns' values in table order. An UPDATE row is a before
//! image followed by an after image.
//!
//! `mysql_common`'s `rows()` iterator re-derives every column's metadata for every row; here the per-column work is
//! a match on a precomputed [`ColumnKind`](super::layout::ColumnKind), so a row costs one `Vec` plus the strings it
//! holds, and nothing when it is decoded into the vectors of rows already used ([`ImagePool`]).

use cdc_contract::Value;
use mysql_common::binlog::events::RowsEventData;

use super::layout::TableLayout;
use super::reader::Reader;
use super::values::{decode_value_into, ValueError};
use super::DecodeError;

/// One row of a rows event: the before image (updates, deletes) and the after image (inserts, updates).
#[derive(Debug, Clone, PartialEq)]
pub struct RowImage {
    /// Column values before the change, one per column of the table; `None` for inserts.
    pub before: Option<Vec<Value>>,
    /// Column values after the change, one per column of the table; `None` for deletes.
    pub after: Option<Vec<Value>>,
    /// Whether an image lacks some columns (`binlog_row_image` is MINIMAL or NOBLOB). Absent columns are
    /// [`Value::Null`], indistinguishable from a real NULL: callers should refuse or warn, since change events need
    /// `binlog_row_image=FULL`.
    pub partial: bool,
}

/// Value vectors of rows already used, to decode later rows into: their vectors and short strings are reused, so
/// a steady stream of rows allocates almost nothing. It keeps at most [`ImagePool::MAX_VECTORS`] vectors (a rows
/// event's worth) and only strings of up to [`ImagePool::MAX_TEXT`] bytes, so what it holds stays small.
#[derive(Debug, Default)]
pub struct ImagePool {
    vectors: Vec<Vec<Value>>,
}

impl ImagePool {
    /// Vectors kept at most.
    pub const MAX_VECTORS: usize = 512;
    /// Capacity of the longest string kept.
    pub const MAX_TEXT: usize = 256;

    /// Keeps the vectors of a used row image.
    pub fn recycle(&mut self, image: RowImage) {
        for mut values in [image.before, image.after].into_iter().flatten() {
            if self.vectors.len() >= Self::MAX_VECTORS {
                return;
            }
            for value in &mut values {
                if matches!(value, Value::Text(t) if t.capacity() > Self::MAX_TEXT) {
                    *value = Value::Null;
                }
            }
            self.vectors.push(values);
        }
    }

    /// A vector of `len` values (whatever they hold) to decode into.
    fn take(&mut self, len: usize) -> Vec<Value> {
        let mut values = self.vectors.pop().unwrap_or_default();
        values.resize(len, Value::Null);
        values
    }
}

/// Columns present in one image, from the event's columns-present bitmap.
struct Present {
    columns: Vec<usize>,
    all: bool,
}

impl Present {
    fn new(count: usize, is_set: impl Fn(usize) -> bool) -> Present {
        let columns: Vec<usize> = (0..count).filter(|&i| is_set(i)).collect();
        let all = columns.len() == count;
        Present { columns, all }
    }
}

/// Decodes every row of `event` with `layout` and appends them to `out`.
///
/// On error nothing is appended. WRITE, UPDATE and DELETE events of both versions are supported; MySQL's
/// PARTIAL_UPDATE_ROWS_EVENT (`binlog_row_value_options=PARTIAL_JSON`) is refused with
/// [`DecodeError::Unsupported`], since its JSON diffs cannot be turned into full values.
pub fn decode_rows(
    layout: &TableLayout,
    event: &RowsEventData<'_>,
    out: &mut Vec<RowImage>,
) -> Result<(), DecodeError> {
    decode_rows_pooled(layout, event, out, &mut ImagePool::default())
}

/// [`decode_rows`], decoding into vectors from `pool`.
pub fn decode_rows_pooled(
    layout: &TableLayout,
    event: &RowsEventData<'_>,
    out: &mut Vec<RowImage>,
    pool: &mut ImagePool,
) -> Result<(), DecodeError> {
    let table_id = layout.table_id();
    if matches!(event, RowsEventData::PartialUpdateRowsEvent(_)) {
        return Err(DecodeError::Unsupported {
            table_id,
            column: None,
            feature: "PARTIAL_UPDATE_ROWS_EVENT (binlog_row_value_options=PARTIAL_JSON)",
        });
    }
    if event.table_id() != table_id {
        return Err(DecodeError::TableMismatch { layout_table_id: table_id, event_table_id: event.table_id() });
    }
    let count = layout.column_count();
    if event.num_columns() != count as u64 {
        return Err(DecodeError::ColumnCount { table_id, event_columns: event.num_columns(), layout_columns: count });
    }
    let before = event.columns_before_image().map(|b| Present::new(count, |i| i < b.len() && b[i]));
    let after = event.columns_after_image().map(|b| Present::new(count, |i| i < b.len() && b[i]));
    let partial = before.iter().chain(after.iter()).any(|p| !p.all);

    let start_len = out.len();
    let mut r = Reader::new(event.rows_data());
    while !r.is_empty() {
        match decode_row(layout, before.as_ref(), after.as_ref(), &mut r, pool) {
            Ok((before, after)) => out.push(RowImage { before, after, partial }),
            Err(e) => {
                out.truncate(start_len);
                return Err(e);
            }
        }
    }
    Ok(())
}

type Images = (Option<Vec<Value>>, Option<Vec<Value>>);

/// One row: the before image (if the event has one), then the after image (likewise).
fn decode_row(
    layout: &TableLayout,
    before: Option<&Present>,
    after: Option<&Present>,
    r: &mut Reader<'_>,
    pool: &mut ImagePool,
) -> Result<Images, DecodeError> {
    let before = before.map(|p| decode_image(layout, p, r, pool)).transpose()?;
    let after = after.map(|p| decode_image(layout, p, r, pool)).transpose()?;
    Ok((before, after))
}

fn decode_image(
    layout: &TableLayout,
    present: &Present,
    r: &mut Reader<'_>,
    pool: &mut ImagePool,
) -> Result<Vec<Value>, DecodeError> {
    let table_id = layout.table_id();
    let kinds = layout.kinds();
    let offset = r.position();
    let nulls =
        r.take(present.columns.len().div_ceil(8)).ok_or(DecodeError::Truncated { table_id, column: None, offset })?;
    let is_null = |k: usize| nulls[k / 8] & (1 << (k % 8)) != 0;
    let read = |column: usize, r: &mut Reader<'_>, slot: &mut Value| {
        let offset = r.position();
        decode_value_into(&kinds[column], r, slot).map_err(|e| match e {
            ValueError::Truncated => DecodeError::Truncated { table_id, column: Some(column), offset },
            ValueError::Corrupt(reason) => DecodeError::Corrupt { table_id, column, reason },
            ValueError::Unsupported(feature) => DecodeError::Unsupported { table_id, column: Some(column), feature },
        })
    };
    let mut values = pool.take(kinds.len());
    if present.all {
        for (column, slot) in values.iter_mut().enumerate() {
            if is_null(column) {
                *slot = Value::Null;
            } else {
                read(column, r, slot)?;
            }
        }
    } else {
        values.fill(Value::Null);
        for (k, &column) in present.columns.iter().enumerate() {
            if !is_null(k) {
                read(column, r, &mut values[column])?;
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests;
