//! The `views` binary: load configuration, init tracing, run until SIGINT/SIGTERM; or, with `views status`, print
//! the status of a running view service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Keeps reporting.order_report in ClickHouse from the captured change topics.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML configuration file (see views.example.toml); CDC_VIEWS_* variables override it.
    #[arg(long, short, env = "CDC_VIEWS_CONFIG")]
    config: Option<PathBuf>,
    /// Without a command: run the service.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a running view service's status (GET /status) as tables. Exit code 0 when it is healthy and every
    /// source is caught up, 1 when not, 2 when its status cannot be read.
    Status {
        /// Base URL of the view service.
        #[arg(long, env = "VIEWS_URL", default_value = "http://127.0.0.1:9091")]
        url: String,
        /// Longest wait for the answer (e.g. `5s`, `500ms`).
        #[arg(long, default_value = "5s", value_parser = humantime_serde::re::humantime::parse_duration)]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Status { url, timeout }) = args.command {
        return status(&url, timeout);
    }
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let settings = match cdc_views::config::Config::load(args.config.as_deref()).and_then(|c| c.validate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("views: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async move {
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
        match cdc_views::run(settings, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("views: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `views status`: the tables on stdout, the exit code from the verdict; 2 with the reason on stderr when the
/// status cannot be read.
fn status(url: &str, timeout: Duration) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(cdc_views::status::fetch(url, timeout)) {
        Ok(status) => {
            print!("view service {url}\n{}", cdc_views::status::render(&status));
            ExitCode::from(status.verdict().exit_code())
        }
        Err(e) => {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            eprintln!("views status: {e}{cause}");
            ExitCode::from(2)
        }
    }
}
