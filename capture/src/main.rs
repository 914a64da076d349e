//! The `capture` binary: load configuration, init tracing, run until SIGINT/SIGTERM.
//!
//! Exit status: 0 after a shutdown with every source healthy; 1 when every source failed, when a shutdown came
//! after a source failed, when the state_dir is locked by another capture, or when the sources did not stop within
//! [`SHUTDOWN`] of the signal; 2 for an invalid configuration. `capture resnapshot` asks the running capture over
//! HTTP: 0 once it accepted the request, 1 when it refused it or could not be reached.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cdc_capture::timeouts::SHUTDOWN;
use tokio_util::sync::CancellationToken;

/// Tails MySQL/MariaDB binlogs into Kafka as Debezium-compatible change events.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML configuration file (see capture.example.toml); CDC_CAPTURE_* variables override it.
    #[arg(long, short, env = "CDC_CAPTURE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Validate the configuration and each source server's settings, privileges and checkpoint, then exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Commands to a running capture (its configuration names its HTTP server).
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Re-snapshot one table online, while the source keeps streaming (an incremental snapshot by primary-key
    /// chunks; progress in /health and /metrics).
    Resnapshot(cdc_capture::resnapshot::cli::Args),
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let settings = match cdc_capture::config::Config::load(args.config.as_deref()).and_then(|c| c.validate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("capture: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let code = runtime.block_on(async move {
        if let Some(Command::Resnapshot(request)) = &args.command {
            return match cdc_capture::resnapshot::cli::run(&settings, request).await {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("capture: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        if args.check {
            return match cdc_capture::check(&settings).await {
                Ok(lines) => {
                    lines.iter().for_each(|l| println!("{l}"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("capture: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
            signal.cancel();
        });
        let run = cdc_capture::run(settings, shutdown.clone());
        tokio::pin!(run);
        let result = tokio::select! {
            biased;
            result = &mut run => result,
            // After the signal, whatever is frozen: `run` bounds its own waits, this bounds the rest.
            _ = shutdown.cancelled() => match tokio::time::timeout(SHUTDOWN, &mut run).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!(
                    "the sources did not stop within {SHUTDOWN:?} of the signal; exiting anyway: what was not \
                     acknowledged is sent again from the checkpoints at the next start"
                )),
            },
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("capture: {e:#}");
                ExitCode::FAILURE
            }
        }
    });
    // Blocking calls still running (a broker call on a frozen broker) are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}
