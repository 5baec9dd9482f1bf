//! Durable delivery: the `Queue` trait every store implements, the versioned task record,
//! the SQLite backend, error classification and the delivery workers (DESIGN.md §7).

pub mod classify;
pub mod sqlite;
pub mod worker;

use crate::mapping::encode::OutboundMessage;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A boxed future, so that `Queue` can be used as `dyn Queue`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        QueueError::Store(e.to_string())
    }
}

/// The request a task delivers, as stored: version 1 of the task record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Record version; 1.
    pub v: u32,
    /// HTTP method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers rendered by the mapping (credentials are added at delivery, never stored).
    pub headers: Vec<(String, String)>,
    /// Body, if any.
    pub body: Option<String>,
}

impl From<&OutboundMessage> for TaskRecord {
    fn from(m: &OutboundMessage) -> Self {
        TaskRecord {
            v: 1,
            method: m.method.clone(),
            url: m.url.clone(),
            headers: m.headers.clone(),
            body: m.body.clone(),
        }
    }
}

/// One message to deliver, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// The route it came in on.
    pub route: String,
    /// The destination name within the route.
    pub destination: String,
    /// The ordering key: the event's `partitionkey` (a call or user).
    pub partition: String,
    /// The canonical event id.
    pub event_id: String,
    /// The canonical event type.
    pub event_type: String,
    /// The request.
    pub record: TaskRecord,
    /// Set when the message could not even be rendered (a mapping error): it is stored
    /// straight into the dead letters with this reason, never lost.
    pub failure: Option<String>,
}

/// The messages of one inbound event; stored only if its dedupe key is new.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    /// Remembered for the dedupe window; a key seen before makes the event a duplicate.
    pub dedupe_key: String,
    /// Its outbound messages (possibly none: still remembered).
    pub tasks: Vec<NewTask>,
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enqueued {
    /// Messages stored.
    pub stored: usize,
    /// Events acknowledged as duplicates (nothing stored for them).
    pub duplicates: usize,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Store id; increases with arrival.
    pub id: i64,
    /// The message.
    pub task: NewTask,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it was stored, Unix ms.
    pub created_at: i64,
}

/// One delivery attempt, as logged for dead letters.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

impl DeadLetter {
    /// The JSON shape of a dead letter in the admin API and `callgate dlq`.
    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.task;
        serde_json::json!({
            "id": t.id,
            "route": t.task.route,
            "destination": t.task.destination,
            "partition": t.task.partition,
            "event_id": t.task.event_id,
            "event_type": t.task.event_type,
            "attempts": t.attempts,
            "created_at": t.created_at,
            "dead_at": self.dead_at,
            "request": {
                "method": t.task.record.method,
                "url": t.task.record.url,
                "headers": t.task.record.headers,
                "body": t.task.record.body,
            },
            "attempt_log": self.attempts,
        })
    }
}

/// A message that will not be retried.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message.
    pub task: Task,
    /// When it died, Unix ms.
    pub dead_at: i64,
    /// Every attempt.
    pub attempts: Vec<AttemptLog>,
}

/// What to do with a leased task after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Delivered: forget it.
    Delivered,
    /// Try again at this Unix ms time.
    Retry {
        /// Next attempt, Unix ms.
        at: i64,
        /// This attempt.
        log: AttemptLog,
    },
    /// Give up: keep it as a dead letter.
    Dead {
        /// This attempt.
        log: AttemptLog,
    },
}

/// A durable queue: ordered per (destination, partition), at-least-once.
pub trait Queue: Send + Sync {
    /// Stores the messages of several events atomically (all or nothing), skipping events
    /// whose dedupe key was seen within the window. Returns once durably committed.
    fn enqueue(&self, events: Vec<EventBatch>) -> BoxFuture<'_, Result<Enqueued, QueueError>>;
    /// Leases up to `max` due messages, each the oldest live one of its (destination,
    /// partition), so a call's next message waits for the previous one.
    fn lease(&self, max: usize) -> BoxFuture<'_, Result<Vec<Task>, QueueError>>;
    /// Records the outcome of an attempt on a leased message.
    fn complete(&self, id: i64, completion: Completion) -> BoxFuture<'_, Result<(), QueueError>>;
    /// Messages waiting (not dead) for a destination, by route and destination name.
    fn depth(&self, route: &str, destination: &str) -> u64;
    /// Messages waiting over all destinations.
    fn total_depth(&self) -> u64;
    /// Dead letters, oldest first, at most `limit`.
    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>>;
    /// One dead letter.
    fn dead_letter(&self, id: i64) -> BoxFuture<'_, Result<DeadLetter, QueueError>>;
    /// Puts dead letters back in the queue (`None`: all); returns how many.
    fn replay(&self, id: Option<i64>) -> BoxFuture<'_, Result<usize, QueueError>>;
    /// Deletes every dead letter; returns how many.
    fn purge(&self) -> BoxFuture<'_, Result<usize, QueueError>>;
}

/// Now as Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A duration in milliseconds, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The behaviour every `Queue` backend must show; each backend's tests run it.
#[cfg(test)]
pub(crate) mod suite {
    use super::*;

    fn task(partition: &str, n: u32) -> NewTask {
        NewTask {
            route: "r".into(),
            destination: "d".into(),
            partition: partition.into(),
            event_id: format!("e{n}"),
            event_type: "call.connected".into(),
            record: TaskRecord {
                v: 1,
                method: "POST".into(),
                url: "http://127.0.0.1/".into(),
                headers: vec![],
                body: Some(format!("{{\"n\":{n}}}")),
            },
            failure: None,
        }
    }

    fn batch(key: &str, tasks: Vec<NewTask>) -> EventBatch {
        EventBatch {
            dedupe_key: key.into(),
            tasks,
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

    /// FIFO per partition, dedupe, retry timing, dead letters, replay, render failures.
    pub async fn order_dedupe_and_dead_letters(q: &dyn Queue) {
        let out = q
            .enqueue(vec![
                batch("k1", vec![task("a", 1)]),
                batch("k2", vec![task("a", 2)]),
                batch("k3", vec![task("b", 3)]),
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
        let dup = q
            .enqueue(vec![batch("k1", vec![task("a", 1)])])
            .await
            .unwrap();
        assert_eq!(
            dup,
            Enqueued {
                stored: 0,
                duplicates: 1
            }
        );
        assert_eq!(q.depth("r", "d"), 3);

        // Only the head of each partition is offered.
        let leased = q.lease(10).await.unwrap();
        let ids: Vec<&str> = leased.iter().map(|t| t.task.event_id.as_str()).collect();
        assert_eq!(ids, ["e1", "e3"]);
        assert!(
            q.lease(10).await.unwrap().is_empty(),
            "a's next waits for e1"
        );

        // e1 dies: e2 becomes the head of a.
        q.complete(leased[0].id, Completion::Dead { log: log() })
            .await
            .unwrap();
        q.complete(leased[1].id, Completion::Delivered)
            .await
            .unwrap();
        let next = q.lease(10).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].task.event_id, "e2");
        q.complete(
            next[0].id,
            Completion::Retry {
                at: now_ms() + 60_000,
                log: log(),
            },
        )
        .await
        .unwrap();
        assert!(q.lease(10).await.unwrap().is_empty(), "not due yet");
        assert_eq!(q.depth("r", "d"), 1);
        assert_eq!(q.total_depth(), 1);

        let dead = q.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts[0].status, Some(503));
        assert_eq!(q.replay(Some(dead[0].task.id)).await.unwrap(), 1);
        assert_eq!(q.depth("r", "d"), 2);
        assert!(matches!(
            q.replay(Some(999_999)).await,
            Err(QueueError::NotFound(999_999))
        ));

        // A message that could not be rendered is stored straight as a dead letter.
        let mut broken = task("c", 4);
        broken.failure = Some("template failed".into());
        assert_eq!(
            q.enqueue(vec![batch("k4", vec![broken])])
                .await
                .unwrap()
                .stored,
            1
        );
        let dead = q.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0].attempts[0].error.as_deref(),
            Some("template failed")
        );
        assert_eq!(q.purge().await.unwrap(), 1);
        assert_eq!(q.depth("r", "d"), 2, "dead letters do not count as waiting");
    }

    /// A message leased when the process died is offered again; dedupe keys persist.
    pub async fn leases_and_dedupe_survive_a_restart(open: impl Fn() -> Box<dyn Queue>) {
        {
            let q = open();
            q.enqueue(vec![batch("k1", vec![task("a", 1)])])
                .await
                .unwrap();
            assert_eq!(q.lease(10).await.unwrap().len(), 1);
            // dropped while leased: as if the process died mid-attempt
        }
        let q = open();
        assert_eq!(q.depth("r", "d"), 1);
        assert_eq!(
            q.lease(10).await.unwrap().len(),
            1,
            "the lease was recovered"
        );
        let dup = q
            .enqueue(vec![batch("k1", vec![task("a", 1)])])
            .await
            .unwrap();
        assert_eq!(dup.duplicates, 1);
    }
}
