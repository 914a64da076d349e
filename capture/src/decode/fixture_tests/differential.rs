//! Cross-check against `mysql_common`'s own (slow) row decoding, value by value.
//!
//! `mysql_common` returns protocol-level values (integers without our signedness rules, temporal parts, raw bytes,
//! a JSONB tree), so each is mapped to what our decoder must have produced for the column. Integers are compared
//! by their bytes, because `mysql_common` reads SIGNEDNESS with MariaDB's column rules for MySQL binlogs too.

use base64::prelude::{Engine as _, BASE64_STANDARD};
use cdc_contract::Value;
use mysql_common::binlog::events::{RowsEventData, TableMapEvent};
use mysql_common::binlog::value::BinlogValue;
use mysql_common::Value as Protocol;

use super::super::charset::Charset;
use super::super::layout::ColumnKind;
use super::super::temporal::{self, DateTime};
use super::super::values::widen;
use super::super::{RowImage, TableLayout};

/// Compares every row `mysql_common` can decode; returns the number of rows compared and the differences.
pub(super) fn compare(
    layout: &TableLayout,
    tme: &TableMapEvent<'_>,
    event: &RowsEventData<'_>,
    ours: &[RowImage],
) -> (usize, Vec<String>) {
    let count = layout.column_count();
    let present = |bits: Option<&mysql_common_bits::Bits>| bits.map(|b| (0..count).filter(|&i| b.get(i)).collect());
    let before: Option<Vec<usize>> = present(mysql_common_bits::before(event).as_ref());
    let after: Option<Vec<usize>> = present(mysql_common_bits::after(event).as_ref());
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for (row_index, (theirs, ours)) in event.rows(tme).zip(ours).enumerate() {
        // Rows mysql_common cannot read are not compared (e.g. MariaDB GEOMETRY charsets it misaligns).
        let Ok((their_before, their_after)) = theirs else { break };
        let images = [(&before, their_before, &ours.before, "before"), (&after, their_after, &ours.after, "after")];
        for (present, theirs, ours, which) in images {
            let (Some(present), Some(theirs), Some(ours)) = (present, theirs, ours) else { continue };
            let theirs = theirs.unwrap();
            for (&column, their_value) in present.iter().zip(&theirs) {
                let kind = &layout.kinds()[column];
                if let Some(false) = agrees(kind, &ours[column], their_value) {
                    mismatches.push(format!(
                        "{}.{} row {row_index} {which} column {column} ({kind:?}): ours {:?}, mysql_common {their_value:?}",
                        layout.database(),
                        layout.table(),
                        ours[column]
                    ));
                }
            }
        }
        checked += 1;
    }
    (checked, mismatches)
}

/// The columns-present bitmaps as plain booleans.
mod mysql_common_bits {
    use mysql_common::binlog::events::RowsEventData;

    pub(super) struct Bits(Vec<bool>);

    impl Bits {
        pub(super) fn get(&self, i: usize) -> bool {
            self.0.get(i).copied().unwrap_or(false)
        }
    }

    pub(super) fn before(event: &RowsEventData<'_>) -> Option<Bits> {
        event.columns_before_image().map(|b| Bits((0..b.len()).map(|i| b[i]).collect()))
    }

    pub(super) fn after(event: &RowsEventData<'_>) -> Option<Bits> {
        event.columns_after_image().map(|b| Bits((0..b.len()).map(|i| b[i]).collect()))
    }
}

/// Whether our value agrees with `mysql_common`'s; `None` when the two cannot be compared.
fn agrees(kind: &ColumnKind, ours: &Value, theirs: &BinlogValue<'_>) -> Option<bool> {
    let theirs = match theirs {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            let expected = serde_json::Value::try_from(j.clone()).ok()?; // opaque values: not comparable
            let Value::Text(text) = ours else { return Some(false) };
            return Some(serde_json::from_str::<serde_json::Value>(text).ok()? == expected);
        }
        BinlogValue::JsonDiff(_) => return None,
    };
    if *theirs == Protocol::NULL {
        return Some(*ours == Value::Null);
    }
    let expected = match (kind, theirs) {
        (ColumnKind::Int { bytes, unsigned }, Protocol::Int(_) | Protocol::UInt(_)) => {
            let raw = match theirs {
                Protocol::Int(i) => *i as u64,
                Protocol::UInt(u) => *u,
                _ => unreachable!(),
            };
            let shift = 64 - 8 * u32::from(*bytes);
            let raw = (raw << shift) >> shift;
            if *unsigned {
                Value::UInt(raw)
            } else {
                Value::Int(((raw << shift) as i64) >> shift)
            }
        }
        (ColumnKind::Float, Protocol::Float(f)) => Value::Float(widen(*f)),
        (ColumnKind::Double, Protocol::Double(d)) => Value::Float(*d),
        (ColumnKind::Decimal { .. }, Protocol::Bytes(b)) => {
            let Value::Text(text) = ours else { return Some(false) };
            return Some(normalize_decimal(text) == normalize_decimal(&String::from_utf8_lossy(b)));
        }
        (ColumnKind::Year, Protocol::Bytes(b)) => {
            let year: i64 = String::from_utf8_lossy(b).parse().ok()?;
            Value::Int(if year == 1900 { 0 } else { year })
        }
        (ColumnKind::Date, Protocol::Date(y, m, d, ..)) => {
            let dt = parts(*y, *m, *d, 0, 0, 0, 0);
            dt.epoch_micros().map_or(Value::Null, |_| {
                Value::Int(temporal::days_from_civil(i64::from(*y), u32::from(*m), u32::from(*d)))
            })
        }
        (ColumnKind::Time | ColumnKind::Time2 { .. }, Protocol::Time(negative, days, h, m, s, us)) => {
            let secs = (i64::from(*days) * 24 + i64::from(*h)) * 3600 + i64::from(*m) * 60 + i64::from(*s);
            let micros = secs * 1_000_000 + i64::from(*us);
            Value::Int(if *negative { -micros } else { micros })
        }
        (ColumnKind::DateTime | ColumnKind::DateTime2 { .. }, Protocol::Date(y, mo, d, h, mi, s, us)) => {
            let fsp = match kind {
                ColumnKind::DateTime2 { fsp } => *fsp,
                _ => 0,
            };
            match parts(*y, *mo, *d, *h, *mi, *s, *us).epoch_micros() {
                None => Value::Null,
                Some(micros) if fsp <= 3 => Value::Int(micros.div_euclid(1000)),
                Some(micros) => Value::Int(micros),
            }
        }
        (ColumnKind::Timestamp2 { fsp }, Protocol::Bytes(b)) => {
            let text = String::from_utf8_lossy(b);
            let (secs, micros) = text.split_once('.').unwrap_or((&text, "0"));
            let (secs, micros): (i64, u32) = (secs.parse().ok()?, micros.parse().ok()?);
            if secs == 0 && micros == 0 {
                Value::Null
            } else {
                Value::Text(temporal::format_timestamp(secs, micros, *fsp))
            }
        }
        (ColumnKind::Timestamp, Protocol::Int(secs)) => match secs {
            0 => Value::Null,
            s => Value::Text(temporal::format_timestamp(*s, 0, 0)),
        },
        (ColumnKind::Bit { bits }, Protocol::Bytes(b)) => {
            if *bits == 1 {
                Value::Bool(b.first().is_some_and(|x| x & 1 != 0))
            } else {
                Value::Text(BASE64_STANDARD.encode(b.iter().rev().copied().collect::<Vec<u8>>()))
            }
        }
        (ColumnKind::Enum { members, .. }, Protocol::Int(index)) => match (members, *index) {
            (None, i) => Value::Int(i),
            (Some(_), 0) => Value::Text(String::new()),
            (Some(m), i) => Value::Text(m.get(usize::try_from(i - 1).ok()?)?.clone()),
        },
        (ColumnKind::Set { members, .. }, Protocol::Bytes(b)) => {
            let mask = b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
            match members {
                None => Value::UInt(mask),
                Some(m) => Value::Text(
                    m.iter()
                        .enumerate()
                        .filter(|(bit, _)| mask & (1 << bit) != 0)
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            }
        }
        (ColumnKind::Text { charset, json, .. }, Protocol::Bytes(b)) => match charset {
            Charset::Binary => Value::Text(BASE64_STANDARD.encode(b)),
            _ if *json => return None,
            cs => Value::Text(cs.decode(b).into_owned()),
        },
        (ColumnKind::FixedBinary { width, .. }, Protocol::Bytes(b)) => {
            let mut padded = b.clone();
            if padded.len() < usize::from(*width) {
                padded.resize(usize::from(*width), 0);
            }
            Value::Text(BASE64_STANDARD.encode(padded))
        }
        (ColumnKind::Geometry { .. }, Protocol::Bytes(b)) => Value::Text(BASE64_STANDARD.encode(b.get(4..)?)),
        (ColumnKind::Bytes { .. }, Protocol::Bytes(b)) => Value::Text(BASE64_STANDARD.encode(b)),
        _ => return Some(false),
    };
    Some(*ours == expected)
}

fn parts(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> DateTime {
    DateTime {
        year: u32::from(y),
        month: u32::from(mo),
        day: u32::from(d),
        hour: u32::from(h),
        minute: u32::from(mi),
        second: u32::from(s),
        micros: us,
    }
}

/// A decimal string as (negative, integer digits, fraction digits) without insignificant zeros.
fn normalize_decimal(s: &str) -> (bool, String, String) {
    let (negative, s) = s.strip_prefix('-').map_or((false, s), |rest| (true, rest));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int = int.trim_start_matches('0').to_owned();
    let frac = frac.trim_end_matches('0').to_owned();
    let zero = int.is_empty() && frac.is_empty();
    (negative && !zero, int, frac)
}
