//! The pure part of the view: one change event -> one row of an entity table. No I/O.
//!
//! Every entity table (users, products, orders, order lines) is a ReplacingMergeTree keyed by id and versioned by
//! the event's source position ([`cdc_contract::ChangeEvent::version`]), with a `deleted` flag. So:
//! - a redelivered or replayed event writes a row with the same or an older version: it changes nothing;
//! - events of different tables may arrive in any order: each entity converges on its newest version, and the
//!   join happens when the report is read (see `schema.rs`);
//! - a deleted row is a newer version with `deleted = 1`, which the report's views filter out.

use cdc_contract::{ChangeEvent, Op, Row, Value};
use serde::Serialize;

/// The entities the report joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    /// `users.users`.
    User,
    /// `catalog.products`.
    Product,
    /// `orders.orders`.
    Order,
    /// `orders.order_lines`.
    Line,
}

impl Entity {
    /// All entities.
    pub const ALL: [Entity; 4] = [Entity::User, Entity::Product, Entity::Order, Entity::Line];

    /// The entity table's name in the reporting database.
    pub fn table(self) -> &'static str {
        match self {
            Entity::User => "users_state",
            Entity::Product => "products_state",
            Entity::Order => "orders_state",
            Entity::Line => "lines_state",
        }
    }
}

/// A row of `users_state`.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct UserRow {
    pub id: u64,
    pub email: String,
    pub name: String,
    /// Empty when `has_country` is 0 (NULL).
    pub country: String,
    pub has_country: u8,
    pub version: u64,
    pub deleted: u8,
}

/// A row of `products_state`; `price` in cents (Decimal(12,2)).
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct ProductRow {
    pub id: u64,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price: i64,
    pub version: u64,
    pub deleted: u8,
}

/// A row of `orders_state`; `total` in cents (Decimal(14,2)), `created_at` in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct OrderRow {
    pub id: u64,
    pub user_id: u64,
    pub status: String,
    pub total: i64,
    pub created_at: u32,
    pub version: u64,
    pub deleted: u8,
}

/// A row of `lines_state`; `unit_price` in cents.
#[derive(Debug, Clone, PartialEq, Serialize, clickhouse::Row)]
pub struct LineRow {
    pub id: u64,
    pub order_id: u64,
    pub product_id: u64,
    pub quantity: u32,
    pub unit_price: i64,
    pub version: u64,
    pub deleted: u8,
}

/// What one event does to the view.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new version of a user.
    User(UserRow),
    /// A new version of a product.
    Product(ProductRow),
    /// A new version of an order.
    Order(OrderRow),
    /// A new version of an order line.
    Line(LineRow),
    /// Every row of the entity older than `version` is deleted.
    Truncate { entity: Entity, version: u64 },
}

/// An event the view cannot apply; it is recorded as a dead letter, never silently dropped.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplyError {
    /// A column the view needs is missing or has the wrong type.
    #[error("column {column:?}: {problem}")]
    Column { column: &'static str, problem: String },
    /// The source coordinates give no version.
    #[error("source file {0:?} has no numeric suffix, so the event has no version")]
    NoVersion(String),
    /// The version is beyond what the report's joined versions can add up (four of them in a UInt64).
    #[error("version {0:#x}: the source's epoch + binlog file sequence is 16384 or more, beyond the sum of four \
             versions the report orders its rows by (docs/views.md, \"Versions\")")]
    VersionTooLarge(u64),
    /// Neither image is present for a row operation.
    #[error("a {0:?} event without a row image")]
    NoImage(Op),
}

/// Maps one change event of `entity`'s topic to its effect on the view.
pub fn apply(entity: Entity, event: &ChangeEvent) -> Result<Change, ApplyError> {
    let version = event.version().ok_or_else(|| ApplyError::NoVersion(event.source.file.clone()))?;
    if version >> 62 != 0 {
        return Err(ApplyError::VersionTooLarge(version));
    }
    let (row, deleted) = match event.op {
        Op::Truncate => return Ok(Change::Truncate { entity, version }),
        Op::Delete => (event.before.as_ref(), 1),
        Op::Create | Op::Update | Op::Read => (event.after.as_ref(), 0),
    };
    let row = row.ok_or(ApplyError::NoImage(event.op))?;
    Ok(match entity {
        Entity::User => Change::User(UserRow {
            id: uint(row, "id")?,
            email: text(row, "email")?,
            name: text(row, "name")?,
            country: optional_text(row, "country")?.unwrap_or_default(),
            has_country: row.get("country").is_some_and(|v| *v != Value::Null) as u8,
            version,
            deleted,
        }),
        Entity::Product => Change::Product(ProductRow {
            id: uint(row, "id")?,
            sku: text(row, "sku")?,
            name: text(row, "name")?,
            category: text(row, "category")?,
            price: cents(row, "price")?,
            version,
            deleted,
        }),
        Entity::Order => Change::Order(OrderRow {
            id: uint(row, "id")?,
            user_id: uint(row, "user_id")?,
            status: text(row, "status")?,
            total: cents(row, "total")?,
            created_at: seconds(row, "created_at")?,
            version,
            deleted,
        }),
        Entity::Line => Change::Line(LineRow {
            id: uint(row, "id")?,
            order_id: uint(row, "order_id")?,
            product_id: uint(row, "product_id")?,
            quantity: u32::try_from(uint(row, "quantity")?)
                .map_err(|_| ApplyError::Column { column: "quantity", problem: "exceeds UInt32".into() })?,
            unit_price: cents(row, "unit_price")?,
            version,
            deleted,
        }),
    })
}

/// Whether `event` can change a row of the report: every insert, delete and truncate does, and an update only if it
/// changed a column the report shows (a product's price or an order's total do not reach it). An update without a
/// before image counts as a change.
pub fn reaches_report(entity: Entity, event: &ChangeEvent) -> bool {
    let shown: &[&str] = match entity {
        Entity::User => &["email", "name", "country"],
        Entity::Product => &["sku", "name", "category"],
        Entity::Order => &["user_id", "status", "created_at"],
        Entity::Line => &["order_id", "product_id", "quantity", "unit_price"],
    };
    match (event.op, &event.before, &event.after) {
        (Op::Update, Some(before), Some(after)) => shown.iter().any(|c| before.get(c) != after.get(c)),
        _ => true,
    }
}

fn get<'a>(row: &'a Row, column: &'static str) -> Result<&'a Value, ApplyError> {
    row.get(column).ok_or_else(|| ApplyError::Column { column, problem: "missing".into() })
}

fn uint(row: &Row, column: &'static str) -> Result<u64, ApplyError> {
    get(row, column)?
        .as_u64()
        .ok_or_else(|| ApplyError::Column { column, problem: "not a non-negative integer".into() })
}

fn text(row: &Row, column: &'static str) -> Result<String, ApplyError> {
    match get(row, column)? {
        Value::Text(t) => Ok(t.clone()),
        other => Err(ApplyError::Column { column, problem: format!("not text: {other:?}") }),
    }
}

fn optional_text(row: &Row, column: &'static str) -> Result<Option<String>, ApplyError> {
    match row.get(column) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text(row, column).map(Some),
    }
}

/// DATETIME(0-3) arrives in ms since the epoch; DateTime holds seconds.
fn seconds(row: &Row, column: &'static str) -> Result<u32, ApplyError> {
    match get(row, column)? {
        Value::Null => Ok(0),
        Value::Int(ms) => u32::try_from(ms.div_euclid(1000))
            .map_err(|_| ApplyError::Column { column, problem: format!("{ms} ms is outside DateTime") }),
        other => Err(ApplyError::Column { column, problem: format!("not a timestamp in ms: {other:?}") }),
    }
}

/// A DECIMAL(_, 2) string ("12.30", "-0.05", "7") in hundredths.
fn cents(row: &Row, column: &'static str) -> Result<i64, ApplyError> {
    let text = text(row, column)?;
    parse_cents(&text).ok_or_else(|| ApplyError::Column { column, problem: format!("{text:?} is not a decimal with 2 places") })
}

/// Parses a decimal string with at most two fraction digits into hundredths.
pub fn parse_cents(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() || frac.len() > 2 || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    let value = int.parse::<i64>().ok()?.checked_mul(100)?.checked_add(frac)?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cdc_contract::{SnapshotMarker, Source};

    use super::*;

    fn row(pairs: &[(&str, Value)]) -> Row {
        Row {
            columns: pairs.iter().map(|(k, _)| Arc::<str>::from(*k)).collect::<Vec<_>>().into(),
            values: pairs.iter().map(|(_, v)| v.clone()).collect(),
        }
    }

    fn event(op: Op, before: Option<Row>, after: Option<Row>, pos: u64, row_index: u64) -> ChangeEvent {
        ChangeEvent {
            before,
            after,
            source: Source {
                connector: "mysql".into(),
                name: "catalog".into(),
                db: "catalog".into(),
                table: "products".into(),
                server_id: 2,
                epoch: 0,
                gtid: None,
                file: "binlog.000002".into(),
                pos,
                row: row_index,
                ts_ms: 0,
                snapshot: if op == Op::Read { SnapshotMarker::True } else { SnapshotMarker::False },
            },
            op,
            ts_ms: 0,
            transaction: None,
        }
    }

    fn product(name: &str) -> Row {
        row(&[
            ("id", Value::UInt(7)),
            ("sku", Value::Text("SKU".into())),
            ("name", Value::Text(name.into())),
            ("category", Value::Text("c".into())),
            ("price", Value::Text("12.30".into())),
            ("stock", Value::Int(3)),
        ])
    }

    #[test]
    fn versions_follow_source_positions_and_deletes_are_newer_versions() {
        let snap = apply(Entity::Product, &event(Op::Read, None, Some(product("a")), 400, 90_000)).unwrap();
        let upd = apply(Entity::Product, &event(Op::Update, Some(product("a")), Some(product("b")), 500, 0)).unwrap();
        let del = apply(Entity::Product, &event(Op::Delete, Some(product("b")), None, 900, 1)).unwrap();
        let (Change::Product(s), Change::Product(u), Change::Product(d)) = (snap, upd, del) else { panic!() };
        assert!(s.version < u.version && u.version < d.version, "{} {} {}", s.version, u.version, d.version);
        assert_eq!((u.name.as_str(), u.price, u.deleted), ("b", 1230, 0));
        assert_eq!((d.name.as_str(), d.deleted), ("b", 1));
        // The same event again gives the same row: applying it twice changes nothing.
        let again = apply(Entity::Product, &event(Op::Update, Some(product("a")), Some(product("b")), 500, 0)).unwrap();
        assert_eq!(again, Change::Product(u));
    }

    #[test]
    fn truncates_and_bad_rows() {
        assert_eq!(
            apply(Entity::Line, &event(Op::Truncate, None, None, 10, 0)),
            Ok(Change::Truncate { entity: Entity::Line, version: (2 << 48) + (10 << 16) + 1 })
        );
        let mut late = event(Op::Create, None, Some(product("a")), 1, 0);
        late.source.file = "binlog.016384".into();
        assert!(matches!(apply(Entity::Product, &late), Err(ApplyError::VersionTooLarge(_))));
        late.source.file = "binlog.016383".into();
        assert!(apply(Entity::Product, &late).is_ok());
        let bad = row(&[("id", Value::Int(-1))]);
        assert!(matches!(apply(Entity::User, &event(Op::Create, None, Some(bad), 1, 0)), Err(ApplyError::Column { column: "id", .. })));
    }

    #[test]
    fn only_changes_of_shown_columns_reach_the_report() {
        let repriced = {
            let mut p = product("a");
            p.values[4] = Value::Text("99.00".into());
            p
        };
        let cases = [
            (event(Op::Update, Some(product("a")), Some(repriced.clone()), 1, 0), false),
            (event(Op::Update, Some(product("a")), Some(product("b")), 1, 0), true),
            (event(Op::Update, None, Some(repriced.clone()), 1, 0), true),
            (event(Op::Create, None, Some(product("a")), 1, 0), true),
            (event(Op::Delete, Some(product("a")), None, 1, 0), true),
            (event(Op::Truncate, None, None, 1, 0), true),
        ];
        for (e, want) in cases {
            assert_eq!(reaches_report(Entity::Product, &e), want, "{:?}", e.op);
        }
    }

    #[test]
    fn decimals_parse_to_cents() {
        let cases = [("12.30", Some(1230)), ("-0.05", Some(-5)), ("7", Some(700)), ("1.5", Some(150)), ("1.234", None), ("x", None), ("", None)];
        for (text, want) in cases {
            assert_eq!(parse_cents(text), want, "{text}");
        }
    }
}
