//! Decode only, from recorded binlog events: binlog events to envelope JSON records on one core, no stack needed.
//!
//! ```sh
//! CDC_BENCH_EVENTS=/tmp/bench.binlog cargo bench -p cdc-capture --bench throughput   # records the load once
//! cargo bench -p cdc-capture --bench decode -- /tmp/bench.binlog [runs]
//! valgrind --tool=callgrind target/release/deps/decode-* /tmp/bench.binlog 1          # instruction profile
//! ```
//!
//! Prints the best of `runs` (default 5) runs and what the records add up to, so runs can be compared. With
//! `CDC_BENCH_DUMP=<file>` it also writes every record (`topic<TAB>key<TAB>value` per line) there, to compare the
//! bytes of two builds.

use std::io::Write as _;
use std::time::Instant;

use anyhow::{Context, Result};
use cdc_capture::config::TableFilter;
use cdc_capture::decode::ServerFlavor;
use cdc_capture::position::{BinlogPosition, GtidSet};
use cdc_capture::transform::Transformer;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::BinlogFile;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let Some(path) = args.first() else {
        println!("decode: no recorded events given (record them with CDC_BENCH_EVENTS=<file> and the throughput bench)");
        return Ok(());
    };
    let runs: usize = args.get(1).map_or(Ok(5), |r| r.parse()).context("runs")?;
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(std::path::Path::new(path).with_extension("json"))?)?;
    let db = meta["db"].as_str().context("db")?;
    let start = BinlogPosition::new(meta["file"].as_str().context("file")?, meta["pos"].as_u64().context("pos")?);
    let file = BinlogFile::new(BinlogVersion::Version4, std::io::BufReader::new(std::fs::File::open(path)?))?;
    let events = file.collect::<Result<Vec<_>, _>>()?;
    let filter = TableFilter::new(vec![format!("{db}.*")], vec![]).map_err(anyhow::Error::msg)?;
    let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
    let (mut rows, mut messages, mut bytes) = (0, 0, 0);
    for _ in 0..runs {
        let mut t = Transformer::new("bench", "bench", filter.clone(), true, &start, GtidSet::default(), ServerFlavor::MariaDb);
        let mut out = Vec::with_capacity(260_000);
        let (began, cpu) = (Instant::now(), thread_cpu_s());
        for e in &events {
            t.handle(e, &mut out)?;
        }
        best = best.min(began.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(thread_cpu_s() - cpu);
        rows = out.iter().filter(|r| r.value.is_some()).count();
        messages = out.len();
        bytes = out.iter().map(|r| r.value.as_ref().map_or(0, Vec::len) + r.key.as_ref().map_or(0, Vec::len)).sum::<usize>();
    }
    if let Ok(dump) = std::env::var("CDC_BENCH_DUMP") {
        let mut t = Transformer::new("bench", "bench", filter.clone(), true, &start, GtidSet::default(), ServerFlavor::MariaDb);
        let mut out = Vec::new();
        for e in &events {
            t.handle(e, &mut out)?;
        }
        let mut w = std::io::BufWriter::new(std::fs::File::create(dump)?);
        for r in &out {
            let text = |b: &Option<Vec<u8>>| b.as_deref().map_or("-".into(), String::from_utf8_lossy).into_owned();
            writeln!(w, "{}\t{}\t{}", r.topic, text(&r.key), text(&r.value))?;
        }
        w.flush()?;
    }
    println!(
        "decode only: {} events -> {rows} row events, {messages} messages, {bytes} bytes; best of {runs}: {best:.3} s = {:.0} row events/s; on CPU {best_cpu:.3} s = {:.0} row events/s",
        events.len(),
        rows as f64 / best,
        rows as f64 / best_cpu
    );
    Ok(())
}

/// Time this thread has spent on a CPU, in seconds (`/proc/thread-self/schedstat`; 0 where it is missing).
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()))
        .map_or(0.0, |ns| ns / 1e9)
}
