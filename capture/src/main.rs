//! The `capture` binary: load configuration, init tracing, run until SIGINT/SIGTERM; or run an operator command
//! (`capture status|pause|resume|skip|replay|resnapshot`, see [`cdc_capture::cli`]), which exits 0 when done and 1
//! with the error otherwise (`status`: 1 also when a source has failed).
//!
//! Exit status: 0 after a shutdown with every source healthy; 1 when every source failed, when a shutdown came
//! after a source failed, when the state_dir is locked by another capture, or when the sources did not stop within
//! [`SHUTDOWN`] of the signal; 2 for an invalid configuration.

use std::process::ExitCode;

use clap::Parser;
use cdc_capture::cli::{Args, Command};
use cdc_capture::timeouts::SHUTDOWN;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Some(command) = args.command.filter(|c| !matches!(c, Command::Run)) {
        // One core is enough for an operator command (and a replay measures one core).
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        return match runtime.block_on(cdc_capture::cli::execute(args.config.as_deref(), command)) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("capture: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match cdc_capture::config::Config::load(args.config.as_deref()).and_then(|c| c.validate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("capture: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let code = runtime.block_on(async move {
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
        let run = cdc_capture::run_with_config(settings, args.config.clone(), shutdown.clone());
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
