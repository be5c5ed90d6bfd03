//! rdkafka consumer with one split partition queue per (topic, partition) and one poll thread per partition number.
//!
//! Why explicit assignment instead of `subscribe`: the state of partition `p` lives with this process (RocksDB and
//! its checkpoints), so which process reads `p` is a decision that must move state along with it. Kafka's group
//! protocol knows nothing of that state; like Flink's KafkaSource, ledgerstream assigns partitions itself and uses
//! the group id only to publish committed offsets for lag monitoring.

use super::{RawRecord, SourceBatch};
use crate::checkpoint::Offsets;
use crate::metrics;
use crate::types::{Offset, PartitionId};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Errors of the source stage. Broker connectivity problems are retryable; a topology mismatch is not.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(
        "topics are not co-partitioned: {0}. Every source topic must have the same partition count so that \
         partition p of each holds the same users"
    )]
    NotCoPartitioned(String),
    #[error(
        "topic {0} does not exist (create it before starting; the broker may not auto-create topics)"
    )]
    MissingTopic(String),
    #[error("cannot start poll thread: {0}")]
    Thread(std::io::Error),
}

impl SourceError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SourceError::Kafka(_) | SourceError::MissingTopic(_))
    }
}

/// Settings of the source, already validated and with secrets resolved.
#[derive(Debug, Clone)]
pub struct KafkaSourceSettings {
    pub brokers: String,
    pub group_id: String,
    /// Passed to librdkafka verbatim (TLS, SASL, fetch sizes...).
    pub client: BTreeMap<String, String>,
    pub sasl_password: Option<String>,
    /// Input topics; `RawRecord::input` is an index into this list.
    pub topics: Vec<String>,
    pub batch_size: usize,
}

/// Where to start reading: next offset per (topic, partition). Missing entries start at the beginning.
pub type StartOffsets = BTreeMap<(String, i32), i64>;

/// How often the lag thread asks the broker for high watermarks: one ListOffsets round trip per topic partition,
/// negligible at this rate, and about as fresh as a Prometheus scrape interval can show.
const LAG_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Next offset to read per (partition, input), as handed to the partition actors; `-1` until known. Written by the
/// poll threads, read by the lag thread.
struct ReadPositions {
    inputs: usize,
    next: Vec<AtomicI64>,
}

impl ReadPositions {
    fn slot(&self, partition: PartitionId, input: usize) -> Option<&AtomicI64> {
        usize::try_from(partition.0)
            .ok()
            .and_then(|p| self.next.get(p * self.inputs + input))
    }
}

/// Where a bounded read (a replay) stops: per (topic, partition) the first offset *not* to deliver, and/or an
/// event time after which a topic partition is done. Each poll thread finishes its partition when every topic has
/// reached its bound, hands off what it has, and stops; when all partitions are done, [`StopAt::finished`] fires.
#[derive(Debug)]
pub struct StopAt {
    /// First offset not to deliver, per (topic, partition); a missing entry means "no offset bound".
    pub offsets: StartOffsets,
    /// Records whose source commit time (µs) is after this are not delivered, and end their topic partition.
    pub after_time_us: Option<i64>,
    remaining: std::sync::atomic::AtomicUsize,
    /// Flips to true when the last partition is done; any number of waiters see it.
    done: tokio::sync::watch::Sender<bool>,
}

impl StopAt {
    pub fn new(offsets: StartOffsets, after_time_us: Option<i64>, partitions: usize) -> Self {
        StopAt {
            offsets,
            after_time_us,
            remaining: std::sync::atomic::AtomicUsize::new(partitions),
            done: tokio::sync::watch::channel(partitions == 0).0,
        }
    }

    fn partition_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.send_replace(true);
        }
    }

    /// Resolves once every partition has delivered everything up to its bounds.
    pub async fn finished(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// Source commit time of a Debezium JSON envelope (`source.ts_us`, else `source.ts_ms`), if it has one.
pub fn envelope_time_us(payload: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Source {
        ts_us: Option<i64>,
        ts_ms: Option<i64>,
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        source: Option<Source>,
    }
    let e: Envelope = serde_json::from_slice(payload).ok()?;
    let s = e.source?;
    s.ts_us.or(s.ts_ms.map(|ms| ms.saturating_mul(1000)))
}

/// How long the start-up position check waits for the record just before a doubtful start offset. A broker that
/// holds the record returns it in one fetch; the bound only matters when it is not there.
const POSITION_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A checkpoint's start offset beyond the end of its topic partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastEnd {
    pub topic: String,
    pub partition: i32,
    /// Where the checkpoint resumes.
    pub offset: i64,
    /// What the broker reports as the partition's end.
    pub high_watermark: i64,
}

impl std::fmt::Display for PastEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[{}] resumes at offset {} but holds no record at {} (high watermark {})",
            self.topic,
            self.partition,
            self.offset,
            self.offset - 1,
            self.high_watermark
        )
    }
}

/// Receives a batch from a poll thread. Returns `false` when the receiver is gone, which stops that thread.
pub type Deliver = Arc<dyn Fn(SourceBatch) -> bool + Send + Sync>;

pub struct KafkaSource {
    /// Next offset handed to the partition actors, per (partition, input): read by the lag probe and progress.
    positions: Arc<ReadPositions>,
    consumer: Arc<BaseConsumer<DefaultConsumerContext>>,
    settings: KafkaSourceSettings,
    partitions: Vec<PartitionId>,
    shutdown: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Set once by the lag thread when a topic's partition count stops matching `partitions`.
    layout: tokio::sync::watch::Sender<Option<String>>,
}

impl KafkaSource {
    /// Creates the consumer and discovers the partition layout. Fails if the topics are missing or not
    /// co-partitioned.
    pub fn connect(settings: KafkaSourceSettings) -> Result<Self, SourceError> {
        let mut cc = ClientConfig::new();
        // Prefetch bound per topic partition (split partition queues make it per partition, not per client): what
        // librdkafka holds for a partition whose actor is out of permits. 16 MiB x (3 topics x partitions) bounds
        // the source's memory beside the in-flight records; `kafka.client` may override it.
        cc.set("queued.max.messages.kbytes", "16384");
        for (k, v) in &settings.client {
            cc.set(k, v);
        }
        cc.set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group_id)
            // Exactly-once comes from our checkpoints: never let librdkafka commit or store offsets by itself.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        if let Some(pw) = &settings.sasl_password {
            cc.set("sasl.password", pw);
        }
        let consumer: BaseConsumer = cc.create()?;
        let consumer = Arc::new(consumer);
        let mut counts = Vec::new();
        for topic in &settings.topics {
            let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let n = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none())
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            if n == 0 {
                return Err(SourceError::MissingTopic(topic.clone()));
            }
            counts.push((topic.clone(), n));
        }
        let first = counts.first().map(|(_, n)| *n).unwrap_or(0);
        if counts.iter().any(|(_, n)| *n != first) {
            let desc = counts
                .iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SourceError::NotCoPartitioned(desc));
        }
        let partitions: Vec<PartitionId> = (0..first as i32).map(PartitionId).collect();
        let inputs = settings.topics.len();
        let positions = Arc::new(ReadPositions {
            inputs,
            next: (0..partitions.len() * inputs)
                .map(|_| AtomicI64::new(-1))
                .collect(),
        });
        Ok(KafkaSource {
            positions,
            consumer,
            settings,
            partitions,
            shutdown: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            layout: tokio::sync::watch::channel(None).0,
        })
    }

    /// Fires (with a description) when an input topic's partition count changes while running. The assignment is
    /// fixed for a generation: new partitions would go unread and moved keys would meet the wrong state, so the
    /// pipeline stops on it (see [`crate::checkpoint::layout_change`]).
    pub fn layout_changes(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.layout.subscribe()
    }

    /// The partition numbers, identical for every input topic.
    pub fn partitions(&self) -> &[PartitionId] {
        &self.partitions
    }

    pub fn topics(&self) -> &[String] {
        &self.settings.topics
    }

    /// The end of every (topic, partition) now: the next offset after the last record. The broker's high watermark
    /// is not trusted on its own (tansu's memory engine reports the last batch's base offset + 1): a separate
    /// consumer reads from just before it until nothing more comes, and the end is the larger of the two.
    pub fn end_offsets(&self) -> Result<StartOffsets, SourceError> {
        let probe = self.probe_consumer("end-probe")?;
        let mut ends = StartOffsets::new();
        let mut tpl = TopicPartitionList::new();
        for topic in &self.settings.topics {
            for p in &self.partitions {
                let (low, high) = probe.fetch_watermarks(topic, p.0, Duration::from_secs(10))?;
                ends.insert((topic.clone(), p.0), high.max(low));
                if high > low {
                    tpl.add_partition_offset(topic, p.0, KOffset::Offset((high - 1).max(low)))?;
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(ends);
        }
        probe.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_secs(1) {
            match probe.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    quiet_since = Instant::now();
                    let e = ends
                        .entry((m.topic().to_string(), m.partition()))
                        .or_insert(0);
                    *e = (*e).max(m.offset() + 1);
                }
                Some(Err(e)) => tracing::debug!(error = %e, "end probe"),
                None => {}
            }
        }
        Ok(ends)
    }

    /// A consumer beside the pipeline's (same client settings, its own group id, never committing).
    fn probe_consumer(&self, purpose: &str) -> Result<BaseConsumer, SourceError> {
        let mut cc = ClientConfig::new();
        for (k, v) in &self.settings.client {
            cc.set(k, v);
        }
        cc.set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", format!("{}-{purpose}", self.settings.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        if let Some(pw) = &self.settings.sasl_password {
            cc.set("sasl.password", pw);
        }
        Ok(cc.create()?)
    }

    /// The start positions that lie beyond the end of their topic partition: the topic was deleted and recreated
    /// (or truncated) since the checkpoint, and resuming there would silently skip every record up to that
    /// offset. Empty when all is well.
    ///
    /// A start offset `o` is fine when the broker's high watermark is at least `o`. Below it (tansu's memory
    /// engine reports the last batch's base offset + 1, so this happens on a healthy topic too), the partition is
    /// read forward from the high watermark until the record at `o - 1` shows up: it exists exactly when the
    /// partition reaches `o`. Cheap: one ListOffsets per partition, and a short read only for the doubtful ones.
    pub fn positions_past_end(&self, start: &StartOffsets) -> Result<Vec<PastEnd>, SourceError> {
        let probe = self.probe_consumer("position-check")?;
        let mut doubtful = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), &offset) in start {
            if offset <= 0 {
                continue;
            }
            let (_, high) = probe.fetch_watermarks(topic, *partition, Duration::from_secs(10))?;
            if high >= offset {
                continue;
            }
            // Read forward from the broker's last batch: tansu serves a fetch only from a batch's base offset
            // (a fetch starting inside a batch returns nothing), and its high watermark is that base + 1.
            tpl.add_partition_offset(topic, *partition, KOffset::Offset((high - 1).max(0)))?;
            doubtful.insert((topic.clone(), *partition), (offset, high));
        }
        if doubtful.is_empty() {
            return Ok(Vec::new());
        }
        probe.assign(&tpl)?;
        let deadline = Instant::now() + POSITION_CHECK_TIMEOUT;
        while !doubtful.is_empty() && Instant::now() < deadline {
            match probe.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    if doubtful.get(&key).is_some_and(|(o, _)| m.offset() >= o - 1) {
                        doubtful.remove(&key);
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "position check"),
                None => {}
            }
        }
        Ok(doubtful
            .into_iter()
            .map(|((topic, partition), (offset, high_watermark))| PastEnd {
                topic,
                partition,
                offset,
                high_watermark,
            })
            .collect())
    }

    /// A function returning the next offset handed to the partition actors per (topic, partition) (`-1` until
    /// known), for progress reports.
    pub fn position_reader(&self) -> impl Fn() -> StartOffsets + Send + Sync + 'static {
        let positions = self.positions.clone();
        let topics = self.settings.topics.clone();
        let partitions = self.partitions.clone();
        move || {
            let mut out = StartOffsets::new();
            for p in &partitions {
                for (input, topic) in topics.iter().enumerate() {
                    if let Some(slot) = positions.slot(*p, input) {
                        out.insert((topic.clone(), p.0), slot.load(Ordering::Relaxed));
                    }
                }
            }
            out
        }
    }

    /// Assigns every (topic, partition) at its start offset and starts one poll thread per partition number.
    /// `permits[p]` bounds the records of partition `p` in flight. With `stop`, reading ends at its bounds.
    pub fn start(
        &mut self,
        start: &StartOffsets,
        permits: &BTreeMap<PartitionId, Arc<Semaphore>>,
        deliver: Deliver,
        runtime: tokio::runtime::Handle,
        stop: Option<Arc<StopAt>>,
    ) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        for topic in &self.settings.topics {
            for p in &self.partitions {
                let off = match start.get(&(topic.clone(), p.0)) {
                    Some(o) => KOffset::Offset(*o),
                    None => KOffset::Beginning,
                };
                tpl.add_partition_offset(topic, p.0, off)?;
            }
        }
        self.consumer.assign(&tpl)?;
        let positions = self.positions.clone();
        for p in &self.partitions {
            for (input, topic) in self.settings.topics.iter().enumerate() {
                if let (Some(o), Some(slot)) =
                    (start.get(&(topic.clone(), p.0)), positions.slot(*p, input))
                {
                    slot.store(*o, Ordering::Relaxed);
                }
            }
        }

        for p in self.partitions.clone() {
            let mut queues = Vec::new();
            let wake = Arc::new((Mutex::new(false), Condvar::new()));
            for (input, topic) in self.settings.topics.iter().enumerate() {
                let Some(mut q) = self.consumer.split_partition_queue(topic, p.0) else {
                    return Err(SourceError::MissingTopic(format!("{topic}[{p}]")));
                };
                let w = wake.clone();
                q.set_nonempty_callback(move || {
                    let (lock, cv) = &*w;
                    if let Ok(mut ready) = lock.lock() {
                        *ready = true;
                        cv.notify_one();
                    }
                });
                queues.push((input, q));
            }
            let Some(sem) = permits.get(&p).cloned() else {
                continue;
            };
            let bounds = stop.as_ref().map(|stop| {
                self.settings
                    .topics
                    .iter()
                    .map(|t| stop.offsets.get(&(t.clone(), p.0)).copied())
                    .collect::<Vec<_>>()
            });
            let ctx = PollThread {
                stop: stop.clone(),
                bounds,
                partition: p,
                queues,
                wake,
                sem,
                deliver: deliver.clone(),
                batch_size: self.settings.batch_size,
                shutdown: self.shutdown.clone(),
                runtime: runtime.clone(),
                positions: positions.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("kafka-poll-{}", p.0))
                .spawn(move || ctx.run())
                .map_err(SourceError::Thread)?;
            self.threads.push(handle);
        }

        // The main queue still has to be served (errors, statistics, commit callbacks).
        let consumer = self.consumer.clone();
        let shutdown = self.shutdown.clone();
        let handle = std::thread::Builder::new()
            .name("kafka-main".into())
            .spawn(move || {
                while !shutdown.load(Ordering::Relaxed) {
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        tracing::warn!(error = %e, "kafka consumer error");
                    }
                }
            })
            .map_err(SourceError::Thread)?;
        self.threads.push(handle);

        let probe = LagProbe {
            consumer: self.consumer.clone(),
            topics: self.settings.topics.clone(),
            partitions: self.partitions.clone(),
            positions,
            shutdown: self.shutdown.clone(),
            layout: self.layout.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("kafka-lag".into())
            .spawn(move || probe.run())
            .map_err(SourceError::Thread)?;
        self.threads.push(handle);
        Ok(())
    }

    /// A function publishing committed positions to the consumer group. Only a hint for lag dashboards:
    /// recovery never reads it, so a failed hint is logged and otherwise ignored.
    pub fn offset_hinter(&self) -> Arc<dyn Fn(&Offsets) + Send + Sync> {
        let consumer = self.consumer.clone();
        Arc::new(move |offsets: &Offsets| {
            let mut tpl = TopicPartitionList::new();
            for (topic, ps) in offsets {
                for (p, off) in ps {
                    if let Err(e) = tpl.add_partition_offset(topic, *p, KOffset::Offset(*off)) {
                        tracing::warn!(error = %e, "cannot build offset hint");
                        return;
                    }
                }
            }
            if tpl.count() > 0
                && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
            {
                tracing::warn!(error = %e, "group offset hint not committed");
            }
        })
    }

    /// Stops the poll threads and waits for them.
    pub fn stop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop();
    }
}

struct PollThread {
    /// Bounded read (replay): where to stop, and this partition's first offset not to deliver per input.
    stop: Option<Arc<StopAt>>,
    bounds: Option<Vec<Option<i64>>>,
    partition: PartitionId,
    queues: Vec<(
        usize,
        rdkafka::consumer::base_consumer::PartitionQueue<DefaultConsumerContext>,
    )>,
    wake: Arc<(Mutex<bool>, Condvar)>,
    sem: Arc<Semaphore>,
    deliver: Deliver,
    batch_size: usize,
    shutdown: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
    positions: Arc<ReadPositions>,
}

impl PollThread {
    /// Whether `input` has reached its bound at `offset` (the next offset it would deliver).
    fn reached(&self, input: usize, offset: i64) -> bool {
        self.bounds
            .as_ref()
            .and_then(|b| b.get(input).copied().flatten())
            .is_some_and(|stop| offset >= stop)
    }

    fn run(self) {
        let mut batch: Vec<RawRecord> = Vec::with_capacity(self.batch_size);
        // Per input: done with its bounded read. Without bounds nothing is ever done.
        let mut done: Vec<bool> = self
            .queues
            .iter()
            .map(|(input, _)| {
                let next = self
                    .positions
                    .slot(self.partition, *input)
                    .map(|s| s.load(Ordering::Relaxed))
                    .unwrap_or(-1);
                // Unknown (`-1`): reading starts at the beginning.
                self.reached(*input, next.max(0))
            })
            .collect();
        let bounded = self.stop.is_some();
        while !self.shutdown.load(Ordering::Relaxed) {
            if bounded && done.iter().all(|d| *d) {
                if !batch.is_empty() && !self.hand_off(std::mem::take(&mut batch)) {
                    return;
                }
                if let Some(stop) = &self.stop {
                    stop.partition_done();
                }
                return;
            }
            // Drain the queues round-robin until the batch is full or all are empty.
            let mut got_any = true;
            while got_any && batch.len() < self.batch_size {
                got_any = false;
                for (i, (input, q)) in self.queues.iter().enumerate() {
                    if batch.len() >= self.batch_size {
                        break;
                    }
                    if done[i] {
                        continue;
                    }
                    match q.poll(Duration::ZERO) {
                        Some(Ok(m)) => {
                            got_any = true;
                            if self.reached(*input, m.offset()) {
                                done[i] = true;
                                continue;
                            }
                            if let (Some(stop), Some(t)) = (
                                self.stop.as_ref().and_then(|s| s.after_time_us),
                                m.payload().and_then(envelope_time_us),
                            ) && t > stop
                            {
                                done[i] = true;
                                continue;
                            }
                            if self.reached(*input, m.offset() + 1) {
                                done[i] = true;
                            }
                            batch.push(RawRecord {
                                input: *input,
                                offset: Offset(m.offset()),
                                key: m.key().map(<[u8]>::to_vec),
                                payload: m.payload().map(<[u8]>::to_vec),
                                timestamp_ms: m.timestamp().to_millis(),
                            });
                        }
                        Some(Err(e)) => {
                            tracing::warn!(partition = self.partition.0, error = %e, "partition queue error");
                        }
                        None => {}
                    }
                }
            }
            if !batch.is_empty() {
                let records = std::mem::replace(&mut batch, Vec::with_capacity(self.batch_size));
                if !self.hand_off(records) {
                    return;
                }
                continue;
            }
            // Idle: sleep until a queue becomes non-empty (or re-check shutdown every 100 ms).
            let (lock, cv) = &*self.wake;
            if let Ok(mut ready) = lock.lock() {
                if !*ready {
                    ready = match cv.wait_timeout(ready, Duration::from_millis(100)) {
                        Ok((g, _)) => g,
                        Err(_) => return,
                    };
                }
                *ready = false;
            }
        }
    }

    /// Acquires permits for the records (pausing the partition while none are available) and delivers them.
    fn hand_off(&self, records: Vec<RawRecord>) -> bool {
        let n = records.len() as u32;
        let permit = match self.sem.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                // Backpressure: stop polling this partition's queues until the actor returns permits. No
                // pause()/resume(): resuming restarts the fetcher at the application's offset, possibly inside a
                // record batch, and a broker that answers such a fetch with the *next* batch (tansu does) then
                // skips the rest of that batch. Unpolled, librdkafka's per-partition queue fills to its bound
                // (`queued.max.messages.kbytes`, set in `connect`) and its fetcher stops at a batch boundary.
                let started = Instant::now();
                let permit = loop {
                    if self.shutdown.load(Ordering::Relaxed) {
                        return false;
                    }
                    let sem = self.sem.clone();
                    let got = self.runtime.block_on(async move {
                        tokio::time::timeout(Duration::from_millis(100), sem.acquire_many_owned(n))
                            .await
                    });
                    match got {
                        Ok(Ok(p)) => break p,
                        Ok(Err(_closed)) => return false,
                        Err(_timeout) => continue,
                    }
                };
                metrics::source_backpressure(self.partition, started.elapsed());
                permit
            }
        };
        metrics::source_records(self.partition, records.len());
        let mut next: Vec<Option<i64>> = vec![None; self.positions.inputs];
        for r in &records {
            if let Some(n) = next.get_mut(r.input) {
                *n = Some(n.unwrap_or(i64::MIN).max(r.offset.0 + 1));
            }
        }
        for (input, n) in next.into_iter().enumerate() {
            if let (Some(n), Some(slot)) = (n, self.positions.slot(self.partition, input)) {
                slot.store(n, Ordering::Relaxed);
            }
        }
        (self.deliver)(SourceBatch {
            partition: self.partition,
            records,
            permit: Some(permit),
        })
    }
}

/// Periodically fetches high watermarks and records the lag of every topic partition (see `metrics` for how lag is
/// computed and why it distrusts the broker). Runs on its own thread: `fetch_watermarks` blocks on the network.
struct LagProbe {
    consumer: Arc<BaseConsumer<DefaultConsumerContext>>,
    topics: Vec<String>,
    partitions: Vec<PartitionId>,
    positions: Arc<ReadPositions>,
    shutdown: Arc<AtomicBool>,
    layout: tokio::sync::watch::Sender<Option<String>>,
}

impl LagProbe {
    fn run(self) {
        while !self.shutdown.load(Ordering::Relaxed) {
            self.probe();
            let until = Instant::now() + LAG_PROBE_INTERVAL;
            while Instant::now() < until && !self.shutdown.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn probe(&self) {
        self.check_layout();
        for p in &self.partitions {
            for (input, topic) in self.topics.iter().enumerate() {
                if self.shutdown.load(Ordering::Relaxed) {
                    return;
                }
                let (low, high) = match self.consumer.fetch_watermarks(
                    topic,
                    p.0,
                    Duration::from_secs(5),
                ) {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::debug!(topic, partition = p.0, error = %e, "cannot fetch watermarks");
                        continue;
                    }
                };
                let next = self
                    .positions
                    .slot(*p, input)
                    .map(|s| s.load(Ordering::Relaxed))
                    .filter(|n| *n >= 0)
                    .unwrap_or(low);
                metrics::source_lag(topic, p.0, high, next);
            }
        }
    }

    /// Compares each topic's partition count with the one this generation reads; reports the first change.
    fn check_layout(&self) {
        if self.layout.borrow().is_some() {
            return;
        }
        let counts: Vec<(&str, Option<usize>)> = self
            .topics
            .iter()
            .map(|topic| {
                let found = match self
                    .consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(5))
                {
                    Ok(md) => md
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .filter(|t| t.error().is_none())
                        .map(|t| t.partitions().len()),
                    Err(e) => {
                        tracing::debug!(topic, error = %e, "cannot fetch metadata");
                        None
                    }
                };
                (topic.as_str(), found)
            })
            .collect();
        if let Some(what) = layout_report(self.partitions.len(), &counts) {
            tracing::error!("{what}");
            self.layout.send_replace(Some(what));
        }
    }
}

/// The first topic whose partition count is known and differs from `want`, described.
///
/// A topic missing from one metadata answer (`None`, or an empty partition list) is a broker hiccup as often as a
/// deletion, and the fetch errors of a deleted topic surface on their own; only a definite, different count is a
/// layout change.
fn layout_report(want: usize, counts: &[(&str, Option<usize>)]) -> Option<String> {
    counts.iter().find_map(|(topic, n)| {
        n.filter(|n| *n > 0 && *n != want)
            .map(|n| format!("topic {topic} now has {n} partitions, this pipeline reads {want}"))
    })
}

#[cfg(test)]
mod tests {
    use super::layout_report;

    #[test]
    fn only_a_definite_different_count_is_a_layout_change() {
        let same = [("a", Some(4)), ("b", Some(4))];
        assert_eq!(layout_report(4, &same), None);
        // Unknown or empty answers are hiccups, not changes.
        assert_eq!(layout_report(4, &[("a", None), ("b", Some(0))]), None);
        assert_eq!(
            layout_report(4, &[("a", None), ("b", Some(6)), ("c", Some(2))]).as_deref(),
            Some("topic b now has 6 partitions, this pipeline reads 4")
        );
    }
}
