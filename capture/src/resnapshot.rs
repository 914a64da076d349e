//! Incremental snapshots: re-reading one table while the source keeps streaming (`capture resnapshot`, `POST
//! /sources/{name}/resnapshot`), so that consumers converge to the table's exact state without a restart.
//!
//! # The algorithm (DBLog / Debezium's incremental snapshot, with exact watermarks)
//!
//! The table is read in primary-key chunks of `snapshot_chunk_rows` rows (`WHERE [(filter) AND] key <= end AND key >
//! last ORDER BY key LIMIT n`, `end` being the highest key when the request came: rows inserted above it are
//! streamed anyway, so the resnapshot ends while inserts keep arriving), one chunk at a time, each in a read view of
//! its own: `START TRANSACTION WITH CONSISTENT SNAPSHOT`
//! plus the binlog position `P` of exactly that view (MariaDB's `binlog_snapshot_file`/`binlog_snapshot_position`,
//! taken under the binlog's commit lock; see [`crate::snapshot`]). `P` is the chunk's watermark: a transaction is in
//! the chunk's rows if and only if it ends at or before `P` in the binlog.
//!
//! The binlog reader ([`crate::stream`]) owns the ordering. While a chunk is outstanding it records the key of every
//! event of the table it emits, with the reader's position before that event's transaction (the low side), and a
//! `TRUNCATE` of the table. When the chunk has arrived and the reader stands between two transactions at a position
//! `C >= P` (the high watermark), it emits the chunk there, into the same queue as the streamed batches:
//!
//! - a row whose key changed in a transaction after `P` (recorded at a position `>= P`) is dropped: the stream has
//!   already emitted that change, with its full row image (`binlog_row_image=FULL`), newer than the chunk's row;
//!   this is what keeps a row deleted meanwhile from being resurrected;
//! - a `TRUNCATE` after `P` drops the whole chunk;
//! - every other row is emitted as op `r` with `source.file`/`pos` = `C`: its state at `P` is its state at `C`.
//!
//! If the reader is still before `P` when the chunk arrives, it emits the chunk once it reaches `P` exactly (nothing
//! to drop). Either way each emitted read has a version (`ChangeEvent::version`, `C << 16` with row 0 for reads)
//! above every event the stream emitted before it (all of which began before `C`) and below every later one (the
//! next transaction begins at `C` or after, and streamed rows count from 1), so consumers that keep the newest
//! version per key, and consumers that apply in partition order, both end with the table's state.
//!
//! The next chunk's read view is opened only after the previous chunk was emitted, so its `P` is at or above the
//! reader's position then, and the recorded keys can be forgotten at each emission: memory is one chunk of rows plus
//! the keys of the table changed while one chunk is read and waits (bounded by the write rate times the chunk's
//! read time).
//!
//! # Why these watermarks and not a signaling table
//!
//! Debezium writes low and high watermark rows into a signaling table of the source and treats everything between
//! them in the binlog as possibly concurrent with the chunk's SELECT. That needs a writable table and write
//! privileges in every source (and excluding that table from the topics), and its window is wider than the read. The
//! initial snapshot already gets the exact binlog position of its read view without writing (the server names it),
//! so each chunk does the same: no writes to the source, no extra privileges, and the window is exact. On MySQL,
//! which has no `binlog_snapshot_position`, the position is read under a brief `FLUSH TABLES WITH READ LOCK` per
//! chunk (needs RELOAD), as the initial snapshot does: writes pause for the moment it takes to open the view and read
//! `SHOW BINARY LOG STATUS` (not covered by integration tests; the local stack runs MariaDB).
//!
//! # Progress and crashes
//!
//! The checkpoint of the batch that carries a chunk names the table, the `--where` condition, the end key and the
//! chunk's last key ([`crate::checkpoint::ResnapshotProgress`]); every later checkpoint carries it on, until the chunk after which
//! nothing is left. The writer saves checkpoints only once everything before them is acknowledged, so after a crash
//! the stream resumes from the saved position and the resnapshot from the last acknowledged chunk; chunks emitted
//! after it are read and emitted again, in new read views, with newer versions.
//!
//! # Errors
//!
//! A request is validated before anything is emitted: the table must be captured by the source, exist and have a
//! primary key, and the `--where` condition must be valid SQL for it (prepared against the table). A transient error
//! while reading chunks restarts the source from its checkpoint (the resnapshot resumes with it); a definite one
//! (the table was dropped, a column of the condition was dropped) abandons the resnapshot with its error in
//! `/health` while streaming goes on.

mod chunks;
pub mod cli;
pub mod http;
mod window;

pub use crate::resnapshot_control::{Control, Phase, RequestError, Status};
pub(crate) use window::Resnapshot;
