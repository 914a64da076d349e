//! The view service's write path for `report_lines` on a current ClickHouse release, in process through the PyPI
//! wheel `chdb-core` (as `current_clickhouse.rs`; the local stack runs ClickHouse 18.16).
//!
//! One chdb session holds the schema (`cdc_views::schema`'s migrations), the analytics data set as versioned rows of
//! the entity tables and the key indexes. The test then does what `Joiner::refresh` does, with the exact statements
//! of `cdc_views::join::sql`: the line states of every line and order of the data set and the lines a user and a
//! product reach, then their orders, users, products and live rows; `cdc_views::join::plan` turns them into rows,
//! which are inserted into `report_lines`, and `order_report` is checked row by row against the report computed
//! from the data set. Then:
//! - the same keys again (a redelivered batch), and the user and product alone (whose lines are read by id), plan
//!   no rows;
//! - an email change of that user plans a new row and a cancel for each line of the user's orders, and the report
//!   shows the new email; its redelivery plans no rows.
//!
//! Any statement current ClickHouse rejects, or a result that does not read into the row types, fails the test.
//!
//! The statements' results are read as `JSONCompactEachRow`: by position, as the clickhouse crate reads RowBinary
//! (their columns are not named after the fields). Session settings make 64-bit integers JSON numbers, decimals
//! quoted strings and date-times seconds since the epoch; the test converts `unit_price` (a decimal) to cents and
//! `created_at` (a quoted number) to an integer, the two places where JSON differs from RowBinary.
//!
//! Without `chdb` the test fails when `CI` is set and is skipped with a note elsewhere.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout};

use anyhow::{bail, ensure, Context, Result};
use cdc_views::join::{self, sql, LineState, Live, OrderState, ProductState, ReportRow, States, UserState};
use cdc_views::report::Keys;
use common::analytics::{DataSet, User, Write};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Answers one JSON request per line (`{"sql", "format"}`) with one JSON line: `{"result"}` or `{"error"}`.
const RUNNER: &str = r#"
import json, sys
try:
    from chdb import session
except ImportError as e:
    print(json.dumps({"missing": str(e)}), flush=True)
    sys.exit(0)
s = session.Session()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    st = json.loads(line)
    try:
        r = s.query(st["sql"], st["format"])
        print(json.dumps({"result": r.bytes().decode() if r is not None else ""}), flush=True)
    except Exception as e:
        print(json.dumps({"error": str(e)}), flush=True)
"#;

const DB: &str = "reporting";

/// Date-times as seconds since the epoch, as RowBinary has them (quoted in JSON).
const UNIX_TIME: &str = "SET date_time_output_format = 'unix_timestamp'";

/// This test's writer id in the rows it plans.
const WRITER: u64 = 77;

/// A chdb session in a Python process, one statement at a time.
struct Chdb {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Chdb {
    /// `None` when chdb is not installed (and `CI` is not set).
    fn start() -> Result<Option<Chdb>> {
        let mut child = common::chdb::spawn(RUNNER)?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut chdb = Chdb { child, stdin, stdout };
        let hello = chdb.reply()?;
        if let Some(missing) = hello.get("missing") {
            common::chdb::unavailable(missing)?;
            return Ok(None);
        }
        ensure!(hello.get("ready").is_some(), "unexpected runner greeting {hello}");
        Ok(Some(chdb))
    }

    fn reply(&mut self) -> Result<Value> {
        let mut line = String::new();
        ensure!(self.stdout.read_line(&mut line)? > 0, "the chdb runner exited");
        serde_json::from_str(&line).with_context(|| format!("runner output: {line}"))
    }

    /// Runs `sql` with output `format`; `what` names it in an error.
    fn query(&mut self, what: &str, sql: &str, format: &str) -> Result<String> {
        let stdin = self.stdin.as_mut().context("stdin")?;
        writeln!(stdin, "{}", json!({"sql": sql, "format": format}))?;
        stdin.flush()?;
        let reply = self.reply()?;
        if let Some(error) = reply.get("error") {
            bail!("current ClickHouse rejects {what}: {}\n{sql}", error.as_str().unwrap_or_default());
        }
        Ok(reply["result"].as_str().unwrap_or_default().to_owned())
    }

    fn execute(&mut self, what: &str, sql: &str) -> Result<()> {
        self.query(what, sql, "TabSeparated").map(drop)
    }

    /// The rows of `sql` read by position into `T`, after `fix` converted the cells JSON prints differently.
    fn rows<T: DeserializeOwned>(&mut self, what: &str, sql: &str, fix: impl Fn(&mut [Value]) -> Result<()>) -> Result<Vec<T>> {
        let out = self.query(what, sql, "JSONCompactEachRow")?;
        out.lines()
            .map(|line| {
                let mut cells: Vec<Value> = serde_json::from_str(line)?;
                fix(&mut cells)?;
                serde_json::from_value(Value::Array(cells)).with_context(|| format!("{what}: reading {line}"))
            })
            .collect()
    }
}

impl Drop for Chdb {
    fn drop(&mut self) {
        // End of input ends the runner.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn as_is(_: &mut [Value]) -> Result<()> {
    Ok(())
}

/// A quoted decimal (`12.5`) at `i` as cents.
fn cents_at(cells: &mut [Value], i: usize) -> Result<()> {
    let text = cells[i].as_str().with_context(|| format!("a decimal as a string, not {}", cells[i]))?;
    cells[i] = cdc_views::model::parse_cents(text).with_context(|| format!("a decimal of cents, not {text}"))?.into();
    Ok(())
}

/// A quoted integer (a DateTime as `unix_timestamp`) at `i` as a number.
fn integer_at(cells: &mut [Value], i: usize) -> Result<()> {
    let text = cells[i].as_str().with_context(|| format!("a quoted integer, not {}", cells[i]))?;
    cells[i] = text.parse::<u64>()?.into();
    Ok(())
}

fn line_states(ch: &mut Chdb, lines: &[u64], orders: &BTreeSet<u64>) -> Result<Vec<LineState>> {
    ch.rows("the line states", &sql::line_states(DB, lines, orders), |c| cents_at(c, 4))
}

/// The states `lines` join with, read as `Joiner::states` reads them.
fn states(ch: &mut Chdb, lines: Vec<LineState>) -> Result<States> {
    let orders: BTreeSet<u64> = lines.iter().map(|l| l.order_id).collect();
    let products: BTreeSet<u64> = lines.iter().map(|l| l.product_id).collect();
    let every_order: BTreeSet<u64> = lines.iter().flat_map(|l| l.orders.iter().copied()).collect();
    let users: Vec<UserState> = ch.rows("the users", &sql::users(DB, &orders), as_is)?;
    let order_states: Vec<OrderState> = ch.rows("the orders", &sql::orders(DB, &orders), |c| integer_at(c, 3))?;
    let product_states: Vec<ProductState> = ch.rows("the products", &sql::products(DB, &products), as_is)?;
    let live: Vec<Live> = ch.rows("the live rows", &sql::live(DB, &every_order, lines.iter().map(|l| l.id)), as_is)?;
    Ok(States {
        orders: order_states.into_iter().map(|o| (o.id, o)).collect(),
        users: users.into_iter().map(|u| (u.id, u)).collect(),
        products: product_states.into_iter().map(|p| (p.id, p)).collect(),
        lines,
        live,
    })
}

/// What `Joiner::refresh` does for `keys` (one writer, the data set fits one round each): the rows planned, each
/// round's inserted; and the lines reached through users and products.
fn refresh(ch: &mut Chdb, keys: &Keys) -> Result<(usize, BTreeSet<u64>)> {
    let lines: Vec<u64> = keys.lines.iter().copied().collect();
    let near = if lines.is_empty() && keys.orders.is_empty() { Vec::new() } else { line_states(ch, &lines, &keys.orders)? };
    let mut far = BTreeSet::new();
    for q in sql::reached_far(DB, keys) {
        let ids: Vec<(u64,)> = ch.rows("the lines reached through users and products", &q, as_is)?;
        far.extend(ids.into_iter().map(|(id,)| id));
    }
    let known: BTreeSet<u64> = near.iter().map(|l| l.id).collect();
    let rest: Vec<u64> = far.iter().copied().filter(|id| !known.contains(id)).collect();
    let mut written = 0;
    for round in [near, if rest.is_empty() { Vec::new() } else { line_states(ch, &rest, &BTreeSet::new())? }] {
        if round.is_empty() {
            continue;
        }
        let rows = join::plan(&states(ch, round)?, WRITER);
        if !rows.is_empty() {
            ch.execute("the planned rows", &insert(&rows))?;
        }
        written += rows.len();
    }
    Ok((written, far))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn nullable(s: &Option<String>) -> String {
    s.as_deref().map_or("NULL".into(), quote)
}

fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// The INSERT of `rows` into `report_lines`, columns named (those of `report::COLUMNS`, then the row's version,
/// writer, deleted flag and sign, the order of [`ReportRow`]'s fields).
fn insert(rows: &[ReportRow]) -> String {
    let mut columns: Vec<&str> = cdc_views::report::COLUMNS.iter().map(|(name, _)| *name).collect();
    columns.extend(["version", "writer", "deleted", "sign"]);
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                r.order_id,
                r.line_id,
                quote(&r.order_status),
                r.order_created_at,
                r.user_id,
                nullable(&r.user_email),
                nullable(&r.user_name),
                nullable(&r.user_country),
                r.product_id,
                nullable(&r.product_sku),
                nullable(&r.product_name),
                nullable(&r.product_category),
                r.quantity,
                decimal(r.unit_price),
                decimal(r.line_total),
                r.version,
                r.writer,
                r.deleted,
                r.sign
            )
        })
        .collect();
    format!("INSERT INTO {DB}.report_lines ({}) VALUES {}", columns.join(", "), values.join(", "))
}

/// Every line ever written that `user`'s orders (any order ever of that user) or `product` reach.
fn reached(data: &DataSet, user: u64, product: u64) -> BTreeSet<u64> {
    let orders: BTreeSet<u64> = data.writes().filter_map(|w| if let Write::Order(o) = w { (o.user_id == user).then_some(o.id) } else { None }).collect();
    data.writes()
        .filter_map(|w| if let Write::Line(l) = w { (orders.contains(&l.order_id) || l.product_id == product).then_some(l.id) } else { None })
        .collect()
}

fn check_report(ch: &mut Chdb, data: &DataSet, what: &str) -> Result<()> {
    let lines_ever = data.keys().lines.len();
    let live = ch.query(what, &format!("SELECT sum(sign) FROM {DB}.report_lines"), "TabSeparated")?;
    ensure!(live.trim() == lines_ever.to_string(), "{what}: {live:?} live rows, expected one per line ever written ({lines_ever})");
    // The expected table holds date-times as text.
    ch.execute("a session setting", "SET date_time_output_format = 'simple'")?;
    let report = ch.query(what, &format!("SELECT * FROM {DB}.order_report ORDER BY line_id"), "TabSeparatedWithNames")?;
    ch.execute("a session setting", UNIX_TIME)?;
    data.report_table().check(&report).with_context(|| format!("{what} on current ClickHouse"))
}

#[test]
fn the_joins_point_reads_and_plan_run_on_current_clickhouse() -> Result<()> {
    let Some(mut ch) = Chdb::start()? else { return Ok(()) };
    let mut data = DataSet::new();
    for setting in [
        // As `Joiner::fetch` sets them.
        "SET max_query_size = 67108864",
        "SET max_ast_elements = 10000000",
        "SET max_expanded_ast_elements = 10000000",
        // JSON output the row types read (module doc).
        "SET output_format_json_quote_64bit_integers = 0",
        "SET output_format_json_quote_decimals = 1",
        UNIX_TIME,
    ] {
        ch.execute("a session setting", setting)?;
    }
    for m in cdc_views::schema::migrations(DB) {
        for sql in &m.statements {
            ch.execute(&format!("migration {}", m.version), sql)?;
        }
    }
    for sql in data.entity_inserts(DB) {
        ch.execute("an insert into an entity table", &sql)?;
    }
    for object in cdc_views::schema::objects(DB) {
        if object.name.starts_with("lines_by") || object.name == "orders_by_user" {
            for sql in object.refill {
                ch.execute("a key index's refill", &sql)?;
            }
        }
    }
    ch.execute("emptying report_lines (the migration filled it server-side)", &format!("TRUNCATE TABLE {DB}.report_lines"))?;

    // A batch with every line and order of the data set, a user whose email changed and a renamed product.
    let (user, product) = (5, 2);
    let every = data.keys();
    let keys = Keys { lines: every.lines.clone(), orders: every.orders.clone(), users: [user].into(), products: [product].into(), all: false };
    let expected_far = reached(&data, user, product);
    ensure!(!expected_far.is_empty(), "user {user} and product {product} reach no line");
    let (written, far) = refresh(&mut ch, &keys)?;
    ensure!(far == expected_far, "lines reached through user {user} and product {product}: {far:?}, expected {expected_far:?}");
    ensure!(written == every.lines.len(), "{written} rows planned for {} lines without rows", every.lines.len());
    check_report(&mut ch, &data, "the report written from the planned rows")?;

    // Redelivery, and a batch of the user and the product alone: every line up to date.
    for (what, keys) in [("the same keys again", keys.clone()), ("the user and the product alone", Keys { users: [user].into(), products: [product].into(), ..Keys::default() })] {
        let (written, far) = refresh(&mut ch, &keys)?;
        ensure!(far == expected_far, "{what}: lines reached {far:?}, expected {expected_far:?}");
        ensure!(written == 0, "{what}: {written} rows planned, expected none");
    }
    check_report(&mut ch, &data, "the report after batches that change nothing")?;

    // An email change of the user: a new row and a cancel per line of the user's orders.
    let changed = User { email: "customer5@example.net".into(), ..data.state().users[&user].clone() };
    let version = data.writes().count() + 1;
    ch.execute(
        "the email change",
        &format!(
            "INSERT INTO {DB}.users_state VALUES ({user}, {}, {}, {}, {}, {version}, 0)",
            quote(&changed.email),
            quote(&changed.name),
            quote(changed.country.unwrap_or("")),
            u8::from(changed.country.is_some())
        ),
    )?;
    data.transactions.push(vec![Write::User(changed)]);
    let user_keys = Keys { users: [user].into(), ..Keys::default() };
    let user_lines = reached(&data, user, 0);
    for (what, want) in [("the email change", 2 * user_lines.len()), ("the email change again", 0)] {
        let (written, far) = refresh(&mut ch, &user_keys)?;
        ensure!(far == user_lines, "{what}: lines reached {far:?}, expected {user_lines:?}");
        ensure!(written == want, "{what}: {written} rows planned, expected {want}");
        check_report(&mut ch, &data, &format!("the report after {what}"))?;
    }
    println!("the join's reads and plan on current ClickHouse (chdb): {} lines written, {} reached through user {user} and product {product}, redeliveries wrote nothing", every.lines.len(), far.len());
    Ok(())
}
