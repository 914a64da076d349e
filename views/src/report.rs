//! `report_lines`, the joined rows behind `order_report`: its columns, the view's query, which keys a batch
//! changed, and the server-side statements (`INSERT ... SELECT`) that fill it ([`fill`]: migrations, a dropped
//! table) and recompute every line after a truncate ([`recompute`]), each run in ranges of [`RANGE_LINES`] lines
//! to bound its memory. No I/O. The view service's per-batch path
//! computes the same rows in the service from point reads ([`crate::join`]); both follow the rules below.
//!
//! [`recompute`] builds,
//! for every line the batch reaches, its joined row from the newest state of the line, its order, user and product,
//! and writes in **one INSERT** (one part, so readers see all of it or none of it):
//! - the new row (`sign = 1`) if its version is above every live row of that line;
//! - a cancel row (`sign = -1`, same `(order_id, line_id, version, writer)`) for every live row of the line below the
//!   newest. A line that moved to another order, or a second row left by two concurrent writers, is cancelled the
//!   same way.
//!
//! A joined row's version is the sum of its four entities' versions (a UInt64: exact while each source's
//! `epoch + file_seq`, the top 16 bits of its versions, stays below 2^14, which [`crate::model::apply`] checks;
//! Decimal128 would lift the bound but crashes ClickHouse 18.16 in `groupArray`, and dividing the versions would
//! merge a snapshot read's version with that of the change right after it): each entity's version only grows, so a computation that saw more of the writes has a larger sum, and
//! two computations with the same sum saw the same versions (the same row). So redelivered, replayed or
//! out-of-order events never replace a row by an older one, and a recomputation of an unchanged line writes
//! nothing. Deleted lines and lines of deleted or missing orders are rows with `deleted = 1`; missing or deleted
//! users and products give NULLs, as in CONTRACTS section 4.
//!
//! A line is reached by: its own change; a change of its order (`lines_by_order`); a change of a user of its order
//! (`orders_by_user`, then `lines_by_order`); a change of its product (`lines_by_product`). The indexes hold every
//! pair ever written, a superset: a line reached needlessly is recomputed to the same version and written no more.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The columns of `order_report` (CONTRACTS section 4), as `report_lines` stores them.
pub const COLUMNS: [(&str, &str); 15] = [
    ("order_id", "UInt64"),
    ("line_id", "UInt64"),
    ("order_status", "String"),
    ("order_created_at", "DateTime"),
    ("user_id", "UInt64"),
    ("user_email", "Nullable(String)"),
    ("user_name", "Nullable(String)"),
    ("user_country", "Nullable(String)"),
    ("product_id", "UInt64"),
    ("product_sku", "Nullable(String)"),
    ("product_name", "Nullable(String)"),
    ("product_category", "Nullable(String)"),
    ("quantity", "UInt32"),
    ("unit_price", "Decimal(12, 2)"),
    ("line_total", "Decimal(14, 2)"),
];

fn column_list() -> String {
    COLUMNS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// The query of the `order_report` view: live rows of `report_lines`, less those cancelled by a cancel row that
/// no merge has removed yet (the set holds only those, so it stays small while merges keep up).
pub fn view_query(db: &str) -> String {
    format!(
        "SELECT {} FROM {db}.report_lines WHERE sign = 1 AND deleted = 0 \
         AND (line_id, version, writer) NOT IN (SELECT line_id, version, writer FROM {db}.report_lines WHERE sign = -1)",
        column_list()
    )
}

/// The keys a batch changed; the lines they reach are recomputed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub lines: BTreeSet<u64>,
    pub orders: BTreeSet<u64>,
    pub users: BTreeSet<u64>,
    pub products: BTreeSet<u64>,
    /// Every line (after a truncate).
    pub all: bool,
}

impl Keys {
    /// Every line.
    pub fn all() -> Keys {
        Keys { all: true, ..Keys::default() }
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.len() == 0
    }

    /// Keys named.
    pub fn len(&self) -> usize {
        self.lines.len() + self.orders.len() + self.users.len() + self.products.len()
    }

    /// These keys in parts of at most `max` keys each (one statement each, to bound its size).
    pub fn chunks(&self, max: usize) -> Vec<Keys> {
        if self.all {
            return vec![Keys::all()];
        }
        let max = max.max(1);
        let mut out: Vec<Keys> = Vec::new();
        let mut current = Keys::default();
        type Field = fn(&mut Keys) -> &mut BTreeSet<u64>;
        let kinds: [(&BTreeSet<u64>, Field); 4] = [
            (&self.lines, |k| &mut k.lines),
            (&self.orders, |k| &mut k.orders),
            (&self.users, |k| &mut k.users),
            (&self.products, |k| &mut k.products),
        ];
        for (ids, field) in kinds {
            for id in ids {
                field(&mut current).insert(*id);
                if current.len() >= max {
                    out.push(std::mem::take(&mut current));
                }
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }

    /// The condition "`column` is a line these keys reach".
    fn reach(&self, db: &str, column: &str) -> String {
        if self.all {
            return "1".into();
        }
        let list = |ids: &BTreeSet<u64>| {
            let mut s = String::new();
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{id}");
            }
            s
        };
        let mut parts = Vec::new();
        if !self.lines.is_empty() {
            parts.push(format!("{column} IN ({})", list(&self.lines)));
        }
        let mut orders = Vec::new();
        if !self.orders.is_empty() {
            orders.push(format!("order_id IN ({})", list(&self.orders)));
        }
        if !self.users.is_empty() {
            orders.push(format!("order_id IN (SELECT id FROM {db}.orders_by_user WHERE user_id IN ({}))", list(&self.users)));
        }
        if !orders.is_empty() {
            parts.push(format!("{column} IN (SELECT id FROM {db}.lines_by_order WHERE {})", orders.join(" OR ")));
        }
        if !self.products.is_empty() {
            parts.push(format!(
                "{column} IN (SELECT id FROM {db}.lines_by_product WHERE product_id IN ({}))",
                list(&self.products)
            ));
        }
        if parts.is_empty() {
            return "0".into();
        }
        format!("({})", parts.join(" OR "))
    }
}

/// The joined rows of the lines that satisfy `lines` (a condition on `lines_state.id`), from the newest state of
/// each entity: the columns of [`COLUMNS`] (`order_id` as `new_order_id`), `new_version` and `deleted`.
fn joined(db: &str, lines: &str) -> String {
    let orders_of_lines = format!("SELECT order_id FROM {db}.lines_state WHERE {lines}");
    format!(
        "SELECT line_id, order_id AS new_order_id, order_status, order_created_at, user_id, \
           if(user_present = 1, toNullable(user_email), NULL) AS user_email, \
           if(user_present = 1, toNullable(user_name), NULL) AS user_name, \
           if(user_present = 1 AND user_has_country = 1, toNullable(user_country), NULL) AS user_country, \
           product_id, \
           if(product_present = 1, toNullable(product_sku), NULL) AS product_sku, \
           if(product_present = 1, toNullable(product_name), NULL) AS product_name, \
           if(product_present = 1, toNullable(product_category), NULL) AS product_category, \
           quantity, unit_price, CAST(quantity * unit_price AS Decimal(14, 2)) AS line_total, \
           line_v + order_v + user_v + product_v AS new_version, \
           toUInt8(line_deleted = 1 OR order_present = 0 OR order_deleted = 1) AS deleted \
         FROM ( \
           SELECT * FROM ( \
             SELECT * FROM ( \
               SELECT id AS line_id, argMax(order_id, version) AS order_id, argMax(product_id, version) AS product_id, \
                 argMax(quantity, version) AS quantity, argMax(unit_price, version) AS unit_price, \
                 argMax(deleted, version) AS line_deleted, max(version) AS line_v \
               FROM {db}.lines_state WHERE {lines} GROUP BY id \
             ) AS l ALL LEFT JOIN ( \
               SELECT id AS order_id, argMax(user_id, version) AS user_id, argMax(status, version) AS order_status, \
                 argMax(created_at, version) AS order_created_at, argMax(deleted, version) AS order_deleted, \
                 max(version) AS order_v, toUInt8(1) AS order_present \
               FROM {db}.orders_state WHERE id IN ({orders_of_lines}) GROUP BY id \
             ) AS o USING (order_id) \
           ) AS lo ALL LEFT JOIN ( \
             SELECT id AS user_id, argMax(email, version) AS user_email, argMax(name, version) AS user_name, \
               argMax(country, version) AS user_country, argMax(has_country, version) AS user_has_country, \
               toUInt8(argMax(deleted, version) = 0) AS user_present, max(version) AS user_v \
             FROM {db}.users_state WHERE id IN (SELECT user_id FROM {db}.orders_state WHERE id IN ({orders_of_lines})) GROUP BY id \
           ) AS u USING (user_id) \
         ) AS lou ALL LEFT JOIN ( \
           SELECT id AS product_id, argMax(sku, version) AS product_sku, argMax(name, version) AS product_name, \
             argMax(category, version) AS product_category, toUInt8(argMax(deleted, version) = 0) AS product_present, \
             max(version) AS product_v \
           FROM {db}.products_state WHERE id IN (SELECT product_id FROM {db}.lines_state WHERE {lines}) GROUP BY id \
         ) AS p USING (product_id)"
    )
}

/// Lines per statement when every line is filled or recomputed server-side ([`fill_range`], [`recompute_range`]):
/// the joins of one statement hold the states of its lines and their orders, users and products in memory, and one
/// statement over 10,000,000 lines needed more than 4 GB on ClickHouse 18.16.
pub const RANGE_LINES: u64 = 1_000_000;

/// Fills an empty `report_lines` with every line's joined row (migrations, and a dropped table). The view service
/// runs it as one [`fill_range`] per [`RANGE_LINES`] line ids (`migrate`); as written it is the whole table at once.
pub fn fill(db: &str) -> String {
    fill_where(db, "1")
}

/// [`fill`] of the lines with ids `first..=last`.
pub fn fill_range(db: &str, first: u64, last: u64) -> String {
    fill_where(db, &format!("id BETWEEN {first} AND {last}"))
}

/// The id ranges of at most [`RANGE_LINES`] ids each that cover `min..=max` (the ids `lines_state` holds).
pub fn ranges(min: u64, max: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut first = min;
    while first <= max {
        let last = first.saturating_add(RANGE_LINES - 1).min(max);
        out.push((first, last));
        if last == u64::MAX {
            break;
        }
        first = last + 1;
    }
    out
}

fn fill_where(db: &str, lines: &str) -> String {
    let columns: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    let select: Vec<&str> =
        columns.iter().map(|c| if *c == "order_id" { "new_order_id AS order_id" } else { c }).collect();
    format!(
        "INSERT INTO {db}.report_lines ({}, version, deleted, sign) SELECT {}, new_version AS version, deleted, toInt8(1) AS sign \
         FROM ({}) AS n",
        columns.join(", "),
        select.join(", "),
        joined(db, lines)
    )
}

/// The one INSERT that brings the lines `keys` reach up to date in `report_lines` (see the module doc).
pub fn recompute(db: &str, keys: &Keys) -> String {
    recompute_where(db, &keys.reach(db, "id"), &keys.reach(db, "line_id"))
}

/// [`recompute`] of every line with an id in `first..=last` (a truncate reaches every line: one statement per
/// [`RANGE_LINES`] ids).
pub fn recompute_range(db: &str, first: u64, last: u64) -> String {
    recompute_where(db, &format!("id BETWEEN {first} AND {last}"), &format!("line_id BETWEEN {first} AND {last}"))
}

fn recompute_where(db: &str, lines: &str, line_ids: &str) -> String {
    // The live rows of those lines: every order they were ever in narrows the read by primary key.
    let orders = format!("order_id IN (SELECT order_id FROM {db}.lines_state WHERE {lines}) AND {line_ids}");
    let live = format!(
        "SELECT line_id, groupArray((order_id, version, writer)) AS live, max(version) AS newest_live FROM {db}.report_lines \
         WHERE {orders} AND sign = 1 \
           AND (line_id, version, writer) NOT IN (SELECT line_id, version, writer FROM {db}.report_lines WHERE {orders} AND sign = -1) \
         GROUP BY line_id"
    );
    let passed = "line_id, order_status, order_created_at, user_id, user_email, user_name, user_country, product_id, \
                  product_sku, product_name, product_category, quantity, unit_price, line_total, deleted";
    format!(
        "INSERT INTO {db}.report_lines ({}, version, writer, deleted, sign) \
         SELECT tupleElement(r, 1) AS order_id, line_id, order_status, order_created_at, user_id, user_email, user_name, \
           user_country, product_id, product_sku, product_name, product_category, quantity, unit_price, line_total, \
           tupleElement(r, 2) AS version, tupleElement(r, 3) AS writer, deleted, tupleElement(r, 4) AS sign \
         FROM ( \
           SELECT {passed}, new_version, newest_live, new_order_id, live, arrayConcat( \
               arrayMap(x -> (tupleElement(x, 1), tupleElement(x, 2), tupleElement(x, 3), toInt8(-1)), \
                 arrayFilter(x -> tupleElement(x, 2) < greatest(new_version, newest_live), live)), \
               arrayFilter(x -> new_version > newest_live, [(new_order_id, new_version, toUInt64(0), toInt8(1))])) AS rows \
           FROM (SELECT * FROM ({}) AS n ALL LEFT JOIN ({live}) AS v USING (line_id)) AS nv \
         ) AS nvr ARRAY JOIN rows AS r \
         WHERE new_version >= 0 AND newest_live >= 0 AND new_order_id + length(live) >= 0",
        column_list(),
        joined(db, lines),
    )
    // The WHERE above is always true: ClickHouse 18.16 drops a subquery's columns that the outer query names only
    // inside a lambda (`Unknown identifier`), and naming them here keeps them.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lines: &[u64], orders: &[u64], users: &[u64], products: &[u64]) -> Keys {
        Keys {
            lines: lines.iter().copied().collect(),
            orders: orders.iter().copied().collect(),
            users: users.iter().copied().collect(),
            products: products.iter().copied().collect(),
            all: false,
        }
    }

    #[test]
    fn keys_reach_lines_through_the_indexes() {
        let cases = [
            (keys(&[], &[], &[], &[]), "0"),
            (keys(&[1, 2], &[], &[], &[]), "(id IN (1, 2))"),
            (keys(&[], &[3], &[], &[]), "(id IN (SELECT id FROM r.lines_by_order WHERE order_id IN (3)))"),
            (
                keys(&[], &[3], &[4], &[]),
                "(id IN (SELECT id FROM r.lines_by_order WHERE order_id IN (3) OR order_id IN (SELECT id FROM r.orders_by_user WHERE user_id IN (4))))",
            ),
            (
                keys(&[1], &[], &[], &[5, 6]),
                "(id IN (1) OR id IN (SELECT id FROM r.lines_by_product WHERE product_id IN (5, 6)))",
            ),
            (Keys::all(), "1"),
        ];
        for (keys, want) in cases {
            assert_eq!(keys.reach("r", "id"), want, "{keys:?}");
        }
    }

    #[test]
    fn ranges_cover_the_ids_in_parts_of_at_most_range_lines() {
        let r = RANGE_LINES;
        type Case = (u64, u64, Vec<(u64, u64)>);
        let cases: Vec<Case> = vec![
            (1, 1, vec![(1, 1)]),
            (1, r, vec![(1, r)]),
            (1, r + 1, vec![(1, r), (r + 1, r + 1)]),
            (5, 2 * r + 10, vec![(5, r + 4), (r + 5, 2 * r + 4), (2 * r + 5, 2 * r + 10)]),
            (u64::MAX - 1, u64::MAX, vec![(u64::MAX - 1, u64::MAX)]),
            (2, 1, vec![]),
        ];
        for (min, max, want) in cases {
            assert_eq!(ranges(min, max), want, "{min}..={max}");
        }
        assert!(fill_range("r", 3, 9).contains("WHERE id BETWEEN 3 AND 9 GROUP BY id"));
        assert!(recompute_range("r", 3, 9).contains("line_id BETWEEN 3 AND 9"));
    }

    #[test]
    fn chunks_hold_at_most_max_keys_and_all_of_them() {
        let k = keys(&[1, 2, 3], &[4, 5], &[6], &[7, 8, 9]);
        let chunks = k.chunks(4);
        assert_eq!(chunks.iter().map(Keys::len).collect::<Vec<_>>(), [4, 4, 1]);
        let mut merged = Keys::default();
        for c in &chunks {
            merged.lines.extend(&c.lines);
            merged.orders.extend(&c.orders);
            merged.users.extend(&c.users);
            merged.products.extend(&c.products);
        }
        assert_eq!(merged, k);
        assert_eq!(Keys::all().chunks(4), [Keys::all()]);
        assert!(Keys::default().chunks(4).is_empty() && Keys::default().is_empty());
    }
}
