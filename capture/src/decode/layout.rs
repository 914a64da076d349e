//! [`TableLayout`]: everything needed to decode a table's rows, resolved once per TABLE_MAP event.
//!
//! Sources, in order of precedence:
//! 1. the caller's [`SchemaColumn`] list (from `information_schema`), when it is consistent with the table map: same
//!    column count and compatible type classes (an INT in the schema where the binlog has a VARCHAR means the schema
//!    is stale, e.g. read before an ALTER TABLE). An inconsistent schema is ignored as a whole and
//!    [`TableLayout::schema_applied`] says so;
//! 2. the table map's optional metadata (`binlog_row_metadata=FULL` logs names, signedness, charsets, ENUM/SET
//!    members and the primary key; `MINIMAL` only signedness and charsets);
//! 3. defaults: names `col_0`, `col_1`, ...; integers signed; text UTF-8; no primary key; ENUM/SET as their index
//!    and bitmask (`Value::Int` / `Value::UInt`) because their member names are unknown.

use std::sync::Arc;

use mysql_common::binlog::events::TableMapEvent;

use super::charset::Charset;
use super::decimal;
use super::schema::{SchemaColumn, TypeClass};
use super::table_map::{types::*, RawColumn, RawTableMap, ServerFlavor};
use super::DecodeError;

/// How a column's bytes are read and turned into a [`cdc_contract::Value`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ColumnKind {
    /// TINYINT to BIGINT: `bytes` is 1, 2, 3, 4 or 8.
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Float,
    Double,
    /// DECIMAL/NUMERIC; `size` is the packed size in bytes.
    Decimal {
        precision: u8,
        scale: u8,
        size: usize,
    },
    Year,
    Date,
    /// Pre-5.6 TIME (3 bytes).
    Time,
    Time2 {
        fsp: u8,
    },
    /// Pre-5.6 DATETIME (8 bytes).
    DateTime,
    DateTime2 {
        fsp: u8,
    },
    /// Pre-5.6 TIMESTAMP (4 bytes).
    Timestamp,
    Timestamp2 {
        fsp: u8,
    },
    Bit {
        bits: u16,
    },
    /// `pack` bytes holding a 1-based index into `members`.
    Enum {
        pack: u8,
        members: Option<Box<[String]>>,
    },
    /// `pack` bytes holding a bitmask over `members`.
    Set {
        pack: u8,
        members: Option<Box<[String]>>,
    },
    /// CHAR/VARCHAR/TEXT/BINARY/VARBINARY/BLOB: a `length_bytes` little-endian length, then the bytes. Binary
    /// charset: base64; `json`: MariaDB JSON text, normalised.
    Text {
        length_bytes: u8,
        charset: Charset,
        json: bool,
    },
    /// BINARY(n): like a binary [`ColumnKind::Text`], but zero-padded back to `width` bytes, because the binlog
    /// strips the trailing zero bytes that a `SELECT` (and so a snapshot) returns.
    FixedBinary {
        length_bytes: u8,
        width: u16,
    },
    /// MySQL binary JSON behind a `length_bytes` length.
    Json {
        length_bytes: u8,
    },
    /// GEOMETRY: MySQL's internal format (a 4-byte SRID, then WKB) behind a `length_bytes` length; the value is
    /// base64 of the WKB alone.
    Geometry {
        length_bytes: u8,
    },
    /// VECTOR: base64 of the bytes (little-endian floats) behind a `length_bytes` length.
    Bytes {
        length_bytes: u8,
    },
    /// MYSQL_TYPE_NULL: no bytes, always null.
    Null,
    /// A type whose values cannot be decoded (pre-5.0 DECIMAL, typed arrays, MariaDB compressed columns).
    Unsupported {
        feature: &'static str,
    },
}

/// Column types and metadata of one table, resolved from a TABLE_MAP event (and optionally `information_schema`).
///
/// Build one per TABLE_MAP event and reuse it for every rows event that follows with the same table id.
#[derive(Debug, Clone)]
pub struct TableLayout {
    table_id: u64,
    database: Arc<str>,
    table: Arc<str>,
    kinds: Box<[ColumnKind]>,
    names: Arc<[Arc<str>]>,
    primary_key: Box<[usize]>,
    schema_applied: bool,
}

impl TableLayout {
    /// A layout from a table map written by MySQL, with optional `information_schema` columns.
    ///
    /// A schema whose column count or types disagree with the table map is ignored (it is stale); see
    /// [`TableLayout::schema_applied`]. For MariaDB binlogs use [`TableLayout::with_flavor`].
    pub fn new(tme: &TableMapEvent<'_>, schema: Option<&[SchemaColumn]>) -> Result<TableLayout, DecodeError> {
        TableLayout::with_flavor(tme, schema, ServerFlavor::MySql)
    }

    /// A layout from a table map written by a server of the given flavor (it decides how the optional metadata
    /// lists signedness and charsets: MariaDB includes YEAR and GEOMETRY columns, MySQL does not).
    pub fn with_flavor(
        tme: &TableMapEvent<'_>,
        schema: Option<&[SchemaColumn]>,
        flavor: ServerFlavor,
    ) -> Result<TableLayout, DecodeError> {
        let raw = RawTableMap::parse(tme, flavor)?;
        let count = raw.columns.len();
        let schema = schema.filter(|s| consistent(s, &raw.columns));
        let mut kinds = Vec::with_capacity(count);
        for (index, column) in raw.columns.iter().enumerate() {
            let kind = kind(&raw, index, column, schema.map(|s| &s[index]))?;
            kinds.push(kind);
        }
        let names: Vec<Arc<str>> = match (schema, &raw.optional.names) {
            (Some(s), _) => s.iter().map(|c| Arc::from(c.name.as_str())).collect(),
            (None, Some(names)) => names.iter().map(|n| Arc::from(n.as_str())).collect(),
            (None, None) => (0..count).map(|i| Arc::from(format!("col_{i}"))).collect(),
        };
        let primary_key = primary_key(schema, raw.optional.primary_key.as_deref());
        Ok(TableLayout {
            table_id: raw.table_id,
            database: raw.database.into(),
            table: raw.table.into(),
            kinds: kinds.into(),
            names: names.into(),
            primary_key: primary_key.into(),
            schema_applied: schema.is_some(),
        })
    }

    /// Column names in table order, shared by every [`cdc_contract::Row`] of this table version.
    pub fn column_names(&self) -> &Arc<[Arc<str>]> {
        &self.names
    }

    /// Indexes of the primary key columns in key order; empty if unknown or the table has none.
    pub fn primary_key(&self) -> &[usize] {
        &self.primary_key
    }

    /// The binlog table id this layout was built for.
    pub fn table_id(&self) -> u64 {
        self.table_id
    }

    /// Database name from the table map.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Table name from the table map.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Number of columns.
    pub fn column_count(&self) -> usize {
        self.kinds.len()
    }

    /// Whether the caller's schema was used; `false` if none was given or it did not match the table map.
    pub fn schema_applied(&self) -> bool {
        self.schema_applied
    }

    pub(crate) fn kinds(&self) -> &[ColumnKind] {
        &self.kinds
    }

    #[cfg(test)]
    pub(crate) fn from_kinds(table_id: u64, kinds: Vec<ColumnKind>) -> TableLayout {
        let names: Vec<Arc<str>> = (0..kinds.len()).map(|i| Arc::from(format!("col_{i}"))).collect();
        TableLayout {
            table_id,
            database: "db".into(),
            table: "t".into(),
            kinds: kinds.into(),
            names: names.into(),
            primary_key: Box::new([]),
            schema_applied: false,
        }
    }
}

/// The class of a binlog column type, to compare with the schema's.
fn binlog_class(c: &RawColumn) -> TypeClass {
    match c.real_type {
        TINY | SHORT | INT24 | LONG | LONGLONG => TypeClass::Integer,
        YEAR => TypeClass::Year,
        FLOAT | DOUBLE => TypeClass::Float,
        NEWDECIMAL | DECIMAL => TypeClass::Decimal,
        DATE | NEWDATE => TypeClass::Date,
        TIME | TIME2 => TypeClass::Time,
        DATETIME | DATETIME2 => TypeClass::DateTime,
        TIMESTAMP | TIMESTAMP2 => TypeClass::Timestamp,
        BIT => TypeClass::Bit,
        ENUM => TypeClass::Enum,
        SET => TypeClass::Set,
        STRING | VAR_STRING | VARCHAR | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | BLOB | BLOB_COMPRESSED
        | VARCHAR_COMPRESSED => TypeClass::String,
        JSON => TypeClass::Json,
        GEOMETRY => TypeClass::Geometry,
        VECTOR => TypeClass::Vector,
        _ => TypeClass::Unknown,
    }
}

fn consistent(schema: &[SchemaColumn], columns: &[RawColumn]) -> bool {
    schema.len() == columns.len()
        && schema.iter().zip(columns).all(|(s, c)| TypeClass::compatible(s.class(), binlog_class(c)))
}

fn primary_key(schema: Option<&[SchemaColumn]>, logged: Option<&[usize]>) -> Vec<usize> {
    let Some(schema) = schema else {
        return logged.map(<[usize]>::to_vec).unwrap_or_default();
    };
    let members: Vec<usize> = schema.iter().enumerate().filter(|(_, c)| c.is_primary_key).map(|(i, _)| i).collect();
    match logged {
        // The table map knows the key order; information_schema.COLUMNS only membership.
        Some(logged) if logged.len() == members.len() && logged.iter().all(|i| members.contains(i)) => logged.to_vec(),
        _ => members,
    }
}

fn kind(
    raw: &RawTableMap,
    index: usize,
    c: &RawColumn,
    schema: Option<&SchemaColumn>,
) -> Result<ColumnKind, DecodeError> {
    let table_id = raw.table_id;
    let bad = |reason| DecodeError::TableMap { table_id, reason };
    let meta = raw.optional.collation[index].map(Charset::from_collation_id);
    let unsigned = schema.map(SchemaColumn::is_unsigned).or(raw.optional.unsigned[index]).unwrap_or(false);
    let [m0, m1] = c.meta;
    let fsp = || if m0 <= 6 { Ok(m0) } else { Err(bad("fractional seconds precision above 6")) };
    let length_bytes = |max: u8| if (1..=max).contains(&m0) { Ok(m0) } else { Err(bad("bad length size")) };
    Ok(match c.real_type {
        TINY => ColumnKind::Int { bytes: 1, unsigned },
        SHORT => ColumnKind::Int { bytes: 2, unsigned },
        INT24 => ColumnKind::Int { bytes: 3, unsigned },
        LONG => ColumnKind::Int { bytes: 4, unsigned },
        LONGLONG => ColumnKind::Int { bytes: 8, unsigned },
        FLOAT => ColumnKind::Float,
        DOUBLE => ColumnKind::Double,
        NEWDECIMAL => {
            if !decimal::valid_definition(m0, m1) {
                return Err(bad("bad DECIMAL precision or scale"));
            }
            ColumnKind::Decimal { precision: m0, scale: m1, size: decimal::binary_size(m0, m1) }
        }
        YEAR => ColumnKind::Year,
        DATE | NEWDATE => ColumnKind::Date,
        TIME => ColumnKind::Time,
        TIME2 => ColumnKind::Time2 { fsp: fsp()? },
        DATETIME => ColumnKind::DateTime,
        DATETIME2 => ColumnKind::DateTime2 { fsp: fsp()? },
        TIMESTAMP => ColumnKind::Timestamp,
        TIMESTAMP2 => ColumnKind::Timestamp2 { fsp: fsp()? },
        BIT => {
            let bits = u16::from(m1) * 8 + u16::from(m0);
            if m0 > 7 || bits == 0 || bits > 64 {
                return Err(bad("bad BIT length"));
            }
            ColumnKind::Bit { bits }
        }
        ENUM | SET => {
            let pack = u8::try_from(c.string_length).map_err(|_| bad("bad ENUM/SET pack length"))?;
            let is_enum = c.real_type == ENUM;
            if (is_enum && !(1..=2).contains(&pack)) || (!is_enum && !(1..=8).contains(&pack)) {
                return Err(bad("bad ENUM/SET pack length"));
            }
            let from_schema = schema.and_then(|s| s.members(if is_enum { "enum" } else { "set" }));
            let members = from_schema.or_else(|| {
                let charset = meta.unwrap_or(Charset::Utf8);
                raw.optional.members[index].as_ref().map(|m| m.iter().map(|b| charset.decode(b).into_owned()).collect())
            });
            let members = members.map(Vec::into_boxed_slice);
            if is_enum {
                ColumnKind::Enum { pack, members }
            } else {
                ColumnKind::Set { pack, members }
            }
        }
        STRING | VAR_STRING | VARCHAR | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | BLOB => {
            let length_bytes = match c.real_type {
                STRING => 1 + u8::from(c.string_length > 255),
                VARCHAR => 1 + u8::from(u16::from_le_bytes(c.meta) > 255),
                VAR_STRING => 1,
                _ => length_bytes(4)?,
            };
            let charset = match schema {
                Some(s) if s.is_binary_string() => Charset::Binary,
                Some(SchemaColumn { charset: Some(name), .. }) => Charset::from_name(name),
                _ => meta.unwrap_or(Charset::Utf8),
            };
            let json = schema.is_some_and(|s| s.is_json) && charset != Charset::Binary;
            if c.real_type == STRING && charset == Charset::Binary {
                ColumnKind::FixedBinary { length_bytes, width: c.string_length }
            } else {
                ColumnKind::Text { length_bytes, charset, json }
            }
        }
        JSON => ColumnKind::Json { length_bytes: length_bytes(4)? },
        GEOMETRY => ColumnKind::Geometry { length_bytes: length_bytes(4)? },
        VECTOR => ColumnKind::Bytes { length_bytes: length_bytes(4)? },
        NULL => ColumnKind::Null,
        DECIMAL => ColumnKind::Unsupported { feature: "pre-5.0 DECIMAL column" },
        TYPED_ARRAY => ColumnKind::Unsupported { feature: "typed array column" },
        BLOB_COMPRESSED | VARCHAR_COMPRESSED => ColumnKind::Unsupported { feature: "MariaDB compressed column" },
        other => return Err(DecodeError::UnknownColumnType { table_id, column: index, type_code: other }),
    })
}

#[cfg(test)]
mod tests;
