//! Checkpoints: where a source resumes after a restart or a crash.
//!
//! A checkpoint names the position just after the last transaction whose every event the broker acknowledged
//! (`acks=all`), so resuming from it loses nothing; events acknowledged after the checkpoint was written are sent
//! again on resume, with identical source coordinates, so consumers can drop them.
//!
//! Where it lives: one small JSON file per source in the capture's state directory, replaced atomically (write to
//! a temporary file, fsync, rename, fsync the directory). Why a file and not a Kafka topic as Debezium does: the
//! capture is one process per source set, a local file costs one fsync per checkpoint with no extra broker round
//! trip, and it survives a broker that loses data (the capture then resends from the file's position). The cost is
//! that the state directory must be on durable storage (a volume in containers); losing it means a new snapshot.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::position::{BinlogPosition, GtidSet};

/// The durable state of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `server_id` of the source server the position belongs to; on another server the capture resumes by GTID set
    /// instead (see [`crate::resume`]).
    pub server_id: u32,
    /// The source's epoch at `position` (see [`crate::epoch`]); 0 in checkpoints written before epochs existed.
    #[serde(default)]
    pub epoch: u32,
    /// Where streaming resumes (the end of the last acknowledged transaction's commit event).
    pub position: BinlogPosition,
    /// Transactions acknowledged up to `position`.
    pub gtid_set: GtidSet,
    /// Commit time (ms since the epoch) of the last acknowledged transaction; 0 when unknown.
    pub ts_ms: i64,
    /// Present while an initial snapshot is incomplete: streaming starts at `position` once it is done.
    pub snapshot: Option<SnapshotProgress>,
    /// Present while an incremental snapshot of one table runs beside streaming (see [`crate::resnapshot`]): it
    /// continues after the last acknowledged chunk. Saved with the position in one atomic write, so a restart
    /// resumes both together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resnapshot: Option<ResnapshotProgress>,
}

/// How far an incremental snapshot of one table got: every chunk up to `last_key` is emitted and acknowledged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResnapshotProgress {
    /// The table, `db.table`.
    pub table: String,
    /// The operator's `--where` condition limiting the rows, if any.
    #[serde(default)]
    pub filter: Option<String>,
    /// The primary key of the last row of the last acknowledged chunk (a JSON array in key column order); `None`
    /// before the first chunk.
    #[serde(default)]
    pub last_key: Option<serde_json::Value>,
    /// The highest key of the table (within `filter`) when the resnapshot started: it reads up to there. Rows
    /// inserted above it later are streamed anyway, so it ends even while rows keep arriving at the key's end.
    /// `None` for a table that was empty then.
    #[serde(default)]
    pub end_key: Option<serde_json::Value>,
    /// Chunks emitted and acknowledged.
    #[serde(default)]
    pub chunks: u64,
    /// Rows emitted and acknowledged.
    #[serde(default)]
    pub rows: u64,
}

/// How far an initial snapshot got.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// Tables (`db.table`) completely emitted and acknowledged.
    pub tables_done: Vec<String>,
    /// The table being read and the primary key of its last acknowledged row (a JSON array, in key column order).
    pub current: Option<(String, serde_json::Value)>,
    /// Rows emitted and acknowledged so far.
    pub rows: u64,
}

/// Errors of a checkpoint store. Both are definite: retrying cannot make the disk writable.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file cannot be read, written or renamed.
    #[error("checkpoint file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file exists but is not a checkpoint.
    #[error("checkpoint file {path} is corrupt ({reason}); move it away to start with a new snapshot")]
    Corrupt { path: PathBuf, reason: String },
}

/// Durable storage of one source's checkpoint.
pub trait CheckpointStore: Send {
    /// The last saved checkpoint, if any.
    fn load(&self) -> Result<Option<Checkpoint>, CheckpointError>;
    /// Saves a checkpoint durably; returns only once it survives a crash.
    fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
}

/// A checkpoint in `<dir>/<source>.json`, replaced atomically.
#[derive(Debug)]
pub struct FileCheckpointStore {
    /// The checkpoint file.
    path: PathBuf,
    /// The temporary file written before the rename.
    tmp: PathBuf,
}

impl FileCheckpointStore {
    /// A store for `source` in `dir` (created if missing).
    pub fn new(dir: &Path, source: &str) -> Result<FileCheckpointStore, CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::Io { path: dir.to_path_buf(), source })?;
        Ok(FileCheckpointStore {
            path: dir.join(format!("{source}.json")),
            tmp: dir.join(format!(".{source}.json.tmp")),
        })
    }

    /// The checkpoint file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

}

impl CheckpointStore for FileCheckpointStore {
    fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| CheckpointError::Corrupt { path: self.path.clone(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CheckpointError::Io { path: self.path.clone(), source: e }),
        }
    }

    fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let bytes = serde_json::to_vec_pretty(checkpoint).expect("a checkpoint serializes");
        write_atomically(&self.path, &self.tmp, &bytes)
    }
}

/// Replaces `path` by `bytes` so that a crash leaves either the old or the new content: write `tmp`, fsync it,
/// rename it over `path`, fsync the directory.
pub(crate) fn write_atomically(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, source }
    };
    let mut file = File::create(tmp).map_err(io(tmp))?;
    file.write_all(bytes).map_err(io(tmp))?;
    file.sync_all().map_err(io(tmp))?;
    fs::rename(tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = std::env::temp_dir().join(format!("cdc-checkpoint-{}", std::process::id()));
        let mut store = FileCheckpointStore::new(&dir, "users").unwrap();
        assert_eq!(store.load().unwrap(), None);
        let mut cp = Checkpoint {
            server_id: 1,
            epoch: 3,
            position: BinlogPosition::new("binlog.000001", 4),
            gtid_set: GtidSet::parse("0-1-10").unwrap(),
            ts_ms: 5,
            snapshot: Some(SnapshotProgress::default()),
            resnapshot: None,
        };
        store.save(&cp).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp.clone()));
        cp.position.pos = 900;
        cp.snapshot = None;
        store.save(&cp).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp));
        fs::write(store.path(), b"{not json").unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
        fs::remove_dir_all(dir).unwrap();
    }

    /// Checkpoint files written before epochs existed have no `epoch`: they load as epoch 0, and a saved
    /// checkpoint carries it.
    #[test]
    fn checkpoints_without_an_epoch_load_as_epoch_zero() {
        let old = r#"{"server_id": 1, "position": {"file": "binlog.000002", "pos": 900}, "gtid_set": "0-1-10",
            "ts_ms": 5, "snapshot": null}"#;
        let cp: Checkpoint = serde_json::from_str(old).unwrap();
        assert_eq!(cp.epoch, 0);
        assert_eq!(cp.position, BinlogPosition::new("binlog.000002", 900));
        let tagged = r#"{"server_id": 1, "epoch": 7, "position": {"file": "binlog.000002", "pos": 900},
            "gtid_set": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:tag:1", "ts_ms": 5, "snapshot": null}"#;
        let cp: Checkpoint = serde_json::from_str(tagged).unwrap();
        assert_eq!(cp.epoch, 7);
        let text = serde_json::to_string(&cp).unwrap();
        assert!(text.contains(r#""epoch":7"#), "{text}");
        assert!(text.contains(r#""3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:tag:1""#), "{text}");
        assert_eq!(serde_json::from_str::<Checkpoint>(&text).unwrap(), cp);
    }
}
