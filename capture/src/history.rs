//! A source's checkpoint history: `<state_dir>/<source>.history.jsonl`, one JSON object per line, appended for
//! every operator action that changes what the source reads (skip, pause, resume), never rewritten.
//!
//! Each entry is written with one `write` on a file opened for appending, then fsynced, before the action takes
//! effect (the checkpoint is replaced, or the pause recorded): a crash in between leaves an entry for an action
//! that did not happen, never an action without its entry. A torn last line (a crash inside the write) is
//! ignored when the history is read.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointError;
use crate::position::{BinlogPosition, GtidSet};

/// One operator action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When (ms since the Unix epoch).
    pub ts_ms: i64,
    /// `skip`, `pause` or `resume`.
    pub action: String,
    /// Who: `--actor`, by default the OS user running the command.
    pub actor: String,
    /// Why, as given.
    pub reason: String,
    /// Where the checkpoint was (skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Place>,
    /// Where it was moved to (skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Place>,
    /// Change events in the skipped range (skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_rows: Option<u64>,
    /// Events of the range the capture could not decode, with why (skip).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undecodable: Vec<String>,
    /// The command that prints the skipped range (skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
}

/// A checkpoint's place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    /// Binlog position.
    pub position: BinlogPosition,
    /// GTID set at it.
    pub gtid_set: GtidSet,
}

/// The history file of `source` in `state_dir`.
pub fn path(state_dir: &Path, source: &str) -> PathBuf {
    state_dir.join(format!("{source}.history.jsonl"))
}

/// Appends `entry` durably.
pub fn append(state_dir: &Path, source: &str, entry: &Entry) -> Result<(), CheckpointError> {
    let path = path(state_dir, source);
    let io = |source| CheckpointError::Io { path: path.clone(), source };
    let mut line = serde_json::to_vec(entry).expect("an entry serializes");
    line.push(b'\n');
    let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path).map_err(io)?;
    // After a torn line, the entry starts on a line of its own.
    let len = file.metadata().map_err(io)?.len();
    if len > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::Start(len - 1)).and_then(|_| file.read_exact(&mut last)).map_err(io)?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    file.write_all(&line).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The entries of `source`, oldest first; a torn last line is left out.
pub fn read(state_dir: &Path, source: &str) -> Result<Vec<Entry>, CheckpointError> {
    let path = path(state_dir, source);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CheckpointError::Io { path, source }),
    };
    Ok(text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect())
}

/// The OS user running this process, for `--actor`'s default.
pub fn os_user() -> String {
    ["USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty())).unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_append_and_a_torn_last_line_is_ignored() {
        let dir = std::env::temp_dir().join(format!("cdc-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let entry = |action: &str| Entry {
            ts_ms: 1,
            action: action.into(),
            actor: "ops".into(),
            reason: "bad row".into(),
            from: Some(Place { position: BinlogPosition::new("binlog.000001", 4), gtid_set: GtidSet::default() }),
            to: None,
            skipped_rows: Some(3),
            undecodable: vec![],
            replay: None,
        };
        append(&dir, "src", &entry("skip")).unwrap();
        append(&dir, "src", &entry("pause")).unwrap();
        let mut file = OpenOptions::new().append(true).open(path(&dir, "src")).unwrap();
        file.write_all(b"{\"ts_ms\":2,\"act").unwrap();
        assert_eq!(read(&dir, "src").unwrap(), vec![entry("skip"), entry("pause")]);
        append(&dir, "src", &entry("resume")).unwrap();
        assert_eq!(read(&dir, "src").unwrap(), vec![entry("skip"), entry("pause"), entry("resume")]);
        assert_eq!(read(&dir, "other").unwrap(), vec![]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
