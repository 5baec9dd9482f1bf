//! The NATS JetStream store: the queue traits on a JetStream work-queue stream, so that
//! several callgate instances share one durable queue with SQLite's guarantees.
//!
//! Layout (all names derive from `store.stream`, default `CALLGATE`):
//! - stream `CALLGATE` (work-queue retention, file storage), subjects
//!   `callgate.CALLGATE.q.<line>.<partition>`: `<line>` is 16 hex digits of SHA-256 over
//!   `route/destination`, `<partition>` the call's partition key hashed into
//!   `store.partitions` buckets;
//! - one durable pull consumer per (destination, partition bucket), filtered on its subject,
//!   with `max_ack_pending: 1`: one message of a bucket is out at a time, whichever instance
//!   holds it, so a call's messages are delivered in order; an instance that dies leaves its
//!   message unacknowledged and JetStream offers it again after `ack_wait`;
//! - retries and deferrals are NAKs with a delay: the message stays the bucket's pending one,
//!   so nothing behind it overtakes it;
//! - `Nats-Msg-Id` (route, destination, event id) makes a re-sent event's messages
//!   duplicates within the stream's 2-minute window, and the stream `CALLGATE_dedupe`
//!   (one message per key, max age `delivery.dedupe_window`) remembers event keys beyond it;
//! - dead letters go to the stream `CALLGATE_DLQ`; their id is its sequence number;
//! - the [`SharedTable`] (lifecycle leg states) is the stream `CALLGATE_shared`, one message
//!   per key, kept 2 hours: each instance writes its commits and follows everyone's;
//! - [`Settings`](super::Settings) are the stream `CALLGATE_settings`, one message per key,
//!   kept until replaced;
//! - the [`Archive`] is the stream `CALLGATE_archive` (subject `callgate.CALLGATE.archive`,
//!   `max_age` = `archive.retention`, `max_bytes` = `archive.max_bytes`), one message per
//!   record; reads start at the window's first record (`DeliverPolicy::ByStartTime`) and
//!   filter keys as they go.
//!
//! What this store cannot keep exactly across instances, it keeps per instance: the attempt
//! log and the deferral count of a message live with the instance that holds it (a takeover
//! starts them again from JetStream's delivery count), and depth counters are the last
//! consumer info (refreshed every 2 s) plus this instance's own changes since.

use super::archive::{Archive, Archived, Query, Record};
use super::{
    AttemptLog, BoxFuture, Consumer, DeadLetter, DeadLetters, Enqueued, EventBatch, Lease, Leased,
    Message, Producer, QueueError, Request, Settlement, SharedEntries, SharedTable, hex16,
};
use crate::model::clock::now_ms;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long JetStream remembers a `Nats-Msg-Id` (its default).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How often the depth counters are read back from the server.
const REFRESH: Duration = Duration::from_secs(2);
/// How long a shared key is kept after its last write (the lifecycle trackers' idle time).
const SHARED_MAX_AGE: Duration = Duration::from_secs(2 * 3600);
/// How long the server keeps a pull that it cannot answer at once.
const FETCH_EXPIRES: Duration = Duration::from_millis(200);
/// How long one request to the server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What `store: {kind: nats}` configures.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// Server URL(s), comma-separated.
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// Stream and bucket replicas.
    pub replicas: usize,
    /// Partition buckets per destination.
    pub partitions: u32,
    /// How long a delivered message may stay unacknowledged before another instance gets
    /// it.
    pub ack_wait: Duration,
    /// How long an event's dedupe key is remembered.
    pub dedupe_window: Duration,
    /// Most messages waiting per destination.
    pub max_queue_depth: u64,
    /// The archive's limits, when it keeps one.
    pub archive: Option<crate::config::ArchiveConfig>,
}

/// A message as stored in the queue stream: the v2 record of its request, and what the
/// worker needs to route it.
#[derive(Serialize, Deserialize)]
struct Stored {
    route: String,
    destination: String,
    // Records written before the ordering key had one name call it `partition`.
    #[serde(alias = "partition")]
    partitionkey: String,
    event_id: String,
    event_type: String,
    request: String,
}

impl Stored {
    fn of(m: &Message) -> Stored {
        Stored {
            route: m.route.clone(),
            destination: m.destination.clone(),
            partitionkey: m.partitionkey.clone(),
            event_id: m.event_id.clone(),
            event_type: m.event_type.clone(),
            request: m.request.to_record(),
        }
    }

    fn message(self) -> Result<Message, String> {
        Ok(Message {
            route: self.route,
            destination: self.destination,
            partitionkey: self.partitionkey,
            event_id: self.event_id,
            event_type: self.event_type,
            request: Request::from_record(&self.request)?,
        })
    }
}

/// A dead letter as stored in the DLQ stream.
#[derive(Serialize, Deserialize)]
struct StoredDead {
    message: Stored,
    attempts: u32,
    created_at: i64,
    dead_at: i64,
    attempt_log: Vec<StoredAttempt>,
}

#[derive(Serialize, Deserialize)]
struct StoredAttempt {
    at: i64,
    status: Option<u16>,
    error: Option<String>,
    excerpt: Option<String>,
}

impl From<&AttemptLog> for StoredAttempt {
    fn from(a: &AttemptLog) -> Self {
        StoredAttempt {
            at: a.at,
            status: a.status,
            error: a.error.clone(),
            excerpt: a.excerpt.clone(),
        }
    }
}

impl From<StoredAttempt> for AttemptLog {
    fn from(a: StoredAttempt) -> Self {
        AttemptLog {
            at: a.at,
            status: a.status,
            error: a.error,
            excerpt: a.excerpt,
        }
    }
}

/// One (destination, partition bucket) line and its consumer.
struct Line {
    /// `route/destination`.
    destination: String,
    /// Its subject (the consumer's filter).
    subject: String,
    consumer: consumer::Consumer<consumer::pull::Config>,
}

/// A message leased by this instance.
struct Held {
    message: jetstream::Message,
    line: String,
    sequence: u64,
    /// After `ack_wait` from here JetStream offers the message again (to anyone): the line
    /// is no longer this instance's, settled or not.
    since: tokio::time::Instant,
}

/// What this instance knows of a message beyond JetStream's delivery count.
#[derive(Default)]
struct History {
    log: Vec<AttemptLog>,
    deferrals: u32,
}

/// The JetStream queue. Cheap to share (`Arc`); a background task keeps its depth counters.
pub struct JetStreamQueue {
    js: jetstream::Context,
    queue: stream::Stream,
    dlq: stream::Stream,
    dedupe: stream::Stream,
    shared: stream::Stream,
    settings: stream::Stream,
    archive: Option<stream::Stream>,
    shared_puts: mpsc::UnboundedSender<(String, Vec<u8>)>,
    config: JetStreamConfig,
    /// Lines by consumer name.
    lines: Mutex<HashMap<String, Arc<Line>>>,
    held: Mutex<HashMap<i64, Held>>,
    /// Buckets this instance NAKed, until their message is due again: not polled till then.
    resting: Mutex<HashMap<String, tokio::time::Instant>>,
    next_lease: AtomicI64,
    history: Mutex<HashMap<u64, History>>,
    /// Messages waiting per line (consumer name).
    depths: Mutex<HashMap<String, u64>>,
    closed: AtomicBool,
}

fn store_error(e: impl std::fmt::Display) -> QueueError {
    QueueError::Store(format!("NATS: {e}"))
}

impl JetStreamQueue {
    /// Connects, and creates the stream, the DLQ stream and the dedupe bucket if they do not
    /// exist. Errors: the server cannot be reached, or refuses the configuration.
    pub async fn open(config: JetStreamConfig) -> Result<Arc<JetStreamQueue>, QueueError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .name("callgate")
            .connect(config.url.as_str())
            .await
            .map_err(|e| QueueError::Store(format!("cannot connect to NATS: {e}")))?;
        let js = jetstream::new(client);
        let name = &config.stream;
        let prefix = format!("callgate.{name}");
        // Every stream: file storage, the configured replicas, named `<stream><suffix>`.
        let create = |suffix: &str, description: &str, subject: String, extra: stream::Config| {
            let js = js.clone();
            let (stream_name, description) = (format!("{name}{suffix}"), description.to_string());
            async move {
                js.get_or_create_stream(stream::Config {
                    name: stream_name.clone(),
                    description: Some(description),
                    subjects: vec![subject],
                    storage: stream::StorageType::File,
                    num_replicas: config.replicas,
                    ..extra
                })
                .await
                .map_err(|e| QueueError::Store(format!("NATS stream {stream_name}: {e}")))
            }
        };
        let queue = create(
            "",
            "callgate delivery queue",
            format!("{prefix}.q.>"),
            stream::Config {
                retention: stream::RetentionPolicy::WorkQueue,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            },
        )
        .await?;
        let dlq = create(
            "_DLQ",
            "callgate dead letters",
            format!("{prefix}.dlq"),
            stream::Config {
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            },
        )
        .await?;
        // Event keys: one message per key subject, expiring after the dedupe window (what a
        // key-value bucket is, without the client's KV layer, whose stream-info parsing
        // fails on nats-server 2.9).
        let dedupe = create(
            "_dedupe",
            "callgate event dedupe keys",
            format!("{prefix}.seen.>"),
            stream::Config {
                max_messages_per_subject: 1,
                max_age: config.dedupe_window,
                duplicate_window: DUPLICATE_WINDOW.min(config.dedupe_window),
                ..Default::default()
            },
        )
        .await?;
        let shared = create(
            "_shared",
            "callgate state shared by instances",
            format!("{prefix}.shared.>"),
            stream::Config {
                max_messages_per_subject: 1,
                max_age: SHARED_MAX_AGE,
                ..Default::default()
            },
        )
        .await?;
        // Settings: one message per key subject, kept until replaced.
        let settings = create(
            "_settings",
            "callgate durable settings",
            format!("{prefix}.settings.>"),
            stream::Config {
                max_messages_per_subject: 1,
                ..Default::default()
            },
        )
        .await?;
        let archive = match &config.archive {
            Some(limits) => Some(
                create(
                    "_archive",
                    "callgate archive: accepted payloads, their events and fates, outcomes",
                    format!("{prefix}.archive"),
                    stream::Config {
                        max_age: limits.retention,
                        max_bytes: i64::try_from(limits.max_bytes).unwrap_or(i64::MAX),
                        ..Default::default()
                    },
                )
                .await?,
            ),
            None => None,
        };
        // One task publishes shared puts, so they reach the stream in the order made.
        let (shared_puts, mut puts) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
        let (publisher, shared_prefix) = (js.clone(), format!("{prefix}.shared."));
        tokio::spawn(async move {
            while let Some((key, value)) = puts.recv().await {
                let subject = format!("{shared_prefix}{key}");
                if let Err(error) = publisher.publish(subject, value.into()).await {
                    tracing::warn!(%error, "cannot share state through NATS");
                }
            }
        });
        let queue = Arc::new(JetStreamQueue {
            js,
            queue,
            dlq,
            dedupe,
            shared,
            settings,
            archive,
            shared_puts,
            config,
            lines: Mutex::default(),
            held: Mutex::default(),
            resting: Mutex::default(),
            next_lease: AtomicI64::new(1),
            history: Mutex::default(),
            depths: Mutex::default(),
            closed: AtomicBool::new(false),
        });
        queue.refresh().await?;
        let weak = Arc::downgrade(&queue);
        tokio::spawn(keep_counters(weak));
        Ok(queue)
    }

    /// Stops taking work; messages still leased are offered again after `ack_wait`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn check_open(&self) -> Result<(), QueueError> {
        if self.closed.load(Ordering::Relaxed) {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }

    fn bucket(&self, partition: &str) -> u32 {
        let digest = sha2::Sha256::digest(partition.as_bytes());
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % self.config.partitions
    }

    /// The consumer name and subject of a message's line.
    fn line_of(&self, route: &str, destination: &str, partition: &str) -> (String, String) {
        let line = hex16(&format!("{route}/{destination}"));
        let bucket = self.bucket(partition);
        (
            format!("{}-{line}-{bucket}", self.config.stream),
            format!("callgate.{}.q.{line}.{bucket}", self.config.stream),
        )
    }

    /// Creates the line's consumer if this instance has not seen it yet.
    async fn ensure_line(
        &self,
        name: &str,
        subject: &str,
        destination: &str,
    ) -> Result<(), QueueError> {
        if self.lines.lock().expect("lines lock").contains_key(name) {
            return Ok(());
        }
        let consumer = self
            .queue
            .get_or_create_consumer(
                name,
                consumer::pull::Config {
                    durable_name: Some(name.to_string()),
                    description: Some(destination.to_string()),
                    filter_subject: subject.to_string(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(store_error)?;
        self.lines.lock().expect("lines lock").insert(
            name.to_string(),
            Arc::new(Line {
                destination: destination.to_string(),
                subject: subject.to_string(),
                consumer,
            }),
        );
        Ok(())
    }

    /// Reads every line's consumer from the server (lines other instances created too) and
    /// its waiting count.
    async fn refresh(&self) -> Result<(), QueueError> {
        let mut consumers = self.queue.consumers();
        let mut depths = HashMap::new();
        let mut found = Vec::new();
        let mut blocked = Vec::new();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(store_error)?;
            let Some(destination) = info.config.description.clone() else {
                continue;
            };
            depths.insert(
                info.name.clone(),
                info.num_pending + info.num_ack_pending as u64,
            );
            // More pending than the consumer allows can only be nats-server's own state after
            // a hard restart (fixed in 2.9.22 and 2.10, nats-server#4427; Debian bookworm
            // ships 2.9.10): the consumer would never deliver again.
            if info.num_ack_pending as i64 > info.config.max_ack_pending {
                blocked.push((
                    info.name.clone(),
                    info.config.filter_subject.clone(),
                    destination.clone(),
                    info.num_ack_pending,
                ));
            }
            found.push((info.name, destination));
        }
        // Lines this instance knows that the server lost (a consumer created just before a
        // hard restart may not have been written): recreated, or their messages would wait
        // forever.
        let lost: Vec<(String, String, String)> = self
            .lines
            .lock()
            .expect("lines lock")
            .iter()
            .filter(|(name, _)| !found.iter().any(|(f, _)| f == *name))
            .map(|(name, line)| (name.clone(), line.subject.clone(), line.destination.clone()))
            .collect();
        for (name, subject, destination) in lost {
            tracing::warn!(consumer = %name, "consumer missing on the NATS server: recreating it");
            self.lines.lock().expect("lines lock").remove(&name);
            self.ensure_line(&name, &subject, &destination).await?;
        }
        for (name, subject, destination, pending) in blocked {
            // Recreated, it starts from the stream's first message of its subject: a work
            // queue keeps only unacknowledged messages, so the line resumes in order, at
            // worst delivering its last message again.
            tracing::warn!(consumer = %name, ack_pending = pending, "consumer blocked by more pending acknowledgements than it allows (nats-server after a hard restart): recreating it");
            self.lines.lock().expect("lines lock").remove(&name);
            if let Err(error) = self.queue.delete_consumer(&name).await {
                tracing::warn!(consumer = %name, %error, "cannot delete the blocked consumer");
                continue;
            }
            self.ensure_line(&name, &subject, &destination).await?;
        }
        for (name, destination) in found {
            if self.lines.lock().expect("lines lock").contains_key(&name) {
                continue;
            }
            if let Ok(consumer) = self
                .queue
                .get_consumer::<consumer::pull::Config>(&name)
                .await
            {
                self.lines.lock().expect("lines lock").insert(
                    name,
                    Arc::new(Line {
                        subject: consumer.cached_info().config.filter_subject.clone(),
                        destination,
                        consumer,
                    }),
                );
            }
        }
        *self.depths.lock().expect("depths lock") = depths;
        Ok(())
    }

    fn adjust(&self, line: &str, delta: i64) {
        let mut depths = self.depths.lock().expect("depths lock");
        let depth = depths.entry(line.to_string()).or_default();
        *depth = depth.saturating_add_signed(delta);
    }

    fn destination_depth(&self, destination: &str) -> u64 {
        let lines = self.lines.lock().expect("lines lock");
        let depths = self.depths.lock().expect("depths lock");
        lines
            .iter()
            .filter(|(_, line)| line.destination == destination)
            .map(|(name, _)| depths.get(name).copied().unwrap_or(0))
            .sum()
    }

    async fn publish(
        &self,
        subject: String,
        message_id: String,
        payload: Vec<u8>,
    ) -> Result<jetstream::context::PublishAckFuture, QueueError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id.as_str());
        self.js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(store_error)
    }

    async fn publish_dead(&self, dead: &StoredDead, message_id: String) -> Result<(), QueueError> {
        let payload = serde_json::to_vec(dead).map_err(store_error)?;
        self.publish(
            format!("callgate.{}.dlq", self.config.stream),
            message_id,
            payload,
        )
        .await?
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn dead_letter(&self, sequence: u64) -> Result<DeadLetter, QueueError> {
        let raw = self
            .dlq
            .get_raw_message(sequence)
            .await
            .map_err(|e| match e.kind() {
                stream::RawMessageErrorKind::NoMessageFound => {
                    QueueError::NotFound(sequence as i64)
                }
                _ => store_error(e),
            })?;
        let stored: StoredDead = serde_json::from_slice(&raw.payload)
            .map_err(|e| QueueError::Store(format!("dead letter {sequence} is unreadable: {e}")))?;
        Ok(DeadLetter {
            id: sequence as i64,
            message: stored.message.message().map_err(QueueError::Store)?,
            attempts: stored.attempts,
            created_at: stored.created_at,
            dead_at: stored.dead_at,
            attempt_log: stored.attempt_log.into_iter().map(Into::into).collect(),
        })
    }

    /// Dead-letter sequences present, oldest first.
    async fn dead_sequences(&self) -> Result<std::ops::Range<u64>, QueueError> {
        let mut dlq = self.dlq.clone();
        let state = dlq.info().await.map_err(store_error)?.state.clone();
        if state.messages == 0 {
            return Ok(0..0);
        }
        Ok(state.first_sequence..state.last_sequence + 1)
    }

    async fn enqueue_batches(
        &self,
        events: Vec<EventBatch>,
        duplicate: &mut Vec<bool>,
    ) -> Result<Enqueued, QueueError> {
        self.check_open()?;
        let mut out = Enqueued::default();
        for batch in events {
            duplicate.push(false);
            let key = hex16(&batch.dedupe_key) + &hex16(&format!("~{}", batch.dedupe_key));
            let seen = format!("callgate.{}.seen.{key}", self.config.stream);
            match self.dedupe.get_last_raw_message_by_subject(&seen).await {
                Ok(_) => {
                    out.duplicates += 1;
                    if let Some(last) = duplicate.last_mut() {
                        *last = true;
                    }
                    continue;
                }
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(store_error(e)),
            }
            let mut acks = Vec::new();
            for new in &batch.messages {
                let m = &new.message;
                let message_id = hex16(&format!(
                    "{}\u{1f}{}\u{1f}{}",
                    m.route, m.destination, m.event_id
                ));
                if let Some(failure) = &new.failure {
                    let now = now_ms();
                    let dead = StoredDead {
                        message: Stored::of(m),
                        attempts: 0,
                        created_at: now,
                        dead_at: now,
                        attempt_log: vec![StoredAttempt {
                            at: now,
                            status: None,
                            error: Some(failure.clone()),
                            excerpt: None,
                        }],
                    };
                    self.publish_dead(&dead, format!("dead-{message_id}"))
                        .await?;
                    out.stored += 1;
                    continue;
                }
                let (line, subject) = self.line_of(&m.route, &m.destination, &m.partitionkey);
                let destination = m.destination_key();
                self.ensure_line(&line, &subject, &destination).await?;
                let depth = self.destination_depth(&destination);
                if depth >= self.config.max_queue_depth {
                    return Err(QueueError::Full {
                        destination,
                        depth,
                        max: self.config.max_queue_depth,
                    });
                }
                let payload = serde_json::to_vec(&Stored::of(m)).map_err(store_error)?;
                acks.push((line, self.publish(subject, message_id, payload).await?));
            }
            // Acknowledged only once JetStream has stored every message of the event; a
            // retry after a partial failure is deduplicated by `Nats-Msg-Id`.
            for (line, ack) in acks {
                let ack = ack.await.map_err(store_error)?;
                if !ack.duplicate {
                    self.adjust(&line, 1);
                }
                out.stored += 1;
            }
            self.publish(seen.clone(), seen, now_ms().to_string().into_bytes())
                .await?
                .await
                .map_err(store_error)?;
        }
        Ok(out)
    }

    async fn lease_due(&self, max: usize) -> Result<Vec<Leased>, QueueError> {
        self.check_open()?;
        let expired = tokio::time::Instant::now() - self.config.ack_wait;
        let busy: Vec<String> = self
            .held
            .lock()
            .expect("held lock")
            .values()
            .filter(|h| h.since > expired)
            .map(|h| h.line.clone())
            .collect();
        // Only buckets with something waiting: the server's count (refreshed every 2 s, so
        // another instance's enqueue is seen by then) plus this instance's own enqueues. An
        // idle gateway sends no fetch at all.
        let waiting: Vec<String> = self
            .depths
            .lock()
            .expect("depths lock")
            .iter()
            .filter(|(_, depth)| **depth > 0)
            .map(|(name, _)| name.clone())
            .collect();
        let now = tokio::time::Instant::now();
        let resting: Vec<String> = {
            let mut resting = self.resting.lock().expect("resting lock");
            resting.retain(|_, until| *until > now);
            resting.keys().cloned().collect()
        };
        let candidates: Vec<(String, Arc<Line>)> = self
            .lines
            .lock()
            .expect("lines lock")
            .iter()
            .filter(|(name, _)| {
                !busy.contains(name) && waiting.contains(name) && !resting.contains(name)
            })
            .map(|(name, line)| (name.clone(), line.clone()))
            .collect();
        // Never fetch more than `max`: a fetched message is pending until settled.
        let mut candidates = candidates;
        if candidates.len() > max {
            use rand::seq::SliceRandom as _;
            candidates.shuffle(&mut rand::rng());
            candidates.truncate(max);
        }
        let fetches = candidates.into_iter().map(|(name, line)| async move {
            let fetch = async {
                // `expires`: a pull the server cannot answer at once (the bucket's message is
                // out) must not outlive this wait, or the server would later hand a message to
                // a request nobody reads any more.
                let mut batch = line
                    .consumer
                    .fetch()
                    .max_messages(1)
                    .expires(FETCH_EXPIRES)
                    .messages()
                    .await?;
                batch.next().await.transpose()
            };
            let fetched: Result<Option<jetstream::Message>, async_nats::Error> =
                match tokio::time::timeout(REQUEST_TIMEOUT, fetch).await {
                    Ok(fetched) => fetched,
                    Err(_) => Ok(None),
                };
            match fetched {
                Ok(Some(message)) => Ok(Some((name, message))),
                Ok(None) => Ok(None),
                Err(e) => Err(store_error(e)),
            }
        });
        let mut leased = Vec::new();
        let mut failure = None;
        for fetched in futures_util::future::join_all(fetches).await {
            // One line's failure must not drop what the others fetched: those are pending
            // now, and would wait for `ack_wait` before anyone got them again.
            let (line, message) = match fetched {
                Ok(Some(fetched)) => fetched,
                Ok(None) => continue,
                Err(e) => {
                    failure = Some(e);
                    continue;
                }
            };
            let Ok(info) = message.info() else {
                continue;
            };
            let (sequence, delivered, published) = (
                info.stream_sequence,
                info.delivered,
                info.published.unix_timestamp_nanos() / 1_000_000,
            );
            let decoded = serde_json::from_slice::<Stored>(&message.payload)
                .map_err(|e| e.to_string())
                .and_then(Stored::message);
            let decoded = match decoded {
                Ok(decoded) => decoded,
                Err(error) => {
                    // Not written by callgate: it can never be delivered.
                    tracing::error!(stream = %self.config.stream, sequence, %error, "unreadable message in the queue stream: terminated");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            let deferrals = self
                .history
                .lock()
                .expect("history lock")
                .get(&sequence)
                .map_or(0, |h| h.deferrals);
            let id = self.next_lease.fetch_add(1, Ordering::Relaxed);
            leased.push((
                sequence,
                Leased {
                    lease: Lease { id },
                    message: decoded,
                    attempts: u32::try_from(delivered - 1)
                        .unwrap_or(0)
                        .saturating_sub(deferrals),
                    created_at: published as i64,
                },
            ));
            self.held.lock().expect("held lock").insert(
                id,
                Held {
                    message,
                    line,
                    sequence,
                    since: tokio::time::Instant::now(),
                },
            );
        }
        if leased.is_empty()
            && let Some(failure) = failure
        {
            return Err(failure);
        }
        // Oldest first, as stored.
        leased.sort_by_key(|(sequence, _)| *sequence);
        Ok(leased.into_iter().map(|(_, l)| l).collect())
    }

    async fn settle_held(&self, lease: Lease, settlement: Settlement) -> Result<(), QueueError> {
        let held = self
            .held
            .lock()
            .expect("held lock")
            .remove(&lease.id)
            .ok_or_else(|| QueueError::Store(format!("no lease {}", lease.id)))?;
        let nak = |after: Duration| {
            if !after.is_zero() {
                self.resting
                    .lock()
                    .expect("resting lock")
                    .insert(held.line.clone(), tokio::time::Instant::now() + after);
            }
            AckKind::Nak((!after.is_zero()).then_some(after))
        };
        match settlement {
            Settlement::Ack => {
                held.message.double_ack().await.map_err(store_error)?;
                self.history
                    .lock()
                    .expect("history lock")
                    .remove(&held.sequence);
                self.adjust(&held.line, -1);
            }
            Settlement::Retry { after, log } => {
                self.history
                    .lock()
                    .expect("history lock")
                    .entry(held.sequence)
                    .or_default()
                    .log
                    .push(log);
                held.message
                    .ack_with(nak(after))
                    .await
                    .map_err(store_error)?;
            }
            Settlement::Defer { after } => {
                self.history
                    .lock()
                    .expect("history lock")
                    .entry(held.sequence)
                    .or_default()
                    .deferrals += 1;
                held.message
                    .ack_with(nak(after))
                    .await
                    .map_err(store_error)?;
            }
            Settlement::Dead { log } => {
                let info = held.message.info().map_err(store_error)?;
                let (delivered, published) = (
                    info.delivered,
                    info.published.unix_timestamp_nanos() / 1_000_000,
                );
                let mut history = self
                    .history
                    .lock()
                    .expect("history lock")
                    .remove(&held.sequence)
                    .unwrap_or_default();
                history.log.push(log);
                let stored: Stored = serde_json::from_slice(&held.message.payload)
                    .map_err(|e| QueueError::Store(e.to_string()))?;
                let dead = StoredDead {
                    message: stored,
                    attempts: u32::try_from(delivered)
                        .unwrap_or(1)
                        .saturating_sub(history.deferrals),
                    created_at: published as i64,
                    dead_at: now_ms(),
                    attempt_log: history.log.iter().map(Into::into).collect(),
                };
                self.publish_dead(&dead, format!("{}-{}", self.config.stream, held.sequence))
                    .await?;
                held.message.double_ack().await.map_err(store_error)?;
                self.adjust(&held.line, -1);
            }
        }
        Ok(())
    }

    async fn replay_dead(&self, id: Option<i64>) -> Result<usize, QueueError> {
        let sequences: Vec<u64> = match id {
            Some(id) => vec![u64::try_from(id).map_err(|_| QueueError::NotFound(id))?],
            None => self.dead_sequences().await?.collect(),
        };
        let mut replayed = 0;
        for sequence in sequences {
            let dead = match self.dead_letter(sequence).await {
                Ok(dead) => dead,
                Err(QueueError::NotFound(_)) if id.is_none() => continue,
                Err(e) => return Err(e),
            };
            let m = &dead.message;
            let (line, subject) = self.line_of(&m.route, &m.destination, &m.partitionkey);
            self.ensure_line(&line, &subject, &m.destination_key())
                .await?;
            let payload = serde_json::to_vec(&Stored::of(m)).map_err(store_error)?;
            let ack = self
                .publish(
                    subject,
                    format!("replay-{}-{sequence}", self.config.stream),
                    payload,
                )
                .await?
                .await
                .map_err(store_error)?;
            if !ack.duplicate {
                self.adjust(&line, 1);
            }
            self.dlq
                .delete_message(sequence)
                .await
                .map_err(store_error)?;
            replayed += 1;
        }
        Ok(replayed)
    }
}

/// Reads the depth counters back from the server every [`REFRESH`] while the queue lives.
async fn keep_counters(queue: Weak<JetStreamQueue>) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(queue) = queue.upgrade() else {
            return;
        };
        if queue.closed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(error) = queue.refresh().await {
            tracing::warn!(%error, "cannot read the queue's depth from NATS");
        }
    }
}

/// Settings are messages of the stream `<stream>_settings` under
/// `callgate.<stream>.settings.<key>`, one kept per subject: the last one is the value.
impl super::Settings for JetStreamQueue {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<String>, QueueError>> {
        let subject = format!("callgate.{}.settings.{key}", self.config.stream);
        Box::pin(async move {
            match self.settings.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => Ok(Some(String::from_utf8_lossy(&message.payload).into_owned())),
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    Ok(None)
                }
                Err(e) => Err(store_error(e)),
            }
        })
    }
    fn set(&self, key: &str, value: &str) -> BoxFuture<'_, Result<(), QueueError>> {
        let subject = format!("callgate.{}.settings.{key}", self.config.stream);
        let value = value.to_string();
        Box::pin(async move {
            self.js
                .publish(subject, value.into_bytes().into())
                .await
                .map_err(store_error)?
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }
}

impl Archive for JetStreamQueue {
    fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            if self.archive.is_none() {
                return Ok(());
            }
            self.check_open()?;
            let subject = format!("callgate.{}.archive", self.config.stream);
            // Published back to back, then every acknowledgement awaited: one round trip.
            let mut acks = Vec::with_capacity(records.len());
            for record in &records {
                let body = serde_json::to_vec(record).map_err(store_error)?;
                acks.push(
                    self.js
                        .publish(subject.clone(), body.into())
                        .await
                        .map_err(store_error)?,
                );
            }
            for ack in acks {
                ack.await.map_err(store_error)?;
            }
            Ok(())
        })
    }

    fn read(&self, query: Query) -> BoxFuture<'_, Result<Vec<Archived>, QueueError>> {
        Box::pin(async move {
            let Some(stream) = &self.archive else {
                return Ok(Vec::new());
            };
            let mut stream = stream.clone();
            let state = &stream.info().await.map_err(store_error)?.state;
            if state.messages == 0 {
                return Ok(Vec::new());
            }
            let last = state.last_sequence;
            let deliver_policy = match query.after {
                Some(after) => consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                None if query.since > 0 => consumer::DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(query.since) * 1_000_000,
                    )
                    .map_err(store_error)?,
                },
                None => consumer::DeliverPolicy::All,
            };
            if query.after.is_some_and(|after| after >= last) {
                return Ok(Vec::new());
            }
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(store_error)?;
            let mut messages = consumer.messages().await.map_err(store_error)?;
            let mut out = Vec::new();
            loop {
                let next = tokio::time::timeout(REQUEST_TIMEOUT, messages.next()).await;
                let message = match next {
                    Ok(Some(Ok(message))) => message,
                    Ok(Some(Err(e))) => return Err(store_error(e)),
                    // Nothing more within the timeout: the window's records were read.
                    Ok(None) | Err(_) => break,
                };
                let seq = message.info().map_err(store_error)?.stream_sequence;
                match serde_json::from_slice::<Record>(&message.payload) {
                    Ok(record) => {
                        let archived = Archived { seq, record };
                        if query.matches(&archived) {
                            out.push(archived);
                        }
                    }
                    Err(e) => tracing::warn!(seq, error = %e, "unreadable archive record: skipped"),
                }
                if out.len() >= query.limit || seq >= last {
                    break;
                }
            }
            Ok(out)
        })
    }
}

impl SharedTable for JetStreamQueue {
    fn put(&self, key: String, value: Vec<u8>) {
        let _ = self.shared_puts.send((key, value));
    }

    fn watch(&self) -> BoxFuture<'_, Result<SharedEntries, QueueError>> {
        Box::pin(async move {
            let prefix = format!("callgate.{}.shared.", self.config.stream);
            let consumer = self
                .shared
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: format!("{prefix}>"),
                    deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                    ..Default::default()
                })
                .await
                .map_err(store_error)?;
            let mut messages = consumer.messages().await.map_err(store_error)?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(message) => {
                            let key = message
                                .subject
                                .as_str()
                                .strip_prefix(&prefix)
                                .unwrap_or_default()
                                .to_string();
                            if tx.send((key, message.payload.to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(error) => tracing::warn!(%error, "following shared state from NATS"),
                    }
                }
            });
            Ok(rx)
        })
    }
}

impl Producer for JetStreamQueue {
    fn enqueue(&self, events: Vec<EventBatch>) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move { self.enqueue_batches(events, &mut Vec::new()).await })
    }

    fn enqueue_archived(
        &self,
        events: Vec<EventBatch>,
        mut record: super::archive::Received,
    ) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move {
            let mut duplicate = Vec::new();
            let enqueued = self.enqueue_batches(events, &mut duplicate).await?;
            record.mark_duplicates(&duplicate);
            // The messages are stored: the payload is accepted whatever becomes of its record.
            if let Err(error) = self.append(vec![Record::Received(record)]).await {
                metrics::counter!(crate::telemetry::metrics::ARCHIVE_FAILURES).increment(1);
                tracing::error!(%error, "cannot archive an accepted payload");
            }
            Ok(enqueued)
        })
    }

    fn depth(&self, route: &str, destination: &str) -> u64 {
        self.destination_depth(&format!("{route}/{destination}"))
    }

    fn total_depth(&self) -> u64 {
        self.depths.lock().expect("depths lock").values().sum()
    }

    fn is_waiting(&self, route: &str, destination: &str, partition: &str) -> bool {
        let (line, _) = self.line_of(route, destination, partition);
        self.depths
            .lock()
            .expect("depths lock")
            .get(&line)
            .is_some_and(|d| *d > 0)
    }
}

impl Consumer for JetStreamQueue {
    fn lease(&self, max: usize) -> BoxFuture<'_, Result<Vec<Leased>, QueueError>> {
        Box::pin(self.lease_due(max))
    }

    fn settle(
        &self,
        lease: Lease,
        settlement: Settlement,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.settle_held(lease, settlement))
    }
}

impl DeadLetters for JetStreamQueue {
    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for sequence in self.dead_sequences().await? {
                if out.len() >= limit {
                    break;
                }
                match self.dead_letter(sequence).await {
                    Ok(dead) => out.push(dead),
                    Err(QueueError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    fn show(&self, id: i64) -> BoxFuture<'_, Result<DeadLetter, QueueError>> {
        Box::pin(async move {
            let sequence = u64::try_from(id).map_err(|_| QueueError::NotFound(id))?;
            self.dead_letter(sequence).await
        })
    }

    fn replay(&self, id: Option<i64>) -> BoxFuture<'_, Result<usize, QueueError>> {
        Box::pin(self.replay_dead(id))
    }

    fn purge(&self) -> BoxFuture<'_, Result<usize, QueueError>> {
        Box::pin(async move {
            let purged = self.dlq.purge().await.map_err(store_error)?;
            Ok(purged.purged as usize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{Store, suite};

    /// Records are written with `partitionkey`; those written before the rename, with
    /// `partition`, still read back.
    #[test]
    fn stored_records_of_both_names_read_back() {
        let record = |key: &str| {
            format!(
                r#"{{"route":"r","destination":"d","{key}":"call-1","event_id":"e","event_type":"call.ringing","request":"{{}}"}}"#
            )
        };
        for key in ["partition", "partitionkey"] {
            let stored: Stored = serde_json::from_str(&record(key)).unwrap();
            assert_eq!(stored.partitionkey, "call-1");
        }
        let written = serde_json::to_value(Stored {
            route: "r".into(),
            destination: "d".into(),
            partitionkey: "call-1".into(),
            event_id: "e".into(),
            event_type: "call.ringing".into(),
            request: String::new(),
        })
        .unwrap();
        assert_eq!(written["partitionkey"], "call-1");
    }

    /// A `nats-server` with JetStream on a free loopback port and a scratch folder; killed
    /// on drop. Needs Debian's `nats-server` (installed by `.ci/run`).
    pub(crate) struct NatsServer {
        child: std::process::Child,
        pub url: String,
        _dir: tempfile::TempDir,
    }

    impl NatsServer {
        pub async fn start() -> NatsServer {
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("nats-server runs (apt install nats-server)");
            let url = format!("nats://127.0.0.1:{port}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while async_nats::connect(url.as_str()).await.is_err() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nats-server did not start"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            NatsServer {
                child,
                url,
                _dir: dir,
            }
        }
    }

    impl Drop for NatsServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A test queue's settings: 2 s `ack_wait`, an hour's dedupe window, an archive.
    fn test_config(
        url: impl Into<String>,
        stream: impl Into<String>,
        partitions: u32,
    ) -> JetStreamConfig {
        JetStreamConfig {
            url: url.into(),
            stream: stream.into(),
            replicas: 1,
            partitions,
            ack_wait: Duration::from_secs(2),
            dedupe_window: Duration::from_secs(3600),
            max_queue_depth: 1000,
            archive: Some(crate::config::ArchiveConfig::default()),
        }
    }

    async fn open(url: &str, stream: &str) -> Store {
        let q = JetStreamQueue::open(test_config(url, stream, 64))
            .await
            .unwrap();
        let closer = q.clone();
        let mut store = Store::new(q.clone(), q.clone(), q.clone(), move || closer.close());
        store.settings = Some(q);
        store
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_queue_suite() {
        let nats = NatsServer::start().await;
        let q = JetStreamQueue::open(test_config(nats.url.clone(), "PROBE", 64))
            .await
            .unwrap();
        // The suite's partitions a, b and z must fall into different buckets.
        let buckets = ["a", "b", "z"].map(|p| q.bucket(p));
        assert!(
            buckets[0] != buckets[1] && buckets[1] != buckets[2] && buckets[0] != buckets[2],
            "{buckets:?}"
        );
        q.close();
        suite::order_dedupe_and_dead_letters(&open(&nats.url, "SUITE1").await).await;
        suite::deferral_keeps_order_and_budget(&open(&nats.url, "SUITE2").await).await;
        suite::leases_and_dedupe_survive_a_restart(|| open(&nats.url, "SUITE3")).await;
        let archived = open(&nats.url, "SUITE4").await;
        let q = JetStreamQueue::open(test_config(nats.url.clone(), "SUITE4", 4))
            .await
            .unwrap();
        crate::delivery::archive::suite::reads_by_time_and_key(q.as_ref()).await;
        archived.close();
        q.close();
        let store = crate::delivery::open_store(
            &crate::config::StoreConfig::Nats {
                url: crate::config::EnvString::literal(&nats.url),
                stream: "SUITE5".into(),
                replicas: 1,
                partitions: 4,
            },
            &crate::config::DeliveryConfig::default(),
            &crate::config::ArchiveConfig::default(),
            false,
        )
        .await
        .unwrap();
        crate::delivery::archive::suite::archived_enqueue_marks_duplicates(&store).await;
        store.close();
    }
}
