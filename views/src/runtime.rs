//! The view's consuming loop: the Kafka consumer, its batches ([`crate::batch`]) and their writes
//! ([`ClickHouseViewStore`]).
//!
//! Order of work is the guarantee: a batch of events is mapped by [`crate::model::apply`], written to ClickHouse,
//! and only after ClickHouse acknowledged every insert are the batch's Kafka offsets committed. A crash in between
//! redelivers the batch, whose rows carry the same versions: the effect is exactly once. A failed insert is retried
//! with backoff (nothing is committed meanwhile); an event that cannot be mapped goes to `dead_letters` with its
//! error and payload, so it is never silently dropped and never blocks the stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::batch::{heartbeat, Applied, FreshnessRow};
use crate::config::{Assignment, Settings};
use crate::group::{Handoff, Revoke};
use crate::metrics::Metrics;
use crate::model::Entity;
use crate::store::ClickHouseViewStore;

/// The consumer's callbacks: librdkafka's log lines and errors and failed offset commits go to the service's log
/// (tracing), so broker trouble is visible. With `assignment = "all"` partitions are assigned by the view itself
/// (see `partitions_monitor`); with `"group"` the group's rebalances go through the hand-off ([`crate::group`]).
pub struct ConsumerLog {
    /// With `assignment = "group"`: what the rebalance callbacks share with the consuming loop.
    pub handoff: Option<Arc<Handoff>>,
}

impl ClientContext for ConsumerLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac} {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "kafka client error");
    }

    /// With `statistics.interval.ms` set in `kafka_properties`: librdkafka's statistics JSON, at debug level.
    fn stats_raw(&self, statistics: &[u8]) {
        tracing::debug!(target: "librdkafka::stats", "{}", String::from_utf8_lossy(statistics));
    }
}

impl ConsumerContext for ConsumerLog {
    fn pre_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Some(handoff), Rebalance::Revoke(partitions)) = (&self.handoff, rebalance) {
            handoff.revoke(partitions);
        }
    }

    fn post_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Some(handoff) = &self.handoff {
            handoff.rebalanced(rebalance);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // The rows are in ClickHouse; the next commit covers these offsets, or a restart reapplies them.
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}

type Kafka = StreamConsumer<ConsumerLog>;

/// Consumes the four topics and applies them until `shutdown`.
pub async fn run(settings: Settings, store: ClickHouseViewStore, metrics: Arc<Metrics>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let c = &settings.config;
    let mut client = ClientConfig::new();
    client
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "2000")
        // How long the broker may hold a fetch (librdkafka's default is 500 ms; brokers that hold every fetch that
        // long, as tansu does, add that much latency).
        .set("fetch.wait.max.ms", c.fetch_wait.as_millis().max(1).to_string())
        // A request without an answer is abandoned and retried after this long (librdkafka's default is 60 s). A
        // broker that drops a fetch under load (seen with tansu) then costs seconds, not a minute, of stalled
        // consumption.
        .set("socket.timeout.ms", "10000");
    let group = c.assignment == Assignment::Group;
    if group && !c.kafka_properties.contains_key("partition.assignment.strategy") {
        // Spreads every topic's partitions over the instances (the default, range, gives a topic with fewer
        // partitions than instances to the first ones only).
        client.set("partition.assignment.strategy", "roundrobin");
    }
    for (key, value) in &c.kafka_properties {
        client.set(key, value);
    }
    client.set("bootstrap.servers", &c.brokers);
    let heartbeat_client = client.clone();
    let (handoff, revokes) = if group {
        let (handoff, revokes) = Handoff::new(metrics.clone());
        (Some(handoff), Some(revokes))
    } else {
        (None, None)
    };
    let consumer: Arc<Kafka> = Arc::new(
        client
            .set("group.id", &c.group)
            .set("enable.auto.commit", "false")
            .create_with_context(ConsumerLog { handoff: handoff.clone() })?,
    );
    let t = &settings.topics;
    let entities: HashMap<&str, Entity> = [
        (t.users.as_str(), Entity::User),
        (t.products.as_str(), Entity::Product),
        (t.orders.as_str(), Entity::Order),
        (t.lines.as_str(), Entity::Line),
    ]
    .into_iter()
    .collect();
    let mut topics: Vec<String> = t.changes().iter().map(|t| t.to_string()).collect();
    *metrics.coverage.lock().expect("coverage lock") = crate::lag::Coverage::new(t.changes());
    if group {
        // The group assigns the change topics' partitions; every instance reads every heartbeat itself.
        consumer.subscribe(&t.changes())?;
        crate::group::heartbeats(heartbeat_client, &c.group, t.heartbeats.clone(), metrics.clone(), shutdown.clone())?;
    } else {
        topics.push(t.heartbeats.clone());
    }
    tracing::info!(topics = ?topics, group = %c.group, assignment = ?c.assignment, "consuming");
    metrics.set_healthy(None);
    let committed: Arc<Mutex<HashMap<(String, i32), i64>>> = Arc::default();
    let heartbeats = t.heartbeats.clone();
    let lag = tokio::spawn(partitions_monitor(consumer.clone(), topics, heartbeats, group, committed.clone(), metrics.clone(), shutdown.clone()));
    let result = consume(&settings, &store, &metrics, &consumer, &entities, &committed, (handoff, revokes), &shutdown).await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "consuming stopped");
    }
    shutdown.cancel();
    let _ = lag.await;
    result
}

/// Assigns the topics' partitions to the consumer as they appear (see [`discover_partitions`]), and every 5 s publishes
/// the consumer lag (the brokers' high watermarks against the committed offsets) and notes which of the view's change
/// topics exist. It runs beside the consuming loop, because each of these is a broker round trip.
///
/// The view assigns itself every partition instead of joining the group's rebalancing: one view instance must see
/// every partition of its topics anyway (a heartbeat is covered only when all of its watermarks are reached), and a
/// killed instance's successor then resumes at once from the committed offsets instead of waiting for the group to
/// expire the old member (which brokers may handle badly: a restarted view was seen with no partitions for minutes).
/// The group still stores the offsets. When partitions are assigned, the group's committed offsets for them are read
/// into the coverage: everything below them is already in ClickHouse.
///
/// With `group` (`assignment = "group"`) the group assigns the partitions instead; this only notes them, and every
/// second reads the group's committed offsets of all of them into the coverage ([`crate::group`]).
async fn partitions_monitor(
    consumer: Arc<Kafka>,
    topics: Vec<String>,
    heartbeats: String,
    group: bool,
    committed: Arc<Mutex<HashMap<(String, i32), i64>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let assigned: Arc<Mutex<std::collections::HashSet<(String, i32)>>> = Arc::default();
    let mut all_found = false;
    for round in 0u64.. {
        let (consumer, metrics, topics, assigned) = (consumer.clone(), metrics.clone(), topics.clone(), assigned.clone());
        let heartbeats = heartbeats.clone();
        // Metadata requests share the broker connection with the fetches and cost the broker time (the local one
        // takes ~60 ms for a topic it does not have): while a topic is missing, every second during the first 30 s,
        // then every 5 s (the first events of a table created later wait up to that long); once every topic exists,
        // every 30 s (to notice added partitions).
        let discover = if all_found { round.is_multiple_of(30) } else { round < 30 || round.is_multiple_of(5) };
        let committed = committed.clone();
        let found = tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(2);
            let found = discover.then(|| discover_partitions(&consumer, &topics, &heartbeats, &metrics, &assigned, !group, timeout));
            if group {
                let known = assigned.lock().expect("assigned lock").iter().cloned().collect();
                let offsets = crate::group::read_group_offsets(&*consumer, &known, &metrics, timeout);
                committed.lock().expect("committed lock").extend(offsets);
            }
            let partitions = round.is_multiple_of(5).then(|| committed.lock().expect("committed lock").clone());
            for ((topic, partition), offset) in partitions.unwrap_or_default() {
                if let Ok((_, high)) = consumer.fetch_watermarks(&topic, partition, timeout) {
                    metrics.consumer_lag(&topic, partition, (high - offset - 1).max(0));
                }
            }
            found
        })
        .await;
        if let Ok(Some(found)) = found {
            all_found = found;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Assigns the partitions of `topics` not yet assigned (blocking: broker round trips); returns whether every topic
/// exists (and so was assigned). Without `assign`, only notes them in `assigned` (the group assigns them).
/// `heartbeats` (the heartbeat topic) is left out of the existing topics noted for /lag.
fn discover_partitions(
    consumer: &Kafka,
    topics: &[String],
    heartbeats: &str,
    metrics: &Metrics,
    assigned: &Mutex<std::collections::HashSet<(String, i32)>>,
    assign: bool,
    timeout: Duration,
) -> bool {
    let mut existing = std::collections::HashSet::new();
    let mut new = TopicPartitionList::new();
    let mut assigned = assigned.lock().expect("assigned lock");
    for topic in topics {
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else { return false };
        for t in metadata.topics() {
            tracing::trace!(topic = t.name(), error = ?t.error(), partitions = t.partitions().len(), "topic metadata");
        }
        for t in metadata.topics().iter().filter(|t| t.error().is_none() && !t.partitions().is_empty()) {
            existing.insert(t.name().to_owned());
            for p in t.partitions() {
                if !assigned.contains(&(t.name().to_owned(), p.id())) {
                    let _ = new.add_partition_offset(t.name(), p.id(), Offset::Stored);
                }
            }
        }
    }
    let all = existing.len() == topics.len();
    // Only the change topics matter for /lag.
    existing.retain(|t| t != heartbeats);
    metrics.set_existing_topics(existing);
    if new.count() == 0 {
        return all;
    }
    if !assign {
        assigned.extend(new.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
        return all;
    }
    // Read the committed offsets first: once assigned, newer ones may be committed meanwhile, and the coverage only
    // ever takes the larger.
    match consumer.committed_offsets(new.clone(), timeout) {
        Ok(list) => {
            let mut coverage = metrics.coverage.lock().expect("coverage lock");
            for e in list.elements() {
                if let Offset::Offset(next) = e.offset() {
                    coverage.applied_to(e.topic(), e.partition(), next);
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the group's committed offsets; retrying");
            return false;
        }
    }
    match consumer.incremental_assign(&new) {
        Ok(()) => {
            tracing::info!(partitions = new.count(), "partitions assigned");
            assigned.extend(new.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
            all
        }
        Err(e) => {
            tracing::warn!(error = %e, "assigning partitions; retrying");
            false
        }
    }
}

/// Receives messages in a task of its own and hands them over a bounded channel, so the consuming loop can wait for
/// messages and for the write in flight at once (waiting on a channel can be abandoned and resumed at will).
///
/// `StreamConsumer::recv` is woken when librdkafka's queue turns non-empty. Under sustained load that signal was
/// sometimes lost: consumption stopped for a minute or more in the benchmark, until some other event on the queue
/// (statistics, a rebalance) woke the consumer. So a `recv` that hears nothing for `REPOLL` is abandoned and a new
/// one looks at the queue itself: a lost signal costs at most that long. The channel's bound keeps memory flat:
/// when it is full, librdkafka's own queue fills and fetching pauses.
///
/// Each message goes with the hand-off's generation when it was received (0 without one).
fn receive(
    consumer: Arc<Kafka>,
    handoff: Option<Arc<Handoff>>,
    shutdown: CancellationToken,
) -> tokio::sync::mpsc::Receiver<(u64, OwnedMessage)> {
    const REPOLL: Duration = Duration::from_millis(100);
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = tokio::time::timeout(REPOLL, consumer.recv()) => m,
            };
            match message {
                Err(_) => {} // nothing heard: look again
                Ok(Ok(m)) => {
                    let generation = handoff.as_ref().map_or(0, |h| h.generation());
                    if tx.send((generation, m.detach())).await.is_err() {
                        return;
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            }
        }
    });
    rx
}

/// A batch being written to ClickHouse, with the offsets to commit once it is, and its newest commit times.
struct InFlight {
    write: tokio::task::JoinHandle<Option<Vec<FreshnessRow>>>,
    offsets: HashMap<(String, i32), i64>,
    newest_commit_ms: HashMap<String, i64>,
    /// The hand-off generation the batch was collected in (see [`crate::group`]).
    generation: u64,
}

/// A written batch: commits its offsets (`mode`), unless a revoke ended its generation since, and records them as
/// applied.
fn settle(
    flight: InFlight,
    mode: CommitMode,
    consumer: &Kafka,
    handoff: Option<&Handoff>,
    metrics: &Metrics,
    committed: &Mutex<HashMap<(String, i32), i64>>,
) -> anyhow::Result<()> {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &flight.offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(offset + 1))?;
    }
    if list.count() > 0 && handoff.is_none_or(|h| h.may_commit(flight.generation)) {
        // Asynchronous: the rows are already in ClickHouse, so a commit lost in a crash only
        // redelivers events whose rows are identical, and collecting need not wait for the broker. Synchronous before
        // a revoke, so the next owner of the partitions starts after them.
        match mode {
            CommitMode::Sync => crate::group::blocking(|| consumer.commit(&list, mode))?,
            CommitMode::Async => consumer.commit(&list, mode)?,
        }
    } else if list.count() > 0 {
        tracing::warn!(partitions = list.count(), "a batch written after its partitions were revoked: not committed");
    }
    metrics.coverage.lock().expect("coverage lock").written(
        flight.offsets.iter().map(|((topic, partition), offset)| (topic.as_str(), *partition, *offset)),
        &flight.newest_commit_ms,
    );
    committed.lock().expect("committed lock").extend(flight.offsets);
    Ok(())
}

/// Writes one batch (with the previous batch's freshness rows), retrying with backoff until ClickHouse
/// acknowledges it; returns this batch's freshness rows, or `None` if shut down first.
async fn write_batch(
    store: ClickHouseViewStore,
    batch: Applied,
    fresh: Vec<FreshnessRow>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Option<Vec<FreshnessRow>> {
    let started = Instant::now();
    let mut backoff = cdc_common::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    while let Err(e) = store.write(&batch, &fresh).await {
        let delay = backoff.next_delay();
        tracing::warn!(error = %e, retry_in = ?delay, "clickhouse insert failed; retrying (offsets not committed)");
        metrics.set_healthy(Some(format!("clickhouse: {e}")));
        // A dropped table (or database) is recreated before the retry, instead of failing forever.
        if let Err(e) = store.ensure_schema().await {
            tracing::warn!(error = %e, "checking the reporting schema failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    metrics.set_healthy(None);
    metrics.applied(&batch, started.elapsed());
    if !batch.dead.is_empty() {
        tracing::error!(count = batch.dead.len(), "events could not be applied; see the dead_letters table");
    }
    // For profiling (RUST_LOG=cdc_views::runtime=debug): how long the batch's first event waited in the service
    // before its write began (collecting, or the previous write), the write itself, and how old the batch's oldest
    // message was when it reached the service (producer timestamp to receipt: capture and broker).
    let ms = |d: Duration| d.as_millis() as u64;
    tracing::debug!(
        events = batch.events,
        queued_ms = batch.first_received.map(|(at, _)| ms(started.saturating_duration_since(at))),
        write_ms = ms(started.elapsed()),
        in_service_ms = batch.first_received.map(|(at, _)| ms(at.elapsed())),
        before_service_ms = batch.oldest_message_ms.zip(batch.first_received).map(|(t, (_, wall))| wall - t),
        "batch applied"
    );
    Some(batch.freshness(cdc_common::now_ms()))
}

/// Least time between two writes of `freshness_log` rows: it tells analysts how fresh the report is, to the second,
/// and a row per source per batch would cost ClickHouse an insert and a part per batch.
const FRESHNESS_EVERY: Duration = Duration::from_secs(1);

/// Freshness rows of written batches not yet in `freshness_log`: the newest per source.
#[derive(Default)]
struct PendingFreshness {
    rows: BTreeMap<String, FreshnessRow>,
    /// When freshness rows were last handed to a write.
    written: Option<Instant>,
}

impl PendingFreshness {
    fn add(&mut self, rows: Vec<FreshnessRow>) {
        for row in rows {
            match self.rows.get(&row.source) {
                Some(known) if known.commit_ms > row.commit_ms => {}
                _ => {
                    self.rows.insert(row.source.clone(), row);
                }
            }
        }
    }

    /// When the pending rows may be written.
    fn due(&self) -> Instant {
        self.written.map_or_else(Instant::now, |at| at + FRESHNESS_EVERY)
    }

    /// The pending rows if they are due (they go with the write about to start), else none.
    fn take_due(&mut self) -> Vec<FreshnessRow> {
        if self.rows.is_empty() || self.due() > Instant::now() {
            return Vec::new();
        }
        self.written = Some(Instant::now());
        std::mem::take(&mut self.rows).into_values().collect()
    }
}

/// How long a batch waits for the rest of the burst its first event came in: a fetch response's messages reach the
/// loop one by one, within a millisecond or so.
const COALESCE: Duration = Duration::from_millis(5);

/// When a batch whose first event (or pending freshness rows) appears now may close: [`COALESCE`] from now, but
/// not before `batch_wait` after the previous write started.
fn close_at(previous_write: Option<Instant>, batch_wait: Duration) -> Instant {
    let soon = Instant::now() + COALESCE.min(batch_wait);
    previous_write.map_or(soon, |started| soon.max(started + batch_wait))
}

/// The consuming loop. One batch is written to ClickHouse at a time, in order (so a truncate never overtakes the
/// rows it covers), and its offsets are committed only once it is written; meanwhile the next batch is collected.
/// Writes start at least `batch_wait` apart, which bounds the insert rate (and ClickHouse's part count) whatever
/// the load. A batch closes at the later of [`COALESCE`] after its first event (the rest of the fetch response it
/// came in) and `batch_wait` after the previous write started; later if that write is still running (so batches
/// grow with the insert latency instead of queueing behind it); or when it holds `batch_max_events`. So an event
/// after a quiet spell is written at once, and under load every write carries what arrived since the last. The
/// freshness rows of written batches go with a later write, at most once per [`FRESHNESS_EVERY`], or alone when
/// nothing else arrives.
#[allow(clippy::too_many_arguments)] // the loop's shared state, each passed once from `run`
async fn consume(
    settings: &Settings,
    store: &ClickHouseViewStore,
    metrics: &Arc<Metrics>,
    consumer: &Arc<Kafka>,
    entities: &HashMap<&str, Entity>,
    committed: &Mutex<HashMap<(String, i32), i64>>,
    (handoff, mut revokes): (Option<Arc<Handoff>>, Option<tokio::sync::mpsc::UnboundedReceiver<Revoke>>),
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let c = &settings.config;
    let mut messages = receive(consumer.clone(), handoff.clone(), shutdown.clone());
    let current = || handoff.as_ref().map_or(0, |h| h.generation());
    let mut in_flight: Option<InFlight> = None;
    let mut fresh = PendingFreshness::default();
    let mut previous_write: Option<Instant> = None;
    loop {
        let mut batch = Applied::default();
        let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
        let mut deadline: Option<Instant> = None;
        let mut generation = current();
        loop {
            let full = batch.events + batch.dead.len() >= c.batch_max_events;
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if (full || expired) && in_flight.is_none() {
                break;
            }
            let wait = match deadline {
                Some(d) if !expired => d - Instant::now(),
                _ => Duration::from_secs(3600),
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                written = async { (&mut in_flight.as_mut().expect("guarded by the precondition").write).await },
                    if in_flight.is_some() =>
                {
                    let flight = in_flight.take().expect("in flight");
                    let Some(rows) = written? else {
                        return Ok(()); // shut down before ClickHouse took the batch: nothing to commit
                    };
                    fresh.add(rows);
                    if !fresh.rows.is_empty() {
                        deadline.get_or_insert_with(|| close_at(previous_write, c.batch_wait).max(fresh.due()));
                    }
                    settle(flight, CommitMode::Async, consumer, handoff.as_deref(), metrics, committed)?;
                }
                Some(revoke) = async { revokes.as_mut().expect("guarded by the precondition").recv().await },
                    if revokes.is_some() =>
                {
                    // The group takes the partitions away: commit what is written, drop what is collected (the next
                    // owner reads it again from the committed offsets), and only then let the rebalance go on.
                    if let Some(mut flight) = in_flight.take() {
                        match tokio::time::timeout(crate::group::REVOKE_WAIT, &mut flight.write).await {
                            Ok(written) => {
                                let Some(rows) = written? else { return Ok(()) };
                                fresh.add(rows);
                                settle(flight, CommitMode::Sync, consumer, handoff.as_deref(), metrics, committed)?;
                            }
                            Err(_) => {
                                tracing::warn!("the batch in flight is not written yet; it will not be committed");
                                in_flight = Some(flight);
                            }
                        }
                    }
                    if generation <= revoke.generation {
                        (batch, offsets) = (Applied::default(), HashMap::new());
                        deadline = (!fresh.rows.is_empty()).then(|| close_at(previous_write, c.batch_wait).max(fresh.due()));
                    }
                    if let Some(h) = &handoff {
                        h.end(revoke.generation);
                    }
                    generation = current();
                    let _ = revoke.done.send(());
                }
                received = tokio::time::timeout(wait, messages.recv()), if !full => match received {
                    Err(_) => {} // the batch's wait is over
                    Ok(None) => anyhow::bail!("the Kafka consumer stopped"),
                    Ok(Some((received_in, message))) if received_in < generation => {
                        // Received before a revoke (handled above, as the revoke's request came first): the next
                        // owner reads it again from the committed offsets.
                        tracing::trace!(topic = message.topic(), partition = message.partition(), "dropping a revoked message");
                    }
                    Ok(Some((_, message))) => {
                        if batch.first_received.is_none() {
                            // The first message: it closes the batch soon, even if pending freshness rows alone
                            // would have waited longer.
                            deadline = Some(close_at(previous_write, c.batch_wait));
                        }
                        offsets.insert((message.topic().to_owned(), message.partition()), message.offset());
                        if let Some(ts) = message.timestamp().to_millis() {
                            batch.oldest_message_ms = Some(batch.oldest_message_ms.map_or(ts, |o| o.min(ts)));
                        }
                        batch.first_received.get_or_insert_with(|| (Instant::now(), cdc_common::now_ms()));
                        // Tombstones carry no payload: the delete came before them.
                        if let (Some(payload), Some(&entity)) = (message.payload(), entities.get(message.topic())) {
                            batch.add(entity, message.topic(), message.partition(), message.offset(), payload);
                        } else if let (Some(payload), true) = (message.payload(), message.topic() == settings.topics.heartbeats) {
                            // A source's watermark: it counts once the offsets it names are written (see crate::lag).
                            if let Some(beat) = heartbeat(message.topic(), message.partition(), message.offset(), payload) {
                                metrics.coverage.lock().expect("coverage lock").heartbeat(beat);
                            }
                        }
                    }
                },
            }
        }
        let newest_commit_ms = batch.newest_commit_ms.clone();
        previous_write = Some(Instant::now());
        let write =
            tokio::spawn(write_batch(store.clone(), batch, fresh.take_due(), metrics.clone(), shutdown.clone()));
        in_flight = Some(InFlight { write, offsets, newest_commit_ms, generation });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(source: &str, commit_ms: u64, applied_ms: u64) -> FreshnessRow {
        FreshnessRow { source: source.into(), commit_ms, applied_ms }
    }

    #[test]
    fn freshness_keeps_the_newest_commit_per_source_and_is_written_at_most_once_per_interval() {
        let mut fresh = PendingFreshness::default();
        fresh.add(vec![row("orders", 200, 1000), row("users", 50, 1000)]);
        fresh.add(vec![row("orders", 100, 1100)]); // an older commit applied later changes nothing
        fresh.add(vec![row("orders", 300, 1200)]);
        let first = fresh.take_due();
        let by_source: BTreeMap<_, _> = first.iter().map(|r| (r.source.as_str(), (r.commit_ms, r.applied_ms))).collect();
        assert_eq!(by_source, BTreeMap::from([("orders", (300, 1200)), ("users", (50, 1000))]));

        fresh.add(vec![row("users", 60, 1300)]);
        assert!(fresh.take_due().is_empty(), "within the interval the rows wait");
        assert!(fresh.due() > Instant::now() + FRESHNESS_EVERY / 2);
        fresh.written = Some(Instant::now() - FRESHNESS_EVERY);
        let second = fresh.take_due();
        assert_eq!(second.len(), 1);
        assert_eq!((second[0].commit_ms, second[0].applied_ms), (60, 1300));
        assert!(fresh.take_due().is_empty(), "nothing pending");
    }

    #[test]
    fn a_batch_closes_soon_after_a_quiet_spell_and_batch_wait_after_the_previous_write() {
        let wait = Duration::from_millis(50);
        let now = Instant::now();
        assert!(close_at(None, wait) <= Instant::now() + COALESCE);
        assert!(close_at(Some(now - Duration::from_secs(1)), wait) <= Instant::now() + COALESCE);
        let recent = close_at(Some(now), wait);
        assert!(recent >= now + wait && recent <= Instant::now() + wait);
        // A batch_wait shorter than the coalescing time is honoured.
        assert!(close_at(None, Duration::from_millis(1)) <= Instant::now() + Duration::from_millis(1));
    }
}
