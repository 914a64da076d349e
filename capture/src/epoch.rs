//! Epochs: row versions that keep growing when binlog positions restart.
//!
//! Consumers use an event's position as its row version ([`cdc_contract::SourceOrder`]) and ignore anything not
//! newer than what they hold. Positions restart lower after `RESET MASTER` (files start again at `000001`), on
//! another server (a failover to a replica numbers its files its own way) and on a new snapshot after either. So a
//! source has an *epoch*, published in every event's `source.epoch` and in heartbeats, which the version adds to the
//! file's sequence number: `version = (epoch + file_seq) << 48 + pos << 16 + row`. Call `epoch + file_seq` the
//! event's *place*.
//!
//! # The invariant
//!
//! Every event published later has a greater version than every event of the same key published before. Within an
//! epoch, positions of one binlog history only grow. Across a restart of positions, the capture picks the new epoch
//! `E'` so that the lowest place it can now produce is above the highest place ever published:
//!
//! `E' = max(E + 1, high + 1 - first)`, where `high` is the highest place published so far and `first` the lowest
//! file number the new stream can start in (the snapshot's file, or the server's oldest binlog when resuming by
//! GTID set, since streaming never goes back).
//!
//! `E + 1` keeps epochs strictly increasing, so `(epoch, file_seq, pos, row)` ordered lexicographically is the same
//! order as the version (and heartbeats order by epoch first); `high + 1 - first` makes the version order hold
//! whatever the new server's file numbers are. The brief form `E' = E + old file_seq` is the special case
//! `first = 1`; using the server's actual oldest file spends less of the 16 bits on a failover to a server with high
//! file numbers.
//!
//! # Where `high` comes from, and why not just the checkpoint
//!
//! The checkpoint lags what was published: records acknowledged after the last saved checkpoint, possibly in a newer
//! binlog file, are out but not recorded, so the checkpoint's file is not the highest place published. The epoch
//! file `<state_dir>/<source>.epoch` (`{"epoch":E,"high":H}`, replaced atomically like the checkpoint) records it
//! *before* it is used: the reader calls [`EpochFile::publishing`] before it hands records of a file to the sink,
//! which writes the file only when the place grows (once per binlog file, at rotation) or the epoch changes. So `H`
//! is at or above every place ever published.
//!
//! The epoch file is not moved away by a re-snapshot (only the checkpoint is), so a snapshot after a server change
//! or `RESET MASTER` also maps above everything published before: a new snapshot keeps its epoch only when its place
//! is above `H`, otherwise it raises it ([`EpochState::epoch_at`]). Losing the whole state directory loses `H`; the
//! capture then starts at epoch 0 again, as it did before epochs existed (consumers must then be rebuilt).
//!
//! A checkpoint older than the epoch file's epoch (the capture raised the epoch, published, and stopped before a
//! checkpoint of the new epoch was saved) is never resumed in its own epoch: the resume raises again, so events of
//! the older history sent again get versions above those already published in the newer one.
//!
//! # Limits
//!
//! The place must stay at or below 65,535 ([`cdc_contract::MAX_EPOCH_FILE`]); beyond, versions would wrap and
//! consumers would ignore changes, so the capture stops the source with [`CaptureError::VersionsExhausted`]
//! instead. Each raise spends about the highest file number of the history it leaves.

use std::fs;
use std::path::{Path, PathBuf};

use cdc_contract::MAX_EPOCH_FILE;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{write_atomically, CheckpointError};
use crate::error::CaptureError;

/// A source's epoch and the highest place (`epoch + file_seq`) it may have published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochState {
    /// The current epoch.
    pub epoch: u32,
    /// At or above `epoch + file_seq` of every event ever published by the source (0: nothing published).
    pub high: u64,
}

impl EpochState {
    /// The epoch for events whose lowest file number is `first`, after a restart of positions from a history whose
    /// epoch was `old_epoch`: above `old_epoch` and above every place published (see the module doc).
    pub fn raised(&self, old_epoch: u32, first: u64) -> u64 {
        let next = u64::from(self.epoch.max(old_epoch)) + 1;
        next.max((self.high + 1).saturating_sub(first))
    }

    /// The epoch for a new stream (a snapshot, or streaming from the current position) starting in file `first`:
    /// the current one when its places are all above what was published, else raised.
    pub fn epoch_at(&self, first: u64) -> u64 {
        if self.high == 0 || u64::from(self.epoch) + first > self.high {
            u64::from(self.epoch)
        } else {
            self.raised(self.epoch, first)
        }
    }
}

/// Whether events of `epoch` in file `file_seq` get exact versions; the definite error otherwise.
pub fn check_place(source: &str, epoch: u64, file_seq: u64) -> Result<u32, CaptureError> {
    match u32::try_from(epoch) {
        Ok(e) if epoch + file_seq <= MAX_EPOCH_FILE => Ok(e),
        _ => Err(CaptureError::VersionsExhausted { source_name: source.to_owned(), epoch, file_seq }),
    }
}

/// The epoch file of one source: `<dir>/<source>.epoch`.
#[derive(Debug)]
pub struct EpochFile {
    /// The source's name, for errors.
    source: String,
    path: PathBuf,
    tmp: PathBuf,
    /// What the file holds.
    state: EpochState,
}

impl EpochFile {
    /// Opens (reads, if it exists) the epoch file of `source` in `dir`.
    pub fn open(dir: &Path, source: &str) -> Result<EpochFile, CaptureError> {
        let error = |error| CaptureError::Checkpoint { source_name: source.to_owned(), error };
        fs::create_dir_all(dir).map_err(|e| error(CheckpointError::Io { path: dir.to_path_buf(), source: e }))?;
        let path = dir.join(format!("{source}.epoch"));
        let state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                error(CheckpointError::Corrupt {
                    path: path.clone(),
                    reason: format!(
                        "{e}; it records the source's epoch, which keeps row versions growing: restore it, or, if \
                         consumers are rebuilt from scratch anyway, delete it"
                    ),
                })
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => EpochState::default(),
            Err(e) => return Err(error(CheckpointError::Io { path, source: e })),
        };
        Ok(EpochFile { source: source.to_owned(), tmp: dir.join(format!(".{source}.epoch.tmp")), path, state })
    }

    /// What the file holds.
    pub fn state(&self) -> EpochState {
        self.state
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records durably, before they are published, that events of `epoch` in binlog file `file_seq` will be:
    /// writes the file when the place grows or the epoch changes (once per binlog file), else returns at once.
    pub fn publishing(&mut self, epoch: u32, file_seq: u64) -> Result<(), CaptureError> {
        check_place(&self.source, u64::from(epoch), file_seq)?;
        let place = u64::from(epoch) + file_seq;
        if epoch == self.state.epoch && place <= self.state.high {
            return Ok(());
        }
        let next = EpochState { epoch: epoch.max(self.state.epoch), high: place.max(self.state.high) };
        let bytes = serde_json::to_vec(&next).expect("an epoch serializes");
        tokio::task::block_in_place(|| write_atomically(&self.path, &self.tmp, &bytes))
            .map_err(|error| CaptureError::Checkpoint { source_name: self.source.clone(), error })?;
        self.state = next;
        Ok(())
    }
}

/// The numeric suffix of a binlog file name as a number of places; `None` without one.
pub fn file_seq(file: &str) -> Option<u64> {
    cdc_contract::file_seq(file).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case: the state, the old epoch, the first file of the new history, the epoch chosen. The new epoch plus
    /// the first new file is always above `high`, and the epoch always grows.
    #[test]
    fn raised_epochs_map_every_new_place_above_every_published_one() {
        let state = |epoch, high| EpochState { epoch, high };
        let cases = [
            // RESET MASTER at file 5 of epoch 0: files restart at 1.
            (state(0, 5), 0, 1, 5),
            // The unsaved window reached file 6 before the reset: above it too.
            (state(0, 6), 0, 1, 6),
            // A replica numbered higher: the epoch still goes up by one.
            (state(5, 7), 5, 40, 6),
            // Back to a server at file 3 after epoch 6 reached file 40.
            (state(6, 46), 6, 3, 44),
            // A checkpoint of an older epoch than the file's.
            (state(9, 12), 2, 1, 12),
            // Nothing published yet.
            (state(0, 0), 0, 1, 1),
        ];
        for (st, old, first, expected) in cases {
            let epoch = st.raised(old, first);
            assert_eq!(epoch, expected, "{st:?} old {old} first {first}");
            assert!(epoch + first > st.high && epoch > u64::from(st.epoch.max(old)));
        }
    }

    #[test]
    fn a_new_snapshot_keeps_the_epoch_only_above_everything_published() {
        let state = |epoch, high| EpochState { epoch, high };
        let cases = [
            // First start: nothing published.
            (state(0, 0), 1, 0),
            // The same server moved on to file 9 since: already above.
            (state(0, 5), 9, 0),
            // Re-snapshot on the same file: its pos may be higher, but the place is not: raise.
            (state(0, 5), 5, 1),
            // After RESET MASTER: file 1.
            (state(0, 5), 1, 5),
            (state(5, 7), 1, 7),
        ];
        for (st, first, expected) in cases {
            assert_eq!(st.epoch_at(first), expected, "{st:?} first {first}");
        }
    }

    #[test]
    fn the_epoch_file_is_written_before_a_place_grows_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("cdc-epoch-{}", std::process::id()));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        rt.block_on(async {
            let mut file = EpochFile::open(&dir, "users").unwrap();
            assert_eq!(file.state(), EpochState::default());
            file.publishing(0, 3).unwrap();
            file.publishing(0, 2).unwrap();
            assert_eq!(EpochFile::open(&dir, "users").unwrap().state(), EpochState { epoch: 0, high: 3 });
            file.publishing(3, 1).unwrap();
            assert_eq!(EpochFile::open(&dir, "users").unwrap().state(), EpochState { epoch: 3, high: 4 });
            let err = file.publishing(65_000, 536).unwrap_err();
            assert!(matches!(err, CaptureError::VersionsExhausted { .. }), "{err}");
            fs::write(file.path(), b"{").unwrap();
            assert!(EpochFile::open(&dir, "users").is_err());
        });
        fs::remove_dir_all(dir).unwrap();
    }
}
