//! Several view instances over partitions of the topics (`assignment = "group"`).
//!
//! The instances share one consumer group and subscribe to the four change topics; the group's rebalancing
//! (`roundrobin` unless `kafka_properties` says otherwise) gives each a share of the partitions. Three things make
//! that safe and keep `/lag` true for the whole group:
//!
//! - **Hand-off at a revoke.** Before the group takes partitions away (librdkafka's revoke callback, which must
//!   return before the group can give them to another instance), [`Handoff::revoke`] asks the consuming loop to
//!   finish the batch in flight and commit it synchronously, to drop the batch it was collecting (the new owner
//!   reads those events again from the committed offsets), and to raise the [`Handoff::generation`]. Every batch
//!   carries the generation it was collected in, and its offsets are committed only while that generation is
//!   current: a write that finishes after the revoke (ClickHouse slower than [`REVOKE_WAIT`]) is not committed by
//!   the old owner once a new owner may have started. Its rows are still right: they carry the same versions as the
//!   new owner's.
//! - **Heartbeats are read by every instance.** A heartbeat's watermarks name every partition, so each instance
//!   reads the heartbeat topic itself, outside the group (no offsets stored), starting at each partition's newest
//!   heartbeat ([`heartbeats`]).
//! - **The group's committed offsets are the shared truth.** An instance knows only what it wrote itself, so
//!   every second it reads the group's committed offsets of every partition of the change topics (commits follow
//!   ClickHouse's acknowledgement, whichever instance made them) into the coverage ([`crate::lag::Coverage`]).
//!   A heartbeat is covered only when every partition, whoever owns it, is committed up to its watermarks: any
//!   instance's `/lag` answers for the group, and `caught_up` is false while one instance is stopped or behind.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, Rebalance, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Longest time a revoke waits for the batch in flight to be written and committed.
pub const REVOKE_WAIT: Duration = Duration::from_secs(20);

/// A revoke's request to the consuming loop; answered once the loop has handed its partitions over.
pub struct Revoke {
    /// The generation the revoke ends.
    pub generation: u64,
    /// Answered when the partitions are handed over.
    pub done: std::sync::mpsc::SyncSender<()>,
}

/// What the rebalance callbacks and the consuming loop share.
pub struct Handoff {
    /// Raised at every revoke; a batch is committed only while the generation it was collected in is current.
    generation: AtomicU64,
    /// Revokes for the consuming loop (closed when it has stopped).
    requests: tokio::sync::mpsc::UnboundedSender<Revoke>,
    metrics: Arc<Metrics>,
}

impl Handoff {
    /// The hand-off, and the receiving end of its revoke requests for the consuming loop.
    pub fn new(metrics: Arc<Metrics>) -> (Arc<Handoff>, tokio::sync::mpsc::UnboundedReceiver<Revoke>) {
        let (requests, rx) = tokio::sync::mpsc::unbounded_channel();
        (Arc::new(Handoff { generation: AtomicU64::new(0), requests, metrics }), rx)
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Ends `generation` if it is still the current one: batches collected in it are no longer committed.
    pub fn end(&self, generation: u64) {
        let _ = self.generation.compare_exchange(generation, generation + 1, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether a batch of `generation` may be committed.
    pub fn may_commit(&self, generation: u64) -> bool {
        generation == self.generation()
    }

    /// The revoke callback: waits (up to [`REVOKE_WAIT`] and a little) until the consuming loop has committed what
    /// it wrote and dropped the rest, and ends the generation in any case.
    pub fn revoke(&self, partitions: &TopicPartitionList) {
        let (done, answered) = std::sync::mpsc::sync_channel(1);
        let generation = self.generation();
        if self.requests.send(Revoke { generation, done }).is_ok() {
            let waited = blocking(|| answered.recv_timeout(REVOKE_WAIT + Duration::from_secs(1)));
            if waited.is_err() {
                tracing::warn!("the consuming loop did not hand its partitions over in time; its batch will not be committed");
            }
        }
        self.end(generation);
        self.metrics.assigned.lock().expect("assigned lock").clear();
        tracing::info!(partitions = partitions.count(), "partitions revoked");
    }

    /// The rebalance callbacks of the consumer.
    pub fn rebalanced(&self, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let mut assigned = self.metrics.assigned.lock().expect("assigned lock");
            assigned.extend(list.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
            tracing::info!(partitions = list.count(), "partitions assigned by the group");
        }
    }
}

/// Runs `f`, which blocks, without stalling the tokio worker it is called on (when there is one).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Reads the group's committed offsets of `partitions` into the coverage and returns them (blocking: a broker
/// round trip).
pub fn read_group_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl Consumer<C>,
    partitions: &BTreeSet<(String, i32)>,
    metrics: &Metrics,
    timeout: Duration,
) -> Vec<((String, i32), i64)> {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    if list.count() == 0 {
        return Vec::new();
    }
    match consumer.committed_offsets(list, timeout) {
        Ok(list) => {
            let mut coverage = metrics.coverage.lock().expect("coverage lock");
            let mut out = Vec::new();
            for e in list.elements() {
                if let Offset::Offset(next) = e.offset() {
                    coverage.applied_to(e.topic(), e.partition(), next);
                    out.push(((e.topic().to_owned(), e.partition()), next - 1));
                }
            }
            out
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the group's committed offsets; retrying");
            Vec::new()
        }
    }
}

/// Reads every partition of the heartbeat topic into the coverage, outside the group, until `shutdown`: each
/// partition from its newest heartbeat when found at start, from its beginning when it appears later.
///
/// librdkafka assigns partitions only to a consumer with a `group.id`: it gets `<group>.heartbeats`, never joins
/// that group (it only assigns) and never commits.
pub fn heartbeats(
    mut config: ClientConfig,
    group: &str,
    topic: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let consumer: Arc<StreamConsumer> = Arc::new(
        config
            .set("group.id", format!("{group}.heartbeats"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()?,
    );
    tokio::spawn(async move {
        let mut known = BTreeSet::new();
        for round in 0u64.. {
            if known.is_empty() || round.is_multiple_of(30) {
                let (c, t) = (consumer.clone(), topic.clone());
                let found = tokio::task::spawn_blocking(move || {
                    c.fetch_metadata(Some(&t), Duration::from_secs(2)).map(|m| {
                        m.topics().iter().filter(|t| t.error().is_none()).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect::<Vec<_>>()
                    })
                })
                .await;
                // The whole list again, with the positions reached so far.
                let mut list = consumer.position().unwrap_or_default();
                let before = known.len();
                for p in found.ok().and_then(Result::ok).unwrap_or_default() {
                    if known.insert(p) {
                        let from = if before == 0 { Offset::OffsetTail(1) } else { Offset::Beginning };
                        let _ = list.add_partition_offset(&topic, p, from);
                    }
                }
                if known.len() > before {
                    if let Err(e) = consumer.assign(&list) {
                        tracing::warn!(error = %e, "assigning the heartbeat partitions; retrying");
                        known.clear();
                    }
                }
            }
            let until = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(until);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = &mut until => break,
                    m = consumer.recv() => match m {
                        Ok(m) => {
                            let beat = m.payload().and_then(|p| crate::batch::heartbeat(m.topic(), m.partition(), m.offset(), p));
                            if let Some(beat) = beat {
                                metrics.coverage.lock().expect("coverage lock").heartbeat(beat);
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "heartbeat consumer"),
                    },
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch collected before a revoke is not committed after it, even when its write finishes later; batches
    /// of the new assignment are.
    #[test]
    fn a_batch_of_an_ended_generation_is_never_committed() {
        let (handoff, mut requests) = Handoff::new(Arc::new(Metrics::new()));
        let before = handoff.generation();
        assert!(handoff.may_commit(before));
        // The consuming loop answers the revoke (here: at once, as when nothing is in flight).
        let answer = std::thread::spawn(move || {
            let revoke = requests.blocking_recv().expect("a revoke request");
            assert_eq!(revoke.generation, before);
            revoke.done.send(()).expect("the callback waits");
            requests
        });
        handoff.revoke(&TopicPartitionList::new());
        let mut requests = answer.join().expect("answered");
        assert!(!handoff.may_commit(before), "collected before the revoke");
        assert!(handoff.may_commit(handoff.generation()));
        // A loop that has stopped does not hold the revoke up; the generation still ends.
        requests.close();
        let current = handoff.generation();
        handoff.revoke(&TopicPartitionList::new());
        assert!(!handoff.may_commit(current));
    }
}
