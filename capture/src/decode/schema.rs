//! Column facts from `information_schema.COLUMNS`, which the table map may lack.
//!
//! MariaDB stores JSON as LONGTEXT, so only the schema knows a column holds JSON; with
//! `binlog_row_metadata=MINIMAL` the table map has no names, no ENUM/SET members and no signedness either.

/// One column as `information_schema.COLUMNS` describes it, in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaColumn {
    /// `COLUMN_NAME`.
    pub name: String,
    /// `DATA_TYPE`, lowercase (`bigint`, `varchar`, `enum`, ...).
    pub data_type: String,
    /// `COLUMN_TYPE`, e.g. `bigint(20) unsigned` or `enum('a','b')`.
    pub column_type: String,
    /// `CHARACTER_SET_NAME` (`None` for non-text and binary columns).
    pub charset: Option<String>,
    /// Whether the column holds JSON (MariaDB: a LONGTEXT with a `json_valid` check; MySQL: `DATA_TYPE = 'json'`).
    pub is_json: bool,
    /// Whether the column is part of the primary key (`COLUMN_KEY = 'PRI'`).
    pub is_primary_key: bool,
}

impl SchemaColumn {
    pub(crate) fn is_unsigned(&self) -> bool {
        self.column_type.to_ascii_lowercase().split_whitespace().any(|w| w == "unsigned")
    }

    /// Whether the column's type is a binary string type (no character set).
    pub(crate) fn is_binary_string(&self) -> bool {
        matches!(
            self.data_type.to_ascii_lowercase().as_str(),
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
        )
    }

    /// The members of an `enum(...)` or `set(...)` column type, unquoted; `None` for other types.
    pub(crate) fn members(&self, kind: &str) -> Option<Vec<String>> {
        let column_type = self.column_type.trim();
        let prefix = column_type.get(..kind.len())?;
        if !prefix.eq_ignore_ascii_case(kind) {
            return None;
        }
        let inner = column_type[kind.len()..].trim_start().strip_prefix('(')?.strip_suffix(')')?;
        parse_quoted_list(inner)
    }

    /// The broad class of this column's type, to tell a stale schema from the table map.
    pub(crate) fn class(&self) -> TypeClass {
        match self.data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "bool" | "boolean" => {
                TypeClass::Integer
            }
            "year" => TypeClass::Year,
            "float" | "double" | "real" | "double precision" => TypeClass::Float,
            "decimal" | "numeric" | "fixed" | "dec" => TypeClass::Decimal,
            "date" => TypeClass::Date,
            "time" => TypeClass::Time,
            "datetime" => TypeClass::DateTime,
            "timestamp" => TypeClass::Timestamp,
            "bit" => TypeClass::Bit,
            "enum" => TypeClass::Enum,
            "set" => TypeClass::Set,
            "char" | "varchar" | "binary" | "varbinary" | "tinytext" | "text" | "mediumtext" | "longtext"
            | "tinyblob" | "blob" | "mediumblob" | "longblob" => TypeClass::String,
            "json" => TypeClass::Json,
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
            | "geometrycollection" | "geomcollection" => TypeClass::Geometry,
            "vector" => TypeClass::Vector,
            _ => TypeClass::Unknown,
        }
    }
}

/// Broad type classes shared by binlog column types and `information_schema` data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeClass {
    Integer,
    Year,
    Float,
    Decimal,
    Date,
    Time,
    DateTime,
    Timestamp,
    Bit,
    Enum,
    Set,
    String,
    Json,
    Geometry,
    Vector,
    /// A type this module does not classify (e.g. MariaDB's INET6 or UUID): compatible with anything.
    Unknown,
}

impl TypeClass {
    /// Whether a schema column of class `schema` can describe a binlog column of class `binlog`.
    pub(crate) fn compatible(schema: TypeClass, binlog: TypeClass) -> bool {
        schema == binlog
            || schema == TypeClass::Unknown
            || binlog == TypeClass::Unknown
            // MariaDB's JSON is a LONGTEXT in the binlog.
            || (schema == TypeClass::Json && binlog == TypeClass::String)
    }
}

/// Parses `'a','it''s','b\\c'` (SQL string literals separated by commas).
fn parse_quoted_list(inner: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let quote = chars.next().filter(|&c| c == '\'' || c == '"')?;
        let mut value = String::new();
        loop {
            match chars.next()? {
                c if c == quote => {
                    if chars.peek() == Some(&quote) {
                        chars.next();
                        value.push(quote);
                    } else {
                        break;
                    }
                }
                '\\' => value.push(match chars.next()? {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'b' => '\u{8}',
                    'Z' => '\u{1a}',
                    other => other,
                }),
                c => value.push(c),
            }
        }
        out.push(value);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A schema column for tests.
    pub(crate) fn column(name: &str, data_type: &str, column_type: &str, charset: Option<&str>) -> SchemaColumn {
        SchemaColumn {
            name: name.into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            charset: charset.map(Into::into),
            is_json: false,
            is_primary_key: false,
        }
    }

    #[test]
    fn members_of_enum_and_set() {
        let e = column("e", "enum", r"enum('it''s','a\\b','c,d','','é')", Some("utf8mb4"));
        assert_eq!(e.members("enum").unwrap(), ["it's", r"a\b", "c,d", "", "é"]);
        assert_eq!(e.members("set"), None);
        let s = column("s", "set", "SET('x''y', 'p')", Some("utf8mb4"));
        assert_eq!(s.members("set").unwrap(), ["x'y", "p"]);
        let empty = column("e", "enum", "enum()", None);
        assert_eq!(empty.members("enum").unwrap(), Vec::<String>::new());
        for bad in ["enum('a'", "enum('a' 'b')", "enum(a)", "enum"] {
            assert_eq!(column("e", "enum", bad, None).members("enum"), None, "{bad}");
        }
    }

    #[test]
    fn unsigned_and_binary() {
        assert!(column("a", "bigint", "bigint(20) unsigned", None).is_unsigned());
        assert!(column("a", "int", "int(10) UNSIGNED ZEROFILL", None).is_unsigned());
        assert!(!column("a", "int", "int(11)", None).is_unsigned());
        assert!(column("b", "varbinary", "varbinary(20)", None).is_binary_string());
        assert!(!column("b", "varchar", "varchar(20)", Some("latin1")).is_binary_string());
    }

    #[test]
    fn classes() {
        assert_eq!(column("a", "int", "int(11)", None).class(), TypeClass::Integer);
        assert_eq!(column("a", "inet6", "inet6", None).class(), TypeClass::Unknown);
        assert!(TypeClass::compatible(TypeClass::Json, TypeClass::String));
        assert!(!TypeClass::compatible(TypeClass::Integer, TypeClass::String));
        assert!(TypeClass::compatible(TypeClass::Unknown, TypeClass::Date));
    }
}
