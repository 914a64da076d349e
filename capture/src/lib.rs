//! Capture: tails each source database's binlog over the replication protocol and publishes Debezium-compatible
//! change events to Kafka, one topic per table (`<prefix>.<database>.<table>`), keyed by primary key.
//!
//! # Guarantees
//!
//! - **Nothing lost.** A source's checkpoint (binlog file/position and GTID set of the last transaction whose every
//!   event the broker acknowledged with `acks=all`) is saved only after those acknowledgements. After a crash at any
//!   moment, streaming resumes from it; events sent after it are sent again with identical `source` coordinates
//!   (`file`, `pos` of the transaction's GTID event, `row` within it), so consumers can drop duplicates.
//! - **Per-key order.** Events of one row go to one partition (murmur2 of the JSON key), in binlog order; the
//!   idempotent producer keeps that order across retries.
//! - **Growing row versions.** Consumers version rows by position; when positions restart lower (`RESET MASTER`,
//!   another server, a new snapshot) the source's epoch rises so versions keep growing (see [`epoch`]), and a
//!   checkpoint of another server resumes by GTID set (see [`resume`]).
//! - **Exact snapshot handoff.** The initial snapshot reads a consistent view and streaming starts at exactly the
//!   binlog position of that view (see [`snapshot`]).
//! - **Online re-snapshot of one table.** `capture resnapshot` reads a table again in primary-key chunks while the
//!   source streams; the binlog reader emits each chunk at a position after its read view, dropping rows the stream
//!   changed since, so consumers converge to the table's state (see [`resnapshot`]).
//! - **Schema changes.** Row events decode with the schema in their own TABLE_MAP (`binlog_row_metadata=FULL`), so
//!   both sides of a DDL decode right, also across restarts (see [`ddl`]).
//! - **Bounded memory.** Large transactions are split into batches (by count and bytes); the queue to the producer
//!   is bounded in batches and bytes ([`queue`]), and the producer's own queue in bytes.
//!
//! # Errors
//!
//! [`error::CaptureError`] separates transient errors (retried with backoff from the checkpoint) from definite
//! ones (wrong server settings, missing privileges, purged binlog), which stop the source with the remedy.
//!
//! # Isolation and liveness
//!
//! - **A definite error stops only its source** ([`supervise`]): it stays stopped with its error (`/health` 503
//!   naming it, `cdc_capture_source_failed` 1) while the others keep streaming. When the last source has failed
//!   the process exits with status 1 and every source's error; a restart meets the same errors until they are
//!   fixed. A shutdown after a source failed also exits with status 1 and names the failures.
//! - **Nothing waits forever** ([`timeouts`]): the binlog stream has a read deadline derived from the heartbeat
//!   period, every MySQL call and broker request a time limit, so a frozen server or broker turns `/health` to 503
//!   within seconds, and the source recovers by itself once it answers again.
//! - **Shutdown is bounded**: the writer's drain waits at most [`timeouts::DRAIN`] for acknowledgements (what is
//!   not acknowledged is sent again after the next start), and `main` exits [`timeouts::SHUTDOWN`] after the signal
//!   whatever is still pending.
//! - **One capture per `state_dir`** ([`lock`]).
//!
//! # Operator commands
//!
//! `capture status|pause|resume|skip|replay` ([`cli`]) reach a running capture through control endpoints on its
//! HTTP server ([`api`], state in [`control`]): a pause stops one source (and survives restarts), a skip moves a
//! failed source's checkpoint forward ([`skip`]) and starts it again, each recorded in the source's checkpoint
//! history ([`history`]); [`replay`] prints a binlog window as the capture would publish it, without Kafka.
//!
//! # Stages
//!
//! [`checks`] -> [`snapshot`] / [`stream`] (with [`transform`] and [`decode`]) -> [`sink`] -> [`checkpoint`],
//! wired per source by [`pipeline`]; [`http`] serves [`metrics`] and health.

pub mod api;
pub use cdc_common::backoff;
pub mod checkpoint;
pub mod checks;
pub mod cli;
pub mod config;
pub mod control;
pub mod ddl;
pub mod decode;
pub mod epoch;
pub mod error;
pub mod history;
pub mod http;
pub mod lock;
pub mod metrics;
pub mod oversized;
pub mod pipeline;
pub mod position;
pub mod queue;
pub mod remote;
pub mod replay;
pub mod resnapshot;
pub mod resnapshot_control;
pub mod resume;
pub mod schema;
pub mod sink;
pub mod skip;
pub mod snapshot;
pub mod stream;
pub mod timeouts;
pub mod transform;

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::FileCheckpointStore;
use crate::config::Settings;
use crate::error::CaptureError;
use crate::lock::StateDirLock;
use crate::metrics::Metrics;

/// Runs every source and the HTTP server until `shutdown`, or until every source has stopped with a definite
/// error. A source that fails stops alone (see [`supervise`]); the others keep streaming. Refuses to start while
/// another capture holds `state_dir` (see [`lock`]).
///
/// Returns an error when any source failed: [`Stopped::AllFailed`] when the last one did, [`Stopped::ShutDown`]
/// when the shutdown came after one or more had failed.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_config(settings, None, shutdown).await
}

/// [`run`]; `config_path` is the configuration file the capture was started with, for the commands its control
/// endpoints print (see [`api`]).
pub async fn run_with_config(
    settings: Settings,
    config_path: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let _lock = StateDirLock::acquire(&settings.state_dir)?;
    let settings = Arc::new(settings);
    let metrics = Metrics::new();
    let (control, mut restarts) = control::Control::new(settings.clone(), config_path)?;
    let listener = tokio::net::TcpListener::bind(settings.listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {} for /metrics and /health: {e}; set `listen` to a free address", settings.listen)
    })?;
    let http = tokio::spawn(http::serve_on(listener, metrics.clone(), Some(control.clone()), shutdown.clone()));
    let source_metrics: std::collections::HashMap<String, Arc<metrics::SourceMetrics>> =
        settings.sources.iter().map(|s| (s.name.clone(), metrics.source(&s.name))).collect();
    let start = {
        let (settings, shutdown, control) = (settings.clone(), shutdown.clone(), control.clone());
        move |name: &str| -> Option<(String, SourceRun)> {
            let source = settings.sources.iter().find(|s| s.name == name)?.clone();
            let source_metrics = source_metrics.get(name)?.clone();
            let paused = control.watch(name).ok()?;
            let guard = PanicGuard(source_metrics.clone());
            let run = pipeline::run_source(settings.clone(), source, source_metrics, shutdown.clone(), paused);
            Some((name.to_owned(), Box::pin(async move {
                let _guard = guard;
                run.await
            })))
        }
    };
    let sources = settings.sources.iter().filter_map(|s| start(&s.name)).collect();
    // Sources to start again (after a skip), from the control endpoints.
    let (again, again_rx) = tokio::sync::mpsc::unbounded_channel();
    let relay = tokio::spawn(async move {
        while let Some(name) = restarts.recv().await {
            if again.send(start(&name)).is_err() {
                return;
            }
        }
    });
    let outcome = supervise_restartable(sources, again_rx, &shutdown).await;
    relay.abort();
    shutdown.cancel();
    // The server stops with the shutdown token, in parallel with the sources; this waits only for what is left.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), http).await;
    outcome.map_err(Into::into)
}

/// One source's run, as [`supervise`] runs it.
type SourceRun = std::pin::Pin<Box<dyn Future<Output = Result<(), CaptureError>> + Send>>;

/// Marks its source failed when the source's task panics (unwinding drops it), so that `/health` does not go on
/// showing the state from before.
struct PanicGuard(Arc<metrics::SourceMetrics>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.set_state(metrics::SourceState::Failed("the source's task panicked (a bug; see the log)".into()));
        }
    }
}

/// Why [`run`] ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// Every source stopped with a definite error; nothing is left to run. A supervisor that restarts the process
    /// will see the same errors until their causes are fixed.
    #[error("every source failed: {}", list(.0))]
    AllFailed(Vec<(String, String)>),
    /// Shut down (SIGTERM/SIGINT) while these sources had failed.
    #[error("shut down with failed sources: {}", list(.0))]
    ShutDown(Vec<(String, String)>),
}

fn list(failures: &[(String, String)]) -> String {
    failures.iter().map(|(_, error)| error.as_str()).collect::<Vec<_>>().join("; ")
}

/// Runs each `(name, source)` until it ends: a source returns `Ok` when it stopped for `shutdown`, and an error
/// when it stopped by a definite error (it has already retried transient ones and set its state). A failure is
/// logged and stops only that source; the others go on. Returns once every source has ended: with the failures,
/// if any.
pub async fn supervise<F>(sources: Vec<(String, F)>, shutdown: &CancellationToken) -> Result<(), Stopped>
where
    F: Future<Output = Result<(), CaptureError>> + Send + 'static,
{
    supervise_restartable(sources, tokio::sync::mpsc::unbounded_channel().1, shutdown).await
}

/// [`supervise`], and while any source runs, starts the sources `restarts` sends (a failed source after a skip)
/// again: one that still runs is started once it has ended. `None` (an unknown source) is ignored.
pub async fn supervise_restartable<F>(
    sources: Vec<(String, F)>,
    mut restarts: tokio::sync::mpsc::UnboundedReceiver<Option<(String, F)>>,
    shutdown: &CancellationToken,
) -> Result<(), Stopped>
where
    F: Future<Output = Result<(), CaptureError>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    let mut names = std::collections::HashMap::new();
    let spawn = |tasks: &mut JoinSet<_>, names: &mut std::collections::HashMap<_, _>, name: String, source: F| {
        let id = tasks.spawn(source).id();
        tracing::info!(source = %name, "source started");
        names.insert(id, name);
    };
    for (name, source) in sources {
        spawn(&mut tasks, &mut names, name, source);
    }
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut waiting: Vec<(String, F)> = Vec::new();
    while !tasks.is_empty() {
        let done = tokio::select! {
            done = tasks.join_next_with_id() => done,
            Some(restart) = restarts.recv() => {
                if let Some((name, source)) = restart {
                    if names.values().any(|n| *n == name) {
                        waiting.push((name, source));
                    } else {
                        failures.retain(|(n, _)| *n != name);
                        spawn(&mut tasks, &mut names, name, source);
                    }
                }
                continue;
            }
        };
        let Some(done) = done else { break };
        let (id, error) = match done {
            Ok((id, Ok(()))) => (id, None),
            Ok((id, Err(e))) => (id, Some(e.to_string())),
            Err(join) => (join.id(), Some(format!("the source's task ended abnormally: {join}"))),
        };
        let name = names.remove(&id).unwrap_or_default();
        if let Some(error) = error {
            tracing::error!(source = %name, error = %error, running = tasks.len(), "source stopped; the others go on");
            failures.push((name.clone(), error));
        }
        if let Some(i) = waiting.iter().position(|(n, _)| *n == name) {
            let (name, source) = waiting.swap_remove(i);
            failures.retain(|(n, _)| *n != name);
            spawn(&mut tasks, &mut names, name, source);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else if shutdown.is_cancelled() {
        Err(Stopped::ShutDown(failures))
    } else {
        Err(Stopped::AllFailed(failures))
    }
}

/// `capture --check`: validates every source's server and checkpoint without streaming. Returns one line per
/// source.
pub async fn check(settings: &Settings) -> Result<Vec<String>, CaptureError> {
    let mut lines = Vec::new();
    for source in &settings.sources {
        let store = FileCheckpointStore::new(&settings.state_dir, &source.name)
            .map_err(|error| CaptureError::Checkpoint { source_name: source.name.clone(), error })?;
        let (pool, info, checkpoint) = pipeline::prepare(source, &store).await?;
        pool.disconnect().await.ok();
        let resume = match checkpoint {
            Some(cp) if cp.snapshot.is_some() => format!("resumes its snapshot ({} rows done)", cp.snapshot.map_or(0, |s| s.rows)),
            Some(cp) if info.plan.start == resume::Start::Gtid => format!(
                "resumes by GTID set {} in epoch {} ({})",
                cp.gtid_set,
                info.plan.epoch,
                info.plan.reason.as_deref().unwrap_or_default()
            ),
            Some(cp) => format!("resumes at {} ({}) in epoch {}", cp.position, cp.gtid_set, info.plan.epoch),
            None => format!("starts with snapshot mode {:?}", source.snapshot),
        };
        lines.push(format!("{}: ok ({} server_id {}); {resume}", source.name, info.version, info.server_id));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    type Source = Pin<Box<dyn Future<Output = Result<(), CaptureError>> + Send>>;

    fn definite(name: &str) -> CaptureError {
        CaptureError::Definite { source_name: name.into(), message: "the row image is MINIMAL".into() }
    }

    /// A source that fails at once.
    fn failing(name: &str) -> (String, Source) {
        let error = definite(name);
        (name.into(), Box::pin(async move { Err(error) }))
    }

    /// A source that runs until the shutdown and records that it was still running then.
    fn streaming(name: &str, shutdown: &CancellationToken, ran_to_shutdown: Arc<AtomicBool>) -> (String, Source) {
        let shutdown = shutdown.clone();
        (
            name.into(),
            Box::pin(async move {
                shutdown.cancelled().await;
                ran_to_shutdown.store(true, Ordering::SeqCst);
                Ok(())
            }),
        )
    }

    #[tokio::test]
    async fn a_failed_source_stops_alone_and_the_shutdown_reports_it() {
        let shutdown = CancellationToken::new();
        let (orders, users) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let sources = vec![
            streaming("orders", &shutdown, orders.clone()),
            failing("catalog"),
            streaming("users", &shutdown, users.clone()),
        ];
        let run = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { supervise(sources, &shutdown).await }
        });
        // The failure must not end the others: the supervisor is still running well after it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!run.is_finished(), "one failed source ended the whole run");
        assert!(!shutdown.is_cancelled(), "one failed source cancelled the others");
        shutdown.cancel();
        let outcome = run.await.unwrap();
        assert!(orders.load(Ordering::SeqCst) && users.load(Ordering::SeqCst), "the others ran until the shutdown");
        match outcome {
            Err(Stopped::ShutDown(failures)) => {
                assert_eq!(failures, vec![("catalog".into(), "source catalog: the row image is MINIMAL".into())]);
            }
            other => panic!("expected ShutDown with catalog's failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn when_every_source_failed_the_run_ends_by_itself_naming_each() {
        let shutdown = CancellationToken::new();
        let outcome = supervise(vec![failing("orders"), failing("users")], &shutdown).await;
        let error = outcome.unwrap_err();
        assert!(matches!(error, Stopped::AllFailed(ref f) if f.len() == 2), "{error:?}");
        let message = error.to_string();
        assert!(message.starts_with("every source failed: "), "{message}");
        assert!(message.contains("source orders: the row image") && message.contains("source users: the row"), "{message}");
    }

    #[tokio::test]
    async fn a_shutdown_with_healthy_sources_is_a_clean_stop() {
        let shutdown = CancellationToken::new();
        let ran = Arc::new(AtomicBool::new(false));
        shutdown.cancel();
        supervise(vec![streaming("orders", &shutdown, ran.clone())], &shutdown).await.unwrap();
        assert!(ran.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_panicking_source_is_reported_failed_in_health() {
        let source = Metrics::new().source("orders");
        source.set_state(metrics::SourceState::Streaming);
        let guard = PanicGuard(source.clone());
        let task = tokio::spawn(async move {
            let _guard = guard;
            panic!("a bug");
        });
        assert!(task.await.is_err());
        assert!(matches!(source.state(), metrics::SourceState::Failed(ref e) if e.contains("panicked")));
        let calm = PanicGuard(source.clone());
        source.set_state(metrics::SourceState::Streaming);
        drop(calm);
        assert_eq!(source.state(), metrics::SourceState::Streaming, "an ordinary end leaves the state alone");
    }

    /// A source that fails the first time and streams until the shutdown when started again (after a skip).
    #[tokio::test]
    async fn a_failed_source_started_again_runs_and_its_failure_is_forgotten() {
        let shutdown = CancellationToken::new();
        let ran = Arc::new(AtomicBool::new(false));
        let (again, restarts) = tokio::sync::mpsc::unbounded_channel();
        let sources = vec![failing("catalog"), streaming("users", &shutdown, Arc::new(AtomicBool::new(false)))];
        let run = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { supervise_restartable(sources, restarts, &shutdown).await }
        });
        again.send(Some(streaming("catalog", &shutdown, ran.clone()))).unwrap();
        again.send(None).unwrap();
        // Whether the restart came before or after the first run ended, it runs until the shutdown.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!run.is_finished());
        shutdown.cancel();
        run.await.unwrap().expect("no failure left: the source ran again until the shutdown");
        assert!(ran.load(Ordering::SeqCst), "the started source ran");
    }

    #[tokio::test]
    async fn a_panicking_source_counts_as_failed() {
        let shutdown = CancellationToken::new();
        let panicking: Source = Box::pin(async { panic!("a bug") });
        let error = supervise(vec![("orders".to_string(), panicking)], &shutdown).await.unwrap_err();
        assert!(matches!(error, Stopped::AllFailed(ref f) if f[0].0 == "orders"), "{error:?}");
    }
}
