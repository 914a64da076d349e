//! Configuration of the view service: a TOML file plus `CDC_VIEWS_*` environment overrides, validated into
//! [`Settings`]. `views/views.example.toml` shows every option.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use cdc_common::Secret;

use crate::cluster::Cluster;

/// The configuration as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka bootstrap servers. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Consumer group; its committed offsets are the view's progress. Default `views`.
    pub group: String,
    /// Topic prefix of the capture. Default `shop`.
    pub topic_prefix: String,
    /// Database of the users service (topic `<prefix>.<db>.users`). Default `users`.
    pub users_db: String,
    /// Database of the catalog service (topic `<prefix>.<db>.products`). Default `catalog`.
    pub catalog_db: String,
    /// Database of the orders service (topics `<prefix>.<db>.orders`, `.order_lines`). Default `orders`.
    pub orders_db: String,
    /// ClickHouse HTTP URL. Default `http://127.0.0.1:8123`.
    pub clickhouse_url: String,
    /// ClickHouse user. Default `default`.
    pub clickhouse_user: String,
    /// ClickHouse password. Default empty.
    pub clickhouse_password: Secret,
    /// Reporting database, created if missing. Default `reporting`.
    pub database: String,
    /// ClickHouse cluster (a name in the servers' `<remote_servers>`) to create the reporting schema on: every DDL
    /// statement runs `ON CLUSTER` it and MergeTree-family tables become Replicated (see `views/src/cluster.rs`).
    /// Letters, digits and `_` only. Default none: one server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clickhouse_cluster: Option<String>,
    /// With `clickhouse_cluster`: the ZooKeeper path of each replicated table. `{database}` and `{table}` are filled
    /// in by the view service, `{shard}` and other macros by each server's `<macros>`. Must hold `{table}`. Default
    /// `/clickhouse/tables/{shard}/{database}/{table}`.
    pub clickhouse_zookeeper_path: String,
    /// With `clickhouse_cluster`: the replica name of each replicated table, from each server's `<macros>`. Must hold
    /// `{replica}`. Default `{replica}`.
    pub clickhouse_replica_name: String,
    /// Address of `/metrics` and `/health`. Default `127.0.0.1:9091`.
    pub listen: SocketAddr,
    /// How this instance gets its partitions: `all` (it reads every partition of its topics itself; one instance per
    /// `group`) or `group` (the instances sharing `group` split the partitions by the group's rebalancing, and
    /// `/lag` judges `caught_up` from the group's committed offsets). Default `all`.
    pub assignment: Assignment,
    /// Most events applied in one ClickHouse insert round. Default 20000.
    pub batch_max_events: usize,
    /// Least time between the starts of two ClickHouse writes: under load, each write carries what arrived since the
    /// previous one; an event after a quiet spell is written within a few milliseconds. Bounds the insert rate (at
    /// most 1 s / `batch_wait` inserts per table). Default `50ms`.
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Longest time the broker may hold a fetch (`fetch.wait.max.ms`): Kafka answers early when data arrives, but
    /// brokers that hold every fetch (tansu) add up to this much latency. Default `50ms`.
    #[serde(with = "humantime_serde")]
    pub fetch_wait: Duration,
    /// Most cancel rows of `report_lines` left unmerged: above it, the partitions holding the most are compacted
    /// (`OPTIMIZE ... PARTITION ... FINAL`, see `views/src/compact.rs`), since every read of `order_report` subtracts
    /// the unmerged ones. 0 turns compaction off. Default 10000.
    pub compact_cancels: u64,
    /// Time between two counts of the unmerged cancel rows. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub compact_every: Duration,
    /// Extra librdkafka consumer properties (e.g. `"security.protocol" = "SASL_SSL"`, `"socket.timeout.ms"`);
    /// `bootstrap.servers`, `group.id` and `enable.auto.commit` are set by the service. Default none.
    #[serde(default)]
    pub kafka_properties: BTreeMap<String, String>,
    /// A source whose heartbeats are older than this is not `caught_up` (its capture is down or cut off). Default
    /// `10s`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// The source databases, named as the capture names its sources, with an account that may read their binlog
    /// position (`SHOW MASTER STATUS`: REPLICATION CLIENT, or BINLOG MONITOR on MariaDB 10.5+). `/lag` compares
    /// them with what the view applied; without them `caught_up` is never true. Default none.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// How a view instance gets the partitions of its topics (option `assignment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assignment {
    /// Every partition, assigned by the instance itself.
    All,
    /// A share of the partitions, assigned by the consumer group's rebalancing.
    Group,
}

/// A source database, for `/lag`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The capture's name of the source (`source.name` in its events and heartbeats).
    pub name: String,
    /// `mysql://user:password@host:port`.
    pub url: Secret,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            brokers: "127.0.0.1:9092".into(),
            group: "views".into(),
            topic_prefix: "shop".into(),
            users_db: "users".into(),
            catalog_db: "catalog".into(),
            orders_db: "orders".into(),
            clickhouse_url: "http://127.0.0.1:8123".into(),
            clickhouse_user: "default".into(),
            clickhouse_password: Secret::new(""),
            database: "reporting".into(),
            clickhouse_cluster: None,
            clickhouse_zookeeper_path: crate::cluster::DEFAULT_ZOOKEEPER_PATH.into(),
            clickhouse_replica_name: crate::cluster::DEFAULT_REPLICA_NAME.into(),
            assignment: Assignment::All,
            listen: "127.0.0.1:9091".parse().expect("valid"),
            batch_max_events: 20_000,
            batch_wait: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(50),
            compact_cancels: 10_000,
            compact_every: Duration::from_secs(10),
            kafka_properties: BTreeMap::new(),
            heartbeat_timeout: Duration::from_secs(10),
            sources: Vec::new(),
        }
    }
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration, checked.
    pub config: Config,
    /// Topics of users, products, orders and order lines.
    pub topics: Topics,
    /// The cluster the schema is created on (`clickhouse_cluster`), if any.
    pub cluster: Option<Cluster>,
}

/// The four change topics the report is built from.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `<prefix>.<users_db>.users`.
    pub users: String,
    /// `<prefix>.<catalog_db>.products`.
    pub products: String,
    /// `<prefix>.<orders_db>.orders`.
    pub orders: String,
    /// `<prefix>.<orders_db>.order_lines`.
    pub lines: String,
    /// `<prefix>.heartbeats`: the sources' watermarks.
    pub heartbeats: String,
}

impl Topics {
    /// The four change topics.
    pub fn changes(&self) -> [&str; 4] {
        [&self.users, &self.products, &self.orders, &self.lines]
    }
}

impl Config {
    /// Reads the file (if any) and the `CDC_VIEWS_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        // CDC_VIEWS_CONFIG names the file (see main.rs); it is not an option.
        figment.merge(Env::prefixed("CDC_VIEWS_").ignore(&["config"])).extract().map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks what can be checked without servers.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let ident = |what: &str, v: &str| {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Err(ConfigError(format!("{what} {v:?} may only hold letters, digits and '_'")))
            } else {
                Ok(())
            }
        };
        ident("database", &self.database)?;
        if !self.clickhouse_url.starts_with("http://") && !self.clickhouse_url.starts_with("https://") {
            return Err(ConfigError(format!("clickhouse_url {:?} must start with http:// or https://", self.clickhouse_url)));
        }
        for fixed in ["bootstrap.servers", "group.id", "enable.auto.commit"] {
            if self.kafka_properties.contains_key(fixed) {
                return Err(ConfigError(format!("kafka_properties may not set {fixed:?}: use the service's own option")));
            }
        }
        for (i, source) in self.sources.iter().enumerate() {
            if source.name.is_empty() || self.sources[..i].iter().any(|s| s.name == source.name) {
                return Err(ConfigError(format!("sources: each needs a distinct, non-empty name (got {:?})", source.name)));
            }
            if let Err(e) = mysql_async::Opts::from_url(source.url.expose()) {
                return Err(ConfigError(format!(
                    "sources: the url of {:?} is not a MySQL URL (mysql://user:password@host:port): {e}",
                    source.name
                )));
            }
        }
        if self.heartbeat_timeout < Duration::from_secs(1) {
            return Err(ConfigError("heartbeat_timeout must be at least 1s (the capture's heartbeat_interval or more)".into()));
        }
        if self.compact_cancels > 0 && self.compact_every < Duration::from_millis(100) {
            return Err(ConfigError("compact_every must be at least 100ms (or set compact_cancels = 0 to turn compaction off)".into()));
        }
        if self.batch_max_events == 0 {
            return Err(ConfigError("batch_max_events must be at least 1".into()));
        }
        let p = &self.topic_prefix;
        let topics = Topics {
            users: format!("{p}.{}.users", self.users_db),
            products: format!("{p}.{}.products", self.catalog_db),
            orders: format!("{p}.{}.orders", self.orders_db),
            lines: format!("{p}.{}.order_lines", self.orders_db),
            heartbeats: cdc_contract::heartbeat_topic(p),
        };
        let cluster = self.cluster()?;
        Ok(Settings { config: self, topics, cluster })
    }
}

impl Config {
    /// The cluster options, checked; the schema's statements are rewritten here once, so a statement the rewrite
    /// refuses stops the service at start.
    fn cluster(&self) -> Result<Option<Cluster>, ConfigError> {
        let Some(name) = &self.clickhouse_cluster else { return Ok(None) };
        let simple = |v: &str| {
            v.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !simple(name) {
            return Err(ConfigError(format!(
                "clickhouse_cluster {name:?} may only hold letters, digits and '_' (not starting with a digit): \
                 rename the cluster in the servers' <remote_servers> (e.g. {:?})",
                name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>()
            )));
        }
        let template = |what: &str, v: &str, needs: &str, why: &str| {
            if v.contains(['\'', '\\']) || !balanced_macros(v) {
                return Err(ConfigError(format!(
                    "{what} {v:?} may not hold quotes or backslashes, and each '{{' needs its '}}' (macros like {{shard}})"
                )));
            }
            if !v.contains(needs) {
                return Err(ConfigError(format!("{what} {v:?} must contain {needs}: {why}")));
            }
            Ok(())
        };
        template(
            "clickhouse_zookeeper_path",
            &self.clickhouse_zookeeper_path,
            "{table}",
            "else every table would share one ZooKeeper path; the default is \
             \"/clickhouse/tables/{shard}/{database}/{table}\"",
        )?;
        if !self.clickhouse_zookeeper_path.starts_with('/') {
            return Err(ConfigError(format!(
                "clickhouse_zookeeper_path {:?} must start with '/' (e.g. \"/clickhouse/tables/{{shard}}/{{database}}/{{table}}\")",
                self.clickhouse_zookeeper_path
            )));
        }
        template(
            "clickhouse_replica_name",
            &self.clickhouse_replica_name,
            "{replica}",
            "each server needs a replica name of its own, from its <macros>; the default is \"{replica}\"",
        )?;
        let cluster = Cluster {
            name: name.clone(),
            zookeeper_path: self.clickhouse_zookeeper_path.clone(),
            replica_name: self.clickhouse_replica_name.clone(),
        };
        if let Err(e) = cluster.rewrite_all(&crate::schema::ddl(&self.database), &self.database) {
            return Err(ConfigError(format!("clickhouse_cluster: the reporting schema cannot be made cluster-wide: {e}")));
        }
        Ok(Some(cluster))
    }
}

/// Whether every `{` of `v` is closed by a `}` before the next `{`, and every macro name is a plain word.
fn balanced_macros(v: &str) -> bool {
    let mut rest = v;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return false;
        }
        let Some(close) = rest[open..].find('}') else { return false };
        let name = &rest[open + 1..open + close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return false;
        }
        rest = &rest[open + close + 1..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_holds_every_option_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("views.example.toml");
        let example: Config = Figment::from(Toml::file(&path)).extract().expect("the example parses on its own");
        let defaults = Config::default();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
        assert!(example.validate().is_ok());
    }

    #[test]
    fn cluster_options_that_cannot_work_fail_with_the_fix() {
        let cases: [(&str, &str, &str, &str); 7] = [
            ("reporting-eu", "/clickhouse/tables/{shard}/{database}/{table}", "{replica}", "rename the cluster"),
            ("1st", "/clickhouse/tables/{shard}/{database}/{table}", "{replica}", "letters, digits"),
            ("reporting", "/clickhouse/tables/{shard}/{database}", "{replica}", "must contain {table}"),
            ("reporting", "clickhouse/tables/{table}", "{replica}", "must start with '/'"),
            ("reporting", "/clickhouse/tables/{shard}/{table}", "replica1", "must contain {replica}"),
            ("reporting", "/clickhouse/tables/{shard/{table}", "{replica}", "needs its '}'"),
            ("reporting", "/clickhouse/tables/'{shard}'/{table}", "{replica}", "quotes"),
        ];
        for (name, path, replica, fix) in cases {
            let config = Config {
                clickhouse_cluster: Some(name.into()),
                clickhouse_zookeeper_path: path.into(),
                clickhouse_replica_name: replica.into(),
                ..Config::default()
            };
            let e = config.validate().expect_err(name).to_string();
            assert!(e.contains(fix), "{name} {path} {replica}: {e}");
        }
        let ok = Config { clickhouse_cluster: Some("reporting_eu".into()), ..Config::default() }.validate().expect("valid");
        let cluster = ok.cluster.expect("a cluster");
        assert_eq!((cluster.zookeeper_path.as_str(), cluster.replica_name.as_str()), (crate::cluster::DEFAULT_ZOOKEEPER_PATH, "{replica}"));
        assert!(Config::default().validate().expect("valid").cluster.is_none());
    }
}
