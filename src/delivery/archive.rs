//! The archive (README "Replay", "Call timeline"): an append-only log of every accepted
//! inbound payload — its route, vendor, receive time, the canonical events it produced and
//! what became of each per destination — and of every delivery attempt's outcome, kept for
//! `archive.retention` on the configured store. One trait, two backends (a SQLite table
//! pruned by age and size; a JetStream stream with `max_age` and `max_bytes`, so every
//! instance reads the same archive), one test suite.
//!
//! Records are looked up by time, by index key (the partitionkeys of their events) and by
//! search term (call, leg, user, extension, phone number, event id: found by a scan).

use super::{BoxFuture, QueueError};
use crate::model::event::CallEvent;
use serde::{Deserialize, Serialize};

/// One archive record, as stored (JSON, tagged by `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// An inbound payload was accepted.
    Received(Received),
    /// A delivery attempt was settled (or a proxy forward answered).
    Outcome(Outcome),
}

/// An accepted inbound payload and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// When it was accepted, Unix ms.
    pub at: i64,
    /// The route it came in on.
    pub route: String,
    /// The source vendor (detected for `from: auto`).
    pub vendor: String,
    /// The payload as verified: the JSON document, or `{name: value}` for URL or form
    /// parameters (`params: true`). Headers are never archived: they carry secrets.
    pub payload: serde_json::Value,
    /// Whether the payload came as parameters.
    #[serde(default)]
    pub params: bool,
    /// Its canonical events, in payload order.
    pub events: Vec<ArchivedEvent>,
}

/// One canonical event of a payload, with the lifecycle's verdict and its fates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedEvent {
    /// The canonical event (CloudEvents JSON), after the lifecycle (`call.resumed` derived).
    pub event: CallEvent,
    /// The lifecycle's verdict: `apply`, `duplicate` or `stale`.
    pub verdict: String,
    /// Why it was dropped, for `duplicate` and `stale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What became of it per destination (applied events only), in config order.
    #[serde(default)]
    pub fates: Vec<DestinationFate>,
}

/// What became of an event for one destination when it was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationFate {
    /// The destination's name within the route.
    pub destination: String,
    /// `queued`, `forwarded`, `skipped`, `dead` (could not be rendered) or `duplicate`
    /// (the store had seen the event within `delivery.dedupe_window`).
    pub status: String,
    /// Why it was skipped or dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A delivery attempt's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// When it was settled, Unix ms.
    pub at: i64,
    /// The message's route.
    pub route: String,
    /// The destination's name within the route.
    pub destination: String,
    /// The canonical event id (the message's idempotency key).
    pub event_id: String,
    /// The ordering key (call or user).
    pub partitionkey: String,
    /// `delivered`, `retry`, `deferred` or `dead`.
    pub outcome: String,
    /// Which attempt (1 = first).
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong, or the start of the receiver's reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Record {
    /// When it happened, Unix ms.
    pub fn at(&self) -> i64 {
        match self {
            Record::Received(r) => r.at,
            Record::Outcome(o) => o.at,
        }
    }

    /// Its index keys: the partitionkeys (calls, users) of its events, or of its outcome. One
    /// or two per record, so that the index a store keeps stays cheap to write.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        match self {
            Record::Received(r) => {
                for e in &r.events {
                    add_key(&mut keys, Some(e.event.effective_partitionkey()));
                }
            }
            Record::Outcome(o) => add_key(&mut keys, Some(&o.partitionkey)),
        }
        keys
    }

    /// The words it is found by: for a payload, each event's id, partitionkey, subject, call
    /// and leg ids, parties' numbers and user ids, and the user's id, login and extension;
    /// for an outcome, its event id and partitionkey. Deduplicated, at most 200 characters
    /// each. Only [`keys`](Record::keys) are indexed: the rest are found by a scan.
    pub fn terms(&self) -> Vec<String> {
        let mut terms: Vec<String> = Vec::new();
        match self {
            Record::Received(r) => {
                for e in &r.events {
                    event_keys(&e.event, &mut terms);
                }
            }
            Record::Outcome(o) => {
                add_key(&mut terms, Some(&o.event_id));
                add_key(&mut terms, Some(&o.partitionkey));
            }
        }
        terms
    }
}

fn add_key(keys: &mut Vec<String>, key: Option<&str>) {
    if let Some(key) = key
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        && !keys.iter().any(|k| k == key)
    {
        keys.push(key.to_string());
    }
}

/// The search terms of one event (see [`Record::terms`]), added to `keys`.
pub fn event_keys(e: &CallEvent, keys: &mut Vec<String>) {
    add_key(keys, Some(&e.id));
    add_key(keys, e.partitionkey.as_deref());
    add_key(keys, e.subject.as_deref());
    if let Some(call) = &e.data.call {
        add_key(keys, call.id.as_deref());
        add_key(keys, call.leg_id.as_deref());
        for party in [&call.from, &call.to].into_iter().flatten() {
            add_key(keys, party.number.as_deref());
            add_key(keys, party.user_id.as_deref());
        }
    }
    if let Some(user) = &e.data.user {
        add_key(keys, user.id.as_deref());
        add_key(keys, user.login.as_deref());
        add_key(keys, user.extension.as_deref());
    }
}

impl Received {
    /// Marks the fates of applied events whose batch the store found to be a duplicate:
    /// `duplicate[i]` is the store's answer for the i-th applied event (the i-th batch).
    pub fn mark_duplicates(&mut self, duplicate: &[bool]) {
        let applied = self.events.iter_mut().filter(|e| e.verdict == "apply");
        for (event, _) in applied.zip(duplicate).filter(|(_, dup)| **dup) {
            for fate in &mut event.fates {
                if fate.status == "queued" {
                    fate.status = "duplicate".into();
                }
            }
        }
    }
}

/// A record ready to store: its time, its JSON text and its search keys, made by the
/// caller so that a store's single writer only inserts.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// When it happened, Unix ms.
    pub at: i64,
    /// The record as JSON text.
    pub text: String,
    /// Its search keys ([`Record::keys`]).
    pub keys: Vec<String>,
}

impl Row {
    /// Serialises a record.
    pub fn of(record: &Record) -> Row {
        Row {
            at: record.at(),
            // A record is plain data: serialising it cannot fail.
            text: serde_json::to_string(record).unwrap_or_default(),
            keys: record.keys(),
        }
    }
}

/// How many records the archiver takes into one append.
const ARCHIVER_BATCH: usize = 1024;
/// How many records may wait for the archiver; beyond it senders wait (backpressure).
const ARCHIVER_QUEUE: usize = 16 * 1024;

enum Archiving {
    Record(Record),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Writes records that need not commit with anything else (delivery outcomes, proxy
/// forwards) in batches, off the caller's path: one append carries every record waiting,
/// so a busy gateway makes one archive write for many requests. Records keep the order
/// they were sent in.
#[derive(Clone)]
pub struct Archiver {
    tx: tokio::sync::mpsc::Sender<Archiving>,
}

impl Archiver {
    /// Starts the task that writes to `archive`.
    pub fn spawn(archive: std::sync::Arc<dyn Archive>) -> Archiver {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Archiving>(ARCHIVER_QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(ARCHIVER_BATCH);
            let mut flushed = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(item) = next {
                    match item {
                        Archiving::Record(record) => batch.push(record),
                        Archiving::Flush(done) => flushed.push(done),
                    }
                    next = if batch.len() < ARCHIVER_BATCH {
                        rx.try_recv().ok()
                    } else {
                        None
                    };
                }
                if !batch.is_empty() {
                    let records = std::mem::replace(&mut batch, Vec::with_capacity(ARCHIVER_BATCH));
                    let count = records.len() as u64;
                    if let Err(error) = archive.append(records).await {
                        metrics::counter!(crate::telemetry::metrics::ARCHIVE_FAILURES)
                            .increment(count);
                        tracing::error!(%error, records = count, "cannot archive records");
                    }
                }
                for done in flushed.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        Archiver { tx }
    }

    /// Hands a record to the archiver (waits only when it is far behind).
    pub async fn record(&self, record: Record) {
        if self.tx.send(Archiving::Record(record)).await.is_err() {
            tracing::error!("the archiver has stopped: record not archived");
        }
    }

    /// Waits until every record handed over before is written.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.tx.send(Archiving::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// A record read back, with its place in the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct Archived {
    /// Its sequence number: increasing in the order records were appended.
    pub seq: u64,
    /// The record.
    pub record: Record,
}

/// Which records to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// From this time on (Unix ms, inclusive).
    pub since: i64,
    /// Before this time (Unix ms, exclusive); `None`: up to the last record.
    pub until: Option<i64>,
    /// Only records with this index key, a partitionkey (see [`Record::keys`]).
    pub key: Option<String>,
    /// Only records with this search term (see [`Record::terms`]): found by scanning the
    /// window's records, not through the index.
    pub term: Option<String>,
    /// Only records after this sequence number.
    pub after: Option<u64>,
    /// At most this many (the oldest first).
    pub limit: usize,
}

impl Query {
    /// Whether `archived` (already within the backend's own time and key bounds, if any)
    /// matches every bound of the query.
    pub fn matches(&self, archived: &Archived) -> bool {
        let at = archived.record.at();
        at >= self.since
            && self.until.is_none_or(|until| at < until)
            && self.after.is_none_or(|after| archived.seq > after)
            && self
                .key
                .as_ref()
                .is_none_or(|key| archived.record.keys().iter().any(|k| k == key))
            && self
                .term
                .as_ref()
                .is_none_or(|term| archived.record.terms().iter().any(|t| t == term))
    }
}

/// The archive of a store.
pub trait Archive: Send + Sync {
    /// Appends records, in order; returns once they are stored.
    fn append(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), QueueError>>;
    /// Records matching `query`, oldest first.
    fn read(&self, query: Query) -> BoxFuture<'_, Result<Vec<Archived>, QueueError>>;
}

/// The behaviour every archive must show; each backend's tests run it.
#[cfg(test)]
pub(crate) mod suite {
    use super::*;

    fn received(at: i64, call: &str, n: u32) -> Record {
        let event: CallEvent = serde_json::from_value(serde_json::json!({
            "specversion": "1.0", "id": format!("e{n}"), "source": "/vendors/test",
            "type": "call.ringing", "partitionkey": call, "subject": call,
            "data": {"vendor": "test", "call": {"id": call, "from": {"number": "+15550100"}}}
        }))
        .unwrap();
        Record::Received(Received {
            at,
            route: "r".into(),
            vendor: "test".into(),
            payload: serde_json::json!({"n": n, "text": "ünïcode \u{1F600} \"quoted\""}),
            params: false,
            events: vec![ArchivedEvent {
                event,
                verdict: "apply".into(),
                reason: None,
                fates: vec![DestinationFate {
                    destination: "d".into(),
                    status: "queued".into(),
                    reason: None,
                }],
            }],
        })
    }

    fn outcome(at: i64, call: &str, n: u32) -> Record {
        Record::Outcome(Outcome {
            at,
            route: "r".into(),
            destination: "d".into(),
            event_id: format!("e{n}"),
            partitionkey: call.into(),
            outcome: "delivered".into(),
            attempt: 1,
            status: Some(200),
            detail: None,
        })
    }

    /// A payload's record is stored with its messages; a batch the store has seen before
    /// marks its event's fates `duplicate`.
    pub async fn archived_enqueue_marks_duplicates(store: &crate::delivery::Store) {
        use crate::delivery::{EventBatch, suite::message};
        let archive = store.archive.as_ref().expect("a store with an archive");
        let Record::Received(mut record) = received(crate::model::clock::now_ms(), "call-d", 1)
        else {
            unreachable!()
        };
        record.events.push(record.events[0].clone());
        let batch = |key: &str| EventBatch {
            dedupe_key: key.into(),
            messages: vec![message("call-d", 1)],
        };
        let first = store
            .producer
            .enqueue_archived(vec![batch("k-a")], record.clone())
            .await
            .unwrap();
        assert_eq!(first.stored, 1);
        // The same first event again, and a new one.
        let again = store
            .producer
            .enqueue_archived(vec![batch("k-a"), batch("k-b")], record.clone())
            .await
            .unwrap();
        assert_eq!((again.stored, again.duplicates), (1, 1));
        let read = archive
            .read(Query {
                key: Some("call-d".into()),
                limit: 10,
                ..Query::default()
            })
            .await
            .unwrap();
        let fates: Vec<Vec<&str>> = read
            .iter()
            .filter_map(|a| match &a.record {
                Record::Received(r) => Some(
                    r.events
                        .iter()
                        .map(|e| e.fates[0].status.as_str())
                        .collect(),
                ),
                Record::Outcome(_) => None,
            })
            .collect();
        assert_eq!(
            fates,
            [vec!["queued", "queued"], vec!["duplicate", "queued"]],
            "both payloads archived, the repeat marked"
        );
    }

    /// Appends keep order; reads bound by time, key, sequence and limit.
    pub async fn reads_by_time_and_key(archive: &dyn Archive) {
        let base = crate::model::clock::now_ms() - 10_000;
        let mut written = Vec::new();
        for n in 0..10u32 {
            let call = if n % 2 == 0 { "call-a" } else { "call-b" };
            written.push(received(base + i64::from(n) * 100, call, n));
            written.push(outcome(base + i64::from(n) * 100 + 50, call, n));
        }
        archive.append(written[..4].to_vec()).await.unwrap();
        archive.append(written[4..].to_vec()).await.unwrap();

        let all = archive
            .read(Query {
                since: base,
                limit: 1000,
                ..Query::default()
            })
            .await
            .unwrap();
        let records: Vec<Record> = all.iter().map(|a| a.record.clone()).collect();
        assert_eq!(records, written, "every record, in the order appended");
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));

        let window = archive
            .read(Query {
                since: base + 200,
                until: Some(base + 400),
                limit: 1000,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(window.len(), 4, "records 2 and 3 with their outcomes");
        assert!(
            window
                .iter()
                .all(|a| (base + 200..base + 400).contains(&a.record.at()))
        );

        let by_call = archive
            .read(Query {
                since: 0,
                key: Some("call-b".into()),
                limit: 1000,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(by_call.len(), 10);
        assert!(
            by_call
                .iter()
                .all(|a| a.record.keys().contains(&"call-b".into()))
        );
        let by_number = archive
            .read(Query {
                since: 0,
                term: Some("+15550100".into()),
                limit: 3,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(by_number.len(), 3, "the limit holds");
        assert_eq!(by_number[0].record, written[0]);
        let after = archive
            .read(Query {
                since: 0,
                after: Some(by_number[2].seq),
                term: Some("e9".into()),
                limit: 1000,
                ..Query::default()
            })
            .await
            .unwrap();
        assert_eq!(after.len(), 2, "e9's payload and its outcome");
        let none = archive
            .read(Query {
                since: 0,
                key: Some("nobody".into()),
                limit: 1000,
                ..Query::default()
            })
            .await
            .unwrap();
        assert!(none.is_empty());
    }
}
