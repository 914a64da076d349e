//! Configuration: a TOML file plus `CDC_CAPTURE_*` environment overrides, parsed into [`Config`] and validated into
//! [`Settings`], the only type runtime code takes. Every option is documented on its field; `capture.example.toml`
//! at the crate root shows them all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use cdc_common::Secret;

/// The configuration file as written by the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Topic prefix: a table's topic is `<prefix>.<database>.<table>`. Default `shop`.
    pub topic_prefix: String,
    /// Directory of the checkpoint files, one per source. Must be durable storage. One capture at a time: it locks
    /// `capture.lock` in it (see [`crate::lock`]). Default `capture-state`.
    pub state_dir: PathBuf,
    /// Address of the HTTP server for `/metrics`, `/health` and the control endpoints of the operator commands
    /// (`capture status`, `pause`, `resume`, `skip`; see [`crate::api`]), which have no authentication: keep it on
    /// loopback or a private network. Default `127.0.0.1:9090`.
    pub listen: SocketAddr,
    /// Send a tombstone (same key, null value) after each delete, for log compaction. Default true.
    pub tombstones: bool,
    /// Capacity of the queue between the binlog reader and the producer, in batches. Default 8.
    pub queue_capacity: usize,
    /// Maximum events per batch; a larger transaction is split into several batches. Default 1000.
    pub batch_size: usize,
    /// Bytes of records (keys plus values) the queue between the binlog reader and the producer may hold; the reader
    /// waits while it is full. A batch closes once its records reach `queue_max_bytes / queue_capacity` bytes; a
    /// single batch larger than the whole budget still passes, alone. At most 4294967295. Default 16777216 (16 MiB).
    pub queue_max_bytes: u64,
    /// What to do with a record (key plus value) larger than the producer's `message.max.bytes`: `fail` (default)
    /// stops the source with an error naming the row and the fixes; `truncate` publishes it with its largest column
    /// values replaced by the marker `"__cdc_oversized__:<bytes>"` (see docs/capture.md, "Oversized records").
    pub oversized_records: OversizedRecords,
    /// Minimum time between two checkpoint writes (acknowledged progress in between is saved by the next). Default
    /// `200ms`.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// `/health` warns (staying 200) while the binlog retention headroom of a source, the time before its server may
    /// purge the binlog file the source's checkpoint still needs, is below this. `0s` turns that warning off; a file
    /// already purged, or closed at a time the capture cannot tell, is reported anyway. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub retention_warning: Duration,
    /// The broker.
    pub kafka: KafkaConfig,
    /// The source servers.
    pub sources: Vec<SourceConfig>,
}

/// Broker settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Partitions of topics the capture creates. Default 3.
    pub partitions: i32,
    /// Replication factor of topics the capture creates. Default 1.
    pub replication_factor: i32,
    /// How long a message may wait for its acknowledgement before the capture stops and resumes from its
    /// checkpoint. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Extra librdkafka producer properties (e.g. `"linger.ms" = "10"`); `acks` and `enable.idempotence` are fixed.
    /// They override the capture's defaults, among them `queue.buffering.max.kbytes` = 4096, the producer queue that
    /// bounds memory (see [`crate::sink::producer_config`]). The admin client gets them too, except the producer-only
    /// ones (see [`crate::sink::admin_config`]).
    pub properties: BTreeMap<String, String>,
}

/// What to do with a record larger than the producer's `message.max.bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizedRecords {
    /// Stop the source with a definite error before producing the record.
    Fail,
    /// Replace column values, largest first, by a marker until the record fits; count and log it.
    Truncate,
}

/// What to do on a first start (no checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Emit every existing row (op `r`), then stream from exactly where the snapshot stood.
    Initial,
    /// Stream from the server's current position; existing rows are not emitted.
    Never,
}

/// One source server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Logical name of the source: `source.name` in events, the checkpoint's file name, metric labels.
    pub name: String,
    /// `mysql://user:password@host:port` of an account with REPLICATION SLAVE, REPLICATION CLIENT (BINLOG MONITOR on
    /// MariaDB) and SELECT. A database in the path is the default `include`.
    pub url: Secret,
    /// The capture's own server id on the replication protocol; distinct from every server and replica. Required.
    pub server_id: u32,
    /// Tables to capture, as `database.table` patterns where `*` matches any run of characters. Default: every table
    /// of the URL's database.
    #[serde(default)]
    pub include: Vec<String>,
    /// Tables to leave out, same syntax; wins over `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `initial` (default) or `never`.
    #[serde(default = "default_snapshot")]
    pub snapshot: SnapshotMode,
    /// Rows per snapshot query (primary-key chunks), for the initial snapshot and for incremental snapshots
    /// (`capture resnapshot`, which holds one chunk in memory at a time). Default 10000.
    #[serde(default = "default_chunk")]
    pub snapshot_chunk_rows: usize,
    /// How often the server sends a heartbeat when the binlog is idle, and the capture publishes its position. No
    /// event at all for three periods (at least 5 s) means the connection or the server is frozen: the source
    /// reconnects from its checkpoint (see [`crate::timeouts::read_deadline`]). Default `1s`.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// What a row change written to the binlog as a statement does (a session with `binlog_format=STATEMENT` or
    /// `MIXED`), when it may change a captured table: `error` (default) stops the source at that statement, with
    /// its position; `skip` logs a warning, counts it in `cdc_capture_skipped_statements_total` and goes on, so
    /// its changes are missing from the stream until the table is re-snapshotted.
    #[serde(default)]
    pub statement_dml: StatementDml,
}

/// What a statement-format row change on a captured table does; see [`SourceConfig::statement_dml`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementDml {
    /// Stop the source with an error naming the statement's position, the table and the fix.
    #[default]
    Error,
    /// Log a warning, count it, and go on without its changes.
    Skip,
}

fn default_snapshot() -> SnapshotMode {
    SnapshotMode::Initial
}
fn default_chunk() -> usize {
    10_000
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(1)
}

impl Default for Config {
    fn default() -> Config {
        Config {
            topic_prefix: "shop".into(),
            state_dir: "capture-state".into(),
            listen: "127.0.0.1:9090".parse().expect("a valid address"),
            tombstones: true,
            queue_capacity: 8,
            batch_size: 1000,
            queue_max_bytes: 16 * 1024 * 1024,
            oversized_records: OversizedRecords::Fail,
            checkpoint_interval: Duration::from_millis(200),
            retention_warning: Duration::from_secs(3600),
            kafka: KafkaConfig {
                brokers: "127.0.0.1:9092".into(),
                partitions: 3,
                replication_factor: 1,
                delivery_timeout: Duration::from_secs(60),
                properties: BTreeMap::new(),
            },
            sources: Vec::new(),
        }
    }
}

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// A configuration that cannot be used, with what to change.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// A validated source.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Logical name.
    pub name: String,
    /// Connection options (from the URL).
    pub opts: mysql_async::Opts,
    /// The capture's replica server id.
    pub server_id: u32,
    /// Which tables are captured.
    pub filter: TableFilter,
    /// Snapshot mode.
    pub snapshot: SnapshotMode,
    /// Rows per snapshot chunk.
    pub snapshot_chunk_rows: usize,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// See [`SourceConfig::statement_dml`].
    pub statement_dml: StatementDml,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// See [`Config::topic_prefix`].
    pub topic_prefix: String,
    /// See [`Config::state_dir`].
    pub state_dir: PathBuf,
    /// See [`Config::listen`].
    pub listen: SocketAddr,
    /// See [`Config::tombstones`].
    pub tombstones: bool,
    /// See [`Config::queue_capacity`].
    pub queue_capacity: usize,
    /// See [`Config::batch_size`].
    pub batch_size: usize,
    /// See [`Config::queue_max_bytes`].
    pub queue_max_bytes: u32,
    /// A batch closes once its records hold this many bytes: `queue_max_bytes / queue_capacity`, at least 1.
    pub batch_max_bytes: usize,
    /// See [`Config::oversized_records`].
    pub oversized_records: OversizedRecords,
    /// The producer's `message.max.bytes` (from `kafka.properties`, else librdkafka's default 1000000).
    pub message_max_bytes: usize,
    /// See [`Config::checkpoint_interval`].
    pub checkpoint_interval: Duration,
    /// See [`Config::retention_warning`].
    pub retention_warning: Duration,
    /// See [`Config::kafka`].
    pub kafka: KafkaConfig,
    /// The sources.
    pub sources: Vec<SourceSettings>,
}

impl Config {
    /// Reads the file (if given) and applies `CDC_CAPTURE_*` environment overrides (`CDC_CAPTURE_KAFKA__BROKERS=...`).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment
            .merge(Env::prefixed("CDC_CAPTURE_").split("__"))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks everything that can be checked without a server.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if self.sources.is_empty() {
            return fail("no [[sources]]: add at least one source server".into());
        }
        if !valid_topic_part(&self.topic_prefix) {
            return fail(format!("topic_prefix {:?} may only hold letters, digits, '.', '_' and '-'", self.topic_prefix));
        }
        if self.queue_capacity == 0 || self.batch_size == 0 {
            return fail("queue_capacity and batch_size must be at least 1".into());
        }
        let Ok(queue_max_bytes) = u32::try_from(self.queue_max_bytes) else {
            return fail(format!("queue_max_bytes {} is above the limit 4294967295 (4 GiB)", self.queue_max_bytes));
        };
        if queue_max_bytes == 0 {
            return fail("queue_max_bytes must be at least 1".into());
        }
        let message_max_bytes = match self.kafka.properties.get("message.max.bytes") {
            None => DEFAULT_MESSAGE_MAX_BYTES,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1000..=1_000_000_000).contains(&n) => n,
                _ => {
                    return fail(format!(
                        "kafka.properties.\"message.max.bytes\" {v:?} must be a number of bytes from 1000 to 1000000000"
                    ))
                }
            },
        };
        let queue_kbytes = self.kafka.properties.get("queue.buffering.max.kbytes").and_then(|v| v.parse::<usize>().ok());
        if let Some(kbytes) = queue_kbytes.filter(|&k| k.saturating_mul(1024) < message_max_bytes) {
            return fail(format!(
                "kafka.properties: queue.buffering.max.kbytes {kbytes} is smaller than message.max.bytes \
                 {message_max_bytes}, so a record of that size would wait forever for room in the producer's queue; \
                 set queue.buffering.max.kbytes to at least {}",
                message_max_bytes.div_ceil(1024)
            ));
        }
        if self.kafka.partitions < 1 || self.kafka.replication_factor < 1 {
            return fail("kafka.partitions and kafka.replication_factor must be at least 1".into());
        }
        for fixed in ["acks", "enable.idempotence", "bootstrap.servers"] {
            if self.kafka.properties.contains_key(fixed) {
                return fail(format!("kafka.properties may not set {fixed:?}: the capture fixes it"));
            }
        }
        let mut sources = Vec::new();
        for s in self.sources {
            if !valid_topic_part(&s.name) {
                return fail(format!("source name {:?} may only hold letters, digits, '.', '_' and '-'", s.name));
            }
            if sources.iter().any(|o: &SourceSettings| o.name == s.name) {
                return fail(format!("two sources are named {:?}; names must be unique", s.name));
            }
            if s.server_id == 0 || sources.iter().any(|o: &SourceSettings| o.server_id == s.server_id) {
                return fail(format!(
                    "source {:?}: server_id {} must be non-zero and unique among sources",
                    s.name, s.server_id
                ));
            }
            let opts = mysql_async::Opts::from_url(s.url.expose())
                .map_err(|e| ConfigError(format!("source {:?}: url is not a mysql:// URL: {e}", s.name)))?;
            let mut include = s.include.clone();
            if include.is_empty() {
                match opts.db_name() {
                    Some(db) => include.push(format!("{db}.*")),
                    None => {
                        return fail(format!(
                            "source {:?}: set `include` (e.g. [\"shop.*\"]) or name a database in the url",
                            s.name
                        ))
                    }
                }
            }
            if s.snapshot_chunk_rows == 0 {
                return fail(format!("source {:?}: snapshot_chunk_rows must be at least 1", s.name));
            }
            if s.heartbeat_interval < Duration::from_millis(100) {
                return fail(format!("source {:?}: heartbeat_interval must be at least 100ms", s.name));
            }
            sources.push(SourceSettings {
                name: s.name,
                opts,
                server_id: s.server_id,
                filter: TableFilter::new(include, s.exclude)?,
                snapshot: s.snapshot,
                snapshot_chunk_rows: s.snapshot_chunk_rows,
                heartbeat_interval: s.heartbeat_interval,
                statement_dml: s.statement_dml,
            });
        }
        Ok(Settings {
            topic_prefix: self.topic_prefix,
            state_dir: self.state_dir,
            listen: self.listen,
            tombstones: self.tombstones,
            queue_capacity: self.queue_capacity,
            batch_size: self.batch_size,
            queue_max_bytes,
            batch_max_bytes: (self.queue_max_bytes / self.queue_capacity as u64).max(1) as usize,
            oversized_records: self.oversized_records,
            message_max_bytes,
            checkpoint_interval: self.checkpoint_interval,
            retention_warning: self.retention_warning,
            kafka: self.kafka,
            sources,
        })
    }
}

fn valid_topic_part(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Which tables of a source are captured: `database.table` glob patterns (`*` = any run of characters).
#[derive(Debug, Clone)]
pub struct TableFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl TableFilter {
    /// A filter; each pattern must have the form `database.table`.
    pub fn new(include: Vec<String>, exclude: Vec<String>) -> Result<TableFilter, ConfigError> {
        for p in include.iter().chain(&exclude) {
            if p.split('.').count() != 2 || p.split('.').any(str::is_empty) {
                return Err(ConfigError(format!("table pattern {p:?} must have the form database.table (e.g. shop.*)")));
            }
        }
        Ok(TableFilter { include, exclude })
    }

    /// Whether `database.table` is captured.
    pub fn matches(&self, database: &str, table: &str) -> bool {
        let name = format!("{database}.{table}");
        self.include.iter().any(|p| glob(p, &name)) && !self.exclude.iter().any(|p| glob(p, &name))
    }

    /// Databases named by include patterns without wildcards in their database part; `None` when some pattern's
    /// database part has a wildcard.
    pub fn databases(&self) -> Option<Vec<String>> {
        let mut dbs = Vec::new();
        for p in &self.include {
            let db = p.split('.').next().unwrap_or_default();
            if db.contains('*') {
                return None;
            }
            if !dbs.iter().any(|d| d == db) {
                dbs.push(db.to_owned());
            }
        }
        Some(dbs)
    }
}

/// Glob match with `*` only, case-sensitive as MySQL table names on Linux.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_tables() {
        let cases = [
            ("shop.*", "shop.orders", true),
            ("shop.*", "shopx.orders", false),
            ("*.orders", "a.orders", true),
            ("shop.order_*", "shop.order_lines", true),
            ("shop.order_*", "shop.orders", false),
            ("shop.orders", "shop.orders", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn exclude_wins_over_include() {
        let f = TableFilter::new(vec!["shop.*".into()], vec!["shop.audit".into()]).unwrap();
        assert!(f.matches("shop", "orders"));
        assert!(!f.matches("shop", "audit"));
        assert!(!f.matches("other", "orders"));
        assert_eq!(f.databases(), Some(vec!["shop".to_string()]));
        assert!(TableFilter::new(vec!["noDot".into()], vec![]).is_err());
    }

    fn source(name: &str, server_id: u32) -> SourceConfig {
        SourceConfig {
            name: name.into(),
            url: Secret::new("mysql://u:p@127.0.0.1:3306/users"),
            server_id,
            include: vec![],
            exclude: vec![],
            snapshot: SnapshotMode::Initial,
            snapshot_chunk_rows: 10,
            heartbeat_interval: Duration::from_secs(1),
            statement_dml: StatementDml::Error,
        }
    }

    #[test]
    fn validation_explains_what_to_fix() {
        let mut c = Config::default();
        assert!(c.clone().validate().unwrap_err().to_string().contains("add at least one source"));
        c.sources = vec![source("users", 100), source("users", 101)];
        assert!(c.clone().validate().unwrap_err().to_string().contains("unique"));
        c.sources = vec![source("users", 100), source("orders", 100)];
        assert!(c.clone().validate().unwrap_err().to_string().contains("server_id"));
        c.sources = vec![source("users", 100)];
        let s = c.clone().validate().unwrap();
        assert!(s.sources[0].filter.matches("users", "users"), "default include is the url's database");
        c.kafka.properties.insert("acks".into(), "1".into());
        assert!(c.validate().unwrap_err().to_string().contains("acks"));
    }

    #[test]
    fn byte_limits_are_validated_and_derived() {
        let mut c = Config { sources: vec![source("users", 100)], ..Config::default() };
        let s = c.clone().validate().unwrap();
        assert_eq!((s.queue_max_bytes, s.batch_max_bytes, s.message_max_bytes), (16 << 20, 2 << 20, 1_000_000));
        assert_eq!(s.oversized_records, OversizedRecords::Fail);
        let cases = [
            (Some("20000000"), 1 << 20, Ok(20_000_000)),
            (Some("999"), 1 << 20, Err("message.max.bytes")),
            (Some("1MB"), 1 << 20, Err("message.max.bytes")),
            (None, 0, Err("queue_max_bytes must be at least 1")),
            (None, 1 << 33, Err("queue_max_bytes 8589934592 is above")),
        ];
        let mut queue_too_small = c.clone();
        queue_too_small.kafka.properties = [("message.max.bytes", "20000000"), ("queue.buffering.max.kbytes", "4096")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let e = queue_too_small.validate().unwrap_err().to_string();
        assert!(e.contains("queue.buffering.max.kbytes to at least 19532"), "{e}");
        for (message_max, queue_max, want) in cases {
            c.kafka.properties =
                message_max.map(|v| ("message.max.bytes".to_string(), v.to_string())).into_iter().collect();
            c.queue_max_bytes = queue_max;
            match (c.clone().validate(), want) {
                (Ok(s), Ok(limit)) => assert_eq!(s.message_max_bytes, limit),
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{e}"),
                (got, want) => panic!("{message_max:?} {queue_max}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn the_example_file_holds_every_option_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("capture.example.toml");
        // Without the defaults underneath: an option missing from the file fails here.
        let example: Config = Figment::from(Toml::file(&path)).extract().expect("the example parses on its own");
        // Sources have no defaults, and the producer properties are an example: those are taken as written.
        let defaults = Config {
            sources: example.sources.clone(),
            kafka: KafkaConfig { properties: example.kafka.properties.clone(), ..Config::default().kafka },
            ..Config::default()
        };
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
        let minimal: SourceConfig =
            Figment::from(Toml::string("name = \"s\"\nurl = \"mysql://u@h/db\"\nserver_id = 1")).extract().unwrap();
        let source_defaults =
            |s: &SourceConfig| {
                format!("{:?}", (s.snapshot, s.snapshot_chunk_rows, s.heartbeat_interval, &s.exclude, s.statement_dml))
            };
        assert_eq!(source_defaults(&example.sources[0]), source_defaults(&minimal), "the example's source defaults");
        assert!(example.validate().is_ok());
    }

    #[test]
    fn durations_are_human() {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("retention_warning = \"30d\"\ncheckpoint_interval = \"1s 500ms\""))
            .extract()
            .unwrap();
        assert_eq!(config.retention_warning, Duration::from_secs(30 * 86_400));
        assert_eq!(config.checkpoint_interval, Duration::from_millis(1500));
        assert_eq!(Config::default().retention_warning, Duration::from_secs(3600));
    }
}
