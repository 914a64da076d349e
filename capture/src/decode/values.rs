//! One column value: binlog bytes to a [`Value`] with Debezium's default encoding for MySQL (JSON converter,
//! schemas off), except DECIMAL as a string and BIGINT UNSIGNED as an exact unsigned number.
//!
//! | column type | value |
//! | --- | --- |
//! | TINYINT..BIGINT | `Int`, or `UInt` when unsigned |
//! | FLOAT / DOUBLE | `Float` (FLOAT via its shortest decimal form, so `1.1` stays `1.1`) |
//! | DECIMAL | `Text` with exactly the column's scale (`"12.30"`) |
//! | YEAR | `Int` (0 stays 0) |
//! | DATE | `Int` days since 1970-01-01 (io.debezium.time.Date) |
//! | TIME | `Int` µs, may be negative (MicroTime) |
//! | DATETIME(0..3) / DATETIME(4..6) | `Int` ms (Timestamp) / µs (MicroTimestamp), wall clock read as UTC |
//! | TIMESTAMP | `Text` ISO-8601 UTC with the column's fraction digits (ZonedTimestamp) |
//! | zero DATE / DATETIME / TIMESTAMP | `Null` |
//! | BIT(1) / BIT(n) | `Bool` / base64 of the bytes in little-endian order (io.debezium.data.Bits) |
//! | ENUM / SET | `Text`: the member / the members in definition order joined by `,` |
//! | CHAR, VARCHAR, TEXT | `Text`, decoded from the column's charset |
//! | BINARY, VARBINARY, BLOB, binary-charset text | `Text`: standard padded base64 (Debezium `bytes` mode); BINARY(n) |
//! | | is zero-padded back to n bytes, as a `SELECT` returns it (the binlog strips trailing zeros) |
//! | JSON | `Text`: compact JSON (MySQL binary JSON decoded; MariaDB text normalised) |
//! | GEOMETRY | `Text`: base64 of the WKB (the binlog's 4-byte SRID prefix is dropped) |
//! | VECTOR | `Text`: base64 of the stored little-endian floats |

use std::fmt::Write as _;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use cdc_contract::Value;

use super::charset::Charset;
use super::layout::ColumnKind;
use super::reader::Reader;
use super::{decimal, json, temporal};

/// Why one value could not be decoded; the caller adds the table and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueError {
    Truncated,
    Corrupt(&'static str),
    Unsupported(&'static str),
}

use ValueError::{Corrupt, Truncated};

/// Reads one non-null value of `kind` from `r`.
#[cfg(test)]
pub(crate) fn decode_value(kind: &ColumnKind, r: &mut Reader<'_>) -> Result<Value, ValueError> {
    let mut value = Value::Null;
    decode_value_into(kind, r, &mut value)?;
    Ok(value)
}

/// Reads one non-null value of `kind` from `r` into `slot`. A text value reuses the string `slot` already holds, so
/// rows decoded into the vectors of earlier rows allocate nothing for their text. On error `slot` holds anything.
pub(crate) fn decode_value_into(kind: &ColumnKind, r: &mut Reader<'_>, slot: &mut Value) -> Result<(), ValueError> {
    *slot = match kind {
        ColumnKind::Int { bytes, unsigned } => {
            let raw = r.uint_le(usize::from(*bytes)).ok_or(Truncated)?;
            if *unsigned {
                Value::UInt(raw)
            } else {
                let shift = 64 - 8 * u32::from(*bytes);
                Value::Int(((raw << shift) as i64) >> shift)
            }
        }
        ColumnKind::Float => Value::Float(widen(f32::from_le_bytes(r.array().ok_or(Truncated)?))),
        ColumnKind::Double => Value::Float(f64::from_le_bytes(r.array().ok_or(Truncated)?)),
        ColumnKind::Decimal { precision, scale, size } => {
            let mut text = reuse_text(slot);
            decimal::decode_into(r.take(*size).ok_or(Truncated)?, *precision, *scale, &mut text).map_err(Corrupt)?;
            Value::Text(text)
        }
        ColumnKind::Year => match r.u8().ok_or(Truncated)? {
            0 => Value::Int(0),
            y => Value::Int(1900 + i64::from(y)),
        },
        ColumnKind::Date => {
            let packed = r.uint_le(3).ok_or(Truncated)? as u32;
            temporal::date(packed).map_or(Value::Null, Value::Int)
        }
        ColumnKind::Time => {
            let raw = r.uint_le(3).ok_or(Truncated)? as u32;
            Value::Int(temporal::time_legacy(((raw << 8) as i32) >> 8))
        }
        ColumnKind::Time2 { fsp } => {
            let bytes = r.take(3 + temporal::fraction_bytes(*fsp)).ok_or(Truncated)?;
            Value::Int(temporal::time2(bytes, *fsp).ok_or(Corrupt("invalid TIME"))?)
        }
        ColumnKind::DateTime => datetime(temporal::datetime_legacy(r.u64_le().ok_or(Truncated)?), 0),
        ColumnKind::DateTime2 { fsp } => {
            let bytes = r.take(5 + temporal::fraction_bytes(*fsp)).ok_or(Truncated)?;
            datetime(temporal::datetime2(bytes, *fsp).ok_or(Corrupt("invalid DATETIME"))?, *fsp)
        }
        ColumnKind::Timestamp => match r.u32_le().ok_or(Truncated)? {
            0 => Value::Null,
            seconds => {
                let mut text = reuse_text(slot);
                temporal::push_timestamp(&mut text, i64::from(seconds), 0, 0);
                Value::Text(text)
            }
        },
        ColumnKind::Timestamp2 { fsp } => {
            let bytes = r.take(4 + temporal::fraction_bytes(*fsp)).ok_or(Truncated)?;
            match temporal::timestamp2(bytes, *fsp).ok_or(Corrupt("invalid TIMESTAMP"))? {
                (0, 0) => Value::Null,
                (seconds, micros) => {
                    let mut text = reuse_text(slot);
                    temporal::push_timestamp(&mut text, i64::from(seconds), micros, *fsp);
                    Value::Text(text)
                }
            }
        }
        ColumnKind::Bit { bits } => {
            let bytes = r.take(usize::from(bits.div_ceil(8))).ok_or(Truncated)?;
            if *bits == 1 {
                Value::Bool(bytes[0] & 1 != 0)
            } else {
                // The binlog stores BIT big-endian; Debezium's Bits are little-endian.
                let mut le = [0u8; 8];
                for (dst, src) in le.iter_mut().zip(bytes.iter().rev()) {
                    *dst = *src;
                }
                let mut text = reuse_text(slot);
                BASE64_STANDARD.encode_string(&le[..bytes.len()], &mut text);
                Value::Text(text)
            }
        }
        ColumnKind::Enum { pack, members } => {
            let index = r.uint_le(usize::from(*pack)).ok_or(Truncated)?;
            match (members, index) {
                (None, _) => Value::Int(index as i64),
                (Some(_), 0) => Value::Text(reuse_text(slot)),
                (Some(m), i) => {
                    let name = usize::try_from(i - 1).ok().and_then(|i| m.get(i));
                    let name = name.ok_or(Corrupt("ENUM index beyond the known members"))?;
                    let mut text = reuse_text(slot);
                    text.push_str(name);
                    Value::Text(text)
                }
            }
        }
        ColumnKind::Set { pack, members } => {
            let mask = r.uint_le(usize::from(*pack)).ok_or(Truncated)?;
            match members {
                None => Value::UInt(mask),
                Some(m) => {
                    if m.len() < 64 && mask >> m.len() != 0 {
                        return Err(Corrupt("SET bit beyond the known members"));
                    }
                    let mut out = reuse_text(slot);
                    for (bit, name) in m.iter().enumerate().take(64) {
                        if mask & (1 << bit) != 0 {
                            if !out.is_empty() {
                                out.push(',');
                            }
                            out.push_str(name);
                        }
                    }
                    Value::Text(out)
                }
            }
        }
        ColumnKind::Text { length_bytes, charset, json } => {
            let bytes = length_prefixed(r, *length_bytes)?;
            let mut text = reuse_text(slot);
            match charset {
                Charset::Binary => BASE64_STANDARD.encode_string(bytes, &mut text),
                _ => {
                    let decoded = charset.decode(bytes);
                    match json.then(|| json::normalize_text(&decoded)).flatten() {
                        Some(normalised) => text = normalised,
                        None => text.push_str(&decoded),
                    }
                }
            }
            Value::Text(text)
        }
        ColumnKind::FixedBinary { length_bytes, width } => {
            let bytes = length_prefixed(r, *length_bytes)?;
            let width = usize::from(*width);
            let mut text = reuse_text(slot);
            if bytes.len() < width {
                let mut padded = bytes.to_vec();
                padded.resize(width, 0);
                BASE64_STANDARD.encode_string(padded, &mut text);
            } else {
                BASE64_STANDARD.encode_string(bytes, &mut text);
            }
            Value::Text(text)
        }
        ColumnKind::Json { length_bytes } => {
            let bytes = length_prefixed(r, *length_bytes)?;
            Value::Text(json::binary_to_text(bytes).map_err(Corrupt)?)
        }
        ColumnKind::Geometry { length_bytes } => {
            let bytes = length_prefixed(r, *length_bytes)?;
            let wkb = bytes.get(4..).ok_or(Corrupt("GEOMETRY shorter than its SRID"))?;
            let mut text = reuse_text(slot);
            BASE64_STANDARD.encode_string(wkb, &mut text);
            Value::Text(text)
        }
        ColumnKind::Bytes { length_bytes } => {
            let bytes = length_prefixed(r, *length_bytes)?;
            let mut text = reuse_text(slot);
            BASE64_STANDARD.encode_string(bytes, &mut text);
            Value::Text(text)
        }
        ColumnKind::Null => Value::Null,
        ColumnKind::Unsupported { feature } => return Err(ValueError::Unsupported(feature)),
    };
    Ok(())
}

/// The string `slot` holds, emptied, for the next text value (a new string if it holds none); `slot` is left null.
fn reuse_text(slot: &mut Value) -> String {
    match std::mem::replace(slot, Value::Null) {
        Value::Text(mut text) => {
            text.clear();
            text
        }
        _ => String::new(),
    }
}

fn length_prefixed<'a>(r: &mut Reader<'a>, length_bytes: u8) -> Result<&'a [u8], ValueError> {
    let len = r.uint_le(usize::from(length_bytes)).ok_or(Truncated)?;
    r.take(usize::try_from(len).map_err(|_| Truncated)?).ok_or(Truncated)
}

/// DATETIME as Debezium's Timestamp (ms, fsp 0-3) or MicroTimestamp (µs, fsp 4-6); zero dates are null.
fn datetime(dt: temporal::DateTime, fsp: u8) -> Value {
    match dt.epoch_micros() {
        None => Value::Null,
        Some(micros) if fsp <= 3 => Value::Int(micros.div_euclid(1000)),
        Some(micros) => Value::Int(micros),
    }
}

/// Widens a FLOAT through its shortest decimal representation, so `1.1f32` becomes `1.1`, not
/// `1.100000023841858`.
pub(crate) fn widen(f: f32) -> f64 {
    if !f.is_finite() {
        return f64::from(f);
    }
    let mut buf = StackText::default();
    if write!(buf, "{f}").is_err() {
        return f64::from(f);
    }
    buf.as_str().parse().unwrap_or(f64::from(f))
}

/// A small fixed buffer for formatting without allocating; f32's longest shortest-form text is 48 bytes.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> StackText {
        StackText { buf: [0; 64], len: 0 }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
