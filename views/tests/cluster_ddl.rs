//! The cluster form of the reporting schema (`clickhouse_cluster`, `cdc_views::cluster`) parses on both ClickHouse
//! versions the project runs on. There is no cluster (nor ZooKeeper) here, so this is a parse check, not a run:
//!
//! - ClickHouse 18.16 (the local stack): every rewritten statement is sent with a cluster name no server defines.
//!   18.16 parses the whole statement first and then refuses the unknown cluster (code 170), so anything but that
//!   error (a syntax error is code 62) fails the test, and nothing is created.
//! - Current ClickHouse (26.9 through chdb, as in `current_clickhouse.rs`): `EXPLAIN AST` of every statement, and
//!   each table's AST names its Replicated engine. Without chdb it fails under `CI` and is skipped elsewhere.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use cdc_views::cluster::{Cluster, DEFAULT_REPLICA_NAME, DEFAULT_ZOOKEEPER_PATH};

fn rewritten(cluster: &str) -> Result<Vec<String>> {
    let cluster = Cluster {
        name: cluster.into(),
        zookeeper_path: DEFAULT_ZOOKEEPER_PATH.into(),
        replica_name: DEFAULT_REPLICA_NAME.into(),
    };
    let database = cdc_tests::unique_name("cluster_ddl");
    Ok(cluster.rewrite_all(&cdc_views::schema::ddl(&database), &database)?)
}

#[tokio::test]
async fn the_cluster_schema_parses_on_clickhouse_18() -> Result<()> {
    let missing = cdc_tests::unique_name("no_such_cluster");
    let statements = rewritten(&missing)?;
    let client = clickhouse::Client::default().with_url(cdc_tests::stack().var("CLICKHOUSE_URL")).with_validation(false);
    for sql in &statements {
        match client.query(sql).execute().await {
            Ok(()) => bail!("ran without a cluster (a cluster named {missing} exists?): {sql}"),
            Err(e) => {
                let e = e.to_string();
                ensure!(
                    e.contains("Code: 170") && e.contains(&format!("cluster '{missing}' not found")),
                    "ClickHouse 18.16 did not parse the statement: {e}\n{sql}"
                );
            }
        }
    }
    println!("{} statements parsed by ClickHouse 18.16 (each refused only for its unknown cluster)", statements.len());
    Ok(())
}

/// `EXPLAIN AST` of each statement in one chdb session; prints `{"results"}`, `{"failed", "error"}` or `{"missing"}`.
const RUNNER: &str = r#"
import json, sys
try:
    from chdb import session
except ImportError as e:
    print(json.dumps({"missing": str(e)}))
    sys.exit(0)
s = session.Session()
out = []
for i, sql in enumerate(json.load(sys.stdin)):
    try:
        out.append(s.query("EXPLAIN AST " + sql, "TSV").bytes().decode())
    except Exception as e:
        print(json.dumps({"failed": i, "error": str(e)}))
        sys.exit(0)
print(json.dumps({"results": out}))
"#;

#[test]
fn the_cluster_schema_parses_on_current_clickhouse() -> Result<()> {
    let statements = rewritten("reporting")?;
    let python = std::env::var("CDC_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", RUNNER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {python}"))?;
    child.stdin.take().context("stdin")?.write_all(serde_json::to_string(&statements)?.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "{python} exited with {}", out.status);
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    if let Some(missing) = reply.get("missing") {
        let advice = format!("chdb is not importable by {python} ({missing}); install it with `pip install chdb-core`");
        ensure!(std::env::var_os("CI").is_none(), "{advice}: CI requires this check");
        eprintln!("note: {advice}; skipping");
        return Ok(());
    }
    if let Some(i) = reply.get("failed").and_then(serde_json::Value::as_u64) {
        bail!("current ClickHouse does not parse {}: {}", statements[i as usize], reply["error"]);
    }
    let asts: Vec<String> = serde_json::from_value(reply["results"].clone())?;
    ensure!(asts.len() == statements.len(), "{} answers for {} statements", asts.len(), statements.len());
    for (sql, ast) in statements.iter().zip(&asts) {
        if sql.starts_with("CREATE TABLE") {
            ensure!(
                ["ReplacingMergeTree", "CollapsingMergeTree", "MergeTree"]
                    .iter()
                    .any(|e| ast.contains(&format!("Function Replicated{e} "))),
                "{sql}\n{ast}"
            );
            ensure!(ast.contains("/clickhouse/tables/{shard}/"), "{sql}\n{ast}");
        }
    }
    println!("{} statements parsed by current ClickHouse (chdb)", statements.len());
    Ok(())
}
