//! Configuration of the view service: a TOML file plus `CDC_VIEWS_*` environment overrides, validated into
//! [`Settings`]. `views/views.example.toml` shows every option.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

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
    pub clickhouse_password: String,
    /// Reporting database, created if missing. Default `reporting`.
    pub database: String,
    /// Address of `/metrics` and `/health`. Default `127.0.0.1:9091`.
    pub listen: SocketAddr,
    /// Most events applied in one ClickHouse insert round. Default 20000.
    pub batch_max_events: usize,
    /// Longest wait for more events before applying a batch. Default `50ms`.
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Longest time the broker may hold a fetch (`fetch.wait.max.ms`): Kafka answers early when data arrives, but
    /// brokers that hold every fetch (tansu) add up to this much latency. Default `50ms`.
    #[serde(with = "humantime_serde")]
    pub fetch_wait: Duration,
    /// Extra librdkafka consumer properties (e.g. `"security.protocol" = "SASL_SSL"`, `"socket.timeout.ms"`);
    /// `bootstrap.servers`, `group.id` and `enable.auto.commit` are set by the service. Default none.
    #[serde(default)]
    pub kafka_properties: BTreeMap<String, String>,
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
            clickhouse_password: String::new(),
            database: "reporting".into(),
            listen: "127.0.0.1:9091".parse().expect("valid"),
            batch_max_events: 20_000,
            batch_wait: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(50),
            kafka_properties: BTreeMap::new(),
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
        if self.batch_max_events == 0 {
            return Err(ConfigError("batch_max_events must be at least 1".into()));
        }
        let p = &self.topic_prefix;
        let topics = Topics {
            users: format!("{p}.{}.users", self.users_db),
            products: format!("{p}.{}.products", self.catalog_db),
            orders: format!("{p}.{}.orders", self.orders_db),
            lines: format!("{p}.{}.order_lines", self.orders_db),
        };
        Ok(Settings { config: self, topics })
    }
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
}
