//! Builders for hand-made table map and rows events (tests only).

use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{
    DeleteRowsEvent, DeleteRowsEventV1, FormatDescriptionEvent, PartialUpdateRowsEvent, RowsEventData, TableMapEvent,
    UpdateRowsEvent, UpdateRowsEventV1, WriteRowsEvent, WriteRowsEventV1,
};
use mysql_common::binlog::BinlogCtx;
use mysql_common::io::ParseBuf;

pub(crate) fn lenenc(n: u64, out: &mut Vec<u8>) {
    match n {
        0..=250 => out.push(n as u8),
        251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

/// A length-encoded string.
pub(crate) fn lenenc_str(s: &[u8], out: &mut Vec<u8>) {
    lenenc(s.len() as u64, out);
    out.extend_from_slice(s);
}

/// One optional metadata TLV field.
pub(crate) fn tlv(field: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(field);
    lenenc_str(value, out);
}

/// A TABLE_MAP event body for `db.t` with the given column types, metadata block and optional metadata.
pub(crate) fn table_map(table_id: u64, types: &[u8], meta: &[u8], optional: &[u8]) -> TableMapEvent<'static> {
    let mut body = Vec::new();
    body.extend_from_slice(&table_id.to_le_bytes()[..6]);
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&[2, b'd', b'b', 0, 1, b't', 0]);
    lenenc(types.len() as u64, &mut body);
    body.extend_from_slice(types);
    lenenc_str(meta, &mut body);
    body.extend(std::iter::repeat_n(0xff, types.len().div_ceil(8)));
    body.extend_from_slice(optional);
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    let ctx = BinlogCtx::new(19 + body.len(), &fde, 19);
    let tme: TableMapEvent<'_> = ParseBuf(&body).parse(ctx).expect("table map");
    tme.into_owned()
}

/// Rows event flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowsKind {
    Write,
    Update,
    Delete,
    PartialUpdate,
}

/// A rows event body; `present` holds one columns-present bitmap (two for updates), `rows` the row data.
pub(crate) fn rows_event(
    kind: RowsKind,
    v2: bool,
    table_id: u64,
    columns: usize,
    present: &[&[u8]],
    rows: &[u8],
) -> RowsEventData<'static> {
    let mut body = Vec::new();
    body.extend_from_slice(&table_id.to_le_bytes()[..6]);
    body.extend_from_slice(&[0, 0]);
    if v2 {
        body.extend_from_slice(&[2, 0]);
    }
    lenenc(columns as u64, &mut body);
    for bitmap in present {
        body.extend_from_slice(bitmap);
    }
    body.extend_from_slice(rows);
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    let type_code = match (kind, v2) {
        (RowsKind::Write, false) => 23,
        (RowsKind::Update, false) => 24,
        (RowsKind::Delete, false) => 25,
        (RowsKind::Write, true) => 30,
        (RowsKind::Update, true) => 31,
        (RowsKind::Delete, true) => 32,
        (RowsKind::PartialUpdate, _) => 39,
    };
    let ctx = BinlogCtx::new(19 + body.len(), &fde, type_code);
    let mut buf = ParseBuf(&body);
    let event = match (kind, v2) {
        (RowsKind::Write, false) => RowsEventData::WriteRowsEventV1(buf.parse::<WriteRowsEventV1<'_>>(ctx).unwrap()),
        (RowsKind::Update, false) => RowsEventData::UpdateRowsEventV1(buf.parse::<UpdateRowsEventV1<'_>>(ctx).unwrap()),
        (RowsKind::Delete, false) => RowsEventData::DeleteRowsEventV1(buf.parse::<DeleteRowsEventV1<'_>>(ctx).unwrap()),
        (RowsKind::Write, true) => RowsEventData::WriteRowsEvent(buf.parse::<WriteRowsEvent<'_>>(ctx).unwrap()),
        (RowsKind::Update, true) => RowsEventData::UpdateRowsEvent(buf.parse::<UpdateRowsEvent<'_>>(ctx).unwrap()),
        (RowsKind::Delete, true) => RowsEventData::DeleteRowsEvent(buf.parse::<DeleteRowsEvent<'_>>(ctx).unwrap()),
        (RowsKind::PartialUpdate, _) => {
            RowsEventData::PartialUpdateRowsEvent(buf.parse::<PartialUpdateRowsEvent<'_>>(ctx).unwrap())
        }
    };
    event.into_owned()
}
