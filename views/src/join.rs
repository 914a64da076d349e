//! The view service's write path for `report_lines`: the joined rows of the lines a batch reaches, computed in the
//! service from point reads by primary key, and written with the cancel rows of the rows they replace in one INSERT.
//!
//! Per batch (after its entity rows and key-index pairs are written), for the keys it changed ([`Keys`]):
//! 1. at once: the newest state of the lines its lines and orders reach (`argMax` by `id`, the ORDER BY key, with
//!    `lines_by_order` as a subquery), and the ids of the lines its users and products reach (`orders_by_user`,
//!    `lines_by_order`, `lines_by_product`: any number, so read in rounds of [`CHUNK`] lines afterwards);
//! 2. at once, of those lines: their orders, products, users (through the orders' `user_id`s, a subquery) and
//!    live rows in `report_lines` (by `order_id`, its ORDER BY prefix, over every order the line was ever in);
//! 3. in Rust ([`plan`]): each line's joined row, with version = the sum of its four entities' versions; a line whose
//!    version is not above its newest live row writes nothing (redelivery, replay, out-of-order arrival), else its
//!    new row (`sign = 1`, `writer` = this process's random id); every live row but the one kept (the newest
//!    version, the smallest `writer` among rows of that version) gets a cancel row (`sign = -1`), once per copy;
//! 4. all new rows and cancels in one INSERT (one part, so readers see all of it or none of it), in chunks of
//!    [`CHUNK`] lines.
//!
//! **Several writers** (`assignment = "group"`): two instances may compute the same line at once (a line and its
//! order arrive on different partitions). Each writes its entity rows before it reads, so at least one reads the
//! other's rows; both may then write a row of the same version (the same content), which differ by `writer`. So
//! with `settle` each instance reads the live rows of the lines it wrote again after its INSERT and cancels all
//! but the one kept; of two concurrent writers, the later one's second read sees both rows, and both pick the same
//! row to keep. Between an INSERT and that second read (milliseconds) a reader may count such a line twice.
//!
//! The work is proportional to the lines reached: a rename of a product referenced by 100,000 lines reads those
//! lines, their orders and users, and writes 100,000 rows and 100,000 cancels. A truncate reaches every line
//! ([`Keys::all`]); that rare case stays server-side ([`report::recompute_range`], one statement per range of lines).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use crate::report::{self, Keys};

/// Lines per read-compute-write round: bounds the size of the key lists in the statements.
pub const CHUNK: usize = 20_000;

/// The newest state of a line.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct LineState {
    pub id: u64,
    pub order_id: u64,
    pub product_id: u64,
    pub quantity: u32,
    pub unit_price: i64,
    pub deleted: u8,
    pub version: u64,
    /// Every order the line was ever in (its report rows are keyed by them).
    pub orders: Vec<u64>,
}

/// The newest state of an order.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct OrderState {
    pub id: u64,
    pub user_id: u64,
    pub status: String,
    pub created_at: u32,
    pub deleted: u8,
    pub version: u64,
}

/// The newest state of a user.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct UserState {
    pub id: u64,
    pub email: String,
    pub name: String,
    pub country: String,
    pub has_country: u8,
    pub deleted: u8,
    pub version: u64,
}

/// The newest state of a product.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct ProductState {
    pub id: u64,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub deleted: u8,
    pub version: u64,
}

/// A live row of `report_lines` (`copies`: its `sign = 1` rows not yet cancelled).
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct Live {
    pub order_id: u64,
    pub line_id: u64,
    pub version: u64,
    pub writer: u64,
    pub copies: i64,
}

/// A row of `report_lines`: the columns of [`report::COLUMNS`], then `version`, `deleted`, `sign`.
#[derive(Debug, Clone, PartialEq, Default, Row, Serialize)]
pub struct ReportRow {
    pub order_id: u64,
    pub line_id: u64,
    pub order_status: String,
    pub order_created_at: u32,
    pub user_id: u64,
    pub user_email: Option<String>,
    pub user_name: Option<String>,
    pub user_country: Option<String>,
    pub product_id: u64,
    pub product_sku: Option<String>,
    pub product_name: Option<String>,
    pub product_category: Option<String>,
    pub quantity: u32,
    pub unit_price: i64,
    pub line_total: i64,
    pub version: u64,
    pub writer: u64,
    pub deleted: u8,
    pub sign: i8,
}

/// The entity states and live rows of the lines of one round.
#[derive(Debug, Default)]
pub struct States {
    pub lines: Vec<LineState>,
    pub orders: HashMap<u64, OrderState>,
    pub users: HashMap<u64, UserState>,
    pub products: HashMap<u64, ProductState>,
    pub live: Vec<Live>,
}

/// The joined row of `line` from the states (missing or deleted users and products give NULLs; a deleted line or
/// one of a deleted or missing order is `deleted = 1`), as the server-side [`report::fill`] computes it.
fn joined(line: &LineState, s: &States) -> ReportRow {
    let order = s.orders.get(&line.order_id);
    let user_id = order.map_or(0, |o| o.user_id);
    let user = s.users.get(&user_id);
    let product = s.products.get(&line.product_id);
    let present_user = user.filter(|u| u.deleted == 0);
    let present_product = product.filter(|p| p.deleted == 0);
    let version = [line.version, order.map_or(0, |o| o.version), user.map_or(0, |u| u.version), product.map_or(0, |p| p.version)]
        .into_iter()
        .fold(0u64, u64::wrapping_add);
    ReportRow {
        order_id: line.order_id,
        line_id: line.id,
        order_status: order.map(|o| o.status.clone()).unwrap_or_default(),
        order_created_at: order.map_or(0, |o| o.created_at),
        user_id,
        user_email: present_user.map(|u| u.email.clone()),
        user_name: present_user.map(|u| u.name.clone()),
        user_country: present_user.filter(|u| u.has_country == 1).map(|u| u.country.clone()),
        product_id: line.product_id,
        product_sku: present_product.map(|p| p.sku.clone()),
        product_name: present_product.map(|p| p.name.clone()),
        product_category: present_product.map(|p| p.category.clone()),
        quantity: line.quantity,
        unit_price: line.unit_price,
        line_total: i64::from(line.quantity).wrapping_mul(line.unit_price),
        version,
        writer: 0,
        deleted: u8::from(line.deleted == 1 || order.is_none_or(|o| o.deleted == 1)),
        sign: 1,
    }
}

/// Live rows by line.
fn by_line(live: &[Live]) -> HashMap<u64, Vec<&Live>> {
    let mut lines: HashMap<u64, Vec<&Live>> = HashMap::new();
    for row in live.iter().filter(|r| r.copies > 0) {
        lines.entry(row.line_id).or_default().push(row);
    }
    lines
}

/// The live row a line keeps of `rows`: the newest version, the smallest writer of that version.
fn kept<'a>(rows: &[&'a Live]) -> Option<&'a Live> {
    rows.iter().copied().max_by_key(|r| (r.version, std::cmp::Reverse(r.writer)))
}

/// A cancel row for each copy of each of `rows` but `keep`.
fn cancels(rows: &[&Live], keep: Option<&Live>, out: &mut Vec<ReportRow>) {
    for row in rows.iter().filter(|r| keep.is_none_or(|k| !std::ptr::eq(k, **r))) {
        for _ in 0..row.copies {
            out.push(ReportRow {
                order_id: row.order_id,
                line_id: row.line_id,
                version: row.version,
                writer: row.writer,
                sign: -1,
                ..ReportRow::default()
            });
        }
    }
}

/// The rows `writer` writes for the lines of `s`: each line's new row if its version is above its newest live row,
/// and a cancel row for each copy of each live row it does not keep (see the module doc).
pub fn plan(s: &States, writer: u64) -> Vec<ReportRow> {
    let live = by_line(&s.live);
    let mut out = Vec::new();
    for line in &s.lines {
        let new = ReportRow { writer, ..joined(line, s) };
        let rows = live.get(&line.id).map(Vec::as_slice).unwrap_or_default();
        let keep = kept(rows);
        if keep.is_none_or(|k| new.version > k.version) {
            cancels(rows, None, &mut out);
            out.push(new);
        } else {
            cancels(rows, keep, &mut out);
        }
    }
    out
}

/// The cancel rows that leave each line of `live` with one live row (see "Several writers" in the module doc).
pub fn settle(live: &[Live]) -> Vec<ReportRow> {
    let mut out = Vec::new();
    for rows in by_line(live).values() {
        cancels(rows, kept(rows), &mut out);
    }
    out
}

/// The inside of `IN (...)` for `ids`. No ids give a subquery with no rows, since ClickHouse refuses `IN ()` (for
/// example when the lines a batch reaches have no state yet, so no order or product is known for them).
fn list(ids: impl IntoIterator<Item = u64>) -> String {
    let mut s = String::new();
    for id in ids {
        if !s.is_empty() {
            s.push(',');
        }
        let _ = write!(s, "{id}");
    }
    if s.is_empty() {
        s.push_str("SELECT toUInt64(0) WHERE 0");
    }
    s
}

/// The point reads of [`Joiner`], as statements: pure, so that tests can run them on other ClickHouse versions. Each
/// result is read by position (RowBinary), in the order of the fields of its row type.
pub mod sql {
    use std::collections::BTreeSet;
    use std::fmt::Write as _;

    use super::list;
    use crate::report::Keys;

    /// The newest states ([`super::LineState`]) of the lines `lines` names and of the lines of `orders` (through
    /// `lines_by_order`, as a subquery).
    pub fn line_states(db: &str, lines: &[u64], orders: &BTreeSet<u64>) -> String {
        let mut filter = format!("id IN ({})", list(lines.iter().copied()));
        if !orders.is_empty() {
            let _ = write!(filter, " OR id IN (SELECT id FROM {db}.lines_by_order WHERE order_id IN ({}))", list(orders.iter().copied()));
        }
        format!(
            "SELECT id, argMax(order_id, version), argMax(product_id, version), argMax(quantity, version), \
             argMax(unit_price, version), argMax(deleted, version), max(version), groupUniqArray(order_id) \
             FROM {db}.lines_state WHERE {filter} GROUP BY id"
        )
    }

    /// The reads of the ids (one `UInt64` column) of the lines `keys` reach through their users and products: one
    /// per kind of key present, none without users and products.
    pub fn reached_far(db: &str, keys: &Keys) -> Vec<String> {
        let mut queries = Vec::new();
        if !keys.users.is_empty() {
            queries.push(format!(
                "SELECT id FROM {db}.lines_by_order WHERE order_id IN (SELECT id FROM {db}.orders_by_user WHERE user_id IN ({}))",
                list(keys.users.iter().copied())
            ));
        }
        if !keys.products.is_empty() {
            queries.push(format!("SELECT id FROM {db}.lines_by_product WHERE product_id IN ({})", list(keys.products.iter().copied())));
        }
        queries
    }

    /// The newest states ([`super::UserState`]) of every user `orders` ever had: a superset of their newest ones,
    /// which the join picks.
    pub fn users(db: &str, orders: &BTreeSet<u64>) -> String {
        format!(
            "SELECT id, argMax(email, version), argMax(name, version), argMax(country, version), \
             argMax(has_country, version), argMax(deleted, version), max(version) FROM {db}.users_state \
             WHERE id IN (SELECT user_id FROM {db}.orders_state WHERE id IN ({})) GROUP BY id",
            list(orders.iter().copied())
        )
    }

    /// The newest states ([`super::OrderState`]) of `orders`.
    pub fn orders(db: &str, orders: &BTreeSet<u64>) -> String {
        format!(
            "SELECT id, argMax(user_id, version), argMax(status, version), argMax(created_at, version), \
             argMax(deleted, version), max(version) FROM {db}.orders_state WHERE id IN ({}) GROUP BY id",
            list(orders.iter().copied())
        )
    }

    /// The newest states ([`super::ProductState`]) of `products`.
    pub fn products(db: &str, products: &BTreeSet<u64>) -> String {
        format!(
            "SELECT id, argMax(sku, version), argMax(name, version), argMax(category, version), \
             argMax(deleted, version), max(version) FROM {db}.products_state WHERE id IN ({}) GROUP BY id",
            list(products.iter().copied())
        )
    }

    /// The live rows ([`super::Live`]) of `lines` in `report_lines` (`orders`: every order they were ever in).
    pub fn live(db: &str, orders: &BTreeSet<u64>, lines: impl IntoIterator<Item = u64>) -> String {
        format!(
            "SELECT order_id, line_id, version, writer, toInt64(sum(sign)) AS copies FROM {db}.report_lines \
             WHERE order_id IN ({}) AND line_id IN ({}) GROUP BY order_id, line_id, version, writer HAVING copies > 0",
            list(orders.iter().copied()),
            list(lines)
        )
    }
}

/// Reads and writes of one database.
pub struct Joiner<'a> {
    pub client: &'a Client,
    pub db: &'a str,
    /// This writer's id ([`writer_id`]), in the rows it writes.
    pub writer: u64,
    /// Whether other writers may write the same lines at once: then every write is settled (module doc).
    pub settle: bool,
}

/// A random id of this process, nonzero (the server-side statements write 0).
pub fn writer_id() -> u64 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now())) | 1
}

/// What [`Joiner::refresh`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Refreshed {
    /// Lines reached.
    pub lines: usize,
    /// Rows written (new rows and cancels).
    pub written: usize,
}

impl Joiner<'_> {
    async fn fetch<T: clickhouse::RowOwned + for<'b> clickhouse::RowRead>(&self, sql: String) -> Result<Vec<T>, clickhouse::error::Error> {
        // The key lists are in the statement: up to [`CHUNK`] lines and every order they were ever in (the default
        // limit, 50,000 AST elements, is reached by about that many keys).
        self.client
            .query(&sql)
            .with_setting("max_query_size", "67108864")
            .with_setting("max_ast_elements", "10000000")
            .with_setting("max_expanded_ast_elements", "10000000")
            .fetch_all::<T>()
            .await
    }

    /// The newest states of the lines `lines` names and of the lines of `orders` (through `lines_by_order`): one
    /// read, the key index as a subquery.
    async fn line_states(&self, lines: &[u64], orders: &BTreeSet<u64>) -> Result<Vec<LineState>, clickhouse::error::Error> {
        self.fetch(sql::line_states(self.db, lines, orders)).await
    }

    /// The ids of the lines `keys` reach through their users and products: any number of lines (a product may be
    /// in millions), so ids only, read in chunks afterwards.
    async fn reached_far(&self, keys: &Keys) -> Result<BTreeSet<u64>, clickhouse::error::Error> {
        let queries = sql::reached_far(self.db, keys);
        let mut lines = BTreeSet::new();
        for ids in futures_util::future::try_join_all(queries.into_iter().map(|q| self.fetch::<u64>(q))).await? {
            lines.extend(ids);
        }
        Ok(lines)
    }

    /// The states `lines` join with and their live rows: one round of concurrent reads (the users through their
    /// orders' `user_id`s, as a subquery).
    pub async fn states(&self, lines: Vec<LineState>) -> Result<States, clickhouse::error::Error> {
        let db = self.db;
        let orders: BTreeSet<u64> = lines.iter().map(|l| l.order_id).collect();
        let products: BTreeSet<u64> = lines.iter().map(|l| l.product_id).collect();
        let every_order: BTreeSet<u64> = lines.iter().flat_map(|l| l.orders.iter().copied()).collect();
        let (users, orders, products, live) = tokio::try_join!(
            self.fetch::<UserState>(sql::users(db, &orders)),
            self.fetch::<OrderState>(sql::orders(db, &orders)),
            self.fetch::<ProductState>(sql::products(db, &products)),
            self.live(&every_order, lines.iter().map(|l| l.id)),
        )?;
        Ok(States {
            lines,
            orders: orders.into_iter().map(|o| (o.id, o)).collect(),
            users: users.into_iter().map(|u| (u.id, u)).collect(),
            products: products.into_iter().map(|p| (p.id, p)).collect(),
            live,
        })
    }

    /// The live rows of `lines` (`orders`: every order they were ever in).
    async fn live(&self, orders: &BTreeSet<u64>, lines: impl IntoIterator<Item = u64>) -> Result<Vec<Live>, clickhouse::error::Error> {
        self.fetch::<Live>(sql::live(self.db, orders, lines)).await
    }

    /// Writes `rows` in one INSERT.
    async fn write(&self, rows: &[ReportRow]) -> Result<(), clickhouse::error::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.clone().with_database(self.db).insert::<ReportRow>("report_lines").await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }

    /// Brings the lines `keys` reach up to date in `report_lines`.
    ///
    /// Two rounds of reads for a batch whose keys reach lines only through its lines and orders (few lines per
    /// key): the line states, then everything they join with. Lines reached through users and products are read by
    /// id first, then in rounds of [`CHUNK`] lines.
    pub async fn refresh(&self, keys: &Keys) -> Result<Refreshed, clickhouse::error::Error> {
        if keys.all {
            // A truncate: every line, server-side, one statement per range of line ids.
            let db = self.db;
            crate::migrate::per_line_range(self.client, db, |first, last| report::recompute_range(db, first, last)).await?;
            return Ok(Refreshed::default());
        }
        let lines: Vec<u64> = keys.lines.iter().copied().collect();
        let near = async {
            if lines.is_empty() && keys.orders.is_empty() {
                Ok(Vec::new())
            } else {
                self.line_states(&lines, &keys.orders).await
            }
        };
        let (mut near, far) = tokio::try_join!(near, self.reached_far(keys))?;
        let far: Vec<u64> = {
            let known: BTreeSet<u64> = near.iter().map(|l| l.id).collect();
            far.into_iter().filter(|id| !known.contains(id)).collect()
        };
        let mut done = Refreshed { lines: near.len() + far.len(), written: 0 };
        while !near.is_empty() {
            let rest = near.split_off(near.len().min(CHUNK));
            done.written += self.round(std::mem::replace(&mut near, rest)).await?;
        }
        for ids in far.chunks(CHUNK) {
            let lines = self.line_states(ids, &BTreeSet::new()).await?;
            done.written += self.round(lines).await?;
        }
        Ok(done)
    }

    /// Reads what `lines` join with, writes their rows and cancels, and settles them with several writers; returns
    /// the rows written.
    async fn round(&self, lines: Vec<LineState>) -> Result<usize, clickhouse::error::Error> {
        let states = self.states(lines).await?;
        let rows = plan(&states, self.writer);
        self.write(&rows).await?;
        let mut written = rows.len();
        if self.settle {
            let lines: BTreeSet<u64> = rows.iter().filter(|r| r.sign == 1).map(|r| r.line_id).collect();
            if !lines.is_empty() {
                let orders = states.lines.iter().filter(|l| lines.contains(&l.id)).flat_map(|l| l.orders.iter().copied()).collect();
                let cancels = settle(&self.live(&orders, lines).await?);
                self.write(&cancels).await?;
                written += cancels.len();
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_id_list_is_a_subquery_without_rows() {
        assert_eq!(list([3, 1]), "3,1");
        assert_eq!(list([]), "SELECT toUInt64(0) WHERE 0");
    }

    #[test]
    fn point_reads_name_their_keys() {
        let orders: BTreeSet<u64> = [4, 2].into();
        assert_eq!(
            sql::line_states("r", &[7], &orders),
            "SELECT id, argMax(order_id, version), argMax(product_id, version), argMax(quantity, version), \
             argMax(unit_price, version), argMax(deleted, version), max(version), groupUniqArray(order_id) \
             FROM r.lines_state WHERE id IN (7) OR id IN (SELECT id FROM r.lines_by_order WHERE order_id IN (2,4)) GROUP BY id"
        );
        assert!(sql::line_states("r", &[7], &BTreeSet::new()).ends_with("WHERE id IN (7) GROUP BY id"));
        assert_eq!(
            sql::live("r", &orders, [7, 8]),
            "SELECT order_id, line_id, version, writer, toInt64(sum(sign)) AS copies FROM r.report_lines \
             WHERE order_id IN (2,4) AND line_id IN (7,8) GROUP BY order_id, line_id, version, writer HAVING copies > 0"
        );
        let keys = Keys { products: [3].into(), ..Keys::default() };
        assert_eq!(sql::reached_far("r", &keys), ["SELECT id FROM r.lines_by_product WHERE product_id IN (3)"]);
        assert!(sql::reached_far("r", &Keys::default()).is_empty());
    }

    fn line(id: u64, order_id: u64, version: u64) -> LineState {
        LineState { id, order_id, product_id: 7, quantity: 2, unit_price: 150, deleted: 0, version, orders: vec![order_id] }
    }

    /// Live rows as (order, line, version, writer, copies).
    fn live(rows: &[(u64, u64, u64, u64, i64)]) -> Vec<Live> {
        rows.iter().map(|&(order_id, line_id, version, writer, copies)| Live { order_id, line_id, version, writer, copies }).collect()
    }

    fn states(lines: Vec<LineState>, rows: &[(u64, u64, u64, u64, i64)]) -> States {
        let order = |id: u64| OrderState { id, user_id: 3, status: "PENDING".into(), created_at: 10, deleted: 0, version: 100 };
        let user = UserState { id: 3, email: "a@x".into(), name: "A".into(), country: String::new(), has_country: 0, deleted: 0, version: 10 };
        let product = ProductState { id: 7, sku: "S".into(), name: "P".into(), category: "c".into(), deleted: 1, version: 1 };
        States {
            lines,
            orders: [(1, order(1)), (2, order(2))].into(),
            users: [(3, user)].into(),
            products: [(7, product)].into(),
            live: live(rows),
        }
    }

    /// (order, line, version, writer, sign) of each row, sorted.
    fn keys(rows: &[ReportRow]) -> Vec<(u64, u64, u64, u64, i8)> {
        let mut keys: Vec<_> = rows.iter().map(|r| (r.order_id, r.line_id, r.version, r.writer, r.sign)).collect();
        keys.sort();
        keys
    }

    #[test]
    fn rows_planned_by_versions() {
        // The line's joined version: 1000 (line) + 100 (order) + 10 (user) + 1 (product) = 1111; this writer is 9.
        type Rows = Vec<(u64, u64, u64, u64, i64)>;
        type Want = Vec<(u64, u64, u64, u64, i8)>;
        let cases: Vec<(&str, Rows, Want)> = vec![
            ("new line", vec![], vec![(1, 5, 1111, 9, 1)]),
            ("redelivery: same version live", vec![(1, 5, 1111, 4, 1)], vec![]),
            ("older live row replaced", vec![(1, 5, 900, 4, 1)], vec![(1, 5, 900, 4, -1), (1, 5, 1111, 9, 1)]),
            ("newer live row kept (out of order)", vec![(1, 5, 2000, 4, 1)], vec![]),
            ("two writers left two versions: the older cancelled", vec![(1, 5, 2000, 4, 1), (1, 5, 1500, 3, 1)], vec![(1, 5, 1500, 3, -1)]),
            (
                "two writers left one version twice: the larger writer's cancelled",
                vec![(1, 5, 1111, 4, 1), (1, 5, 1111, 3, 1)],
                vec![(1, 5, 1111, 4, -1)],
            ),
            ("a row written twice: cancelled twice", vec![(2, 5, 900, 4, 2)], vec![(1, 5, 1111, 9, 1), (2, 5, 900, 4, -1), (2, 5, 900, 4, -1)]),
            ("cancelled rows are not live", vec![(1, 5, 900, 4, 0)], vec![(1, 5, 1111, 9, 1)]),
        ];
        for (name, live, want) in cases {
            assert_eq!(keys(&plan(&states(vec![line(5, 1, 1000)], &live), 9)), want, "{name}");
        }
    }

    #[test]
    fn settling_keeps_one_row_per_line_whoever_settles() {
        let rows = live(&[(1, 5, 1111, 4, 1), (1, 5, 1111, 3, 1), (1, 5, 900, 3, 1), (1, 6, 70, 8, 1)]);
        assert_eq!(keys(&settle(&rows)), [(1, 5, 900, 3, -1), (1, 5, 1111, 4, -1)]);
        // Reversed order of reading: the same choice.
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(keys(&settle(&reversed)), keys(&settle(&rows)));
    }

    #[test]
    fn joined_rows_carry_nulls_and_deletes() {
        let s = states(vec![line(5, 1, 1000), line(6, 9, 1000), LineState { deleted: 1, ..line(8, 2, 1000) }], &[]);
        let rows = plan(&s, 9);
        let r = &rows[0];
        assert_eq!((r.user_email.as_deref(), r.user_country.as_deref(), r.product_name.as_deref()), (Some("a@x"), None, None));
        assert_eq!((r.line_total, r.order_status.as_str(), r.deleted), (300, "PENDING", 0));
        // Order 9 is not known: deleted, version without it.
        assert_eq!((rows[1].deleted, rows[1].version, rows[1].user_email.clone()), (1, 1001, None));
        assert_eq!(rows[2].deleted, 1);
    }
}
