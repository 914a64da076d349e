//! `capture replay --format none` over a 1,000,000-row window, printed as figures (not a timed test). Needs the
//! local stack (it runs `scripts/stack up`).
//!
//! `cargo bench -p cdc-capture --bench replay` loads 1,000,000 row changes into a scratch database of the USERS
//! server (500,000 inserts, 300,000 updates, 200,000 deletes, in 1,000-row statements, mixed column types), then
//! runs the capture binary's `replay --format none` over exactly that window three times, and once with
//! `--format json` into /dev/null. For each run it prints the wall-clock time, the CPU time of the process (user +
//! system, from `/usr/bin/time`; on a shared machine the wall clock also counts waiting for a core, the CPU time is
//! what one core needs), the rates of both and the peak RSS. `CDC_BENCH_ROWS` changes the number of row changes
//! (a multiple of 10,000).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use cdc_tests::{stack, ScratchDb};
use mysql_async::prelude::*;

const TABLE: &str = "CREATE TABLE bench (
  id BIGINT UNSIGNED PRIMARY KEY, name VARCHAR(64) NOT NULL, price DECIMAL(12,2) NOT NULL, qty INT NOT NULL,
  created DATETIME(3) NOT NULL, flag TINYINT NOT NULL, note TEXT, amount DOUBLE)";

async fn master_status(conn: &mut mysql_async::Conn) -> Result<String> {
    let row: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await?.context("binlog on")?;
    Ok(format!("{}:{}", row.get::<String, _>(0).context("file")?, row.get::<u64, _>(1).context("pos")?))
}

/// Loads `rows` row changes: half inserts, 30% updates, 20% deletes. Returns the window.
async fn load(db: &ScratchDb, rows: u64) -> Result<(String, String)> {
    db.exec(TABLE).await?;
    let mut conn = db.pool.get_conn().await?;
    let from = master_status(&mut conn).await?;
    let began = Instant::now();
    let inserts = rows / 2;
    for t in 0..inserts / 1000 {
        let values: Vec<String> = (t * 1000 + 1..=t * 1000 + 1000)
            .map(|id| {
                format!(
                    "({id}, 'product name {id}', {}.{:02}, {}, '2024-01-02 03:04:05.678', {}, 'note {id}', {id}.5)",
                    id % 1000,
                    id % 100,
                    id % 50,
                    id % 2
                )
            })
            .collect();
        conn.query_drop(format!("INSERT INTO bench VALUES {}", values.join(","))).await?;
    }
    for t in 0..rows * 3 / 10 / 1000 {
        let (lo, hi) = (t * 1000 + 1, t * 1000 + 1000);
        conn.query_drop(format!("UPDATE bench SET qty = qty + 1, note = 'updated' WHERE id BETWEEN {lo} AND {hi}")).await?;
    }
    for t in 0..rows * 2 / 10 / 1000 {
        let (lo, hi) = (inserts - (t + 1) * 1000 + 1, inserts - t * 1000);
        conn.query_drop(format!("DELETE FROM bench WHERE id BETWEEN {lo} AND {hi}")).await?;
    }
    let to = master_status(&mut conn).await?;
    println!("loaded {rows} row changes in {:.1} s: window {from} .. {to}", began.elapsed().as_secs_f64());
    Ok((from, to))
}

/// One run of the replay: (wall s, cpu s, peak RSS MB, last line).
fn run(url: &str, from: &str, to: &str, format: &str) -> Result<(f64, f64, f64, String)> {
    let report = std::env::temp_dir().join(format!("cdc-replay-bench-{}.time", std::process::id()));
    let began = Instant::now();
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "%U %S %M", "-o"])
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_capture"))
        .args(["replay", "--source-url", url, "--from", from, "--to", to, "--format", format])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running /usr/bin/time capture replay")?;
    // The JSON output is read and dropped as it comes (it is about a gigabyte): only the last line is kept.
    let mut last = String::new();
    for line in BufReader::with_capacity(1 << 20, child.stdout.take().context("stdout")?).lines() {
        last = line?;
    }
    let out = child.wait_with_output()?;
    let wall = began.elapsed().as_secs_f64();
    ensure!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    let times = std::fs::read_to_string(&report)?;
    let fields: Vec<f64> = times.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    ensure!(fields.len() == 3, "unexpected /usr/bin/time output {times:?}");
    Ok((wall, fields[0] + fields[1], fields[2] / 1024.0, last))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let rows: u64 = std::env::var("CDC_BENCH_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(1_000_000);
    ensure!(rows.is_multiple_of(10_000) && rows > 0, "CDC_BENCH_ROWS must be a multiple of 10000");
    let _ = stack();
    let db = ScratchDb::create("USERS", "replaybench").await?;
    let (from, to) = load(&db, rows).await?;
    let url = db.capture_url();
    println!("| run | row changes | wall | CPU (user+sys) | rows/s wall | rows/s CPU | peak RSS |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, format) in ["none", "none", "none", "json"].iter().enumerate() {
        let (wall, cpu, rss, last) = run(&url, &from, &to, format)?;
        let counted: u64 = last
            .strip_prefix("rows=")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse().ok())
            .context("the last line")?;
        ensure!(counted == rows, "replay counted {counted} rows, {rows} were written: {last}");
        println!(
            "| {} `--format {format}` | {counted} | {wall:.2} s | {cpu:.2} s | {:.0} | {:.0} | {rss:.1} MB |",
            i + 1,
            counted as f64 / wall,
            counted as f64 / cpu.max(0.001),
        );
        println!("|   last line: `{last}` | | | | | | |");
    }
    db.drop_db().await?;
    Ok(())
}
