//! JSON columns: MySQL's binary JSON and MariaDB's JSON text, both to the same compact JSON text.
//!
//! MySQL 8 sends JSON columns in its binary format (`sql-common/json_binary.cc`): a type byte, then objects and
//! arrays as element counts, sizes, offset tables and inlined small scalars. It is decoded here directly into text —
//! no intermediate tree — with every offset bounds-checked and nesting limited to [`MAX_DEPTH`]. Object keys keep
//! the order MySQL stored them in (MySQL sorts keys by length, then bytes). Scalars are printed the way `serde_json`
//! prints them (compact, `1.0` for a whole double, minimal string escaping). Opaque values that MySQL embeds in JSON
//! are printed the way MySQL's own `JSON` output does: DECIMAL as a number with its scale (`1.50`), DATE as
//! `"YYYY-MM-DD"`, TIME as `"hh:mm:ss.ffffff"`, DATETIME/TIMESTAMP as `"YYYY-MM-DD hh:mm:ss.ffffff"`, anything else
//! as `"base64:type<N>:<base64>"`.
//!
//! MariaDB stores JSON as LONGTEXT, so its binlog carries the text the user wrote. [`normalize_text`] re-serialises
//! it with `serde_json`'s compact formatting while streaming, so key order is kept (the workspace's `serde_json` has
//! no `preserve_order`, and a `Map` would sort keys). Numbers get MySQL's parsing semantics (integers that fit
//! i64/u64 stay integers, everything else becomes a double), so for the same document MariaDB and MySQL produce the
//! same text except for key order, which only MySQL normalises. Text that is not valid JSON is kept as it is.

use std::fmt::Write as _;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{decimal, temporal};

/// Deepest nesting accepted in binary JSON (MySQL itself refuses documents deeper than 100).
pub(crate) const MAX_DEPTH: usize = 150;

const SMALL_OBJECT: u8 = 0x00;
const LARGE_OBJECT: u8 = 0x01;
const SMALL_ARRAY: u8 = 0x02;
const LARGE_ARRAY: u8 = 0x03;
const LITERAL: u8 = 0x04;
const INT16: u8 = 0x05;
const UINT16: u8 = 0x06;
const INT32: u8 = 0x07;
const UINT32: u8 = 0x08;
const INT64: u8 = 0x09;
const UINT64: u8 = 0x0a;
const DOUBLE: u8 = 0x0b;
const STRING: u8 = 0x0c;
const OPAQUE: u8 = 0x0f;

/// Decodes a MySQL binary JSON value to compact JSON text. An empty value is the JSON null, as in MySQL.
pub(crate) fn binary_to_text(bytes: &[u8]) -> Result<String, &'static str> {
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2 + 8);
    match bytes.split_first() {
        None => out.push_str("null"),
        Some((&ty, body)) => write_value(ty, body, &mut out, 0)?,
    }
    Ok(out)
}

fn write_value(ty: u8, data: &[u8], out: &mut String, depth: usize) -> Result<(), &'static str> {
    const SHORT: &str = "JSON value truncated";
    match ty {
        SMALL_OBJECT | LARGE_OBJECT | SMALL_ARRAY | LARGE_ARRAY => {
            let large = ty == LARGE_OBJECT || ty == LARGE_ARRAY;
            let object = ty == SMALL_OBJECT || ty == LARGE_OBJECT;
            write_container(data, large, object, out, depth)
        }
        LITERAL => {
            out.push_str(match data.first() {
                Some(0x00) => "null",
                Some(0x01) => "true",
                Some(0x02) => "false",
                Some(_) => return Err("unknown JSON literal"),
                None => return Err(SHORT),
            });
            Ok(())
        }
        INT16 => int(out, i64::from(i16::from_le_bytes(fixed(data)?))),
        UINT16 => int(out, i64::from(u16::from_le_bytes(fixed(data)?))),
        INT32 => int(out, i64::from(i32::from_le_bytes(fixed(data)?))),
        UINT32 => int(out, i64::from(u32::from_le_bytes(fixed(data)?))),
        INT64 => int(out, i64::from_le_bytes(fixed(data)?)),
        UINT64 => {
            let _ = write!(out, "{}", u64::from_le_bytes(fixed(data)?));
            Ok(())
        }
        DOUBLE => {
            write_double(out, f64::from_le_bytes(fixed(data)?));
            Ok(())
        }
        STRING => {
            let (len, rest) = varlen(data)?;
            let s = rest.get(..len).ok_or(SHORT)?;
            write_string(out, &String::from_utf8_lossy(s));
            Ok(())
        }
        OPAQUE => {
            let (&field_type, rest) = data.split_first().ok_or(SHORT)?;
            let (len, rest) = varlen(rest)?;
            write_opaque(out, field_type, rest.get(..len).ok_or(SHORT)?)
        }
        _ => Err("unknown JSON value type"),
    }
}

fn write_container(data: &[u8], large: bool, object: bool, out: &mut String, depth: usize) -> Result<(), &'static str> {
    const BAD: &str = "JSON container offsets out of bounds";
    if depth >= MAX_DEPTH {
        return Err("JSON nested too deeply");
    }
    let offset_size = if large { 4 } else { 2 };
    let count = offset(data, 0, large).ok_or(BAD)?;
    let size = offset(data, offset_size, large).ok_or(BAD)?;
    let data = data.get(..size).ok_or(BAD)?;
    let key_entry = if object { offset_size + 2 } else { 0 };
    let value_entry = 1 + offset_size;
    let keys_start = 2 * offset_size;
    let values_start = count.checked_mul(key_entry).and_then(|k| k.checked_add(keys_start)).ok_or(BAD)?;
    let header_end = count.checked_mul(value_entry).and_then(|v| v.checked_add(values_start)).ok_or(BAD)?;
    if header_end > data.len() {
        return Err(BAD);
    }
    out.push(if object { '{' } else { '[' });
    for i in 0..count {
        if i > 0 {
            out.push(',');
        }
        if object {
            let entry = keys_start + i * key_entry;
            let key_offset = offset(data, entry, large).ok_or(BAD)?;
            let key_len = usize::from(u16::from_le_bytes(fixed(data.get(entry + offset_size..).ok_or(BAD)?)?));
            let key = data.get(key_offset..key_offset.checked_add(key_len).ok_or(BAD)?).ok_or(BAD)?;
            write_string(out, &String::from_utf8_lossy(key));
            out.push(':');
        }
        let entry = values_start + i * value_entry;
        let ty = data[entry];
        let inlined = matches!(ty, LITERAL | INT16 | UINT16) || (large && matches!(ty, INT32 | UINT32));
        if inlined {
            write_value(ty, &data[entry + 1..entry + value_entry], out, depth + 1)?;
        } else {
            let value_offset = offset(data, entry + 1, large).ok_or(BAD)?;
            let value = data.get(value_offset..).filter(|v| !v.is_empty()).ok_or(BAD)?;
            write_value(ty, value, out, depth + 1)?;
        }
    }
    out.push(if object { '}' } else { ']' });
    Ok(())
}

/// A 2- or 4-byte little-endian offset or count at `at`.
fn offset(data: &[u8], at: usize, large: bool) -> Option<usize> {
    let bytes = data.get(at..)?;
    if large {
        usize::try_from(u32::from_le_bytes(fixed(bytes).ok()?)).ok()
    } else {
        Some(usize::from(u16::from_le_bytes(fixed(bytes).ok()?)))
    }
}

fn fixed<const N: usize>(data: &[u8]) -> Result<[u8; N], &'static str> {
    data.get(..N).and_then(|s| s.try_into().ok()).ok_or("JSON value truncated")
}

/// A variable-length length: 7 bits per byte, low bits first, high bit set on all but the last byte.
fn varlen(data: &[u8]) -> Result<(usize, &[u8]), &'static str> {
    let mut len = 0usize;
    for (i, &b) in data.iter().take(5).enumerate() {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((len, &data[i + 1..]));
        }
    }
    Err("bad JSON length")
}

fn int(out: &mut String, v: i64) -> Result<(), &'static str> {
    let _ = write!(out, "{v}");
    Ok(())
}

fn write_double(out: &mut String, v: f64) {
    match serde_json::Number::from_f64(v) {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push_str("null"),
    }
}

/// Writes a JSON string literal with `serde_json`'s escaping (quotes, backslash, control characters only).
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_opaque(out: &mut String, field_type: u8, data: &[u8]) -> Result<(), &'static str> {
    const NEWDECIMAL: u8 = 246;
    const TIMESTAMP: u8 = 7;
    const DATE: u8 = 10;
    const TIME: u8 = 11;
    const DATETIME: u8 = 12;
    match field_type {
        NEWDECIMAL => {
            let [precision, scale, ..] = *data else { return Err("JSON decimal truncated") };
            out.push_str(&decimal::decode(&data[2..], precision, scale)?);
        }
        DATE | DATETIME | TIMESTAMP => {
            let packed = i64::from_le_bytes(fixed(data)?);
            let dt = temporal::unpack_datetime(packed).ok_or("bad JSON datetime")?;
            let _ = write!(out, "\"{:04}-{:02}-{:02}", dt.year, dt.month, dt.day);
            if field_type != DATE {
                let _ = write!(out, " {:02}:{:02}:{:02}", dt.hour, dt.minute, dt.second);
                temporal::push_fraction(out, dt.micros, 6);
            }
            out.push('"');
        }
        TIME => {
            let packed = i64::from_le_bytes(fixed(data)?);
            let (negative, h, m, s, micros) = temporal::time_parts(packed).ok_or("bad JSON time")?;
            let sign = if negative { "-" } else { "" };
            let _ = write!(out, "\"{sign}{h:02}:{m:02}:{s:02}");
            temporal::push_fraction(out, micros, 6);
            out.push('"');
        }
        _ => {
            let _ = write!(out, "\"base64:type{field_type}:{}\"", BASE64_STANDARD.encode(data));
        }
    }
    Ok(())
}

/// Re-serialises JSON text compactly without reordering keys; `None` if it is not valid JSON.
pub(crate) fn normalize_text(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut de = serde_json::Deserializer::from_str(text);
    Transcode(&mut out).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}

/// Streams one JSON value from a `serde_json` deserializer into compact text.
struct Transcode<'o>(&'o mut String);

impl<'de> DeserializeSeed<'de> for Transcode<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Transcode<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push_str("null");
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        let _ = write!(self.0, "{v}");
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        let _ = write!(self.0, "{v}");
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        write_double(self.0, v);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_string(self.0, v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push('[');
        let mut first = true;
        loop {
            if !first {
                self.0.push(',');
            }
            if seq.next_element_seed(Transcode(self.0))?.is_none() {
                if !first {
                    self.0.pop();
                }
                break;
            }
            first = false;
        }
        self.0.push(']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push('{');
        let mut first = true;
        loop {
            if !first {
                self.0.push(',');
            }
            if map.next_key_seed(Transcode(self.0))?.is_none() {
                if !first {
                    self.0.pop();
                }
                break;
            }
            self.0.push(':');
            map.next_value_seed(Transcode(self.0))?;
            first = false;
        }
        self.0.push('}');
        Ok(())
    }
}

#[cfg(test)]
mod tests;
