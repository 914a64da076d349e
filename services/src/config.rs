//! A service's settings ([`Config`], checked without I/O), which service a process runs ([`Service`]), and the
//! connection to its database ([`connect`]).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cdc_contract::{topic_name, TableId};
use mysql_async::prelude::*;

/// Which service a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Users,
    Catalog,
    Orders,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Catalog => "catalog",
            Service::Orders => "orders",
        }
    }
}

/// A service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub mysql_url: String,
    pub brokers: String,
    pub topic_prefix: String,
    pub users_db: String,
    pub catalog_db: String,
    pub orders_db: String,
    pub group: String,
    pub pending_timeout: Duration,
    pub reservation_ttl: Duration,
    pub reconcile_interval: Duration,
    /// See `--request-timeout`.
    pub request_timeout: Duration,
    /// See `--allowed-origins`.
    pub allowed_origins: Vec<String>,
    /// Consumer batches: at most this many events (default 500) ...
    pub batch_max: usize,
    /// ... or what arrived within this long of the first (default 2 ms).
    pub batch_linger: Duration,
    /// Fault injection for tests: after this many applied events the consumer stops between its database commit
    /// and its offset commit, as a crash there would.
    pub stop_before_offset_commit: Option<u64>,
}

impl Config {
    /// Settings with defaults, for `service` on `mysql_url`.
    pub fn new(service: Service, mysql_url: &str, brokers: &str) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("an address"),
            mysql_url: mysql_url.to_owned(),
            brokers: brokers.to_owned(),
            topic_prefix: "shop".into(),
            users_db: "users".into(),
            catalog_db: "catalog".into(),
            orders_db: "orders".into(),
            group: service.name().into(),
            pending_timeout: Duration::from_secs(60),
            reservation_ttl: Duration::from_secs(120),
            reconcile_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            batch_max: 500,
            batch_linger: Duration::from_millis(2),
            stop_before_offset_commit: None,
        }
    }

    /// The change topic of `database.table`.
    pub fn topic(&self, database: &str, table: &str) -> String {
        topic_name(&self.topic_prefix, &TableId::new(database, table))
    }

    /// Checks what can be checked without I/O; the message says how to fix it. Only `serve` (running the service)
    /// needs the brokers: the subcommands (reconcile, operator commands, replaying dead letters) work on the
    /// database alone.
    pub fn validate(&self, service: Service, serve: bool) -> Result<()> {
        mysql_async::Opts::from_url(&self.mysql_url)
            .with_context(|| "--mysql-url (SERVICE_MYSQL_URL) is not a mysql:// URL".to_string())?;
        if serve && service != Service::Users && self.brokers.trim().is_empty() {
            bail!("{} consumes change topics: set --brokers or KAFKA_BROKERS (host:port)", service.name());
        }
        if service == Service::Catalog && self.reservation_ttl <= self.pending_timeout {
            bail!(
                "--reservation-ttl ({:?}) must be longer than --pending-timeout ({:?}), else a reservation can expire \
                 while its order may still be confirmed",
                self.reservation_ttl,
                self.pending_timeout
            );
        }
        if self.reconcile_interval.is_zero() {
            bail!("--reconcile-interval must be more than zero");
        }
        if self.request_timeout.is_zero() {
            bail!("--request-timeout must be more than zero (e.g. 10s)");
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| !valid_origin(o)) {
            bail!("--allowed-origins: `{bad}` is not an origin; write scheme://host[:port], e.g. https://shop.example:8443");
        }
        if self.batch_max == 0 {
            bail!("--batch-max (SERVICE_BATCH_MAX) must be at least 1");
        }
        Ok(())
    }
}

/// `scheme://host[:port]` with nothing after it, as browsers send in `Origin`.
fn valid_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains(['/', '?', '#', ' '])
}

/// Connects to the service's database (UTC session time zone) and checks its tables exist.
pub async fn connect(service: Service, url: &str) -> Result<mysql_async::Pool> {
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?)
        .init(vec!["SET time_zone = '+00:00'"]);
    let pool = mysql_async::Pool::new(opts);
    let table = match service {
        Service::Users => "users",
        Service::Catalog => "reservations",
        Service::Orders => "order_history",
    };
    let mut conn = pool.get_conn().await.with_context(|| format!("cannot connect to the {} database", service.name()))?;
    let found: Option<String> = conn
        .exec_first("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?", (table,))
        .await?;
    drop(conn);
    if found.is_none() {
        bail!("table `{table}` is missing: apply migrations/{}/*.sql to the database (scripts/stack up does)", service.name());
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_a_consuming_service_needs_the_brokers() {
        let url = "mysql://u:p@127.0.0.1:3306/catalog";
        let without = Config::new(Service::Catalog, url, "");
        assert!(without.validate(Service::Catalog, true).is_err());
        assert!(without.validate(Service::Catalog, false).is_ok());
        assert!(Config::new(Service::Users, url, "").validate(Service::Users, true).is_ok());
        assert!(Config::new(Service::Catalog, url, "127.0.0.1:9092").validate(Service::Catalog, true).is_ok());
    }
}
