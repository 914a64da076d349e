//! The binlog reader's side of a resnapshot: which keys changed since a chunk's view, and where a chunk is emitted.
//! See the parent module for the algorithm.

use std::collections::HashMap;
use std::sync::Arc;

use cdc_contract::Op;
use mysql_async::Pool;
use tokio::sync::{mpsc, Notify, OwnedMutexGuard};
use tokio::task::JoinHandle;

use super::chunks::{self, Chunk, Reader, Refusal, Table};
use crate::resnapshot_control::Request;
use super::{Phase, RequestError, Status};
use crate::checkpoint::{Checkpoint, ResnapshotProgress};
use crate::position::Flavor;
use crate::config::{Settings, SourceSettings, TableFilter};
use crate::error::CaptureError;
use crate::metrics::SourceMetrics;
use crate::position::BinlogPosition;
use crate::snapshot::{json_to_params, TableContext};
use crate::transform::{key_of, now_ms, Record, Route};

/// What the binlog reader does for resnapshots during one run: owned by [`crate::stream::run`].
pub(crate) struct Resnapshot {
    /// Requests from the HTTP server, held for the run.
    requests: OwnedMutexGuard<mpsc::Receiver<Request>>,
    source_name: String,
    prefix: String,
    captured: TableFilter,
    pool: Pool,
    flavor: Flavor,
    /// `source.server_id` and `source.epoch` of the reads: the stream's.
    server_id: u32,
    epoch: u32,
    /// Rows per chunk.
    chunk_rows: usize,
    metrics: Arc<SourceMetrics>,
    /// The checkpoint of the last batch the reader sent: the position chunks are emitted at.
    last: Checkpoint,
    active: Option<Active>,
}

/// A running resnapshot.
struct Active {
    table: Table,
    /// As of the last chunk emitted; carried by every checkpoint.
    progress: ResnapshotProgress,
    dropped: u64,
    chunks: mpsc::Receiver<Result<Chunk, CaptureError>>,
    /// Lets the chunk task open the next view.
    go: Arc<Notify>,
    task: JoinHandle<()>,
    /// A chunk waiting for the reader to reach its view's position.
    pending: Option<Chunk>,
    /// Keys of the table changed since the last emission, with the reader's position before the change's
    /// transaction: a change recorded at or after a chunk's view position is newer than the chunk's row.
    changed: HashMap<Vec<u8>, BinlogPosition>,
    /// The position before the last `TRUNCATE` of the table since the last emission.
    truncated: Option<BinlogPosition>,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What woke the reader.
pub(crate) enum Wake {
    Request(Option<Request>),
    Chunk(Option<Result<Chunk, CaptureError>>),
}

/// `at` is at or after `view` in one server's binlog (an unknown file, before the first ROTATE of a GTID resume,
/// is before everything).
fn reached(at: &BinlogPosition, view: &BinlogPosition) -> bool {
    (at.file_seq(), at.pos) >= (view.file_seq(), view.pos)
}

impl Resnapshot {
    /// The run's resnapshot state, resuming the one `start` carries.
    pub(crate) async fn new(
        settings: &Settings,
        source: &SourceSettings,
        flavor: Flavor,
        pool: &Pool,
        start: &Checkpoint,
        metrics: &Arc<SourceMetrics>,
    ) -> Result<Resnapshot, CaptureError> {
        let requests = metrics.resnapshot.receiver.clone().lock_owned().await;
        let mut this = Resnapshot {
            requests,
            source_name: source.name.clone(),
            prefix: settings.topic_prefix.clone(),
            captured: source.filter.clone(),
            pool: pool.clone(),
            flavor,
            server_id: start.server_id,
            epoch: start.epoch,
            chunk_rows: source.snapshot_chunk_rows,
            metrics: metrics.clone(),
            last: start.clone(),
            active: None,
        };
        if let Some(progress) = start.resnapshot.clone() {
            match this.table(&progress.table, progress.filter.clone()).await {
                Ok(table) => {
                    tracing::info!(source = %this.source_name, table = %table.label, rows = progress.rows, "resnapshot resumed");
                    this.begin(table, progress);
                }
                Err(Refusal::Server(e)) if e.is_transient() => return Err(e),
                Err(Refusal::Server(e)) => this.abandon_progress(&progress, e.to_string()),
                Err(Refusal::Invalid(message)) => this.abandon_progress(&progress, message),
            }
        }
        Ok(this)
    }

    async fn table(&self, table: &str, filter: Option<String>) -> Result<Table, Refusal> {
        chunks::prepare(&self.pool, self.flavor, &self.source_name, &self.prefix, &self.captured, table, filter).await
    }

    fn begin(&mut self, table: Table, progress: ResnapshotProgress) {
        let (tx, chunks) = mpsc::channel(1);
        let go = Arc::new(Notify::new());
        let reader = Reader {
            pool: self.pool.clone(),
            flavor: self.flavor,
            source_name: self.source_name.clone(),
            id: table.id.clone(),
            columns: table.columns.clone(),
            pk: table.pk.clone(),
            filter: table.filter.clone(),
            limit: self.chunk_rows,
            end: progress.end_key.as_ref().map(json_to_params),
        };
        let after = progress.last_key.as_ref().map(json_to_params);
        let task = tokio::spawn(reader.run(after, tx, go.clone()));
        self.metrics.resnapshot_active(&table.label, true);
        self.metrics.count_resnapshot_rows(&table.label, 0);
        let active = Active {
            table,
            progress,
            dropped: 0,
            chunks,
            go,
            task,
            pending: None,
            changed: HashMap::new(),
            truncated: None,
        };
        self.metrics.resnapshot.set_status(status(&active, Phase::Running, None));
        self.active = Some(active);
    }

    /// Waits for a request or the next chunk; pending forever while there is nothing to wait for.
    pub(crate) async fn wake(&mut self) -> Wake {
        match &mut self.active {
            Some(active) if active.pending.is_none() => tokio::select! {
                request = self.requests.recv() => Wake::Request(request),
                chunk = active.chunks.recv() => Wake::Chunk(chunk),
            },
            _ => Wake::Request(self.requests.recv().await),
        }
    }

    /// Handles what [`Resnapshot::wake`] returned: validates and starts a requested resnapshot (answering the
    /// request), or keeps an arrived chunk until the reader reaches its view. A transient error of the chunk task is
    /// the run's error (the source resumes from its checkpoint); a definite one abandons the resnapshot.
    pub(crate) async fn woke(&mut self, wake: Wake) -> Result<(), CaptureError> {
        match wake {
            Wake::Request(None) => Ok(()),
            Wake::Request(Some(request)) => {
                if request.reply.is_closed() {
                    return Ok(()); // the requester gave up waiting: nobody wants it any more
                }
                let answer = match &self.active {
                    Some(active) => Err(RequestError::Busy {
                        source_name: self.source_name.clone(),
                        table: active.progress.table.clone(),
                        rows: active.progress.rows,
                    }),
                    None => match self.table(&request.table, request.filter.clone()).await {
                        Ok(table) => match chunks::end_key(&self.pool, &self.source_name, &table).await {
                            Ok(end) => Ok((table, end)),
                            Err(e) => Err(Refusal::Server(e)),
                        },
                        Err(refusal) => Err(refusal),
                    }
                    .map_err(|refusal| {
                        let source_name = self.source_name.clone();
                        match refusal {
                            Refusal::Invalid(message) => RequestError::Invalid { source_name, message },
                            Refusal::Server(e) => RequestError::Unavailable { source_name, message: e.to_string() },
                        }
                    }),
                };
                let answer = answer.map(|(table, end_key)| {
                    tracing::info!(source = %self.source_name, table = %table.label, filter = ?table.filter, "resnapshot started");
                    let progress = ResnapshotProgress {
                        table: table.label.to_string(),
                        filter: table.filter.clone(),
                        end_key,
                        ..ResnapshotProgress::default()
                    };
                    self.begin(table, progress);
                    self.metrics.resnapshot.status().expect("set by begin")
                });
                let _ = request.reply.send(answer);
                Ok(())
            }
            Wake::Chunk(Some(Ok(chunk))) => {
                if let Some(active) = &mut self.active {
                    active.pending = Some(chunk);
                }
                Ok(())
            }
            Wake::Chunk(Some(Err(e))) if e.is_transient() => Err(e),
            Wake::Chunk(Some(Err(e))) => {
                self.abandon(e.to_string());
                Ok(())
            }
            Wake::Chunk(None) => {
                self.abandon("the chunk reader ended unexpectedly (see the log)".into());
                Ok(())
            }
        }
    }

    fn abandon(&mut self, error: String) {
        if let Some(active) = self.active.take() {
            self.metrics.resnapshot_active(&active.table.label, false);
            self.metrics.resnapshot.set_status(status(&active, Phase::Abandoned, Some(error.clone())));
            tracing::warn!(source = %self.source_name, table = %active.table.label, %error, "resnapshot abandoned; streaming goes on");
        }
    }

    fn abandon_progress(&mut self, progress: &ResnapshotProgress, error: String) {
        tracing::warn!(source = %self.source_name, table = %progress.table, %error, "resnapshot cannot resume; abandoned");
        self.metrics.resnapshot.set_status(Status {
            table: progress.table.clone(),
            filter: progress.filter.clone(),
            state: Phase::Abandoned,
            chunks: progress.chunks,
            rows: progress.rows,
            dropped: 0,
            last_key: progress.last_key.clone(),
            end_key: progress.end_key.clone(),
            error: Some(error),
        });
    }

    /// Records the keys of the resnapshotted table among records the reader is about to send.
    pub(crate) fn observe(&mut self, records: &[Record]) {
        let Some(active) = &mut self.active else { return };
        for record in records.iter().filter(|r| *r.topic == *active.table.topic) {
            match (&record.key, record.route, &record.op) {
                (_, Route::AllPartitions, Some((_, Op::Truncate))) => active.truncated = Some(self.last.position.clone()),
                (Some(key), _, _) => {
                    active.changed.insert(key.clone(), self.last.position.clone());
                }
                _ => {}
            }
        }
    }

    /// The checkpoint the reader sends at a transaction end or heartbeat, with the resnapshot's progress; that is
    /// also the position where the next chunk may be emitted.
    pub(crate) fn checkpoint(&mut self, mut checkpoint: Checkpoint) -> Checkpoint {
        checkpoint.resnapshot = self.active.as_ref().map(|a| a.progress.clone());
        self.last = checkpoint.clone();
        checkpoint
    }

    /// The chunk to emit now, if one waits and the reader (between transactions) has reached its view: record
    /// batches of at most `batch_size` records, the last carrying the checkpoint with the new progress.
    pub(crate) fn ready(&mut self, batch_size: usize) -> Option<Vec<(Vec<Record>, Option<Checkpoint>)>> {
        let active = self.active.as_mut()?;
        if !active.pending.as_ref().is_some_and(|c| reached(&self.last.position, &c.view)) {
            return None;
        }
        let chunk = active.pending.take().expect("checked above");
        let table = &active.table;
        let at = BinlogPosition::new(self.last.position.file.clone(), self.last.position.pos);
        let context = TableContext {
            source: &self.source_name,
            server_id: self.server_id,
            epoch: self.epoch,
            table: &table.id,
            start: &at,
            columns: &table.columns,
            names: table.names.clone(),
            keys: table.keys.clone(),
            pk: &table.pk,
        };
        let ts_ms = now_ms();
        let mut records = Vec::with_capacity(chunk.rows.len());
        let read = chunk.rows.len() as u64;
        for values in chunk.rows {
            let key = key_of(&table.pk, &table.keys, Some(&values));
            if stale(&active.changed, active.truncated.as_ref(), &chunk.view, key.as_deref()) {
                continue;
            }
            // Rows count on across the resnapshot's chunks (as the initial snapshot's do), so reads emitted at one
            // position (chunks of an idle stream) keep distinct coordinates.
            let row = active.progress.rows + records.len() as u64;
            records.push(context.record(&table.topic, &table.label, values, row, ts_ms).0);
        }
        let emitted = records.len() as u64;
        active.dropped += read - emitted;
        active.changed.clear();
        active.truncated = None;
        active.progress.chunks += 1;
        active.progress.rows += emitted;
        if chunk.last_key.is_some() {
            active.progress.last_key = chunk.last_key;
        }
        self.metrics.count_resnapshot_rows(&table.label, emitted);
        let done = chunk.done;
        let checkpoint = Checkpoint { resnapshot: (!done).then(|| active.progress.clone()), ..self.last.clone() };
        self.last = checkpoint.clone();
        if done {
            let active = self.active.take().expect("active");
            tracing::info!(source = %self.source_name, table = %active.table.label, rows = active.progress.rows, dropped = active.dropped, "resnapshot complete");
            self.metrics.resnapshot_active(&active.table.label, false);
            self.metrics.resnapshot.set_status(status(&active, Phase::Done, None));
        } else {
            self.metrics.resnapshot.set_status(status(active, Phase::Running, None));
            active.go.notify_one();
        }
        let mut batches: Vec<(Vec<Record>, Option<Checkpoint>)> = Vec::new();
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            batches.push((records.by_ref().take(batch_size.max(1)).collect(), None));
        }
        match batches.last_mut() {
            Some(last) => last.1 = Some(checkpoint),
            None => batches.push((Vec::new(), Some(checkpoint))),
        }
        Some(batches)
    }
}

/// Whether a chunk row with `key`, read in the view at `view`, is older than what the stream emitted since: its key
/// changed in a transaction after the view (noted at or after `view`), or the table was truncated after it.
fn stale(
    changed: &HashMap<Vec<u8>, BinlogPosition>,
    truncated: Option<&BinlogPosition>,
    view: &BinlogPosition,
    key: Option<&[u8]>,
) -> bool {
    truncated.is_some_and(|t| reached(t, view)) || key.and_then(|k| changed.get(k)).is_some_and(|p| reached(p, view))
}

fn status(active: &Active, state: Phase, error: Option<String>) -> Status {
    let p = &active.progress;
    Status {
        table: p.table.clone(),
        filter: p.filter.clone(),
        state,
        chunks: p.chunks,
        rows: p.rows,
        dropped: active.dropped,
        last_key: p.last_key.clone(),
        end_key: p.end_key.clone(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_compare_by_file_number_then_offset() {
        let p = |f: &str, pos| BinlogPosition::new(f, pos);
        let cases = [
            (p("binlog.000002", 500), p("binlog.000002", 500), true),
            (p("binlog.000002", 501), p("binlog.000002", 500), true),
            (p("binlog.000002", 499), p("binlog.000002", 500), false),
            (p("binlog.000003", 4), p("binlog.000002", 90_000), true),
            (p("binlog.000001", 90_000), p("binlog.000002", 4), false),
            // Before the first ROTATE of a stream resumed by GTID set: not there yet.
            (p("", 4), p("binlog.000002", 4), false),
        ];
        for (at, view, expected) in cases {
            assert_eq!(reached(&at, &view), expected, "{at:?} vs {view:?}");
        }
    }

    /// Each case: the keys noted (key, position before its transaction), a truncate, the chunk's view, the row's key,
    /// whether the row is dropped.
    #[test]
    fn chunk_rows_changed_after_their_view_are_dropped() {
        let p = |pos| BinlogPosition::new("binlog.000007", pos);
        let noted = |pairs: &[(&str, u64)]| -> HashMap<Vec<u8>, BinlogPosition> {
            pairs.iter().map(|(k, pos)| (k.as_bytes().to_vec(), p(*pos))).collect()
        };
        let cases = [
            // Changed in the transaction that begins at the view's position: after it, newer than the row.
            (noted(&[("{\"id\":1}", 1000)]), None, 1000, Some("{\"id\":1}"), true),
            (noted(&[("{\"id\":1}", 1500)]), None, 1000, Some("{\"id\":1}"), true),
            // Changed by a transaction that ended at or before the view: the chunk's row already has the change.
            (noted(&[("{\"id\":1}", 900)]), None, 1000, Some("{\"id\":1}"), false),
            // Another key changed.
            (noted(&[("{\"id\":2}", 1200)]), None, 1000, Some("{\"id\":1}"), false),
            // Truncated after the view: every row goes; before it: none.
            (noted(&[]), Some(p(1100)), 1000, Some("{\"id\":1}"), true),
            (noted(&[]), Some(p(800)), 1000, Some("{\"id\":1}"), false),
            (noted(&[]), None, 1000, None, false),
        ];
        for (changed, truncated, view, key, dropped) in cases {
            let got = stale(&changed, truncated.as_ref(), &p(view), key.map(str::as_bytes));
            assert_eq!(got, dropped, "{changed:?} {truncated:?} view {view} key {key:?}");
        }
    }
}
