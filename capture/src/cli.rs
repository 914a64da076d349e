//! The `capture` command line: running the capture (no subcommand, or `run`), and the operator commands.
//!
//! Operator commands take `--config <capture.toml>`, the running capture's configuration, and reach it through its
//! HTTP server (`listen`, or `--url`; see [`crate::api`]). `skip`, `pause` and `resume` also work on a capture that
//! is not running: when nothing answers at that address they take the state_dir lock ([`crate::lock`]) and edit
//! the state directory themselves. `replay` needs no capture at all.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::api::{Action, SkipRequest, Skipped, SourceStatus, Sources};
use crate::checkpoint::{CheckpointStore, FileCheckpointStore};
use crate::config::{Config, Settings, TableFilter};
use crate::control::{self, Pause};
use crate::history::os_user;
use crate::lock::{LockError, StateDirLock};
use crate::remote::{base_url, refused, request, NotRunning, Remote};
use crate::replay::{self, parse_position, Encoding, Format};
use crate::skip::{self, Audit, Target};
use crate::transform::now_ms;

/// Tails MySQL/MariaDB binlogs into Kafka as Debezium-compatible change events.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// TOML configuration file (see capture.example.toml); CDC_CAPTURE_* variables override it. For the operator
    /// commands: the running capture's configuration.
    #[arg(long, short, env = "CDC_CAPTURE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Validate the configuration and each source server's settings, privileges and checkpoint, then exit.
    #[arg(long)]
    pub check: bool,
    /// An operator command; without one, the capture runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the capture (the same as no subcommand).
    Run,
    /// Print each source's state, position, lag, checkpoint age and events as a table.
    Status(Remote),
    /// Pause one source: it stops reading until `resume` (also across restarts).
    Pause(PauseArgs),
    /// Resume a paused source from its checkpoint.
    Resume(PauseArgs),
    /// Move a stopped source's checkpoint forward to FILE:POS or past a GTID, recorded in its history.
    Skip(SkipArgs),
    /// Print the change events of a binlog window as the capture would publish them, without Kafka.
    Replay(ReplayArgs),
    /// Re-snapshot one table online, while the source keeps streaming (an incremental snapshot by primary-key
    /// chunks; progress in /health and /metrics).
    Resnapshot(crate::resnapshot::cli::Args),
}

/// `pause` and `resume`.
#[derive(clap::Args, Debug)]
pub struct PauseArgs {
    /// The source's name.
    #[arg(long)]
    pub source: String,
    /// Who; default: the OS user.
    #[arg(long)]
    pub actor: Option<String>,
    /// Why.
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub remote: Remote,
}

/// `skip`.
#[derive(clap::Args, Debug)]
pub struct SkipArgs {
    /// The source's name.
    #[arg(long)]
    pub source: String,
    /// FILE:POS (the end of a transaction after the checkpoint) or a GTID (skip up to and including it).
    #[arg(long)]
    pub to: String,
    /// Who; default: the OS user.
    #[arg(long)]
    pub actor: Option<String>,
    /// Why (required; recorded in the history).
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub remote: Remote,
}

/// `replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// `mysql://user:password@host:port[/db]` of an account with REPLICATION SLAVE and SELECT; default: the URL of
    /// `--source` in `--config`.
    #[arg(long)]
    pub source_url: Option<String>,
    /// The source in `--config` whose name, tables, topic prefix, tombstones and epoch the events get (as the
    /// capture publishes them); without `--config`: the name only (default `replay`), tables from the URL's
    /// database, prefix `--prefix`.
    #[arg(long)]
    pub source: Option<String>,
    /// Start of the window, FILE:POS (a transaction boundary).
    #[arg(long)]
    pub from: String,
    /// End of the window, FILE:POS (an event boundary; events ending at or before it are shown).
    #[arg(long)]
    pub to: String,
    /// `json`: one line per record; `none`: only the counts.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Topic prefix without `--config`.
    #[arg(long, default_value = "shop")]
    pub prefix: String,
    /// `source.epoch` of the events; default: the checkpoint's epoch with `--config`, else 0.
    #[arg(long)]
    pub epoch: Option<u32>,
    /// The replica server_id of the dump; default: a random one in 1000000000-1999999999.
    #[arg(long)]
    pub server_id: Option<u32>,
}

/// Loads and validates the configuration.
pub fn settings(config: Option<&Path>) -> Result<Settings> {
    Ok(Config::load(config).and_then(Config::validate)?)
}

/// Runs an operator command; returns the process's exit code.
pub async fn execute(config: Option<&Path>, command: Command) -> Result<u8> {
    match command {
        Command::Run => unreachable!("main runs the capture"),
        Command::Status(remote) => status(&settings(config)?, &remote).await,
        Command::Pause(args) => pause_or_resume(config, args, true).await,
        Command::Resume(args) => pause_or_resume(config, args, false).await,
        Command::Skip(args) => skip(config, args).await,
        Command::Replay(args) => replay(config, args).await,
        Command::Resnapshot(args) => {
            println!("{}", crate::resnapshot::cli::run(&settings(config)?, &args).await?);
            Ok(0)
        }
    }
}

async fn status(settings: &Settings, remote: &Remote) -> Result<u8> {
    let base = base_url(settings, remote);
    let (code, body) = request(&base, "GET", "/sources", None).await?;
    if code != 200 {
        return Err(refused(code, &body));
    }
    let sources: Sources = serde_json::from_str(&body).context("GET /sources: not the expected JSON")?;
    print!("{}", render_status(&sources));
    Ok(if sources.sources.iter().any(|s| s.state == "failed") { 1 } else { 0 })
}

/// The status table.
pub fn render_status(sources: &Sources) -> String {
    let headers = ["source", "state", "position", "lag", "checkpoint age", "events", "detail"];
    let rows: Vec<Vec<String>> = sources.sources.iter().map(status_row).collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for cells in std::iter::once(headers.map(str::to_owned).to_vec()).chain(rows) {
        let line: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 5 { format!("{c:>w$}", w = widths[i]) } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if sources.sources.is_empty() {
        out.push_str("no source configured\n");
    }
    out
}

fn status_row(s: &SourceStatus) -> Vec<String> {
    let detail = match (&s.error, &s.paused) {
        (Some(e), _) => e.replace(['\n', '\r'], " "),
        (None, Some(p)) => p.describe(),
        (None, None) => "-".into(),
    };
    vec![
        s.name.clone(),
        s.state.clone(),
        if s.position.is_empty() { "-".into() } else { s.position.clone() },
        duration(s.lag_seconds),
        duration(s.checkpoint_age_seconds),
        thousands(s.events),
        detail,
    ]
}

/// `812 ms`, `3.4 s`, `2 min 05 s`, `3 h 07 min`.
fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 1.0 => format!("{} ms", (s * 1000.0).round() as u64),
        s if s < 60.0 => format!("{s:.1} s"),
        s if s < 3600.0 => format!("{} min {:02} s", s as u64 / 60, s as u64 % 60),
        s => format!("{} h {:02} min", s as u64 / 3600, s as u64 % 3600 / 60),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The lock of a capture that is not running, or why it cannot be had.
fn offline_lock(settings: &Settings, base: &str) -> Result<StateDirLock> {
    match StateDirLock::acquire(&settings.state_dir) {
        Ok(lock) => Ok(lock),
        Err(LockError::Held { holder, .. }) => bail!(
            "no capture answers at {base}, but {holder} holds the lock of state_dir {}: pass the running capture's \
             address with --url",
            settings.state_dir.display()
        ),
        Err(e) => Err(e.into()),
    }
}

fn known_source(settings: &Settings, source: &str) -> Result<()> {
    if !settings.sources.iter().any(|s| s.name == source) {
        let names: Vec<&str> = settings.sources.iter().map(|s| s.name.as_str()).collect();
        bail!("no source {source:?} in the configuration (sources: {})", names.join(", "));
    }
    Ok(())
}

async fn pause_or_resume(config: Option<&Path>, args: PauseArgs, pause: bool) -> Result<u8> {
    let settings = settings(config)?;
    known_source(&settings, &args.source)?;
    let actor = args.actor.unwrap_or_else(os_user);
    let base = base_url(&settings, &args.remote);
    let verb = if pause { "pause" } else { "resume" };
    let body = serde_json::to_string(&Action { actor: actor.clone(), reason: args.reason.clone() })?;
    match request(&base, "POST", &format!("/sources/{}/{verb}", args.source), Some(body)).await {
        Ok((code, _)) if (200..300).contains(&code) => {
            println!("source {}: {}d (capture at {base})", args.source, verb);
            return Ok(0);
        }
        Ok((code, body)) => return Err(refused(code, &body)),
        Err(e) if e.is::<NotRunning>() => {}
        Err(e) => return Err(e),
    }
    let _lock = offline_lock(&settings, &base)?;
    let dir = &settings.state_dir;
    let current = control::load_pause(dir, &args.source)?;
    match (pause, current) {
        (true, Some(p)) => bail!("source {} is already paused {}", args.source, p.describe()),
        (false, None) => bail!("source {} is not paused", args.source),
        (true, None) => {
            let p = Pause { actor: actor.clone(), reason: args.reason.clone(), since_ms: now_ms() };
            control::store_pause(dir, &args.source, Some(&p), &actor, &args.reason)?;
        }
        (false, Some(_)) => control::store_pause(dir, &args.source, None, &actor, &args.reason)?,
    }
    tracing::warn!(source = %args.source, %actor, reason = %args.reason, "source {verb}d while the capture is not running");
    println!("source {}: {verb}d (the capture is not running; recorded in {})", args.source, dir.display());
    Ok(0)
}

async fn skip(config: Option<&Path>, args: SkipArgs) -> Result<u8> {
    let settings = settings(config)?;
    known_source(&settings, &args.source)?;
    if args.reason.trim().is_empty() {
        bail!("--reason must say why the events are skipped (it is recorded in the history)");
    }
    let target = Target::parse(&args.to).map_err(anyhow::Error::msg)?;
    let actor = args.actor.unwrap_or_else(os_user);
    let base = base_url(&settings, &args.remote);
    let body = serde_json::to_string(&SkipRequest { to: args.to.clone(), actor: actor.clone(), reason: args.reason.clone() })?;
    let skipped = match request(&base, "POST", &format!("/sources/{}/skip", args.source), Some(body)).await {
        Ok((200, body)) => serde_json::from_str::<Skipped>(&body).context("the skip's answer")?,
        Ok((code, body)) => return Err(refused(code, &body)),
        Err(e) if e.is::<NotRunning>() => {
            let _lock = offline_lock(&settings, &base)?;
            let source = settings.sources.iter().find(|s| s.name == args.source).expect("checked above");
            let store = FileCheckpointStore::new(&settings.state_dir, &source.name)?;
            let from = store.load()?.with_context(|| format!("source {} has no checkpoint yet: nothing to skip", source.name))?;
            let config = config.map_or_else(|| "<capture.toml>".to_owned(), absolute);
            skip::plan_and_apply(&settings, source, &from, &target, &config, &Audit { actor, reason: args.reason }).await?
        }
        Err(e) => return Err(e),
    };
    println!("source {}: checkpoint moved from {} to {} (GTID set {})", args.source, skipped.from, skipped.to, skipped.gtid_set);
    println!("skipped: {} row changes", skipped.skipped_rows);
    for u in &skipped.undecodable {
        println!("skipped undecodable event: {u}");
    }
    println!("replay the skipped range with:\n  {}", skipped.replay);
    Ok(0)
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

async fn replay(config: Option<&Path>, args: ReplayArgs) -> Result<u8> {
    let from = parse_position(&args.from).map_err(|e| anyhow::anyhow!("--from {e}"))?;
    let to = parse_position(&args.to).map_err(|e| anyhow::anyhow!("--to {e}"))?;
    let (url, encoding) = match config {
        Some(config) => {
            let settings = settings(Some(config))?;
            let name = match &args.source {
                Some(name) => name.clone(),
                None if settings.sources.len() == 1 => settings.sources[0].name.clone(),
                None => bail!("--source: the configuration has several sources"),
            };
            known_source(&settings, &name)?;
            let source = settings.sources.iter().find(|s| s.name == name).expect("checked above");
            let checkpoint = FileCheckpointStore::new(&settings.state_dir, &name)?.load()?;
            let epoch = args.epoch.or(checkpoint.map(|c| c.epoch)).unwrap_or(0);
            let url = match &args.source_url {
                Some(url) => mysql_async::Opts::from_url(url)
                    .map_err(|e| anyhow::anyhow!("--source-url is not a mysql:// URL: {e}"))?,
                None => source.opts.clone(),
            };
            let encoding = Encoding {
                source_name: name,
                topic_prefix: settings.topic_prefix.clone(),
                filter: source.filter.clone(),
                tombstones: settings.tombstones,
                epoch,
            };
            (url, encoding)
        }
        None => {
            let url = args.source_url.clone().context("give --source-url, or --config with --source")?;
            let opts = mysql_async::Opts::from_url(&url).map_err(|e| anyhow::anyhow!("--source-url is not a mysql:// URL: {e}"))?;
            let db = opts.db_name().context("--source-url needs a database in its path (the tables to replay)")?;
            let encoding = Encoding {
                source_name: args.source.clone().unwrap_or_else(|| "replay".into()),
                topic_prefix: args.prefix.clone(),
                filter: TableFilter::new(vec![format!("{db}.*")], vec![])?,
                tombstones: true,
                epoch: args.epoch.unwrap_or(0),
            };
            (opts, encoding)
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let totals =
        replay::replay(&url, replay::replica_id(args.server_id), &encoding, (&from, &to), args.format, &mut out).await?;
    writeln!(out, "rows={} bytes={}", totals.rows, totals.bytes)?;
    out.flush()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_has_a_row_per_source() {
        let sources = Sources {
            now_ms: 0,
            sources: vec![
                SourceStatus {
                    name: "users".into(),
                    state: "streaming".into(),
                    position: "binlog.000002:1234".into(),
                    lag_seconds: 0.4,
                    checkpoint_age_seconds: 75.0,
                    events: 1_234_567,
                    ..SourceStatus::default()
                },
                SourceStatus {
                    name: "orders".into(),
                    state: "failed".into(),
                    error: Some("source orders: the row\nimage is MINIMAL".into()),
                    ..SourceStatus::default()
                },
                SourceStatus {
                    name: "catalog".into(),
                    state: "paused".into(),
                    paused: Some(Pause { actor: "ops".into(), reason: "upgrade".into(), since_ms: 0 }),
                    lag_seconds: 7300.0,
                    ..SourceStatus::default()
                },
            ],
        };
        let text = render_status(&sources);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "source   state      position            lag         checkpoint age     events  detail");
        assert_eq!(lines[1], "users    streaming  binlog.000002:1234  400 ms      1 min 15 s      1,234,567  -");
        assert_eq!(lines[2], "orders   failed     -                   0 ms        0 ms                    0  source orders: the row image is MINIMAL");
        assert_eq!(lines[3], "catalog  paused     -                   2 h 01 min  0 ms                    0  by ops since 1970-01-01T00:00:00Z: upgrade");
        assert_eq!(render_status(&Sources::default()).lines().nth(1), Some("no source configured"));
    }

    #[test]
    fn the_capture_still_starts_without_a_subcommand() {
        let args = Args::try_parse_from(["capture", "--config", "c.toml"]).unwrap();
        assert!(args.command.is_none() && !args.check);
        let args = Args::try_parse_from(["capture", "skip", "--config", "c.toml", "--source", "s", "--to", "0-1-2", "--reason", "r"]).unwrap();
        assert_eq!(args.config.as_deref(), Some(Path::new("c.toml")));
        assert!(matches!(args.command, Some(Command::Skip(ref s)) if s.to == "0-1-2" && s.actor.is_none()));
        assert!(Args::try_parse_from(["capture", "skip", "--source", "s", "--to", "0-1-2"]).is_err(), "--reason is required");
        let args = Args::try_parse_from(["capture", "replay", "--source-url", "mysql://u@h/db", "--from", "b.1:4", "--to", "b.1:9", "--format", "none"]).unwrap();
        assert!(matches!(args.command, Some(Command::Replay(ref r)) if r.format == Format::None));
    }
}
