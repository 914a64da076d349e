//! The reporting schema and the analytics guide on a current ClickHouse release, in process through the PyPI wheel
//! `chdb-core` (`pip install chdb-core`; `scripts/test` installs it). The local stack runs ClickHouse 18.16, so this
//! is what keeps the DDL and the guide's queries working on the versions deployments run (docker-compose.yml).
//!
//! One chdb session runs the exact statements of `cdc_views::schema` (its migrations twice, as after a crash before
//! they were recorded, and the statements that recreate dropped objects), the analytics data set as versioned rows
//! of the entity tables, the view service's recomputation of `report_lines` from every key (twice: the second writes
//! nothing), and every SQL block of `docs/analytics.md` as written; any error fails the test, and every result is
//! compared with the values computed from the data set. It also checks the report row by row and the effect of
//! truncates.
//!
//! Without `chdb` the test fails when `CI` is set and is skipped with a note elsewhere.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{bail, ensure, Context, Result};
use cdc_common::now_ms;
use common::analytics::{self, Cell, DataSet, Freshness, Source, Table};
use serde_json::{json, Value};

/// Runs statements in one chdb session; prints `{"version", "results"}` or `{"failed", "error"}` as JSON.
const RUNNER: &str = r#"
import json, sys
try:
    from chdb import session
except ImportError as e:
    print(json.dumps({"missing": str(e)}))
    sys.exit(0)
s = session.Session()
out = []
for i, st in enumerate(json.load(sys.stdin)):
    try:
        r = s.query(st["sql"], st["format"])
        out.append(r.bytes().decode() if r is not None else "")
    except Exception as e:
        print(json.dumps({"failed": i, "error": str(e)}))
        sys.exit(0)
print(json.dumps({"results": out}))
"#;

struct Statement {
    sql: String,
    /// Whether the result has a header line (`TabSeparatedWithNames`).
    names: bool,
    /// What the result must be; `None` for statements without output.
    expect: Option<Table>,
    what: String,
}

fn run(statements: &[Statement]) -> Result<Option<Vec<String>>> {
    let mut child = common::chdb::spawn(RUNNER)?;
    let input: Vec<Value> = statements
        .iter()
        .map(|s| json!({"sql": s.sql, "format": if s.names { "TabSeparatedWithNames" } else { "TabSeparated" }}))
        .collect();
    child.stdin.take().context("stdin")?.write_all(serde_json::to_string(&input)?.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "{} exited with {}", common::chdb::python(), out.status);
    let reply: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("runner output: {}", String::from_utf8_lossy(&out.stdout)))?;
    if let Some(missing) = reply.get("missing") {
        common::chdb::unavailable(missing)?;
        return Ok(None);
    }
    if let Some(i) = reply.get("failed").and_then(Value::as_u64) {
        let s = &statements[i as usize];
        bail!("current ClickHouse rejects {}: {}\n{}", s.what, reply["error"].as_str().unwrap_or_default(), s.sql);
    }
    let results: Vec<String> = serde_json::from_value(reply["results"].clone())?;
    ensure!(results.len() == statements.len(), "{} results for {} statements", results.len(), statements.len());
    Ok(Some(results))
}

#[test]
fn schema_and_analytics_queries_run_on_current_clickhouse() -> Result<()> {
    let data = DataSet::new();
    let queries = analytics::doc_queries()?;
    analytics::check_coverage(&queries)?;
    let plain = |what: &str, sql: String| Statement { sql, names: false, expect: None, what: what.to_owned() };
    let mut statements: Vec<Statement> = Vec::new();

    // The schema as the view service migrates to it, twice (as after a crash before the migration was recorded),
    // and the statements that recreate dropped objects.
    for round in ["", " (again)"] {
        for m in cdc_views::schema::migrations("reporting") {
            for sql in m.statements {
                statements.push(plain(&format!("migration {}{round}", m.version), sql));
            }
        }
    }
    for object in cdc_views::schema::objects("reporting") {
        statements.push(plain("the statement recreating a dropped object", object.create));
    }
    for sql in data.entity_inserts("reporting") {
        statements.push(plain("an insert into an entity table", sql));
    }
    // The key indexes as the view service writes them, then the report rows recomputed from every key, twice: the
    // second computation finds every line up to date and writes nothing.
    for object in cdc_views::schema::objects("reporting") {
        if object.name.starts_with("lines_by") || object.name == "orders_by_user" {
            statements.extend(object.refill.into_iter().map(|sql| plain("a key index's refill", sql)));
        }
    }
    let keys = data.keys();
    let lines_ever = keys.lines.len() as i64;
    for round in ["", " (again)"] {
        statements.push(plain(&format!("the recomputation of every key{round}"), cdc_views::report::recompute("reporting", &keys)));
    }
    statements.push(Statement {
        sql: "SELECT count() AS rows, sum(sign) AS live FROM reporting.report_lines".into(),
        names: true,
        expect: Some(Table { columns: vec!["rows".into(), "live".into()], rows: vec![vec![Cell::Int(lines_ever), Cell::Int(lines_ever)]] }),
        what: "report_lines after two recomputations".into(),
    });
    // Freshness: two applied batches per source; the newest commit wins.
    let base = 1_796_083_200_000i64; // 2026-12-01 00:00:00 UTC
    let mut sources = BTreeMap::new();
    let mut rows = Vec::new();
    for (i, source) in Source::ALL.into_iter().enumerate() {
        let commit = base + 60_000 * i as i64 + 999;
        let applied = commit + 150 + i as i64;
        rows.push(format!("('{}', {}, {})", source.name(), commit - 30_000, commit - 29_000));
        rows.push(format!("('{}', {commit}, {applied})", source.name()));
        sources.insert(source, (commit..=commit, applied..=applied));
    }
    statements.push(plain("the freshness log", format!("INSERT INTO reporting.freshness_log VALUES {}", rows.join(", "))));

    statements.push(Statement {
        sql: "SELECT * FROM reporting.order_report ORDER BY line_id".into(),
        names: true,
        expect: Some(data.report_table()),
        what: "the whole report".into(),
    });
    let first_query = statements.len();
    let started = now_ms();
    for q in &queries {
        statements.push(Statement { sql: q.sql.clone(), names: true, expect: None, what: format!("the guide's query `{}`", q.name) });
    }

    // Truncates: every entity truncated after the whole history leaves an empty report; a newer order and line
    // survive it and join to nothing.
    let writes = data.writes().count() as u64;
    let migrations = cdc_views::schema::migrations("truncated").into_iter().flat_map(|m| m.statements);
    for sql in migrations.chain(data.entity_inserts("truncated")) {
        statements.push(plain("the truncate scenario's setup", sql));
    }
    statements.push(plain("the recomputation", cdc_views::report::recompute_range("truncated", 0, u64::MAX)));
    for table in ["users_state", "products_state", "orders_state", "lines_state"] {
        statements.push(plain("the view service's truncate", cdc_views::schema::truncate("truncated", table, writes + 1)));
    }
    statements.push(plain("the recomputation after truncates", cdc_views::report::recompute_range("truncated", 0, u64::MAX)));
    let count = |what: &str, n: i64| Statement {
        sql: "SELECT count() AS lines, countIf(user_email IS NULL AND product_name IS NULL) AS without_dimensions FROM truncated.order_report".into(),
        names: true,
        expect: Some(Table { columns: vec!["lines".into(), "without_dimensions".into()], rows: vec![vec![Cell::Int(n), Cell::Int(n)]] }),
        what: what.into(),
    };
    statements.push(count("the report after truncates", 0));
    let v = writes + 2;
    statements.push(plain(
        "an order after the truncate",
        format!("INSERT INTO truncated.orders_state VALUES (1, 1, 'CONFIRMED', 10, '2026-12-01 10:00:00', {v}, 0)"),
    ));
    statements.push(plain(
        "a line after the truncate",
        format!("INSERT INTO truncated.lines_state VALUES (1, 1, 1, 1, 10.00, {v}, 0)"),
    ));
    statements.push(plain("the index pair of the new line", "INSERT INTO truncated.lines_by_order VALUES (1, 1)".into()));
    let new_line = cdc_views::report::Keys { lines: [1].into(), orders: [1].into(), ..Default::default() };
    statements.push(plain("the recomputation of the new order and line", cdc_views::report::recompute("truncated", &new_line)));
    statements.push(count("the report after a newer order", 1));

    let Some(results) = run(&statements)? else { return Ok(()) };
    let fresh = Freshness { sources, now_ms: started..=now_ms() };
    for (i, (statement, result)) in statements.iter().zip(&results).enumerate() {
        let expect = if (first_query..first_query + queries.len()).contains(&i) {
            let q = &queries[i - first_query];
            data.expected(&q.name, &fresh).with_context(|| format!("no expected result for `{}`", q.name))?
        } else if let Some(t) = &statement.expect {
            t.clone()
        } else {
            continue;
        };
        expect.check(result).with_context(|| format!("{} on current ClickHouse", statement.what))?;
        if (first_query..first_query + queries.len()).contains(&i) {
            println!("{}:\n{result}", statement.what);
        }
    }
    println!("{} statements on current ClickHouse (chdb): the schema, {} guide queries and truncates as expected", statements.len(), queries.len());
    Ok(())
}
