//! `capture skip`: moves a stopped source's checkpoint forward, past events it cannot get past, with an audit
//! entry in the checkpoint history ([`crate::history`]) and a log line.
//!
//! The skip reads the binlog from the checkpoint to the target with the capture's own [`Transformer`] (events it
//! cannot decode are noted, not fatal, and statement-format row changes are passed over), so the new checkpoint is
//! exactly the one the capture would have saved at the target: its position, the GTID set including every skipped
//! transaction, the same epoch and server. Allowed targets:
//! - `FILE:POS`: the end of a transaction (the position after its COMMIT or XID event, as `mariadb-binlog` prints it
//!   with `# at`), after the checkpoint;
//! - a GTID (`0-1-42`, or `uuid:42`): the end of the transaction with that GTID (on MariaDB the first transaction
//!   of its domain whose sequence number is at least the given one).
//!
//! Refused: a target at or before the checkpoint, one inside a transaction (the message names the boundaries around
//! it), one past the binlog's end, a checkpoint of another server, and a checkpoint of an unfinished snapshot.
//! The skipped range, `[old position, new position)`, prints with `capture replay`.

use crate::checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore};
use crate::config::{Settings, SourceSettings, StatementDml};
use crate::decode::ServerFlavor;
use crate::error::CaptureError;
use crate::history::{self, Entry, Place};
use crate::position::{BinlogPosition, GtidSet};
use crate::replay::{check_listed, parse_position, place, BinlogWindow, Totals};
use crate::transform::{now_ms, Transformer};
use crate::position::Flavor;

/// Where a skip moves the checkpoint to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The end of the transaction that ends at this position.
    Position(BinlogPosition),
    /// The end of the transaction with this GTID (a set of one).
    Gtid(GtidSet),
}

impl Target {
    /// `FILE:POS` or a GTID.
    pub fn parse(text: &str) -> Result<Target, String> {
        if let Ok(position) = parse_position(text) {
            return Ok(Target::Position(position));
        }
        match GtidSet::parse(text) {
            Ok(set) if !set.is_empty() => Ok(Target::Gtid(set)),
            _ => Err(format!("--to {text:?} is neither a binlog position FILE:POS nor a GTID (0-1-42, uuid:42)")),
        }
    }
}

/// A planned skip.
#[derive(Debug, Clone)]
pub struct Skip {
    /// The checkpoint now.
    pub from: Checkpoint,
    /// The checkpoint after the skip.
    pub to: Checkpoint,
    /// What the skipped range holds, as replay counts it.
    pub totals: Totals,
    /// Events in the range the capture could not decode, with why.
    pub undecodable: Vec<String>,
}

/// Reads from `from` to `target` and returns the skip, or why it is refused.
pub async fn plan(settings: &Settings, source: &SourceSettings, from: &Checkpoint, target: &Target) -> Result<Skip, CaptureError> {
    let name = source.name.as_str();
    let refuse = |message: String| CaptureError::Definite { source_name: name.to_owned(), message };
    if from.snapshot.is_some() {
        return Err(refuse("the checkpoint is of an unfinished snapshot: skip moves a streaming checkpoint".into()));
    }
    if from.position.file.is_empty() {
        return Err(refuse("the checkpoint has no binlog position (it resumes by GTID set): skip needs one".into()));
    }
    if let Target::Position(to) = target {
        if place(to) <= place(&from.position) {
            return Err(refuse(format!(
                "--to {to} is not after the checkpoint {}: skip only moves forward (capture replay shows what lies \
                 before it)",
                from.position
            )));
        }
    }
    if let Target::Gtid(gtid) = target {
        if from.gtid_set.contains(gtid) {
            return Err(refuse(format!(
                "--to {gtid} is already in the checkpoint's GTID set {}: skip only moves forward",
                from.gtid_set
            )));
        }
    }
    // The capture's own replica id for the source: the source is stopped, so nothing else uses it.
    let mut window = BinlogWindow::open(name, &source.opts, source.server_id, &from.position).await?;
    let result = read_to(settings, source, &mut window, from, target).await;
    window.close().await;
    result
}

async fn read_to(
    settings: &Settings,
    source: &SourceSettings,
    window: &mut BinlogWindow,
    from: &Checkpoint,
    target: &Target,
) -> Result<Skip, CaptureError> {
    let name = source.name.as_str();
    let refuse = |message: String| CaptureError::Definite { source_name: name.to_owned(), message };
    if window.server_id != from.server_id {
        return Err(refuse(format!(
            "the checkpoint is of server_id {}, the server is server_id {}: skip reads by position on the checkpoint's \
             server",
            from.server_id, window.server_id
        )));
    }
    if let Target::Position(to) = target {
        check_listed(&window.binlogs, to, "--to").map_err(refuse)?;
    }
    let flavor = match window.flavor() {
        Flavor::MariaDb => ServerFlavor::MariaDb,
        Flavor::MySql => ServerFlavor::MySql,
    };
    let mut transformer = Transformer::new(
        name,
        &settings.topic_prefix,
        source.filter.clone(),
        settings.tombstones,
        &from.position,
        from.gtid_set.clone(),
        flavor,
    )
    .with_statement_row_changes(StatementDml::Skip, Default::default())
    .resumed_as(from.epoch, from.server_id);
    let mut totals = Totals::default();
    let mut undecodable = Vec::new();
    let mut records = Vec::new();
    let mut boundary = from.position.clone();
    while let Some(event) = window.next(&mut transformer).await? {
        let handled = transformer.handle(&event, &mut records);
        totals.add(&records);
        records.clear();
        let checkpoint = match handled {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                undecodable.push(e.to_string());
                None
            }
        };
        let Some(checkpoint) = checkpoint else { continue };
        let reached = match target {
            Target::Position(to) if checkpoint.position == *to => true,
            Target::Position(to) if place(&checkpoint.position) > place(to) => {
                return Err(refuse(format!(
                    "--to {to} is not a transaction boundary: the transactions around it end at {boundary} and {}",
                    checkpoint.position
                )));
            }
            Target::Position(_) => false,
            Target::Gtid(gtid) => checkpoint.gtid_set.contains(gtid),
        };
        if reached {
            return Ok(Skip { from: from.clone(), to: checkpoint, totals, undecodable });
        }
        boundary = checkpoint.position;
    }
    let end = window.binlogs.last().map(|(f, s)| format!("{f}:{s}")).unwrap_or_default();
    Err(refuse(match target {
        Target::Position(to) => format!("--to {to} was not reached: the binlog ends at {end}"),
        Target::Gtid(gtid) => format!("no transaction {gtid} after the checkpoint {} up to the binlog's end {end}", from.position),
    }))
}

/// The answer of skip.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Skipped {
    /// The checkpoint's position before.
    pub from: String,
    /// Its position now.
    pub to: String,
    /// The GTID set at `to`.
    pub gtid_set: String,
    /// Change events in the skipped range.
    pub skipped_rows: u64,
    /// Events of the range the capture could not decode, with why.
    pub undecodable: Vec<String>,
    /// The command that prints the skipped range.
    pub replay: String,
}

/// Plans the skip of `source` from its checkpoint `from` to `target` and applies it: the one path of
/// `POST /sources/{name}/skip` and of `capture skip` while no capture runs. `config` is the configuration file
/// named in the replay command of the answer. The caller holds the state_dir and the source is stopped (see
/// [`apply`]).
pub async fn plan_and_apply(
    settings: &Settings,
    source: &SourceSettings,
    from: &Checkpoint,
    target: &Target,
    config: &str,
    audit: &Audit,
) -> Result<Skipped, CaptureError> {
    let skip = plan(settings, source, from, target).await?;
    let replay = replay_command(config, &source.name, &skip);
    apply(settings, &source.name, &skip, audit, &replay)?;
    Ok(Skipped {
        from: skip.from.position.to_string(),
        to: skip.to.position.to_string(),
        gtid_set: skip.to.gtid_set.to_string(),
        skipped_rows: skip.totals.rows,
        undecodable: skip.undecodable,
        replay,
    })
}

/// Who skips and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Audit {
    /// Who.
    pub actor: String,
    /// Why (required, not empty).
    pub reason: String,
}

/// The command that prints the range a skip passed over.
pub fn replay_command(config: &str, source: &str, skip: &Skip) -> String {
    format!(
        "capture replay --config {config} --source {source} --from {} --to {}",
        skip.from.position, skip.to.position
    )
}

/// Records the skip in the history, then saves the new checkpoint, and logs it. The caller holds the state_dir
/// (the capture's own lock, or the lock taken by the command) and the source is stopped.
pub fn apply(settings: &Settings, source: &str, skip: &Skip, audit: &Audit, replay: &str) -> Result<(), CaptureError> {
    let checkpoint_error = |error| CaptureError::Checkpoint { source_name: source.to_owned(), error };
    let mut store = FileCheckpointStore::new(&settings.state_dir, source).map_err(checkpoint_error)?;
    if store.load().map_err(checkpoint_error)?.as_ref() != Some(&skip.from) {
        return Err(CaptureError::Definite {
            source_name: source.to_owned(),
            message: "the checkpoint moved while the skip was planned; run the skip again".into(),
        });
    }
    let entry = Entry {
        ts_ms: now_ms(),
        action: "skip".into(),
        actor: audit.actor.clone(),
        reason: audit.reason.clone(),
        from: Some(Place { position: skip.from.position.clone(), gtid_set: skip.from.gtid_set.clone() }),
        to: Some(Place { position: skip.to.position.clone(), gtid_set: skip.to.gtid_set.clone() }),
        skipped_rows: Some(skip.totals.rows),
        undecodable: skip.undecodable.clone(),
        replay: Some(replay.to_owned()),
    };
    history::append(&settings.state_dir, source, &entry).map_err(checkpoint_error)?;
    store.save(&skip.to).map_err(checkpoint_error)?;
    tracing::warn!(
        source, actor = %audit.actor, reason = %audit.reason, from = %skip.from.position, to = %skip.to.position,
        gtid = %skip.to.gtid_set, skipped_rows = skip.totals.rows, undecodable = skip.undecodable.len(),
        "checkpoint moved forward by an operator's skip"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_positions_or_gtids() {
        assert_eq!(Target::parse("binlog.000002:900").unwrap(), Target::Position(BinlogPosition::new("binlog.000002", 900)));
        assert_eq!(Target::parse("0-1-42").unwrap(), Target::Gtid(GtidSet::parse("0-1-42").unwrap()));
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562:42";
        assert_eq!(Target::parse(uuid).unwrap(), Target::Gtid(GtidSet::parse(uuid).unwrap()));
        for bad in ["", "binlog.000002", "later", "binlog.000002:x"] {
            assert!(Target::parse(bad).unwrap_err().contains("neither a binlog position"), "{bad}");
        }
    }
}
