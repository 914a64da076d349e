//! The raw TABLE_MAP event: column types, per-column metadata and the optional metadata block.
//!
//! `mysql_common` parses the event but does not expose the raw metadata block, and its per-column accessor re-walks
//! the block from the start on every call. So the event is re-serialised once (an exact round trip) and parsed here,
//! with bounds checks throughout.
//!
//! Which columns an optional-metadata field lists differs between servers, which is why parsing takes a
//! [`ServerFlavor`]: MariaDB counts YEAR (and the pre-5.0 DECIMAL) as numeric in SIGNEDNESS and GEOMETRY as a
//! character column in the charset fields; MySQL counts neither (but does count MySQL 9's VECTOR as a character
//! column). When a field's length fits only the other flavor's
//! column count, that flavor is used for the field.

use mysql_common::binlog::events::TableMapEvent;
use mysql_common::proto::MySerialize;

use super::reader::Reader;
use super::DecodeError;

/// The server that wrote the binlog; decides how optional table-map metadata is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerFlavor {
    /// MySQL (5.6 to 9.x).
    #[default]
    MySql,
    /// MariaDB (10.x, 11.x).
    MariaDb,
}

/// `MYSQL_TYPE_*` codes as they appear in table maps.
pub(crate) mod types {
    pub(crate) const DECIMAL: u8 = 0;
    pub(crate) const TINY: u8 = 1;
    pub(crate) const SHORT: u8 = 2;
    pub(crate) const LONG: u8 = 3;
    pub(crate) const FLOAT: u8 = 4;
    pub(crate) const DOUBLE: u8 = 5;
    pub(crate) const NULL: u8 = 6;
    pub(crate) const TIMESTAMP: u8 = 7;
    pub(crate) const LONGLONG: u8 = 8;
    pub(crate) const INT24: u8 = 9;
    pub(crate) const DATE: u8 = 10;
    pub(crate) const TIME: u8 = 11;
    pub(crate) const DATETIME: u8 = 12;
    pub(crate) const YEAR: u8 = 13;
    pub(crate) const NEWDATE: u8 = 14;
    pub(crate) const VARCHAR: u8 = 15;
    pub(crate) const BIT: u8 = 16;
    pub(crate) const TIMESTAMP2: u8 = 17;
    pub(crate) const DATETIME2: u8 = 18;
    pub(crate) const TIME2: u8 = 19;
    pub(crate) const TYPED_ARRAY: u8 = 20;
    /// MariaDB `COMPRESSED` BLOB/TEXT.
    pub(crate) const BLOB_COMPRESSED: u8 = 140;
    /// MariaDB `COMPRESSED` VARCHAR.
    pub(crate) const VARCHAR_COMPRESSED: u8 = 141;
    pub(crate) const VECTOR: u8 = 242;
    pub(crate) const JSON: u8 = 245;
    pub(crate) const NEWDECIMAL: u8 = 246;
    pub(crate) const ENUM: u8 = 247;
    pub(crate) const SET: u8 = 248;
    pub(crate) const TINY_BLOB: u8 = 249;
    pub(crate) const MEDIUM_BLOB: u8 = 250;
    pub(crate) const LONG_BLOB: u8 = 251;
    pub(crate) const BLOB: u8 = 252;
    pub(crate) const VAR_STRING: u8 = 253;
    pub(crate) const STRING: u8 = 254;
    pub(crate) const GEOMETRY: u8 = 255;
}

use types::*;

/// One column of the table map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawColumn {
    /// Type code as written in the column type array.
    pub(crate) type_code: u8,
    /// The real type: for STRING columns, ENUM, SET or STRING as the metadata says; otherwise `type_code`.
    pub(crate) real_type: u8,
    /// The metadata bytes (0 to 2).
    pub(crate) meta: [u8; 2],
    /// For STRING/ENUM/SET columns, the maximum byte length (STRING) or pack length (ENUM, SET).
    pub(crate) string_length: u16,
}

/// A table map event, parsed.
#[derive(Debug)]
pub(crate) struct RawTableMap {
    pub(crate) table_id: u64,
    pub(crate) database: String,
    pub(crate) table: String,
    pub(crate) columns: Vec<RawColumn>,
    pub(crate) optional: OptionalMetadata,
}

/// The optional metadata fields, expanded to one entry per column.
#[derive(Debug, Default)]
pub(crate) struct OptionalMetadata {
    /// Per column: `Some(true)` if unsigned (numeric columns only).
    pub(crate) unsigned: Vec<Option<bool>>,
    /// Per column: collation id (character, ENUM and SET columns).
    pub(crate) collation: Vec<Option<u64>>,
    /// Column names, if logged.
    pub(crate) names: Option<Vec<String>>,
    /// Per column: ENUM or SET member names as raw bytes (in the column's charset).
    pub(crate) members: Vec<Option<Vec<Vec<u8>>>>,
    /// Primary key columns in key order, if logged.
    pub(crate) primary_key: Option<Vec<usize>>,
}

const SIGNEDNESS: u8 = 1;
const DEFAULT_CHARSET: u8 = 2;
const COLUMN_CHARSET: u8 = 3;
const COLUMN_NAME: u8 = 4;
const SET_STR_VALUE: u8 = 5;
const ENUM_STR_VALUE: u8 = 6;
const SIMPLE_PRIMARY_KEY: u8 = 8;
const PRIMARY_KEY_WITH_PREFIX: u8 = 9;
const ENUM_AND_SET_DEFAULT_CHARSET: u8 = 10;
const ENUM_AND_SET_COLUMN_CHARSET: u8 = 11;

impl RawTableMap {
    pub(crate) fn parse(tme: &TableMapEvent<'_>, flavor: ServerFlavor) -> Result<RawTableMap, DecodeError> {
        let table_id = tme.table_id();
        let bad = |reason| DecodeError::TableMap { table_id, reason };
        let mut bytes = Vec::new();
        tme.serialize(&mut bytes);
        let mut r = Reader::new(&bytes);
        r.take(8).ok_or(bad("truncated header"))?; // table id (6) and flags (2)
        let database = name(&mut r).ok_or(bad("truncated database name"))?;
        let table = name(&mut r).ok_or(bad("truncated table name"))?;
        let count = r.lenenc_len().ok_or(bad("bad column count"))?;
        let type_codes = r.take(count).ok_or(bad("truncated column types"))?;
        let metadata = r.lenenc_bytes().ok_or(bad("truncated column metadata"))?;
        r.take(count.div_ceil(8)).ok_or(bad("truncated null bitmap"))?;
        let optional = r.rest();

        let mut meta = Reader::new(metadata);
        let mut columns = Vec::with_capacity(count);
        for (index, &type_code) in type_codes.iter().enumerate() {
            columns.push(column(&mut meta, type_code, table_id, index)?);
        }
        if !meta.is_empty() {
            return Err(bad("column metadata longer than the columns need"));
        }
        let optional = parse_optional(optional, &columns, flavor).map_err(bad)?;
        Ok(RawTableMap { table_id, database, table, columns, optional })
    }
}

fn name(r: &mut Reader<'_>) -> Option<String> {
    let len = usize::from(r.u8()?);
    let s = String::from_utf8_lossy(r.take(len)?).into_owned();
    r.take(1)?; // NUL terminator
    Some(s)
}

/// Reads one column's metadata and works out its real type.
fn column(meta: &mut Reader<'_>, type_code: u8, table_id: u64, index: usize) -> Result<RawColumn, DecodeError> {
    let truncated = DecodeError::TableMap { table_id, reason: "truncated column metadata" };
    let mut out = RawColumn { type_code, real_type: type_code, meta: [0, 0], string_length: 0 };
    let len = match type_code {
        DECIMAL | TINY | SHORT | LONG | NULL | TIMESTAMP | LONGLONG | INT24 | DATE | TIME | DATETIME | YEAR
        | NEWDATE | VAR_STRING => 0,
        FLOAT | DOUBLE | TIMESTAMP2 | DATETIME2 | TIME2 | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | BLOB | GEOMETRY
        | JSON | VECTOR | BLOB_COMPRESSED => 1,
        VARCHAR | VARCHAR_COMPRESSED | NEWDECIMAL | BIT | STRING | ENUM | SET => 2,
        TYPED_ARRAY => {
            // Element type, then that type's metadata (VARCHAR elements carry 3 bytes). Never seen in user tables;
            // parsed only so that the following columns line up, decoding it is unsupported.
            let element = meta.u8().ok_or(truncated.clone())?;
            let inner = column(meta, element, table_id, index)?;
            if inner.type_code == VARCHAR {
                meta.u8().ok_or(truncated)?;
            }
            return Ok(out);
        }
        _ => return Err(DecodeError::UnknownColumnType { table_id, column: index, type_code }),
    };
    let bytes = meta.take(len).ok_or(truncated)?;
    out.meta[..len].copy_from_slice(bytes);
    if matches!(type_code, STRING | ENUM | SET) {
        let (b0, b1) = (out.meta[0], out.meta[1]);
        if b0 == 0 {
            // Servers before the ENUM/SET encoding wrote the plain length.
            out.string_length = u16::from_le_bytes(out.meta);
        } else if b0 & 0x30 != 0x30 {
            // CHAR longer than 255 bytes: two length bits are folded into the type byte (MySQL bug #37426).
            out.real_type = b0 | 0x30;
            out.string_length = u16::from(b1) | (u16::from((b0 & 0x30) ^ 0x30) << 4);
        } else {
            out.real_type = b0;
            out.string_length = u16::from(b1);
        }
    }
    Ok(out)
}

fn is_numeric(c: &RawColumn, flavor: ServerFlavor) -> bool {
    matches!(c.type_code, TINY | SHORT | INT24 | LONG | LONGLONG | NEWDECIMAL | FLOAT | DOUBLE)
        || (flavor == ServerFlavor::MariaDb && matches!(c.type_code, YEAR | DECIMAL))
}

fn is_character(c: &RawColumn, flavor: ServerFlavor) -> bool {
    // MySQL 9 lists VECTOR columns (with the binary charset) among the character columns.
    matches!(c.real_type, STRING | VAR_STRING | VARCHAR | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | BLOB | VECTOR)
        || (flavor == ServerFlavor::MariaDb && matches!(c.real_type, GEOMETRY | BLOB_COMPRESSED | VARCHAR_COMPRESSED))
}

fn is_enum_or_set(c: &RawColumn) -> bool {
    matches!(c.real_type, ENUM | SET)
}

/// Column indexes matching `pred` under `flavor`, or under the other flavor if only its count fits `fits`.
fn select(
    columns: &[RawColumn],
    flavor: ServerFlavor,
    pred: fn(&RawColumn, ServerFlavor) -> bool,
    fits: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let pick = |f| columns.iter().enumerate().filter(|(_, c)| pred(c, f)).map(|(i, _)| i).collect::<Vec<_>>();
    let preferred = pick(flavor);
    if fits(preferred.len()) {
        return preferred;
    }
    let other = pick(match flavor {
        ServerFlavor::MySql => ServerFlavor::MariaDb,
        ServerFlavor::MariaDb => ServerFlavor::MySql,
    });
    if fits(other.len()) {
        other
    } else {
        preferred
    }
}

fn parse_optional(data: &[u8], columns: &[RawColumn], flavor: ServerFlavor) -> Result<OptionalMetadata, &'static str> {
    let n = columns.len();
    let mut out = OptionalMetadata {
        unsigned: vec![None; n],
        collation: vec![None; n],
        names: None,
        members: vec![None; n],
        primary_key: None,
    };
    let mut r = Reader::new(data);
    while !r.is_empty() {
        let field = r.u8().ok_or("truncated optional metadata")?;
        let value = r.lenenc_bytes().ok_or("truncated optional metadata field")?;
        let mut v = Reader::new(value);
        match field {
            SIGNEDNESS => {
                let numeric = select(columns, flavor, is_numeric, |k| k.div_ceil(8) == value.len());
                if numeric.len().div_ceil(8) != value.len() {
                    return Err("signedness bitmap does not match the numeric columns");
                }
                for (k, &col) in numeric.iter().enumerate() {
                    out.unsigned[col] = Some(value[k / 8] & (0x80 >> (k % 8)) != 0);
                }
            }
            DEFAULT_CHARSET | ENUM_AND_SET_DEFAULT_CHARSET => {
                let default = v.lenenc().ok_or("bad default charset")?;
                let mut overrides = Vec::new();
                while !v.is_empty() {
                    let index = v.lenenc().ok_or("bad charset override")?;
                    let collation = v.lenenc().ok_or("bad charset override")?;
                    overrides.push((usize::try_from(index).map_err(|_| "bad charset index")?, collation));
                }
                let max_index = overrides.iter().map(|&(i, _)| i + 1).max().unwrap_or(0);
                let targets = if field == DEFAULT_CHARSET {
                    select(columns, flavor, is_character, |k| k >= max_index)
                } else {
                    select(columns, flavor, |c, _| is_enum_or_set(c), |k| k >= max_index)
                };
                if max_index > targets.len() {
                    return Err("charset override for a column that is not a character column");
                }
                for &col in &targets {
                    out.collation[col] = Some(default);
                }
                for (index, collation) in overrides {
                    out.collation[targets[index]] = Some(collation);
                }
            }
            COLUMN_CHARSET | ENUM_AND_SET_COLUMN_CHARSET => {
                let mut ids = Vec::new();
                while !v.is_empty() {
                    ids.push(v.lenenc().ok_or("bad column charset")?);
                }
                let targets = if field == COLUMN_CHARSET {
                    select(columns, flavor, is_character, |k| k == ids.len())
                } else {
                    select(columns, flavor, |c, _| is_enum_or_set(c), |k| k == ids.len())
                };
                if targets.len() != ids.len() {
                    return Err("column charsets do not match the character columns");
                }
                for (col, id) in targets.into_iter().zip(ids) {
                    out.collation[col] = Some(id);
                }
            }
            COLUMN_NAME => {
                let mut names = Vec::with_capacity(n);
                while !v.is_empty() {
                    let raw = v.lenenc_bytes().ok_or("bad column name")?;
                    names.push(String::from_utf8_lossy(raw).into_owned());
                }
                if names.len() != n {
                    return Err("column names do not match the columns");
                }
                out.names = Some(names);
            }
            SET_STR_VALUE | ENUM_STR_VALUE => {
                let wanted = if field == SET_STR_VALUE { SET } else { ENUM };
                let targets: Vec<usize> = (0..n).filter(|&i| columns[i].real_type == wanted).collect();
                let mut k = 0;
                while !v.is_empty() {
                    let count = v.lenenc_len().ok_or("bad member count")?;
                    let mut members = Vec::with_capacity(count.min(v.remaining()));
                    for _ in 0..count {
                        members.push(v.lenenc_bytes().ok_or("bad member name")?.to_vec());
                    }
                    let col = *targets.get(k).ok_or("more member lists than ENUM/SET columns")?;
                    out.members[col] = Some(members);
                    k += 1;
                }
                if k != targets.len() {
                    return Err("fewer member lists than ENUM/SET columns");
                }
            }
            SIMPLE_PRIMARY_KEY | PRIMARY_KEY_WITH_PREFIX => {
                let mut key = Vec::new();
                while !v.is_empty() {
                    let index = v.lenenc().ok_or("bad primary key")?;
                    if field == PRIMARY_KEY_WITH_PREFIX {
                        v.lenenc().ok_or("bad primary key prefix")?;
                    }
                    let index =
                        usize::try_from(index).ok().filter(|&i| i < n).ok_or("primary key column out of range")?;
                    key.push(index);
                }
                out.primary_key = Some(key);
            }
            // GEOMETRY_TYPE, COLUMN_VISIBILITY, VECTOR_DIMENSIONALITY and fields added later carry nothing the
            // decoder needs.
            _ => {}
        }
    }
    Ok(out)
}
