//! The analytics guide (`docs/analytics.md`) as test material: its queries, a known data set, and what each query
//! must return on that data set, computed here in Rust from the data set's final state (not by ClickHouse).
//!
//! The data set is a log of writes (inserts, updates, deletes of users, products, orders and lines) so that both
//! test paths see the same history: the pipeline test replays it as MySQL transactions, the current-ClickHouse test
//! as versioned rows of the entity tables.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::RangeInclusive;

use anyhow::{bail, ensure, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One SQL block of the guide, named by the `## ` heading above it.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) name: String,
    pub(crate) sql: String,
}

/// Every ```` ```sql ```` block of `docs/analytics.md`, exactly as written.
pub(crate) fn doc_queries() -> Result<Vec<Query>> {
    let path = cdc_tests::repo_root().join("docs/analytics.md");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_queries(&text)
}

/// The ```` ```sql ```` blocks of a Markdown text with their headings; one block per heading.
pub(crate) fn parse_queries(text: &str) -> Result<Vec<Query>> {
    let mut queries: Vec<Query> = Vec::new();
    let mut heading: Option<String> = None;
    let mut block: Option<String> = None;
    for line in text.lines() {
        if let Some(sql) = block.as_mut() {
            if line.trim_start().starts_with("```") {
                let name = heading.clone().context("a sql block before any `## ` heading")?;
                ensure!(!queries.iter().any(|q| q.name == name), "two sql blocks under `## {name}`");
                queries.push(Query { name, sql: sql.trim().to_owned() });
                block = None;
            } else {
                sql.push_str(line);
                sql.push('\n');
            }
        } else if let Some(h) = line.strip_prefix("## ") {
            heading = Some(h.trim().to_owned());
        } else if line.trim_start().starts_with("```sql") {
            block = Some(String::new());
        }
    }
    ensure!(block.is_none(), "an unterminated sql block");
    Ok(queries)
}

/// The guide's queries the tests know the results of: each must be in the guide, and the guide may hold no other.
pub(crate) const QUERIES: [&str; 7] = [
    "Revenue per day and category",
    "Top customers",
    "Rejections for lack of stock, by product",
    "Rejection rate by category",
    "Order funnel by status",
    "Average order value by country",
    "How fresh the report is",
];

/// Fails unless the guide has exactly the queries of [`QUERIES`], each reading `reporting.` tables.
pub(crate) fn check_coverage(queries: &[Query]) -> Result<()> {
    let found: BTreeSet<&str> = queries.iter().map(|q| q.name.as_str()).collect();
    let known: BTreeSet<&str> = QUERIES.into_iter().collect();
    ensure!(
        found == known,
        "docs/analytics.md has queries {:?} the tests do not check and lacks {:?}; add expected results in views/tests/common/analytics.rs",
        found.difference(&known).collect::<Vec<_>>(),
        known.difference(&found).collect::<Vec<_>>()
    );
    for q in queries {
        ensure!(q.sql.contains("reporting."), "query `{}` does not name its tables as reporting.<table>", q.name);
    }
    Ok(())
}

/// The three source databases (capture source names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    Users,
    Catalog,
    Orders,
}

impl Source {
    pub(crate) const ALL: [Source; 3] = [Source::Catalog, Source::Orders, Source::Users];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Source::Users => "users",
            Source::Catalog => "catalog",
            Source::Orders => "orders",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct User {
    pub(crate) id: u64,
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) country: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Product {
    pub(crate) id: u64,
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) category: &'static str,
    pub(crate) price: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Order {
    pub(crate) id: u64,
    pub(crate) user_id: u64,
    pub(crate) status: &'static str,
    /// `YYYY-MM-DD`.
    pub(crate) day: &'static str,
    /// `HH:MM:SS.mmm`.
    pub(crate) time: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    pub(crate) id: u64,
    pub(crate) order_id: u64,
    pub(crate) product_id: u64,
    pub(crate) quantity: u32,
    /// Cents.
    pub(crate) unit_price: i64,
}

/// One row written or deleted.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    User(User),
    Product(Product),
    Order(Order),
    Line(Line),
    DeleteUser(u64),
    DeleteProduct(u64),
    DeleteOrder(u64),
    DeleteLine(u64),
}

impl Write {
    fn source(&self) -> Source {
        match self {
            Write::User(_) | Write::DeleteUser(_) => Source::Users,
            Write::Product(_) | Write::DeleteProduct(_) => Source::Catalog,
            _ => Source::Orders,
        }
    }
}

/// The rows that exist after every write.
#[derive(Debug, Default, Clone)]
pub(crate) struct State {
    pub(crate) users: BTreeMap<u64, User>,
    pub(crate) products: BTreeMap<u64, Product>,
    pub(crate) orders: BTreeMap<u64, Order>,
    pub(crate) lines: BTreeMap<u64, Line>,
}

impl State {
    fn apply(&mut self, write: &Write) {
        match write {
            Write::User(u) => {
                self.users.insert(u.id, u.clone());
            }
            Write::Product(p) => {
                self.products.insert(p.id, p.clone());
            }
            Write::Order(o) => {
                self.orders.insert(o.id, o.clone());
            }
            Write::Line(l) => {
                self.lines.insert(l.id, l.clone());
            }
            Write::DeleteUser(id) => {
                self.users.remove(id);
            }
            Write::DeleteProduct(id) => {
                self.products.remove(id);
            }
            Write::DeleteOrder(id) => {
                self.orders.remove(id);
            }
            Write::DeleteLine(id) => {
                self.lines.remove(id);
            }
        }
    }
}

/// The data set: transactions of writes, each on one source database.
pub(crate) struct DataSet {
    pub(crate) transactions: Vec<Vec<Write>>,
}

const DAYS: [&str; 3] = ["2026-11-28", "2026-11-29", "2026-11-30"];
const COUNTRIES: [Option<&str>; 6] = [Some("DE"), Some("FR"), Some("US"), Some("NL"), Some("DE"), None];
const PRODUCTS: [(&str, &str, i64); 8] = [
    ("Keyboard", "peripherals", 4990),
    ("Mouse", "accessories", 1999), // renamed and moved to peripherals below
    ("Monitor 27", "displays", 19900),
    ("USB-C cable", "accessories", 450),
    ("Laptop stand", "accessories", 3475),
    ("Laptop 14", "computers", 129_900),
    ("Mini PC", "computers", 54_950),
    ("Dock", "accessories", 8900), // deleted below
];

impl DataSet {
    /// The data set of the analytics tests: 12 users (one deleted, one without a country, one email change), 8
    /// products (one renamed into another category, one deleted), lines of a product that never existed, orders of
    /// a user who never existed, 40 orders over three days created as PENDING and then confirmed, rejected or
    /// cancelled, quantity changes, deleted lines and deleted orders.
    pub(crate) fn new() -> DataSet {
        let mut rng = StdRng::seed_from_u64(20_261_201);
        let mut tx: Vec<Vec<Write>> = Vec::new();
        tx.push(
            (1..=12u64)
                .map(|id| {
                    Write::User(User {
                        id,
                        email: format!("customer{id}@example.com"),
                        name: format!("Customer {id}"),
                        country: COUNTRIES[id as usize % COUNTRIES.len()],
                    })
                })
                .collect(),
        );
        tx.push(
            PRODUCTS
                .iter()
                .enumerate()
                .map(|(i, (name, category, price))| {
                    Write::Product(Product {
                        id: i as u64 + 1,
                        sku: format!("SKU-{:03}", i + 1),
                        name: (*name).into(),
                        category,
                        price: *price,
                    })
                })
                .collect(),
        );
        let mut orders = Vec::new();
        let mut line_id = 0;
        for id in 1..=40u64 {
            let order = Order {
                id,
                // 13 never exists: its orders have no user.
                user_id: rng.random_range(1..=13),
                status: "PENDING",
                day: DAYS[rng.random_range(0..DAYS.len())],
                time: if id == 5 {
                    "23:59:59.900".into()
                } else {
                    format!("{:02}:{:02}:{:02}.{:03}", rng.random_range(0..24), rng.random_range(0..60), rng.random_range(0..60), rng.random_range(0..1000))
                },
            };
            let mut writes = vec![Write::Order(order.clone())];
            for _ in 0..rng.random_range(1..=4) {
                line_id += 1;
                // 9 never exists: its lines have no product.
                let product_id = rng.random_range(1..=9u64);
                let list = PRODUCTS.get(product_id as usize - 1).map_or(1234, |p| p.2);
                let unit_price = if rng.random_bool(0.25) { list * 9 / 10 } else { list };
                writes.push(Write::Line(Line { id: line_id, order_id: id, product_id, quantity: rng.random_range(1..=5), unit_price }));
            }
            orders.push(order);
            tx.push(writes);
        }
        // The order service's workflow: most orders leave PENDING.
        for order in &orders {
            let status = match rng.random_range(0..10) {
                0..=4 => "CONFIRMED",
                5 | 6 => "REJECTED",
                7 => "CANCELLED",
                _ => continue,
            };
            tx.push(vec![Write::Order(Order { status, ..order.clone() })]);
        }
        let mut state = State::default();
        tx.iter().flatten().for_each(|w| state.apply(w));
        // Quantity changes, deleted lines, a deleted order with its lines and one without (orphaned lines).
        let some_lines: Vec<Line> = state.lines.values().filter(|l| l.id % 7 == 3).cloned().collect();
        for line in &some_lines {
            tx.push(vec![Write::Line(Line { quantity: line.quantity + 2, ..line.clone() })]);
        }
        tx.push(state.lines.values().filter(|l| l.id % 11 == 5).map(|l| Write::DeleteLine(l.id)).collect());
        let state = {
            let mut state = State::default();
            tx.iter().flatten().for_each(|w| state.apply(w));
            state
        };
        let mut delete_with_lines = vec![Write::DeleteOrder(7)];
        delete_with_lines.extend(state.lines.values().filter(|l| l.order_id == 7).map(|l| Write::DeleteLine(l.id)));
        tx.push(delete_with_lines);
        tx.push(vec![Write::DeleteOrder(23)]);
        // Dimension changes after the facts: an email change, a rename into another category, deletes.
        tx.push(vec![Write::User(User { email: "customer5@example.org".into(), ..state.users[&5].clone() })]);
        tx.push(vec![Write::Product(Product { name: "Wireless mouse".into(), category: "peripherals", ..state.products[&2].clone() })]);
        tx.push(vec![Write::DeleteUser(12)]);
        tx.push(vec![Write::DeleteProduct(8)]);
        DataSet { transactions: tx }
    }

    /// Every write in order.
    pub(crate) fn writes(&self) -> impl Iterator<Item = &Write> {
        self.transactions.iter().flatten()
    }

    /// The rows after every write.
    pub(crate) fn state(&self) -> State {
        let mut state = State::default();
        self.writes().for_each(|w| state.apply(w));
        state
    }

    /// The transactions as MySQL statements, each with its source database.
    pub(crate) fn mysql(&self) -> Vec<(Source, String)> {
        let mut state = State::default();
        let mut out = Vec::new();
        for tx in &self.transactions {
            let source = tx[0].source();
            assert!(tx.iter().all(|w| w.source() == source), "a transaction spans two databases");
            let mut sql = String::from("START TRANSACTION;\n");
            for w in tx {
                sql.push_str(&match w {
                    Write::User(u) => {
                        let country = u.country.map_or("NULL".to_string(), |c| format!("'{c}'"));
                        if state.users.contains_key(&u.id) {
                            format!("UPDATE users SET email = '{}', name = '{}', country = {country} WHERE id = {};\n", u.email, u.name, u.id)
                        } else {
                            format!("INSERT INTO users (id, email, name, country) VALUES ({}, '{}', '{}', {country});\n", u.id, u.email, u.name)
                        }
                    }
                    Write::Product(p) => {
                        if state.products.contains_key(&p.id) {
                            format!(
                                "UPDATE products SET sku = '{}', name = '{}', category = '{}', price = {} WHERE id = {};\n",
                                p.sku, p.name, p.category, Cents(p.price), p.id
                            )
                        } else {
                            format!(
                                "INSERT INTO products (id, sku, name, category, price, stock) VALUES ({}, '{}', '{}', '{}', {}, 100);\n",
                                p.id, p.sku, p.name, p.category, Cents(p.price)
                            )
                        }
                    }
                    Write::Order(o) => {
                        if state.orders.contains_key(&o.id) {
                            format!("UPDATE orders SET user_id = {}, status = '{}' WHERE id = {};\n", o.user_id, o.status, o.id)
                        } else {
                            format!(
                                "INSERT INTO orders (id, user_id, status, total, created_at) VALUES ({}, {}, '{}', 0, '{} {}');\n",
                                o.id, o.user_id, o.status, o.day, o.time
                            )
                        }
                    }
                    Write::Line(l) => {
                        if state.lines.contains_key(&l.id) {
                            format!("UPDATE order_lines SET quantity = {}, unit_price = {} WHERE id = {};\n", l.quantity, Cents(l.unit_price), l.id)
                        } else {
                            format!(
                                "INSERT INTO order_lines (id, order_id, product_id, quantity, unit_price) VALUES ({}, {}, {}, {}, {});\n",
                                l.id, l.order_id, l.product_id, l.quantity, Cents(l.unit_price)
                            )
                        }
                    }
                    Write::DeleteUser(id) => format!("DELETE FROM users WHERE id = {id};\n"),
                    Write::DeleteProduct(id) => format!("DELETE FROM products WHERE id = {id};\n"),
                    Write::DeleteOrder(id) => format!("DELETE FROM orders WHERE id = {id};\n"),
                    Write::DeleteLine(id) => format!("DELETE FROM order_lines WHERE id = {id};\n"),
                });
                state.apply(w);
            }
            sql.push_str("COMMIT;");
            out.push((source, sql));
        }
        out
    }

    /// The writes as rows of the view's entity tables in `db`, versioned by their position in the log (what the
    /// view service writes for the same history), one INSERT per table.
    /// Every key the data set writes, as the view service collects them from a batch.
    pub(crate) fn keys(&self) -> cdc_views::report::Keys {
        let mut keys = cdc_views::report::Keys::default();
        for w in self.writes() {
            match w {
                Write::User(User { id, .. }) | Write::DeleteUser(id) => keys.users.insert(*id),
                Write::Product(Product { id, .. }) | Write::DeleteProduct(id) => keys.products.insert(*id),
                Write::Order(Order { id, .. }) | Write::DeleteOrder(id) => keys.orders.insert(*id),
                Write::Line(Line { id, .. }) | Write::DeleteLine(id) => keys.lines.insert(*id),
            };
        }
        keys
    }

    pub(crate) fn entity_inserts(&self, db: &str) -> Vec<String> {
        let mut state = State::default();
        let mut rows: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (i, w) in self.writes().enumerate() {
            let version = i as u64 + 1;
            let user = |u: &User, deleted: u8| {
                format!("({}, '{}', '{}', '{}', {}, {version}, {deleted})", u.id, u.email, u.name, u.country.unwrap_or(""), u.country.is_some() as u8)
            };
            let product = |p: &Product, deleted: u8| {
                format!("({}, '{}', '{}', '{}', {}, {version}, {deleted})", p.id, p.sku, p.name, p.category, Cents(p.price))
            };
            let order = |o: &Order, deleted: u8| {
                format!("({}, {}, '{}', 0, '{} {}', {version}, {deleted})", o.id, o.user_id, o.status, o.day, &o.time[..8])
            };
            let line = |l: &Line, deleted: u8| {
                format!("({}, {}, {}, {}, {}, {version}, {deleted})", l.id, l.order_id, l.product_id, l.quantity, Cents(l.unit_price))
            };
            let (table, row) = match w {
                Write::User(u) => ("users_state", user(u, 0)),
                Write::Product(p) => ("products_state", product(p, 0)),
                Write::Order(o) => ("orders_state", order(o, 0)),
                Write::Line(l) => ("lines_state", line(l, 0)),
                Write::DeleteUser(id) => ("users_state", user(&state.users[id], 1)),
                Write::DeleteProduct(id) => ("products_state", product(&state.products[id], 1)),
                Write::DeleteOrder(id) => ("orders_state", order(&state.orders[id], 1)),
                Write::DeleteLine(id) => ("lines_state", line(&state.lines[id], 1)),
            };
            rows.entry(table).or_default().push(row);
            state.apply(w);
        }
        rows.into_iter().map(|(table, rows)| format!("INSERT INTO {db}.{table} VALUES {}", rows.join(", "))).collect()
    }

    /// `order_report` as the contract defines it, from the final state.
    pub(crate) fn report(&self) -> Vec<ReportLine> {
        let s = self.state();
        s.lines
            .values()
            .filter_map(|l| {
                let order = s.orders.get(&l.order_id)?;
                Some(ReportLine {
                    order: order.clone(),
                    user: s.users.get(&order.user_id).cloned(),
                    product: s.products.get(&l.product_id).cloned(),
                    line: l.clone(),
                })
            })
            .collect()
    }

    /// `SELECT * FROM order_report ORDER BY line_id` on this data set.
    pub(crate) fn report_table(&self) -> Table {
        let text = |s: &Option<String>| Cell::maybe(s.clone());
        Table::new(
            &[
                "order_id", "line_id", "order_status", "order_created_at", "user_id", "user_email", "user_name", "user_country",
                "product_id", "product_sku", "product_name", "product_category", "quantity", "unit_price", "line_total",
            ],
            self.report()
                .iter()
                .map(|r| {
                    let created = seconds(r.order.day, &r.order.time);
                    vec![
                        Cell::Int(r.order.id as i64),
                        Cell::Int(r.line.id as i64),
                        Cell::text(r.order.status),
                        Cell::DateTime(created..=created),
                        Cell::Int(r.order.user_id as i64),
                        text(&r.user.as_ref().map(|u| u.email.clone())),
                        text(&r.user.as_ref().map(|u| u.name.clone())),
                        text(&r.user.as_ref().and_then(|u| u.country.map(str::to_owned))),
                        Cell::Int(r.line.product_id as i64),
                        text(&r.product.as_ref().map(|p| p.sku.clone())),
                        text(&r.product.as_ref().map(|p| p.name.clone())),
                        text(&r.product.as_ref().map(|p| p.category.to_owned())),
                        Cell::Int(i64::from(r.line.quantity)),
                        Cell::Money(r.line.unit_price),
                        Cell::Money(r.total()),
                    ]
                })
                .collect(),
        )
    }

    /// What the guide's query `name` returns on this data set, or `None` for a query this file does not know.
    pub(crate) fn expected(&self, name: &str, fresh: &Freshness) -> Option<Table> {
        let report = self.report();
        let unknown = "(unknown product)";
        let category = |r: &ReportLine| r.product.as_ref().map_or(unknown.to_string(), |p| p.category.to_string());
        let confirmed: Vec<&ReportLine> = report.iter().filter(|r| r.order.status == "CONFIRMED").collect();
        Some(match name {
            "Revenue per day and category" => {
                let mut groups: BTreeMap<(&str, String), Agg> = BTreeMap::new();
                for r in &confirmed {
                    groups.entry((r.order.day, category(r))).or_default().add(r);
                }
                let mut rows: Vec<_> = groups.into_iter().collect();
                rows.sort_by(|((d1, c1), a1), ((d2, c2), a2)| d1.cmp(d2).then(a2.revenue.cmp(&a1.revenue)).then(c1.cmp(c2)));
                Table::new(
                    &["day", "category", "orders", "units", "revenue"],
                    rows.into_iter()
                        .map(|((day, cat), a)| vec![Cell::text(day), Cell::Text(cat), a.orders(), Cell::Int(a.units), Cell::Money(a.revenue)])
                        .collect(),
                )
            }
            "Top customers" => {
                let mut groups: BTreeMap<u64, (Option<User>, Agg)> = BTreeMap::new();
                for r in &confirmed {
                    let entry = groups.entry(r.order.user_id).or_insert_with(|| (r.user.clone(), Agg::default()));
                    entry.1.add(r);
                }
                let mut rows: Vec<_> = groups.into_iter().collect();
                rows.sort_by(|(u1, (_, a1)), (u2, (_, a2))| a2.revenue.cmp(&a1.revenue).then(u1.cmp(u2)));
                rows.truncate(10);
                Table::new(
                    &["user_id", "name", "email", "orders", "revenue"],
                    rows.into_iter()
                        .map(|(id, (user, a))| {
                            vec![
                                Cell::Int(id as i64),
                                Cell::maybe(user.as_ref().map(|u| u.name.clone())),
                                Cell::maybe(user.as_ref().map(|u| u.email.clone())),
                                a.orders(),
                                Cell::Money(a.revenue),
                            ]
                        })
                        .collect(),
                )
            }
            "Rejections for lack of stock, by product" => {
                let mut groups: BTreeMap<u64, (Option<Product>, Agg)> = BTreeMap::new();
                for r in report.iter().filter(|r| r.order.status == "REJECTED") {
                    groups.entry(r.line.product_id).or_insert_with(|| (r.product.clone(), Agg::default())).1.add(r);
                }
                let mut rows: Vec<_> = groups.into_iter().collect();
                rows.sort_by(|(p1, (_, a1)), (p2, (_, a2))| {
                    a2.order_ids.len().cmp(&a1.order_ids.len()).then(a2.units.cmp(&a1.units)).then(p1.cmp(p2))
                });
                Table::new(
                    &["product_id", "product", "category", "rejected_orders", "units_requested", "value_rejected"],
                    rows.into_iter()
                        .map(|(id, (product, a))| {
                            vec![
                                Cell::Int(id as i64),
                                Cell::maybe(product.as_ref().map(|p| p.name.clone())),
                                Cell::Text(product.as_ref().map_or(unknown.to_string(), |p| p.category.to_string())),
                                a.orders(),
                                Cell::Int(a.units),
                                Cell::Money(a.revenue),
                            ]
                        })
                        .collect(),
                )
            }
            "Rejection rate by category" => {
                let mut groups: BTreeMap<String, (BTreeSet<u64>, BTreeSet<u64>)> = BTreeMap::new();
                for r in &report {
                    let g = groups.entry(category(r)).or_default();
                    g.0.insert(r.order.id);
                    if r.order.status == "REJECTED" {
                        g.1.insert(r.order.id);
                    }
                }
                let mut rows: Vec<(String, usize, usize, f64)> = groups
                    .into_iter()
                    .map(|(c, (all, rejected))| {
                        let pct = round(100.0 * rejected.len() as f64 / all.len() as f64, 1);
                        (c, all.len(), rejected.len(), pct)
                    })
                    .collect();
                rows.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
                Table::new(
                    &["category", "orders", "rejected", "rejected_pct"],
                    rows.into_iter()
                        .map(|(c, all, rejected, pct)| vec![Cell::Text(c), Cell::Int(all as i64), Cell::Int(rejected as i64), Cell::Float(pct)])
                        .collect(),
                )
            }
            "Order funnel by status" => {
                let all: BTreeSet<u64> = report.iter().map(|r| r.order.id).collect();
                let rows = ["PENDING", "CONFIRMED", "REJECTED", "CANCELLED"]
                    .into_iter()
                    .filter_map(|status| {
                        let mut a = Agg::default();
                        report.iter().filter(|r| r.order.status == status).for_each(|r| a.add(r));
                        (!a.order_ids.is_empty()).then(|| {
                            let share = round(100.0 * a.order_ids.len() as f64 / all.len() as f64, 1);
                            vec![Cell::text(status), a.orders(), Cell::Money(a.revenue), Cell::Float(share)]
                        })
                    })
                    .collect();
                Table::new(&["status", "orders", "value", "share_pct"], rows)
            }
            "Average order value by country" => {
                let mut per_order: BTreeMap<u64, (Option<&str>, i64)> = BTreeMap::new();
                for r in &confirmed {
                    let e = per_order.entry(r.order.id).or_insert((r.user.as_ref().and_then(|u| u.country), 0));
                    e.1 += r.total();
                }
                let mut groups: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
                for (country, value) in per_order.values() {
                    let g = groups.entry(country.unwrap_or("(none)")).or_default();
                    g.0 += 1;
                    g.1 += value;
                }
                let mut rows: Vec<(&str, i64, i64, f64)> = groups
                    .into_iter()
                    .map(|(c, (n, sum))| (c, n, sum, round(sum as f64 / 100.0 / n as f64, 2)))
                    .collect();
                rows.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(b.0)));
                Table::new(
                    &["country", "orders", "revenue", "avg_order_value"],
                    rows.into_iter().map(|(c, n, sum, avg)| vec![Cell::text(c), Cell::Int(n), Cell::Money(sum), Cell::Float(avg)]).collect(),
                )
            }
            "How fresh the report is" => Table::new(
                &["source", "newest_commit", "applied_at", "apply_delay_ms", "age_seconds"],
                Source::ALL
                    .iter()
                    .map(|s| {
                        let (commit, applied) = fresh.sources[s].clone();
                        let secs = |r: &RangeInclusive<i64>| r.start().div_euclid(1000)..=r.end().div_euclid(1000);
                        let now = &fresh.now_ms;
                        vec![
                            Cell::text(s.name()),
                            Cell::DateTime(secs(&commit)),
                            Cell::DateTime(secs(&applied)),
                            Cell::IntIn(applied.start() - commit.end()..=applied.end() - commit.start()),
                            Cell::IntIn(
                                now.start().div_euclid(1000) - commit.end().div_euclid(1000)
                                    ..=now.end().div_euclid(1000) - commit.start().div_euclid(1000),
                            ),
                        ]
                    })
                    .collect(),
            ),
            _ => return None,
        })
    }
}

/// What the freshness query may show: per source the range of the newest commit time and of its apply time, and
/// the range of the server's clock while the query runs (all in ms since the epoch).
pub(crate) struct Freshness {
    pub(crate) sources: BTreeMap<Source, (RangeInclusive<i64>, RangeInclusive<i64>)>,
    pub(crate) now_ms: RangeInclusive<i64>,
}

/// One line of the report as the contract defines it.
#[derive(Debug, Clone)]
pub(crate) struct ReportLine {
    pub(crate) order: Order,
    pub(crate) user: Option<User>,
    pub(crate) product: Option<Product>,
    pub(crate) line: Line,
}

impl ReportLine {
    fn total(&self) -> i64 {
        self.line.unit_price * i64::from(self.line.quantity)
    }
}

#[derive(Default)]
struct Agg {
    order_ids: BTreeSet<u64>,
    units: i64,
    revenue: i64,
}

impl Agg {
    fn add(&mut self, r: &ReportLine) {
        self.order_ids.insert(r.order.id);
        self.units += i64::from(r.line.quantity);
        self.revenue += r.total();
    }

    fn orders(&self) -> Cell {
        Cell::Int(self.order_ids.len() as i64)
    }
}

/// ClickHouse's `round(x, n)` of a Float64: ties to even.
fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round_ties_even() / scale
}

/// Cents as a SQL decimal literal.
struct Cents(i64);

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{:02}", self.0.abs() / 100, self.0.abs() % 100)
    }
}

/// An expected value, compared with ClickHouse's text the way the column type requires: money in cents whatever the
/// padding (18.16 prints `12.50`, current releases `12.5`), floats to 1e-9, date-times and integers within a range.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Text(String),
    Int(i64),
    IntIn(RangeInclusive<i64>),
    Money(i64),
    Float(f64),
    /// `YYYY-MM-DD hh:mm:ss` within these seconds since the epoch.
    DateTime(RangeInclusive<i64>),
}

impl Cell {
    fn text(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    fn maybe(s: Option<String>) -> Cell {
        s.map_or(Cell::Null, Cell::Text)
    }

    fn matches(&self, got: &str) -> bool {
        match self {
            Cell::Null => got == "\\N",
            Cell::Text(t) => unescape(got) == *t,
            Cell::Int(i) => got.parse::<i64>().ok() == Some(*i),
            Cell::IntIn(r) => got.parse::<i64>().is_ok_and(|i| r.contains(&i)),
            Cell::Money(c) => cdc_views::model::parse_cents(got) == Some(*c),
            Cell::Float(x) => got.parse::<f64>().is_ok_and(|g| (g - x).abs() < 1e-9),
            Cell::DateTime(r) => parse_datetime(got).is_some_and(|s| r.contains(&s)),
        }
    }
}

/// Column names and rows.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Cell>>,
}

impl Table {
    fn new(columns: &[&str], rows: Vec<Vec<Cell>>) -> Table {
        Table { columns: columns.iter().map(|c| c.to_string()).collect(), rows }
    }

    /// Compares ClickHouse's `TabSeparatedWithNames` output with this table.
    pub(crate) fn check(&self, tsv: &str) -> Result<()> {
        let mut lines = tsv.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        ensure!(header == self.columns, "columns {header:?}, expected {:?}", self.columns);
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
        let describe = || format!("got:\n{tsv}\nexpected:\n{}", self.describe());
        if rows.len() != self.rows.len() {
            bail!("{} rows, expected {}\n{}", rows.len(), self.rows.len(), describe());
        }
        for (i, (got, want)) in rows.iter().zip(&self.rows).enumerate() {
            ensure!(got.len() == want.len(), "row {i} has {} cells, expected {}\n{}", got.len(), want.len(), describe());
            for (j, (g, w)) in got.iter().zip(want).enumerate() {
                ensure!(w.matches(g), "row {i}, column {}: {g:?} is not {w:?}\n{}", self.columns[j], describe());
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.rows.iter().map(|r| format!("{r:?}\n")).collect()
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// An order's creation time (`day`, `time` with milliseconds) in whole seconds since the epoch, as ClickHouse's
/// DateTime holds it.
pub(crate) fn seconds(day: &str, time: &str) -> i64 {
    parse_datetime(&format!("{day} {}", &time[..8])).expect("a valid time")
}

/// `YYYY-MM-DD hh:mm:ss` (UTC) in seconds since the epoch.
fn parse_datetime(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(' ')?;
    let d: Vec<i64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let t: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else { return None };
    // Days from civil (H. Hinnant).
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)] // benches include this module with cfg(test) but without the test harness
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(parse_datetime("1970-01-01 00:00:01"), Some(1));
        assert_eq!(parse_datetime("2026-12-01 00:00:00"), Some(1_796_083_200));
        assert_eq!(round(6.25, 1), 6.2);
        assert_eq!(Cents(-5).to_string(), "-0.05");
        assert!(Cell::Money(1250).matches("12.50") && Cell::Money(1250).matches("12.5"));
    }
}
