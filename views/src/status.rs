//! `views status`: the view service's `GET /status` as tables in a terminal.
//!
//! [`Status`] mirrors the JSON the service answers ([`crate::http`]); every struct is `#[serde(default)]`, so an
//! older or newer service that lacks or adds a field still prints what it has. [`render`] is pure (parsed JSON in,
//! text out) and [`Status::verdict`] decides the exit code; [`fetch`] is the only I/O: one GET (reqwest).
//!
//! Times are printed in UTC, durations in the largest unit that keeps them short (`812 ms`, `3.4 s`, `2 min 05 s`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;

/// The whole answer of `GET /status`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The service's wall clock when it answered (ms since the Unix epoch).
    pub now_ms: i64,
    /// Whether the service can do its work.
    pub health: Health,
    /// End-to-end lag per capture source (the `/lag` object).
    pub lag: Lag,
    /// Events applied.
    pub throughput: Throughput,
    /// Messages not yet consumed, per topic and partition.
    pub consumer_lag: Vec<ConsumerLag>,
    /// `reporting.freshness`: per source, the newest commit applied and when.
    pub freshness: Vec<Freshness>,
    /// Why `freshness` could not be read, if it could not. Not in the contract's example; shown when present.
    pub freshness_error: Option<String>,
    /// Samples of lag and events applied over the last 15 minutes, oldest first.
    pub history: History,
}

/// The service's health, tagged by `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Health {
    /// Consuming and applying.
    Ok,
    /// Cannot do its work (e.g. ClickHouse unreachable).
    Unavailable {
        /// What is wrong.
        #[serde(default)]
        reason: String,
    },
    /// Missing, or a status this client does not know; counts as unhealthy.
    #[default]
    #[serde(other)]
    Unknown,
}

/// `GET /lag`: end-to-end lag per source.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Lag {
    /// The service's wall clock when it answered (ms).
    pub now_ms: i64,
    /// True only if every source is caught up (false when no source is configured).
    pub caught_up: bool,
    /// One entry per capture source.
    pub sources: Vec<SourceLag>,
    /// Problems that concern no single source (e.g. no source configured). Not in the contract's example; shown
    /// when present.
    pub errors: Vec<String>,
}

/// The lag of one capture source.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SourceLag {
    /// Capture source name (`users`, `catalog`, `orders`).
    pub source: String,
    /// End-to-end lag (ms); `None` until anything is known for the source.
    pub lag_ms: Option<i64>,
    /// Everything the source had committed when asked is applied.
    pub caught_up: bool,
    /// The newest binlog position whose changes are applied.
    pub applied: Option<AppliedPosition>,
    /// The source's binlog position at request time (`SHOW MASTER STATUS`).
    pub current: Option<BinlogPosition>,
    /// Why the source could not be asked, if it could not.
    pub error: Option<String>,
}

/// A binlog position whose changes are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AppliedPosition {
    /// Binlog file name; `None` until the service knows a position of the source as applied (it may know the
    /// commit time of changes before that).
    pub file: Option<String>,
    /// Byte offset in the file.
    pub pos: Option<u64>,
    /// Commit time of the newest applied change at this position (ms).
    pub commit_ms: Option<i64>,
    /// When the service learnt that this position is applied (ms).
    pub as_of_ms: Option<i64>,
}

/// A binlog position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BinlogPosition {
    /// Binlog file name.
    pub file: String,
    /// Byte offset in the file.
    pub pos: u64,
}

/// Events applied.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Throughput {
    /// Change events applied since the service started.
    pub events_total: u64,
    /// Rate over the last ~10 s.
    pub events_per_s: f64,
}

/// Unconsumed messages of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConsumerLag {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Messages between the committed offset and the end of the partition; `None` when unknown.
    pub messages: Option<i64>,
}

/// The freshness of one source in `reporting.freshness`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Freshness {
    /// Capture source name.
    pub source: String,
    /// Commit time of the newest change applied (ms).
    pub newest_commit_ms: Option<i64>,
    /// When that change was applied (ms).
    pub applied_at_ms: Option<i64>,
}

/// Samples taken every `step_ms`, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct History {
    /// Time between samples (ms).
    pub step_ms: i64,
    /// The samples.
    pub samples: Vec<Sample>,
}

/// One sample of the history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Sample {
    /// When it was taken (ms).
    pub at_ms: i64,
    /// Lag per source (ms), `None` while unknown.
    pub lag_ms: BTreeMap<String, Option<i64>>,
    /// Events applied so far.
    pub events_total: u64,
}

/// What a status means for whoever runs `views status` (and its exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy, and every source is caught up: exit code 0.
    CaughtUp,
    /// Unhealthy or not caught up: exit code 1.
    Behind,
}

impl Status {
    /// [`Verdict::CaughtUp`] only if the service is healthy and says every source is caught up.
    pub fn verdict(&self) -> Verdict {
        if self.health == Health::Ok && self.lag.caught_up {
            Verdict::CaughtUp
        } else {
            Verdict::Behind
        }
    }
}

impl Verdict {
    /// The process exit code: 0 caught up, 1 behind or unhealthy.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::CaughtUp => 0,
            Verdict::Behind => 1,
        }
    }
}

/// The status as text: a summary line, then tables of sources, throughput, consumer lag, freshness and health.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let overall = match status.verdict() {
        Verdict::CaughtUp => "CAUGHT UP",
        Verdict::Behind if status.health != Health::Ok => "UNHEALTHY",
        Verdict::Behind => "NOT CAUGHT UP",
    };
    let max_lag = status.lag.sources.iter().filter_map(|s| s.lag_ms).max();
    let _ = writeln!(
        out,
        "{overall}   caught up: {}   health: {}   max lag: {}   at {}",
        yes_no(status.lag.caught_up),
        health_word(&status.health),
        max_lag.map_or_else(|| "-".to_owned(), duration),
        timestamp(status.now_ms),
    );

    out.push_str("\nSOURCES\n");
    if status.lag.sources.is_empty() {
        out.push_str("no source configured\n");
    } else {
        let mut table = Table::new(&["source", "lag", "caught up", "applied", "current", "behind", "error"], &[1]);
        for s in &status.lag.sources {
            table.row(vec![
                s.source.clone(),
                s.lag_ms.map_or_else(|| "-".to_owned(), duration),
                yes_no(s.caught_up).to_owned(),
                s.applied.as_ref().and_then(applied_position).unwrap_or_else(|| "-".to_owned()),
                s.current.as_ref().map_or_else(|| "-".to_owned(), |c| position(&c.file, c.pos)),
                behind(s.applied.as_ref(), s.current.as_ref()).unwrap_or_else(|| "-".to_owned()),
                s.error.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        out.push_str(&table.render());
    }
    for e in &status.lag.errors {
        let _ = writeln!(out, "note: {}", e.replace(['\n', '\r'], " "));
    }

    out.push_str("\nTHROUGHPUT\n");
    let mut table = Table::new(&["events/s", "events applied", "over the last 15 min"], &[0, 1, 2]);
    table.row(vec![
        format!("{:.1}", status.throughput.events_per_s),
        thousands(status.throughput.events_total),
        history_events(&status.history).map_or_else(|| "-".to_owned(), thousands),
    ]);
    out.push_str(&table.render());

    out.push_str("\nCONSUMER LAG\n");
    if status.consumer_lag.is_empty() {
        out.push_str("no partition assigned\n");
    } else {
        let mut table = Table::new(&["topic", "partition", "messages"], &[1, 2]);
        for c in &status.consumer_lag {
            table.row(vec![
                c.topic.clone(),
                c.partition.to_string(),
                c.messages.map_or_else(|| "-".to_owned(), |m| thousands(m.max(0) as u64)),
            ]);
        }
        out.push_str(&table.render());
    }

    out.push_str("\nFRESHNESS (UTC; age = now - newest commit)\n");
    if let Some(e) = &status.freshness_error {
        let _ = writeln!(out, "unknown: {}", e.replace(['\n', '\r'], " "));
    } else if status.freshness.is_empty() {
        out.push_str("nothing applied yet, or ClickHouse unreachable\n");
    } else {
        let mut table = Table::new(&["source", "newest commit", "applied at", "age"], &[3]);
        for f in &status.freshness {
            table.row(vec![
                f.source.clone(),
                f.newest_commit_ms.map_or_else(|| "-".to_owned(), timestamp),
                f.applied_at_ms.map_or_else(|| "-".to_owned(), timestamp),
                f.newest_commit_ms.map_or_else(|| "-".to_owned(), |c| duration(status.now_ms - c)),
            ]);
        }
        out.push_str(&table.render());
    }

    out.push_str("\nHEALTH\n");
    let mut table = Table::new(&["status", "reason"], &[]);
    let reason = match &status.health {
        Health::Unavailable { reason } if !reason.is_empty() => reason.clone(),
        Health::Unknown => "the service reported no known health status".to_owned(),
        _ => "-".to_owned(),
    };
    table.row(vec![health_word(&status.health).to_owned(), reason]);
    out.push_str(&table.render());
    out
}

/// Events applied between the oldest and the newest sample, if there are two and the counter did not restart.
fn history_events(history: &History) -> Option<u64> {
    let (first, last) = (history.samples.first()?, history.samples.last()?);
    (history.samples.len() >= 2).then(|| last.events_total.checked_sub(first.events_total)).flatten()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn health_word(h: &Health) -> &'static str {
    match h {
        Health::Ok => "ok",
        Health::Unavailable { .. } => "unavailable",
        Health::Unknown => "unknown",
    }
}

fn position(file: &str, pos: u64) -> String {
    format!("{file}:{pos}")
}

fn applied_position(a: &AppliedPosition) -> Option<String> {
    Some(position(a.file.as_deref()?, a.pos?))
}

/// How far the applied position is behind the current one: bytes within one file, else binlog files.
pub fn behind(applied: Option<&AppliedPosition>, current: Option<&BinlogPosition>) -> Option<String> {
    let (c, file, pos) = (current?, applied?.file.as_deref()?, applied?.pos?);
    if file == c.file {
        return Some(format!("{} B", thousands(c.pos.saturating_sub(pos))));
    }
    let seq = |f: &str| f.rsplit_once('.').and_then(|(_, n)| n.parse::<u64>().ok());
    let files = seq(&c.file)?.checked_sub(seq(file)?)?;
    Some(format!("{files} file{}", if files == 1 { "" } else { "s" }))
}

/// A duration given in ms, short: `812 ms`, `3.4 s`, `2 min 05 s`, `1 h 02 min`.
pub fn duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let text = match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    };
    format!("{sign}{text}")
}

/// A count with thousands separators: `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> =
        digits.as_bytes().rchunks(3).rev().map(|g| std::str::from_utf8(g).expect("ASCII digits")).collect();
    groups.join(",")
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
pub fn timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let of_day = ms.rem_euclid(86_400_000);
    // Days to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}

/// A text table: upper-case headers, columns padded to their widest cell, the given columns right-aligned.
struct Table {
    headers: Vec<String>,
    right: Vec<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str], right: &[usize]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_uppercase()).collect(), right: right.to_vec(), rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        // One line per row: a multi-line error would break the table.
        self.rows.push(cells.into_iter().map(|c| c.replace(['\n', '\r'], " ")).collect());
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .chain([&self.headers[i]])
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for cells in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right.contains(&i) {
                    let _ = write!(line, "{cell:>width$}");
                } else {
                    let _ = write!(line, "{cell:<width$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Why `/status` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("{url:?} is not an http://host[:port] URL")]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// No connection, or it broke.
    #[error("cannot reach the view service at {url}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The connection error.
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer in time.
    #[error("no answer from the view service at {url} within {timeout:?}")]
    Timeout {
        /// The URL asked.
        url: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// An answer that is not the status JSON (e.g. a service without `/status`).
    #[error("{url} did not answer with the status JSON (HTTP {code}): {detail}")]
    BadAnswer {
        /// The URL asked.
        url: String,
        /// The HTTP status code, 0 if the answer was not HTTP.
        code: u16,
        /// What was wrong.
        detail: String,
    },
}

/// `GET {base_url}/status`, parsed. `base_url` is `http://host[:port][/prefix]`.
pub async fn fetch(base_url: &str, timeout: Duration) -> Result<Status, FetchError> {
    let base = base_url.trim_end_matches('/');
    if !base.starts_with("http://") && !base.starts_with("https://") {
        return Err(FetchError::BadUrl { url: base_url.to_owned() });
    }
    let url = format!("{base}/status");
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|source| FetchError::Unreachable {
        url: url.clone(),
        source,
    })?;
    let failed = |source: reqwest::Error| {
        if source.is_timeout() {
            FetchError::Timeout { url: url.clone(), timeout }
        } else if source.is_builder() {
            FetchError::BadUrl { url: base_url.to_owned() }
        } else {
            FetchError::Unreachable { url: url.clone(), source }
        }
    };
    let response = client.get(&url).header("accept", "application/json").send().await.map_err(failed)?;
    let code = response.status().as_u16();
    let body = response.bytes().await.map_err(failed)?;
    let bad = |code: u16, detail: String| FetchError::BadAnswer { url: url.clone(), code, detail };
    // An unhealthy service may answer 503 with the status JSON; anything else that parses as the status is fine too,
    // but only if it looks like one (a 404 page is no status).
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| bad(code, format!("{e}; body starts with {:?}", snippet(&body))))?;
    if !value.get("lag").is_some_and(serde_json::Value::is_object) {
        return Err(bad(code, format!("no \"lag\" object; body starts with {:?}", snippet(&body))));
    }
    serde_json::from_value(value).map_err(|e| bad(code, e.to_string()))
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "now_ms": 1796000010000,
      "health": { "status": "ok" },
      "lag": {
        "now_ms": 1796000010000,
        "caught_up": false,
        "sources": [
          { "source": "users", "lag_ms": 812, "caught_up": true,
            "applied": { "file": "binlog.000004", "pos": 1234, "commit_ms": 1796000009000, "as_of_ms": 1796000009500 },
            "current": { "file": "binlog.000004", "pos": 1234 }, "error": null },
          { "source": "catalog", "lag_ms": null, "caught_up": false, "applied": null, "current": null,
            "error": "source unreachable" },
          { "source": "orders", "lag_ms": 75000, "caught_up": false,
            "applied": { "file": "binlog.000002", "pos": 400, "commit_ms": 1796000000000, "as_of_ms": 1796000009000 },
            "current": { "file": "binlog.000004", "pos": 9 }, "error": null }
        ]
      },
      "throughput": { "events_total": 12345, "events_per_s": 120.5 },
      "consumer_lag": [ { "topic": "shop.orders.orders", "partition": 0, "messages": 0 },
                        { "topic": "shop.orders.order_lines", "partition": 1, "messages": 4321 } ],
      "freshness": [ { "source": "users", "newest_commit_ms": 1796000009000, "applied_at_ms": 1796000009400 } ],
      "history": { "step_ms": 2000, "samples": [
        { "at_ms": 1796000006000, "lag_ms": { "users": 800, "catalog": null, "orders": 1000 }, "events_total": 12000 },
        { "at_ms": 1796000008000, "lag_ms": { "users": 812, "catalog": null, "orders": 75000 }, "events_total": 12345 }
      ] }
    }"#;

    fn sample() -> Status {
        serde_json::from_str(SAMPLE).expect("the contract's sample parses")
    }

    #[test]
    fn the_contract_sample_parses_into_every_field() {
        let s = sample();
        assert_eq!(s.health, Health::Ok);
        assert_eq!(s.lag.sources.len(), 3);
        assert_eq!(s.lag.sources[0].applied.as_ref().and_then(|a| a.pos), Some(1234));
        assert_eq!(s.lag.sources[1].error.as_deref(), Some("source unreachable"));
        assert_eq!(s.consumer_lag[1].messages, Some(4321));
        assert_eq!(s.history.samples[1].lag_ms["catalog"], None);
        assert_eq!(s.history.samples[1].lag_ms["orders"], Some(75000));
        assert_eq!(s.freshness[0].applied_at_ms, Some(1796000009400));
    }

    #[test]
    fn missing_and_unknown_fields_are_tolerated() {
        let s: Status = serde_json::from_str(r#"{"lag": {"sources": [{"source": "users", "extra": 1}]}, "new": 2}"#)
            .expect("parses");
        assert_eq!(s.health, Health::Unknown);
        assert_eq!(s.lag.sources[0].lag_ms, None);
        assert!(s.history.samples.is_empty());
        let h: Health = serde_json::from_str(r#"{"status": "ok", "reason": null}"#).expect("parses");
        assert_eq!(h, Health::Ok);
        let h: Health = serde_json::from_str(r#"{"status": "degraded"}"#).expect("parses");
        assert_eq!(h, Health::Unknown);
        let h: Health =
            serde_json::from_str(r#"{"status": "unavailable", "reason": "clickhouse: refused"}"#).expect("parses");
        assert_eq!(h, Health::Unavailable { reason: "clickhouse: refused".into() });
    }

    #[test]
    fn the_verdict_needs_health_and_every_source_caught_up() {
        let mut s = sample();
        assert_eq!(s.verdict(), Verdict::Behind);
        s.lag.caught_up = true;
        assert_eq!(s.verdict(), Verdict::CaughtUp);
        assert_eq!(s.verdict().exit_code(), 0);
        s.health = Health::Unavailable { reason: "clickhouse".into() };
        assert_eq!(s.verdict(), Verdict::Behind);
        assert_eq!(s.verdict().exit_code(), 1);
        assert_eq!(Status::default().verdict(), Verdict::Behind);
    }

    #[test]
    fn render_shows_every_section_as_aligned_tables() {
        let text = render(&sample());
        let expected = "\
NOT CAUGHT UP   caught up: no   health: ok   max lag: 1 min 15 s   at 2026-11-30 00:53:30.000

SOURCES
SOURCE          LAG  CAUGHT UP  APPLIED             CURRENT             BEHIND   ERROR
users        812 ms  yes        binlog.000004:1234  binlog.000004:1234  0 B      -
catalog           -  no         -                   -                   -        source unreachable
orders   1 min 15 s  no         binlog.000002:400   binlog.000004:9     2 files  -

THROUGHPUT
EVENTS/S  EVENTS APPLIED  OVER THE LAST 15 MIN
   120.5          12,345                   345

CONSUMER LAG
TOPIC                    PARTITION  MESSAGES
shop.orders.orders               0         0
shop.orders.order_lines          1     4,321

FRESHNESS (UTC; age = now - newest commit)
SOURCE  NEWEST COMMIT            APPLIED AT                 AGE
users   2026-11-30 00:53:29.000  2026-11-30 00:53:29.400  1.0 s

HEALTH
STATUS  REASON
ok      -
";
        assert_eq!(text, expected, "got:\n{text}");
    }

    #[test]
    fn render_says_why_when_unhealthy_or_empty() {
        let s = Status {
            health: Health::Unavailable { reason: "clickhouse: connection\nrefused".into() },
            ..Status::default()
        };
        let text = render(&s);
        assert!(text.starts_with("UNHEALTHY"), "{text}");
        assert!(text.contains("no source configured"), "{text}");
        assert!(text.contains("unavailable  clickhouse: connection refused"), "{text}");
        assert!(text.contains("nothing applied yet"), "{text}");
    }

    #[test]
    fn unknown_positions_and_the_services_extra_errors_render() {
        let s: Status = serde_json::from_str(
            r#"{"now_ms": 1000, "health": {"status": "ok"},
                "lag": {"now_ms": 1000, "caught_up": false, "errors": ["no sources configured"],
                  "sources": [{"source": "users", "lag_ms": 10, "caught_up": false,
                    "applied": {"file": null, "pos": null, "commit_ms": 900, "as_of_ms": null}, "current": null,
                    "error": "not configured"}]},
                "consumer_lag": [{"topic": "t", "partition": 0, "messages": null}],
                "freshness": [], "freshness_error": "ClickHouse did not answer"}"#,
        )
        .expect("parses");
        let text = render(&s);
        assert!(text.contains("users   10 ms  no         -        -        -       not configured\n"), "{text}");
        assert!(text.contains("note: no sources configured\n"), "{text}");
        assert!(text.contains("t              0         -\n"), "{text}");
        assert!(text.contains("unknown: ClickHouse did not answer\n"), "{text}");
    }

    #[test]
    fn formats() {
        for (ms, want) in [
            (0, "0 ms"),
            (812, "812 ms"),
            (3_449, "3.4 s"),
            (125_000, "2 min 05 s"),
            (3_720_000, "1 h 02 min"),
            (-20, "-20 ms"),
        ] {
            assert_eq!(duration(ms), want);
        }
        for (n, want) in [(0, "0"), (999, "999"), (1000, "1,000"), (1_234_567, "1,234,567")] {
            assert_eq!(thousands(n), want);
        }
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(timestamp(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(timestamp(-1), "1969-12-31 23:59:59.999");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
        let err =
            fetch(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).await.expect_err("nothing listens");
        assert!(matches!(err, FetchError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    }
}
