//! Durable delivery (README "Running the gateway"): the queue traits every store implements — [`Producer`]
//! (intake's atomic, deduplicated enqueue), [`Consumer`] (lease → opaque [`Lease`] → settle)
//! and [`DeadLetters`] — the stored [`Message`], the SQLite backend, lanes and the workers.

pub mod archive;
pub mod jetstream;
pub mod lane;
pub mod sqlite;
pub mod worker;

pub use crate::model::message::{HttpRequest, HubPush, Message, Request};
pub use crate::model::outbound::BoxFuture;

use crate::config::{ArchiveConfig, DeliveryConfig, StoreConfig};
use std::sync::Arc;
use std::time::Duration;

/// Why the store failed. Intake answers 503; workers log and retry later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The store is closed (shutting down) or its worker thread died.
    #[error("the store is closed")]
    Closed,
    /// The database reported an error.
    #[error("store error: {0}")]
    Store(String),
    /// No dead letter with this id.
    #[error("no dead letter with id {0}")]
    NotFound(i64),
    /// The enqueue would take a destination beyond `delivery.max_queue_depth`.
    #[error(
        "destination `{destination}` has {depth} messages waiting (delivery.max_queue_depth {max})"
    )]
    Full {
        /// `route/destination`.
        destination: String,
        /// Its depth.
        depth: u64,
        /// The limit.
        max: u64,
    },
    /// The store's writer is behind: try again shortly (intake answers 503).
    #[error("the store is busy: too many writes waiting")]
    Busy,
    /// The store's disk is full (SQLite `SQLITE_FULL`): nothing was written; writes succeed
    /// again once space is freed (intake answers 503, `/readyz` says `store-full`).
    #[error("the store's disk is full: {0}")]
    NoSpace(String),
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            QueueError::NoSpace(e.to_string())
        } else {
            QueueError::Store(e.to_string())
        }
    }
}

/// One message to store, or to store straight into the dead letters when it could not even
/// be rendered (a mapping error: never lost, never skipped silently).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// The message.
    pub message: Message,
    /// Why it is dead on arrival, if it is.
    pub failure: Option<String>,
}

/// The messages of one inbound event; stored only if its dedupe key is new.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    /// Remembered for `delivery.dedupe_window`; a key seen before makes the event a
    /// duplicate, acknowledged without storing anything.
    pub dedupe_key: String,
    /// Its outbound messages (possibly none: the key is still remembered).
    pub messages: Vec<NewMessage>,
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enqueued {
    /// Messages stored.
    pub stored: usize,
    /// Events acknowledged as duplicates (nothing stored for them).
    pub duplicates: usize,
}

/// An opaque handle on a leased message: settle it exactly once through the [`Consumer`]
/// that leased it. A handle that is never settled (the process died) is offered again when
/// its lease expires or the store is reopened.
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    pub(crate) id: i64,
}

impl Lease {
    /// The message's row id (SQLite) or this instance's lease number (NATS), for logs.
    pub fn id(&self) -> i64 {
        self.id
    }
}

/// A message handed to a worker.
#[derive(Debug)]
pub struct Leased {
    /// Settle it with this.
    pub lease: Lease,
    /// The message.
    pub message: Message,
    /// Attempts made so far (deferrals do not count).
    pub attempts: u32,
    /// When it was stored, Unix ms.
    pub created_at: i64,
}

/// One delivery attempt, as logged for dead letters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttemptLog {
    /// When, Unix ms.
    pub at: i64,
    /// HTTP status, if the receiver answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
    /// The start of the receiver's reply body.
    pub excerpt: Option<String>,
}

/// How a leased message is settled.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Delivered: forget it; the next message of its line becomes due.
    Ack,
    /// Failed: try again after `after`; the attempt counts against the retry budget.
    Retry {
        /// How long to wait.
        after: Duration,
        /// This attempt.
        log: AttemptLog,
    },
    /// Not attempted (open breaker, exhausted rate, no subscriber): offer again after
    /// `after` without spending the retry budget.
    Defer {
        /// How long to wait.
        after: Duration,
    },
    /// Give up: keep it as a dead letter.
    Dead {
        /// This attempt.
        log: AttemptLog,
    },
}

/// A message that will not be retried.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its id in the dead letters.
    pub id: i64,
    /// The message.
    pub message: Message,
    /// Attempts made.
    pub attempts: u32,
    /// When it was stored, Unix ms.
    pub created_at: i64,
    /// When it died, Unix ms.
    pub dead_at: i64,
    /// Every attempt.
    pub attempt_log: Vec<AttemptLog>,
}

impl DeadLetter {
    /// The JSON shape of a dead letter in the admin API and `callgate dlq`.
    pub fn to_json(&self) -> serde_json::Value {
        let m = &self.message;
        serde_json::json!({
            "id": self.id,
            "route": m.route,
            "destination": m.destination,
            "partitionkey": m.partitionkey,
            "event_id": m.event_id,
            "event_type": m.event_type,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "dead_at": self.dead_at,
            "request": m.request,
            "attempt_log": self.attempt_log,
        })
    }
}

/// Intake's half of a store: atomic, deduplicated enqueue, and the depth counters that let
/// intake refuse work before the store fills.
pub trait Producer: Send + Sync {
    /// Stores the messages of several events atomically (all or nothing), skipping events
    /// whose dedupe key was seen within the window. Returns once durably committed.
    fn enqueue(&self, events: Vec<EventBatch>) -> BoxFuture<'_, Result<Enqueued, QueueError>>;
    /// [`enqueue`](Producer::enqueue), and the payload's archive record with it: in the same
    /// transaction (SQLite), or once the messages are stored (NATS, which has no transaction
    /// across streams). The record's i-th applied event is the i-th batch: one the store
    /// finds to be a duplicate gets the fate `duplicate`. A store without an archive stores
    /// the messages only.
    fn enqueue_archived(
        &self,
        events: Vec<EventBatch>,
        record: archive::Received,
    ) -> BoxFuture<'_, Result<Enqueued, QueueError>>;
    /// Messages waiting (not dead) for a destination, by route and destination name.
    fn depth(&self, route: &str, destination: &str) -> u64;
    /// Messages waiting over all destinations.
    fn total_depth(&self) -> u64;
    /// Whether a message of this (route, destination, partition) line is waiting or being
    /// delivered: a proxy route then queues the call's next event behind it.
    fn is_waiting(&self, route: &str, destination: &str, partition: &str) -> bool;
    /// Whether a write failed for want of disk space and no write that adds rows (an
    /// enqueue, an archive record) has succeeded since.
    fn no_space(&self) -> bool {
        false
    }
}

/// The workers' half: leases due messages, each the oldest live one of its (destination,
/// partition) line, so a call's next message waits until the previous one is settled.
pub trait Consumer: Send + Sync {
    /// Leases up to `max` due messages.
    fn lease(&self, max: usize) -> BoxFuture<'_, Result<Vec<Leased>, QueueError>>;
    /// Settles a leased message.
    fn settle(&self, lease: Lease, settlement: Settlement)
    -> BoxFuture<'_, Result<(), QueueError>>;
}

/// The dead letters: list, show, replay, purge (`callgate dlq`, `/admin/deliveries`).
pub trait DeadLetters: Send + Sync {
    /// Dead letters, oldest first, at most `limit`.
    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>>;
    /// One dead letter.
    fn show(&self, id: i64) -> BoxFuture<'_, Result<DeadLetter, QueueError>>;
    /// Puts dead letters back in the queue (`None`: all) behind their line's live
    /// messages; returns how many.
    fn replay(&self, id: Option<i64>) -> BoxFuture<'_, Result<usize, QueueError>>;
    /// Deletes every dead letter; returns how many.
    fn purge(&self) -> BoxFuture<'_, Result<usize, QueueError>>;
}

/// Keys and values as a [`SharedTable`] reports them.
pub type SharedEntries = tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>;

/// A small key → value table replicated to every instance sharing a store: the lifecycle
/// trackers' leg states, so that stale events are dropped whichever instance receives them.
/// Keys are dot-separated tokens of `A–Z a–z 0–9 _ -`.
pub trait SharedTable: Send + Sync {
    /// Stores `value` under `key` for every instance; in order, without waiting.
    fn put(&self, key: String, value: Vec<u8>);
    /// Every key's latest value, then each change made by any instance (its own included).
    fn watch(&self) -> BoxFuture<'_, Result<SharedEntries, QueueError>>;
}

/// A key token for any text (a route or destination name, an event id): the hex of the
/// first 8 bytes of its SHA-256, 16 characters of `0–9 a–f`, as subjects and setting keys
/// need.
pub fn hex16(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Small durable values that outlive a restart and are the same for every instance sharing
/// the store: the RingCentral keeper's subscription ids. Keys are dot-separated tokens of
/// `A–Z a–z 0–9 _ -`; values are short text.
pub trait Settings: Send + Sync {
    /// The value last set under `key`.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<String>, QueueError>>;
    /// Sets `key` durably (returns once stored).
    fn set(&self, key: &str, value: &str) -> BoxFuture<'_, Result<(), QueueError>>;
}

/// An open store: its three halves, what it shares between instances, a way to close it.
#[derive(Clone)]
pub struct Store {
    /// Intake's half.
    pub producer: Arc<dyn Producer>,
    /// The workers' half.
    pub consumer: Arc<dyn Consumer>,
    /// The dead letters.
    pub dead_letters: Arc<dyn DeadLetters>,
    /// State shared with the other instances on the same store (NATS); `None` for a store
    /// only one instance uses (SQLite).
    pub shared: Option<Arc<dyn SharedTable>>,
    /// Durable settings (`None` for a store opened only to read dead letters).
    pub settings: Option<Arc<dyn Settings>>,
    /// The archive (`None` when `archive.retention` is 0).
    pub archive: Option<Arc<dyn archive::Archive>>,
    /// Writes the archive's records that commit with nothing else (outcomes, proxy
    /// forwards) in batches; `None` without an archive.
    pub archiver: Option<archive::Archiver>,
    closer: Arc<dyn Fn() + Send + Sync>,
}

impl Store {
    /// A store from its halves (usually one object) and what closes it.
    pub fn new(
        producer: Arc<dyn Producer>,
        consumer: Arc<dyn Consumer>,
        dead_letters: Arc<dyn DeadLetters>,
        close: impl Fn() + Send + Sync + 'static,
    ) -> Store {
        Store {
            producer,
            consumer,
            dead_letters,
            shared: None,
            settings: None,
            archive: None,
            archiver: None,
            closer: Arc::new(close),
        }
    }

    /// Closes the store after the commands already sent (waits for them).
    pub fn close(&self) {
        (self.closer)()
    }
}

/// Opens the store the configuration names, with its archive when `archive` keeps one.
/// `admin`: open beside a running gateway (for `callgate dlq`), leaving leases alone.
/// Errors: the SQLite file cannot be opened, or the NATS server cannot be reached or
/// refuses a stream.
pub async fn open_store(
    store: &StoreConfig,
    delivery: &DeliveryConfig,
    archive: &ArchiveConfig,
    admin: bool,
) -> Result<Store, QueueError> {
    match store {
        StoreConfig::Sqlite { path } => {
            let q = Arc::new(if admin {
                sqlite::SqliteQueue::open_admin(path)?
            } else {
                sqlite::SqliteQueue::open_archived(
                    path,
                    delivery.dedupe_window,
                    delivery.max_queue_depth,
                    sqlite::ArchiveLimits {
                        retention_ms: if archive.enabled() {
                            ms(archive.retention)
                        } else {
                            0
                        },
                        max_bytes: archive.max_bytes,
                    },
                )?
            });
            let closer = q.clone();
            let mut store = Store::new(q.clone(), q.clone(), q.clone(), move || closer.close());
            store.settings = Some(q.clone());
            if archive.enabled() {
                store.archive = Some(q);
                store.archiver = store.archive.clone().map(archive::Archiver::spawn);
            }
            Ok(store)
        }
        StoreConfig::Nats {
            url,
            stream,
            replicas,
            partitions,
        } => {
            let q = jetstream::JetStreamQueue::open(jetstream::JetStreamConfig {
                url: url.value().to_string(),
                stream: stream.clone(),
                replicas: *replicas,
                partitions: *partitions,
                // Long enough for one attempt (bounded by delivery.timeout) and its
                // settlement; an instance silent for longer is taken to be dead.
                ack_wait: (delivery.timeout * 2).max(Duration::from_secs(2)),
                dedupe_window: delivery.dedupe_window,
                max_queue_depth: delivery.max_queue_depth,
                archive: archive.enabled().then_some(archive.clone()),
            })
            .await?;
            let closer = q.clone();
            let mut store = Store::new(q.clone(), q.clone(), q.clone(), move || closer.close());
            store.shared = Some(q.clone());
            store.settings = Some(q.clone());
            if archive.enabled() {
                store.archive = Some(q);
                store.archiver = store.archive.clone().map(archive::Archiver::spawn);
            }
            Ok(store)
        }
    }
}

/// What `serve` will need of the store, checked without opening it (`callgate check`):
/// for SQLite, that the database file, or the folder it will be created in, can be written.
/// Errors name the path and the reason.
pub fn check_store(store: &StoreConfig) -> Result<(), String> {
    match store {
        StoreConfig::Sqlite { path } => sqlite::check_writable(path),
        StoreConfig::Nats { .. } => Ok(()),
    }
}

/// A duration in milliseconds, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The behaviour every store must show; each backend's tests run it.
#[cfg(test)]
pub(crate) mod suite {
    use super::*;
    use crate::model::clock::now_ms;

    pub(crate) fn message(partition: &str, n: u32) -> NewMessage {
        NewMessage {
            message: Message {
                route: "r".into(),
                destination: "d".into(),
                partitionkey: partition.into(),
                event_id: format!("e{n}"),
                event_type: "call.connected".into(),
                request: Request::Http(HttpRequest {
                    method: "POST".into(),
                    url: "http://127.0.0.1/".into(),
                    headers: vec![],
                    body: Some(format!("{{\"n\":{n}}}")),
                }),
            },
            failure: None,
        }
    }

    fn batch(key: &str, messages: Vec<NewMessage>) -> EventBatch {
        EventBatch {
            dedupe_key: key.into(),
            messages,
        }
    }

    fn log() -> AttemptLog {
        AttemptLog {
            at: now_ms(),
            status: Some(503),
            error: None,
            excerpt: Some("busy".into()),
        }
    }

    fn ids(leased: &[Leased]) -> Vec<&str> {
        leased.iter().map(|l| l.message.event_id.as_str()).collect()
    }

    /// FIFO per partition, dedupe, retry timing, dead letters, replay, render failures.
    pub async fn order_dedupe_and_dead_letters(s: &Store) {
        let (p, c, d) = (&s.producer, &s.consumer, &s.dead_letters);
        let out = p
            .enqueue(vec![
                batch("k1", vec![message("a", 1)]),
                batch("k2", vec![message("a", 2)]),
                batch("k3", vec![message("b", 3)]),
            ])
            .await
            .unwrap();
        assert_eq!(
            out,
            Enqueued {
                stored: 3,
                duplicates: 0
            }
        );
        let dup = p
            .enqueue(vec![batch("k1", vec![message("a", 1)])])
            .await
            .unwrap();
        assert_eq!(
            dup,
            Enqueued {
                stored: 0,
                duplicates: 1
            }
        );
        assert_eq!(p.depth("r", "d"), 3);
        assert!(p.is_waiting("r", "d", "a") && p.is_waiting("r", "d", "b"));
        assert!(!p.is_waiting("r", "d", "z") && !p.is_waiting("r", "x", "a"));

        // Only the head of each partition is offered.
        let mut leased = c.lease(10).await.unwrap();
        assert_eq!(ids(&leased), ["e1", "e3"]);
        assert_eq!(leased[0].attempts, 0);
        assert!(
            c.lease(10).await.unwrap().is_empty(),
            "a's next waits for e1"
        );

        // e1 dies: e2 becomes the head of a.
        let e3 = leased.pop().unwrap();
        let e1 = leased.pop().unwrap();
        c.settle(e1.lease, Settlement::Dead { log: log() })
            .await
            .unwrap();
        c.settle(e3.lease, Settlement::Ack).await.unwrap();
        assert!(
            !p.is_waiting("r", "d", "b"),
            "b is empty once e3 is delivered"
        );
        assert!(p.is_waiting("r", "d", "a"), "e2 still waits");
        let mut next = c.lease(10).await.unwrap();
        assert_eq!(ids(&next), ["e2"]);
        let e2 = next.pop().unwrap();
        c.settle(
            e2.lease,
            Settlement::Retry {
                after: Duration::from_secs(60),
                log: log(),
            },
        )
        .await
        .unwrap();
        assert!(c.lease(10).await.unwrap().is_empty(), "not due yet");
        assert_eq!(p.depth("r", "d"), 1);
        assert_eq!(p.total_depth(), 1);

        let dead = d.list(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message.event_id, "e1");
        assert_eq!(dead[0].attempt_log[0].status, Some(503));
        assert_eq!(dead[0].attempts, 1);
        assert_eq!(d.show(dead[0].id).await.unwrap(), dead[0]);
        assert_eq!(d.replay(Some(dead[0].id)).await.unwrap(), 1);
        assert_eq!(p.depth("r", "d"), 2);
        assert!(matches!(
            d.replay(Some(999_999)).await,
            Err(QueueError::NotFound(999_999))
        ));
        assert!(matches!(
            d.show(999_999).await,
            Err(QueueError::NotFound(999_999))
        ));

        // A message that could not be rendered is stored straight as a dead letter.
        let mut broken = message("c", 4);
        broken.failure = Some("template failed".into());
        assert_eq!(
            p.enqueue(vec![batch("k4", vec![broken])])
                .await
                .unwrap()
                .stored,
            1
        );
        let dead = d.list(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0].attempt_log[0].error.as_deref(),
            Some("template failed")
        );
        assert_eq!(d.purge().await.unwrap(), 1);
        assert_eq!(p.depth("r", "d"), 2, "dead letters do not count as waiting");
    }

    /// A deferral keeps the message at the head of its line and spends no attempt.
    pub async fn deferral_keeps_order_and_budget(s: &Store) {
        let (p, c) = (&s.producer, &s.consumer);
        p.enqueue(vec![
            batch("k1", vec![message("a", 1)]),
            batch("k2", vec![message("a", 2)]),
        ])
        .await
        .unwrap();
        let first = c.lease(10).await.unwrap().pop().unwrap();
        c.settle(
            first.lease,
            Settlement::Defer {
                after: Duration::ZERO,
            },
        )
        .await
        .unwrap();
        let again = c.lease(10).await.unwrap();
        assert_eq!(ids(&again), ["e1"], "still the head, still first");
        assert_eq!(again[0].attempts, 0, "a deferral spends no attempt");
        for l in again {
            c.settle(l.lease, Settlement::Ack).await.unwrap();
        }
        assert_eq!(ids(&c.lease(10).await.unwrap()), ["e2"]);
    }

    /// A message leased when the process died is offered again (at once by SQLite, once
    /// its `ack_wait` has passed by JetStream); dedupe keys persist.
    pub async fn leases_and_dedupe_survive_a_restart<F: Future<Output = Store>>(
        open: impl Fn() -> F,
    ) {
        {
            let s = open().await;
            s.producer
                .enqueue(vec![batch("k1", vec![message("a", 1)])])
                .await
                .unwrap();
            assert_eq!(s.consumer.lease(10).await.unwrap().len(), 1);
            let settings = s.settings.as_ref().expect("a store with settings");
            assert_eq!(
                settings.get("ringcentral.rc.subscription").await.unwrap(),
                None
            );
            settings
                .set("ringcentral.rc.subscription", "sub-1")
                .await
                .unwrap();
            settings
                .set("ringcentral.rc.subscription", "sub-2")
                .await
                .unwrap();
            settings
                .set("ringcentral.other.subscription", "x")
                .await
                .unwrap();
            s.close(); // closed while leased: as if the process died mid-attempt
        }
        let s = open().await;
        let settings = s.settings.as_ref().expect("a store with settings");
        assert_eq!(
            settings.get("ringcentral.rc.subscription").await.unwrap(),
            Some("sub-2".into()),
            "the last value set survives the restart"
        );
        assert_eq!(s.producer.depth("r", "d"), 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let recovered = loop {
            let leased = s.consumer.lease(10).await.unwrap();
            if !leased.is_empty() || tokio::time::Instant::now() > deadline {
                break leased;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(recovered.len(), 1, "the lease was recovered");
        assert_eq!(recovered[0].message.event_id, "e1");
        let dup = s
            .producer
            .enqueue(vec![batch("k1", vec![message("a", 1)])])
            .await
            .unwrap();
        assert_eq!(dup.duplicates, 1);
        s.close();
    }
}
