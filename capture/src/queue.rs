//! The queue between a source's reader (snapshot or binlog) and its sink, bounded twice: by batches
//! (`queue_capacity`) and by bytes (`queue_max_bytes`).
//!
//! The byte bound is a semaphore of byte permits. [`BatchSender::send`] takes as many permits as its batch's records
//! hold (keys plus values) before queueing it, waiting while the budget is spent; a batch larger than the whole
//! budget takes all of it, so it still passes, alone. The sink gets a [`BytePermit`] with each batch and drops it once
//! it has handed the batch's records to librdkafka, whose own queue is bounded by `queue.buffering.max.kbytes`. So
//! between reader and librdkafka at most `max(queue_max_bytes, one batch)` bytes of records wait; the gauge
//! `cdc_capture_queue_bytes` shows how many do.
//!
//! Shutdown: dropping the [`BatchReceiver`] closes the budget, so a reader waiting for permits wakes with an error
//! instead of waiting forever.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::metrics::SourceMetrics;
use crate::oversized::record_bytes;
use crate::sink::Batch;
use crate::transform::Record;

/// The receiving side was dropped: the sink stopped.
#[derive(Debug, thiserror::Error)]
#[error("the producer stopped")]
pub struct Closed;

/// A queue of `capacity` batches and `max_bytes` bytes of records.
pub fn channel(capacity: usize, max_bytes: u32, metrics: Arc<SourceMetrics>) -> (BatchSender, BatchReceiver) {
    let (tx, rx) = mpsc::channel(capacity);
    let budget = Arc::new(Semaphore::new(max_bytes as usize));
    metrics.queue_bytes.store(0, Ordering::Relaxed);
    (BatchSender { tx, budget: budget.clone(), max_bytes, metrics }, BatchReceiver { rx, budget })
}

/// Bytes of records (keys plus values) in `records`.
pub fn batch_bytes(records: &[Record]) -> usize {
    records.iter().map(record_bytes).sum()
}

/// A batch and the bytes it holds of the budget.
struct Queued {
    batch: Batch,
    permit: BytePermit,
}

/// The reader's side.
pub struct BatchSender {
    /// The batches.
    tx: mpsc::Sender<Queued>,
    /// Byte permits; closed when the receiver is dropped.
    budget: Arc<Semaphore>,
    /// The budget's size.
    max_bytes: u32,
    /// Holds the queued-bytes gauge.
    metrics: Arc<SourceMetrics>,
}

impl BatchSender {
    /// Queues `batch` once the byte budget and the queue have room for it.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let bytes = batch_bytes(&batch.records);
        let weight = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.max_bytes);
        let permit = self.budget.clone().acquire_many_owned(weight).await.map_err(|_| Closed)?;
        self.metrics.queue_bytes.fetch_add(bytes as i64, Ordering::Relaxed);
        let permit = BytePermit { _permit: permit, bytes, metrics: self.metrics.clone() };
        self.tx.send(Queued { batch, permit }).await.map_err(|_| Closed)
    }

    /// The queue's capacity in batches.
    pub fn max_capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Free places in the queue, in batches.
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }
}

/// The sink's side.
pub struct BatchReceiver {
    rx: mpsc::Receiver<Queued>,
    budget: Arc<Semaphore>,
}

impl BatchReceiver {
    /// The next batch, `None` once every sender is gone and the queue is empty. Cancel-safe.
    pub async fn recv(&mut self) -> Option<(Batch, BytePermit)> {
        self.rx.recv().await.map(|q| (q.batch, q.permit))
    }

    /// The next batch if one is queued.
    pub fn try_recv(&mut self) -> Option<(Batch, BytePermit)> {
        self.rx.try_recv().ok().map(|q| (q.batch, q.permit))
    }

    /// Whether no batch is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl Drop for BatchReceiver {
    fn drop(&mut self) {
        self.budget.close();
    }
}

/// A queued batch's share of the byte budget; returned to the budget when dropped.
pub struct BytePermit {
    _permit: OwnedSemaphorePermit,
    /// The batch's bytes, for the gauge.
    bytes: usize,
    metrics: Arc<SourceMetrics>,
}

impl Drop for BytePermit {
    fn drop(&mut self) {
        self.metrics.queue_bytes.fetch_sub(self.bytes as i64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::Metrics;
    use crate::transform::Route;

    fn batch(sizes: &[usize]) -> Batch {
        let records = sizes
            .iter()
            .map(|&n| Record {
                topic: "t".into(),
                route: Route::ByKey,
                key: None,
                value: Some(vec![b'x'; n]),
                op: None,
            })
            .collect();
        Batch { records, ..Batch::default() }
    }

    async fn sent_within(tx: &BatchSender, b: Batch) -> bool {
        tokio::time::timeout(Duration::from_millis(50), tx.send(b)).await.is_ok()
    }

    /// The reader waits once the queued batches hold the budget, and goes on as soon as the sink hands one over.
    #[tokio::test]
    async fn the_reader_waits_while_the_queued_bytes_hold_the_budget() {
        let metrics = Metrics::new().source("s");
        let (tx, mut rx) = channel(8, 1000, metrics.clone());
        assert!(sent_within(&tx, batch(&[300, 300])).await);
        assert!(sent_within(&tx, batch(&[300])).await);
        assert_eq!(metrics.queue_bytes.load(Ordering::Relaxed), 900);
        assert!(!sent_within(&tx, batch(&[200])).await, "900 + 200 bytes are over the budget");
        let (first, permit) = rx.recv().await.unwrap();
        assert_eq!(first.records.len(), 2);
        drop(permit);
        assert_eq!(metrics.queue_bytes.load(Ordering::Relaxed), 300);
        assert!(sent_within(&tx, batch(&[200])).await);
        assert_eq!(metrics.queue_bytes.load(Ordering::Relaxed), 500);
    }

    /// A batch larger than the whole budget takes all of it: it passes once nothing else is queued, alone.
    #[tokio::test]
    async fn a_batch_larger_than_the_budget_passes_alone() {
        let metrics = Metrics::new().source("s");
        let (tx, mut rx) = channel(8, 1000, metrics.clone());
        assert!(sent_within(&tx, batch(&[100])).await);
        assert!(!sent_within(&tx, batch(&[5000])).await, "waits for the queued 100 bytes");
        drop(rx.recv().await.unwrap());
        assert!(sent_within(&tx, batch(&[5000])).await);
        assert_eq!(metrics.queue_bytes.load(Ordering::Relaxed), 5000);
        assert!(!sent_within(&tx, batch(&[1])).await, "nothing passes beside it");
        drop(rx.recv().await.unwrap());
        assert!(sent_within(&tx, batch(&[1])).await);
        // Batches without records (a checkpoint only) take nothing.
        assert!(sent_within(&tx, batch(&[])).await);
    }

    /// Regression guard: a reader waiting for bytes when the sink stops must not wait forever.
    #[tokio::test]
    async fn a_waiting_reader_wakes_when_the_sink_stops() {
        let metrics = Metrics::new().source("s");
        let (tx, rx) = channel(8, 100, metrics.clone());
        assert!(sent_within(&tx, batch(&[100])).await);
        let waiting = tokio::spawn(async move { tx.send(batch(&[10])).await });
        tokio::task::yield_now().await;
        drop(rx);
        let result = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").unwrap();
        assert!(result.is_err());
        assert_eq!(metrics.queue_bytes.load(Ordering::Relaxed), 0, "the dropped queue's bytes are released");
    }
}
