//! Configuration (command line and environment, through clap), start-up checks, and the process around a service:
//! HTTP server, change-event consumer and periodic tasks, until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cdc_contract::{topic_name, TableId};
use clap::{Parser, Subcommand};
use mysql_async::prelude::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::{catalog, orders, users};

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

/// A service of the shop. Every option can also be set by the environment variable shown.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address of the REST API (also /health, /metrics, /openapi.json).
    #[arg(long, env = "SERVICE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The service's own database: mysql://user:password@host:port/database.
    #[arg(long, env = "SERVICE_MYSQL_URL", hide_env_values = true)]
    mysql_url: String,
    /// Kafka bootstrap servers (catalog and orders consume change topics; the subcommands do not need them).
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Topic prefix of the capture: topics are `<prefix>.<database>.<table>`.
    #[arg(long, env = "SERVICE_TOPIC_PREFIX", default_value = "shop")]
    topic_prefix: String,
    /// Source database name of the users service, as it appears in topic names.
    #[arg(long, env = "SERVICE_USERS_DB", default_value = "users")]
    users_db: String,
    /// Source database name of the catalog service.
    #[arg(long, env = "SERVICE_CATALOG_DB", default_value = "catalog")]
    catalog_db: String,
    /// Source database name of the orders service.
    #[arg(long, env = "SERVICE_ORDERS_DB", default_value = "orders")]
    orders_db: String,
    /// Kafka consumer group (default: the service's name).
    #[arg(long, env = "SERVICE_GROUP")]
    group: Option<String>,
    /// orders: a PENDING order older than this is cancelled.
    #[arg(long, env = "SERVICE_PENDING_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pending_timeout: Duration,
    /// catalog: a reservation whose order is still PENDING after this long is released (status EXPIRED). Must be
    /// longer than the orders service's pending timeout.
    #[arg(long, env = "SERVICE_RESERVATION_TTL", value_parser = humantime::parse_duration, default_value = "120s")]
    reservation_ttl: Duration,
    /// How often reconciliation (and the timeout/expiry sweep) runs.
    #[arg(long, env = "SERVICE_RECONCILE_INTERVAL", value_parser = humantime::parse_duration, default_value = "2s")]
    reconcile_interval: Duration,
    /// A request whose handler takes longer is abandoned with a 503 (`timeout`).
    #[arg(long, env = "SERVICE_REQUEST_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    request_timeout: Duration,
    /// Comma-separated origins (`https://host[:port]`) whose browsers may send state-changing requests; a
    /// POST/PUT/PATCH/DELETE carrying any other `Origin` is refused with 403. Default: none.
    #[arg(long, env = "SERVICE_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// catalog, orders: at most this many change events per consumer batch (one database transaction).
    #[arg(long, env = "SERVICE_BATCH_MAX", default_value = "500")]
    batch_max: usize,
    /// catalog, orders: how long a consumer batch waits for more events after its first.
    #[arg(long, env = "SERVICE_BATCH_LINGER", value_parser = humantime::parse_duration, default_value = "2ms")]
    batch_linger: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs reconciliation once: prints what it found and repaired as JSON, then exits.
    Reconcile,
    #[command(flatten)]
    Operator(crate::operator::OperatorCommand),
    /// Re-applies the consumer's pending dead letters (of `--group`) through the consumer's idempotent apply: prints
    /// which applied, which were already applied and which failed again (they stay, with the new error) as JSON;
    /// exits 1 when any failed.
    ReplayDeadLetters,
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

/// A started service.
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    /// Ends when the server and every task have stopped; an error if one failed.
    pub done: JoinHandle<Result<()>>,
}

/// Starts `service`: the API, and for catalog and orders the consumer and the periodic reconciliation.
pub async fn start(service: Service, config: Config, shutdown: CancellationToken) -> Result<Running> {
    config.validate(service, true)?;
    let pool = connect(service, &config.mysql_url).await?;
    let metrics = Arc::new(Metrics::new(service.name()));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let config = Arc::new(config);
    let (router, tasks) = match service {
        Service::Users => (users::router(pool.clone(), metrics.clone()), vec![]),
        Service::Catalog => catalog::start(pool.clone(), config.clone(), metrics.clone(), shutdown.clone()),
        Service::Orders => orders::start(pool.clone(), config.clone(), metrics.clone(), shutdown.clone()),
    };
    if service == Service::Users {
        metrics.set_problem(None);
    }
    let policy = crate::http::HttpPolicy {
        request_timeout: config.request_timeout,
        allowed_origins: config.allowed_origins.clone(),
    };
    let router = crate::http::harden(router, metrics.clone(), policy);
    let token = shutdown.clone();
    let done = tokio::spawn(async move {
        let server = axum::serve(listener, router).with_graceful_shutdown(async move { token.cancelled().await });
        let served = server.await.context("HTTP server");
        shutdown.cancel();
        let mut result = served;
        for task in tasks {
            let r = task.await.context("task panicked").and_then(|r| r);
            if result.is_ok() {
                result = r;
            }
        }
        pool.disconnect().await.ok();
        result
    });
    Ok(Running { addr, metrics, done })
}

/// The process: parse arguments, run until a signal; exit code 2 for configuration errors.
pub fn main(service: Service) -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = Config {
        listen: args.listen,
        mysql_url: args.mysql_url,
        brokers: args.brokers.unwrap_or_default(),
        topic_prefix: args.topic_prefix,
        users_db: args.users_db,
        catalog_db: args.catalog_db,
        orders_db: args.orders_db,
        group: args.group.unwrap_or_else(|| service.name().to_owned()),
        pending_timeout: args.pending_timeout,
        reservation_ttl: args.reservation_ttl,
        reconcile_interval: args.reconcile_interval,
        request_timeout: args.request_timeout,
        allowed_origins: args.allowed_origins,
        batch_max: args.batch_max,
        batch_linger: args.batch_linger,
        stop_before_offset_commit: None,
    };
    if let Err(e) = config.validate(service, args.command.is_none()) {
        eprintln!("{}: {e:#}", service.name());
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async move {
        if let Some(Command::Operator(command)) = args.command {
            return match crate::operator::run(service, &config, command).await {
                Ok(entry) => {
                    println!("{}", serde_json::to_string_pretty(&entry).expect("JSON"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e:#}", service.name());
                    ExitCode::FAILURE
                }
            };
        }
        if let Some(Command::Reconcile) = args.command {
            return match reconcile_once(service, &config).await {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e:#}", service.name());
                    ExitCode::FAILURE
                }
            };
        }
        if let Some(Command::ReplayDeadLetters) = args.command {
            return match replay_dead_letters(service, &config).await {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
                    if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
                }
                Err(e) => {
                    eprintln!("{}: {e:#}", service.name());
                    ExitCode::FAILURE
                }
            };
        }
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            signal.cancel();
        });
        let running = match start(service, config, shutdown).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e:#}", service.name());
                return ExitCode::from(2);
            }
        };
        tracing::info!(service = service.name(), addr = %running.addr, "serving");
        match running.done.await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("{}: {e:#}", service.name());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("{}: {e}", service.name());
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs one reconciliation pass of `service` and returns its report.
pub async fn reconcile_once(service: Service, config: &Config) -> Result<crate::consumer::Reconciliation> {
    let pool = connect(service, &config.mysql_url).await?;
    let metrics = Metrics::new(service.name());
    let report = match service {
        Service::Users => bail!("the users service has nothing to reconcile"),
        Service::Catalog => catalog::reconcile(&pool, config, &metrics).await?,
        Service::Orders => orders::reconcile(&pool, config, &metrics).await?,
    };
    pool.disconnect().await.ok();
    Ok(report)
}

/// Replays the pending dead letters of `service`'s consumer and returns what became of them.
pub async fn replay_dead_letters(service: Service, config: &Config) -> Result<crate::dead_letters::ReplayReport> {
    let pool = connect(service, &config.mysql_url).await?;
    let report = match service {
        Service::Users => bail!("the users service consumes nothing, so it has no dead letters"),
        Service::Catalog => catalog::replay_dead_letters(&pool, config).await?,
        Service::Orders => orders::replay_dead_letters(&pool, config, Arc::new(Metrics::new(service.name()))).await?,
    };
    pool.disconnect().await.ok();
    Ok(report)
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
