//! Query results (snapshot reads) to envelope values, with the same mapping as the binlog decoder.
//!
//! A snapshot reads rows with `SELECT` over the client protocol, where values arrive as protocol values (typed with
//! the binary protocol, text with the text protocol) instead of binlog bytes. [`protocol_value`] maps them using the
//! column's `information_schema` facts so that a row read by a snapshot and the same row decoded from the binlog give
//! identical [`Value`]s. The session must use `time_zone = '+00:00'` so TIMESTAMP values come back in UTC.

use base64::prelude::{Engine as _, BASE64_STANDARD};
use cdc_contract::Value;
use mysql_common::Value as Protocol;

use super::schema::{SchemaColumn, TypeClass};
use super::temporal::{self, DateTime, MICROS_PER_SECOND};
use super::{json, values};

/// Converts one value of a query result for `column` to its envelope value.
pub fn protocol_value(column: &SchemaColumn, value: Protocol) -> Value {
    let class = column.class();
    match value {
        Protocol::NULL => Value::Null,
        Protocol::Int(i) => integer(column, class, i128::from(i)),
        Protocol::UInt(u) => integer(column, class, i128::from(u)),
        Protocol::Float(f) => Value::Float(values::widen(f)),
        Protocol::Double(d) if class == TypeClass::Float && column.data_type.eq_ignore_ascii_case("float") => {
            Value::Float(values::widen(d as f32))
        }
        Protocol::Double(d) => Value::Float(d),
        Protocol::Date(year, month, day, hour, minute, second, micros) => {
            let dt = DateTime {
                year: u32::from(year),
                month: u32::from(month),
                day: u32::from(day),
                hour: u32::from(hour),
                minute: u32::from(minute),
                second: u32::from(second),
                micros,
            };
            datetime(column, class, dt)
        }
        Protocol::Time(negative, days, hours, minutes, seconds, micros) => {
            let secs = (i64::from(days) * 24 + i64::from(hours)) * 3600 + i64::from(minutes) * 60 + i64::from(seconds);
            let value = secs * MICROS_PER_SECOND + i64::from(micros);
            Value::Int(if negative { -value } else { value })
        }
        Protocol::Bytes(bytes) => bytes_value(column, class, bytes),
    }
}

fn integer(column: &SchemaColumn, class: TypeClass, v: i128) -> Value {
    match class {
        TypeClass::Integer | TypeClass::Year | TypeClass::Unknown => {
            if column.is_unsigned() || v > i128::from(i64::MAX) {
                u64::try_from(v).map(Value::UInt).unwrap_or(Value::Int(v as i64))
            } else {
                Value::Int(v as i64)
            }
        }
        TypeClass::Float => Value::Float(v as f64),
        TypeClass::Bit => bits(column, &(v as u64).to_be_bytes()),
        _ => Value::Text(v.to_string()),
    }
}

fn datetime(column: &SchemaColumn, class: TypeClass, dt: DateTime) -> Value {
    let fsp = fsp(column);
    let Some(micros) = dt.epoch_micros() else {
        return Value::Null;
    };
    match class {
        TypeClass::Date => Value::Int(micros.div_euclid(MICROS_PER_SECOND * 86_400)),
        TypeClass::Timestamp => Value::Text(temporal::format_timestamp(
            micros.div_euclid(MICROS_PER_SECOND),
            micros.rem_euclid(MICROS_PER_SECOND) as u32,
            fsp,
        )),
        _ if fsp <= 3 => Value::Int(micros.div_euclid(1000)),
        _ => Value::Int(micros),
    }
}

fn bytes_value(column: &SchemaColumn, class: TypeClass, bytes: Vec<u8>) -> Value {
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    match class {
        TypeClass::Integer | TypeClass::Year => {
            match std::str::from_utf8(&bytes).ok().and_then(|s| s.parse::<i128>().ok()) {
                Some(v) => integer(column, class, v),
                None => Value::Text(text()),
            }
        }
        TypeClass::Float => match std::str::from_utf8(&bytes).ok().and_then(|s| s.parse::<f64>().ok()) {
            Some(v) => Value::Float(v),
            None => Value::Text(text()),
        },
        TypeClass::Date | TypeClass::DateTime | TypeClass::Timestamp => match parse_datetime(&bytes) {
            Some(dt) => datetime(column, class, dt),
            None => Value::Null,
        },
        TypeClass::Time => parse_time(&bytes).map_or_else(|| Value::Text(text()), Value::Int),
        TypeClass::Bit => bits(column, &bytes),
        TypeClass::Json => Value::Text(json_text(&bytes)),
        // Like the binlog decoder: WKB without MySQL's 4-byte SRID prefix.
        TypeClass::Geometry => Value::Text(BASE64_STANDARD.encode(bytes.get(4..).unwrap_or_default())),
        TypeClass::Vector => Value::Text(BASE64_STANDARD.encode(&bytes)),
        TypeClass::String if column.is_binary_string() => Value::Text(BASE64_STANDARD.encode(&bytes)),
        TypeClass::String if column.charset.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("binary")) => {
            Value::Text(BASE64_STANDARD.encode(&bytes))
        }
        TypeClass::String if column.is_json => Value::Text(json_text(&bytes)),
        _ => Value::Text(text()),
    }
}

fn json_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    json::normalize_text(&text).unwrap_or_else(|| text.into_owned())
}

/// BIT(1) as a boolean, wider BITs as base64 of the little-endian bytes, like the binlog decoder.
fn bits(column: &SchemaColumn, big_endian: &[u8]) -> Value {
    let width = type_argument(column).unwrap_or(1).clamp(1, 64);
    let n = usize::from(width.div_ceil(8));
    let tail = &big_endian[big_endian.len().saturating_sub(n)..];
    if width == 1 {
        return Value::Bool(tail.last().is_some_and(|b| b & 1 != 0));
    }
    let mut le: Vec<u8> = tail.iter().rev().copied().collect();
    le.resize(n, 0);
    Value::Text(BASE64_STANDARD.encode(le))
}

/// The number in `type(n)`, e.g. the fsp of `datetime(3)` or the width of `bit(10)`.
fn type_argument(column: &SchemaColumn) -> Option<u8> {
    let open = column.column_type.find('(')?;
    let close = column.column_type[open..].find(')')? + open;
    column.column_type[open + 1..close].trim().parse().ok()
}

fn fsp(column: &SchemaColumn) -> u8 {
    type_argument(column).unwrap_or(0).min(6)
}

/// `YYYY-MM-DD[ hh:mm:ss[.ffffff]]` (text protocol).
fn parse_datetime(bytes: &[u8]) -> Option<DateTime> {
    let s = std::str::from_utf8(bytes).ok()?;
    let (date, time) = s.split_once(' ').unwrap_or((s, "00:00:00"));
    let mut d = date.splitn(3, '-').map(|p| p.parse::<u32>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u32>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    Some(DateTime { year, month, day, hour, minute, second, micros: micros(frac)? })
}

/// `[-]hhh:mm:ss[.ffffff]` (text protocol) to signed microseconds.
fn parse_time(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    let (negative, s) = s.strip_prefix('-').map_or((false, s), |rest| (true, rest));
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    let value = (h * 3600 + m * 60 + sec) * MICROS_PER_SECOND + i64::from(micros(frac)?);
    Some(if negative { -value } else { value })
}

fn micros(frac: &str) -> Option<u32> {
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.is_empty() {
        return Some(0);
    }
    Some(frac.parse::<u32>().ok()? * 10u32.pow(6 - frac.len() as u32))
}

#[cfg(test)]
mod tests {
    use super::super::schema::tests::column;
    use super::*;

    #[test]
    fn binary_protocol_values() {
        let biu = column("biu", "bigint", "bigint(20) unsigned", None);
        let iu = column("iu", "int", "int(10) unsigned", None);
        let i = column("i", "int", "int(11)", None);
        let f = column("f", "float", "float", None);
        let dec = column("d", "decimal", "decimal(10,2)", None);
        let date = column("d", "date", "date", None);
        let dt3 = column("d", "datetime", "datetime(3)", None);
        let dt6 = column("d", "datetime", "datetime(6)", None);
        let ts3 = column("t", "timestamp", "timestamp(3)", None);
        let t6 = column("t", "time", "time(6)", None);
        let bit1 = column("b", "bit", "bit(1)", None);
        let bit10 = column("b", "bit", "bit(10)", None);
        let vb = column("b", "varbinary", "varbinary(4)", None);
        let e = column("e", "enum", "enum('a','b')", Some("utf8mb4"));
        let mut j = column("j", "longtext", "longtext", Some("utf8mb4"));
        j.is_json = true;
        let y = column("y", "year", "year(4)", None);
        let g = column("g", "point", "point", None);
        let cases: Vec<(&SchemaColumn, Protocol, Value)> = vec![
            (&biu, Protocol::UInt(u64::MAX), Value::UInt(u64::MAX)),
            (&iu, Protocol::Int(4_294_967_295), Value::UInt(4_294_967_295)),
            (&i, Protocol::Int(-5), Value::Int(-5)),
            (&f, Protocol::Float(1.1), Value::Float(1.1)),
            (&dec, Protocol::Bytes(b"12.30".to_vec()), Value::Text("12.30".into())),
            (&date, Protocol::Date(2024, 1, 2, 0, 0, 0, 0), Value::Int(19_724)),
            (&date, Protocol::Date(0, 0, 0, 0, 0, 0, 0), Value::Null),
            (&dt3, Protocol::Date(2024, 1, 2, 3, 4, 5, 120_000), Value::Int(1_704_164_645_120)),
            (&dt6, Protocol::Date(2024, 1, 2, 3, 4, 5, 123_456), Value::Int(1_704_164_645_123_456)),
            (&ts3, Protocol::Date(2024, 1, 2, 3, 4, 5, 120_000), Value::Text("2024-01-02T03:04:05.120Z".into())),
            (&t6, Protocol::Time(true, 34, 22, 59, 59, 0), Value::Int(-(838 * 3600 + 59 * 60 + 59) * 1_000_000)),
            (&bit1, Protocol::Bytes(vec![1]), Value::Bool(true)),
            (&bit10, Protocol::Bytes(vec![0x02, 0x01]), Value::Text("AQI=".into())),
            (&vb, Protocol::Bytes(vec![0, 255]), Value::Text("AP8=".into())),
            (&e, Protocol::Bytes(b"b".to_vec()), Value::Text("b".into())),
            (
                &j,
                Protocol::Bytes(br#"{"b": [true, null], "a": 1}"#.to_vec()),
                Value::Text(r#"{"b":[true,null],"a":1}"#.into()),
            ),
            (&y, Protocol::Int(2024), Value::Int(2024)),
            (&g, Protocol::Bytes(vec![0, 0, 0, 0, 1, 2, 3]), Value::Text("AQID".into())),
            (&i, Protocol::NULL, Value::Null),
        ];
        for (col, input, expected) in cases {
            assert_eq!(protocol_value(col, input.clone()), expected, "{} {input:?}", col.column_type);
        }
    }

    #[test]
    fn text_protocol_values() {
        let biu = column("biu", "bigint", "bigint(20) unsigned", None);
        let dt0 = column("d", "datetime", "datetime", None);
        let ts = column("t", "timestamp", "timestamp", None);
        let t = column("t", "time", "time(3)", None);
        let d = column("d", "double", "double", None);
        let cases: Vec<(&SchemaColumn, &[u8], Value)> = vec![
            (&biu, b"18446744073709551615", Value::UInt(u64::MAX)),
            (&dt0, b"2024-01-02 03:04:05", Value::Int(1_704_164_645_000)),
            (&dt0, b"0000-00-00 00:00:00", Value::Null),
            (&ts, b"2024-01-02 03:04:05", Value::Text("2024-01-02T03:04:05Z".into())),
            (&t, b"-12:34:56.789", Value::Int(-(12 * 3600 + 34 * 60 + 56) * 1_000_000 - 789_000)),
            (&d, b"-2.5", Value::Float(-2.5)),
        ];
        for (col, input, expected) in cases {
            assert_eq!(protocol_value(col, Protocol::Bytes(input.to_vec())), expected, "{}", col.column_type);
        }
    }
}
