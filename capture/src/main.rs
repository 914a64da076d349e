//! The `capture` binary: load configuration, init tracing, run until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Tails MySQL/MariaDB binlogs into Kafka as Debezium-compatible change events.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML configuration file (see capture.example.toml); CDC_CAPTURE_* variables override it.
    #[arg(long, short, env = "CDC_CAPTURE_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration and each source server's settings, privileges and checkpoint, then exit.
    #[arg(long)]
    check: bool,
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
    runtime.block_on(async move {
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
        match cdc_capture::run(settings, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("capture: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
