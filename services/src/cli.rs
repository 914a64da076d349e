//! Configuration (command line and environment, through clap), start-up checks, and the process around a service:
//! HTTP server, change-event consumer and periodic tasks, until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use utoipa::OpenApi as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{connect, Config, Service};
use crate::metrics::Metrics;
use crate::{catalog, operator, orders, users};

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
    let (routes, openapi, tasks) = match service {
        Service::Users => {
            let (routes, openapi) = users::routes(pool.clone());
            (routes, openapi, vec![])
        }
        Service::Catalog => {
            let (routes, openapi, tasks) = catalog::start(pool.clone(), config.clone(), metrics.clone(), shutdown.clone());
            (routes.merge(operator::catalog_routes(pool.clone())), openapi.merge_from(operator::CatalogDoc::openapi()), tasks)
        }
        Service::Orders => {
            let (routes, openapi, tasks) = orders::start(pool.clone(), config.clone(), metrics.clone(), shutdown.clone());
            (routes.merge(operator::orders_routes(pool.clone())), openapi.merge_from(operator::OrdersDoc::openapi()), tasks)
        }
    };
    let router = crate::http::with_common_routes(routes, metrics.clone(), openapi);
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
pub async fn replay_dead_letters(service: Service, config: &Config) -> Result<crate::replay::ReplayReport> {
    let pool = connect(service, &config.mysql_url).await?;
    let report = match service {
        Service::Users => bail!("the users service consumes nothing, so it has no dead letters"),
        Service::Catalog => catalog::replay_dead_letters(&pool, config).await?,
        Service::Orders => orders::replay_dead_letters(&pool, config, Arc::new(Metrics::new(service.name()))).await?,
    };
    pool.disconnect().await.ok();
    Ok(report)
}
