//! Where a source resumes: at its checkpoint's binlog position, by its GTID set on a server whose positions differ,
//! or afresh; and with which epoch (see [`crate::epoch`]).
//!
//! A checkpoint's file/position is only meaningful in the binlog history it was taken in. The capture trusts it when
//! the server is the checkpoint's (`server_id`), the file is still listed by `SHOW BINARY LOGS` with at least the
//! position's bytes, and the server's GTID history agrees: on MariaDB `BINLOG_GTID_POS(file, pos)` gives back the
//! checkpoint's GTIDs, on MySQL `gtid_executed` holds them. After `RESET MASTER` one of these fails (files restart at
//! `000001`, the GTID state is emptied), as it does on another server.
//!
//! On the checkpoint's own server that means its binlog was reset or purged: GTIDs start over after `RESET MASTER`
//! (same domain and server id, same uuid), so the checkpoint's set would name other transactions there, and the
//! source stops with the re-snapshot remedy ([`CaptureError::CannotResume`], [`CaptureError::BinlogPurged`]).
//!
//! On another server the capture resumes by GTID set, which names transactions rather than places: MariaDB with
//! `SET @slave_connect_state` and an empty file name, MySQL with `COM_BINLOG_DUMP_GTID`. That is only exact when the
//! server's binlog holds every transaction after the set and the set itself: each of the checkpoint's GTIDs (per
//! MariaDB domain, the last one, by sequence number; per MySQL uuid/tag, every interval) is in the server's executed
//! set, and every purged transaction is in the checkpoint's set. If not, or if the checkpoint has no GTIDs, or a
//! snapshot was in progress (its streaming start is a position), the source stops with
//! [`CaptureError::CannotResume`] too. A resume by GTID set raises the epoch, since the new
//! history's positions may be lower. [`plan`] is the pure decision; [`server_facts`] reads what it needs.

use mysql_async::prelude::*;
use mysql_async::{BinlogStreamRequest, GnoInterval, Sid};

use crate::checkpoint::Checkpoint;
use crate::position::Flavor;
use crate::epoch::{file_seq, EpochState};
use crate::error::{classify_mysql, CaptureError};
use crate::position::{BinlogPosition, GtidSet};

/// What the server says about its binlog history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerFacts {
    /// `@@server_id`.
    pub server_id: u32,
    /// `SHOW BINARY LOGS`: files and sizes, oldest first.
    pub binlogs: Vec<(String, u64)>,
    /// Transactions in the server's binlog history: MariaDB `@@gtid_binlog_pos`, MySQL `@@gtid_executed`.
    pub executed: GtidSet,
    /// Transactions before the oldest binlog file (gone): MariaDB `BINLOG_GTID_POS(oldest file, 4)`, its GTID list;
    /// MySQL `@@gtid_purged`.
    pub purged: GtidSet,
    /// MariaDB: `BINLOG_GTID_POS` at the checkpoint's position, when its file is on the server.
    pub at_checkpoint: Option<GtidSet>,
}

/// How streaming starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the checkpoint's position (or its snapshot, if one is in progress).
    Position,
    /// From the checkpoint's GTID set.
    Gtid,
    /// No checkpoint: a snapshot or the server's current position; the epoch is chosen there
    /// ([`EpochState::epoch_at`]).
    Fresh,
}

/// The decision of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePlan {
    /// How streaming starts.
    pub start: Start,
    /// The epoch of what is published from there (for [`Start::Fresh`], the epoch file's, before
    /// [`EpochState::epoch_at`]).
    pub epoch: u32,
    /// Why the checkpoint's position is not used, or why the epoch was raised; `None` for a plain resume.
    pub reason: Option<String>,
}

impl ResumePlan {
    /// The checkpoint streaming starts from, given the saved one and the server's id: the saved one in the plan's
    /// epoch (naming this server, which [`plan`] found to be the checkpoint's or an old checkpoint's 0), or, to resume by GTID set, one with an empty file name (which [`stream_request`] turns into a GTID
    /// request; the first ROTATE event of the stream names the file).
    pub fn start_from(&self, checkpoint: Checkpoint, server_id: u32) -> Checkpoint {
        match self.start {
            Start::Gtid => Checkpoint {
                server_id,
                epoch: self.epoch,
                position: BinlogPosition::new("", 4),
                ..checkpoint
            },
            _ => Checkpoint { server_id, epoch: self.epoch, ..checkpoint },
        }
    }
}

/// Why resuming is impossible (the caller adds the re-snapshot remedy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The cause.
    pub why: String,
    /// Set when the checkpoint's file was purged from this very server (not reset, not another server).
    pub purged_file: Option<(String, String)>,
}

/// Why the checkpoint's position cannot be used on this server, if it cannot.
fn position_problem(cp: &Checkpoint, server: &ServerFacts) -> Option<String> {
    let file = &cp.position.file;
    if cp.server_id != 0 && cp.server_id != server.server_id {
        return Some(format!("the checkpoint was taken on server_id {} but the server is {}", cp.server_id, server.server_id));
    }
    let Some((_, size)) = server.binlogs.iter().find(|(f, _)| f == file) else {
        let newest = server.binlogs.last().map_or("none", |(f, _)| f.as_str());
        return Some(format!("binlog file {file} of the checkpoint is not on the server (newest: {newest})"));
    };
    if cp.position.pos > *size {
        return Some(format!(
            "position {} of the checkpoint is beyond the end of {file} ({size} bytes)",
            cp.position
        ));
    }
    if let Some(here) = &server.at_checkpoint {
        let differs = cp.gtid_set.mariadb_domains().any(|(d, s, n)| !here.mariadb_domains().any(|g| g == (d, s, n)));
        if differs {
            return Some(format!(
                "the server's binlog has GTID state {:?} at {}, the checkpoint {:?}",
                here.to_string(),
                cp.position,
                cp.gtid_set.to_string()
            ));
        }
    }
    if !server.executed.contains(&cp.gtid_set) {
        return Some(format!(
            "the server's GTID history ({:?}) lacks GTIDs of the checkpoint ({:?})",
            server.executed.to_string(),
            cp.gtid_set.to_string()
        ));
    }
    None
}

/// What the server lacks to resume from `set` by GTID, if anything.
fn gtid_problem(set: &GtidSet, server: &ServerFacts) -> Option<String> {
    if set.is_empty() {
        return Some("the checkpoint holds no GTID set to resume by".into());
    }
    if !server.executed.contains(set) {
        return Some(format!(
            "the server has not executed every transaction of the checkpoint's GTID set {:?} (the server's: {:?})",
            set.to_string(),
            server.executed.to_string()
        ));
    }
    // MariaDB sets hold the last GTID per domain: a purged domain is covered when the checkpoint is at or beyond
    // its last purged GTID. MySQL sets are intervals: every purged one must be in the checkpoint's set.
    let purged_missing = !set.contains(&server.purged);
    if purged_missing {
        return Some(format!(
            "the server purged transactions the capture has not seen (purged: {:?}, checkpoint: {:?})",
            server.purged.to_string(),
            set.to_string()
        ));
    }
    None
}

/// Decides where and in which epoch a source resumes, from its checkpoint, its epoch file and the server's facts.
pub fn plan(cp: Option<&Checkpoint>, epochs: EpochState, server: &ServerFacts) -> Result<ResumePlan, Refusal> {
    let Some(cp) = cp else {
        return Ok(ResumePlan { start: Start::Fresh, epoch: epochs.epoch, reason: None });
    };
    let cp_seq = file_seq(&cp.position.file).unwrap_or(0);
    // What was published may reach beyond the checkpoint (see the epoch module); the checkpoint itself too.
    let state = EpochState { epoch: epochs.epoch, high: epochs.high.max(u64::from(cp.epoch) + cp_seq) };
    let Some(problem) = position_problem(cp, server) else {
        if epochs.epoch > cp.epoch {
            let epoch = to_u32(state.raised(cp.epoch, cp_seq));
            let reason = format!("the checkpoint's epoch {} is older than the epoch file's {}", cp.epoch, epochs.epoch);
            return Ok(ResumePlan { start: Start::Position, epoch, reason: Some(reason) });
        }
        return Ok(ResumePlan { start: Start::Position, epoch: cp.epoch, reason: None });
    };
    let oldest = server.binlogs.first();
    let same_server_purged = cp.server_id == server.server_id
        && oldest.and_then(|(f, _)| file_seq(f)).is_some_and(|oldest| cp_seq < oldest);
    let refuse = |why: String| Refusal {
        why,
        purged_file: same_server_purged
            .then(|| (cp.position.file.clone(), oldest.map(|(f, _)| f.clone()).unwrap_or_default())),
    };
    if cp.server_id == 0 || cp.server_id == server.server_id {
        // The same server with another binlog history: RESET MASTER. Its GTIDs started over too (the same domain
        // and server id, or uuid), so the checkpoint's set names other transactions there now.
        let why = if same_server_purged {
            format!("{problem}: it was purged")
        } else {
            format!(
                "{problem}; the server's binlog was reset (RESET MASTER), so its GTIDs start over and the checkpoint's \
                 GTID set cannot be resumed from either"
            )
        };
        return Err(refuse(why));
    }
    if cp.snapshot.is_some() {
        return Err(refuse(format!("{problem}, and a snapshot was in progress, which can only go on in its own binlog")));
    }
    if let Some(lack) = gtid_problem(&cp.gtid_set, server) {
        return Err(refuse(format!("{problem}, and it cannot resume by GTID set: {lack}")));
    }
    let first = oldest.and_then(|(f, _)| file_seq(f)).unwrap_or(1);
    let epoch = to_u32(state.raised(cp.epoch, first));
    Ok(ResumePlan { start: Start::Gtid, epoch, reason: Some(problem) })
}

/// Epochs above `u32::MAX` are caught by [`crate::epoch::check_place`] before anything is published; saturate here.
fn to_u32(epoch: u64) -> u32 {
    u32::try_from(epoch).unwrap_or(u32::MAX)
}

/// Turns a refusal into the source's definite error.
pub fn refusal_error(source: &str, refusal: Refusal, checkpoint: &str) -> CaptureError {
    match refusal.purged_file {
        Some((needed, oldest)) => CaptureError::BinlogPurged {
            source_name: source.to_owned(),
            needed,
            oldest,
            checkpoint: checkpoint.to_owned(),
        },
        None => CaptureError::CannotResume {
            source_name: source.to_owned(),
            why: refusal.why,
            checkpoint: checkpoint.to_owned(),
            hint: "; or point the source back at the server the checkpoint belongs to".into(),
        },
    }
}

/// Reads the [`ServerFacts`] of the server `conn` is connected to; `checkpoint` decides whether the GTID state at
/// its position is read (MariaDB).
pub async fn server_facts(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
    source: &str,
    server_id: u32,
    binlogs: Vec<(String, u64)>,
    checkpoint: Option<&Checkpoint>,
) -> Result<ServerFacts, CaptureError> {
    let my = |e| classify_mysql(source, e);
    let parse = |text: Option<String>| {
        GtidSet::parse(&text.unwrap_or_default().replace('\n', ""))
            .map_err(|message| CaptureError::Definite { source_name: source.to_owned(), message })
    };
    let (executed, purged, at_checkpoint) = match flavor {
        Flavor::MariaDb => {
            let executed = parse(conn.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await.map_err(my)?)?;
            let purged = match binlogs.first() {
                Some((oldest, _)) => {
                    parse(conn.exec_first("SELECT BINLOG_GTID_POS(?, 4)", (oldest,)).await.map_err(my)?)?
                }
                None => GtidSet::default(),
            };
            let at = match checkpoint {
                Some(cp) if binlogs.iter().any(|(f, size)| *f == cp.position.file && cp.position.pos <= *size) => {
                    let at: Option<String> = conn
                        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&cp.position.file, cp.position.pos))
                        .await
                        .map_err(my)?;
                    Some(parse(at)?)
                }
                _ => None,
            };
            (executed, purged, at)
        }
        Flavor::MySql => {
            let executed = parse(conn.query_first("SELECT @@GLOBAL.gtid_executed").await.map_err(my)?)?;
            let purged = parse(conn.query_first("SELECT @@GLOBAL.gtid_purged").await.map_err(my)?)?;
            (executed, purged, None)
        }
    };
    Ok(ServerFacts { server_id, binlogs, executed, purged, at_checkpoint })
}

/// The session statements to run before the dump request, and the request, that stream from `start` with the
/// replica id `replica_id`: by position, or by GTID set when the start's file is empty ([`ResumePlan::start_from`]).
pub fn stream_request(
    start: &Checkpoint,
    flavor: Flavor,
    replica_id: u32,
) -> Result<(Vec<String>, BinlogStreamRequest<'_>), String> {
    let request = BinlogStreamRequest::new(replica_id);
    if !start.position.file.is_empty() {
        return Ok((Vec::new(), request.with_filename(start.position.file.as_bytes()).with_pos(start.position.pos)));
    }
    match flavor {
        // MariaDB resumes by GTID from `@slave_connect_state` when the file name is empty; COM_BINLOG_DUMP_GTID is
        // MySQL's.
        Flavor::MariaDb => {
            Ok((vec![format!("SET @slave_connect_state = '{}'", start.gtid_set)], request.with_filename(b"").with_pos(4)))
        }
        Flavor::MySql => Ok((Vec::new(), request.with_gtid().with_gtid_set(sids(&start.gtid_set)?))),
    }
}

/// The checkpoint's MySQL GTID set as COM_BINLOG_DUMP_GTID blocks: one per uuid/tag, intervals end-exclusive.
fn sids(set: &GtidSet) -> Result<Vec<Sid<'static>>, String> {
    set.mysql_intervals()
        .map(|(tsid, ranges)| {
            let (uuid, tag) = match tsid.split_once(':') {
                Some((uuid, tag)) => (uuid, Some(tag)),
                None => (tsid, None),
            };
            let hex: String = uuid.chars().filter(|c| *c != '-').collect();
            let mut bytes = [0u8; 16];
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("x"), 16)
                    .map_err(|_| format!("bad server UUID {uuid:?}"))?;
            }
            let intervals = ranges.iter().map(|&(a, b)| GnoInterval::new(a, b + 1)).collect();
            let sid = Sid::new(bytes).with_intervals(intervals);
            match tag {
                Some(tag) => {
                    let tag = mysql_common::packets::Tag::new(tag.to_owned()).map_err(|e| format!("GTID tag {tag:?}: {e}"))?;
                    Ok(sid.with_tag(tag))
                }
                None => Ok(sid),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
