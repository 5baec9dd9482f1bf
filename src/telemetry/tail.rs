//! The live tail: what went through each route (events and their per-destination fate,
//! delivery outcomes, reloads), kept in a bounded ring per route and broadcast to the
//! subscribers of `/admin/tail` and `callgate tail`. Bodies only with `server.tail_bodies`;
//! the tail never carries URLs or headers, so configured secrets cannot reach it.

use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

/// Records kept per route for late subscribers.
pub const RECENT_PER_ROUTE: usize = 100;
/// Records a slow subscriber may fall behind before it is told it missed some.
const CHANNEL: usize = 1024;
/// Longest body kept in a record (bytes); longer ones are cut and marked.
pub const MAX_BODY: usize = 16 * 1024;

/// One tail record: a sequence number (the SSE `id`), a time, and what happened.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Increasing per process, from 1.
    pub seq: u64,
    /// RFC 3339 UTC, milliseconds.
    pub time: String,
    /// What happened.
    #[serde(flatten)]
    pub entry: Entry,
}

/// What a record reports. `kind` in JSON (also the SSE `event` name).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// An event was accepted on a route: what each destination got.
    Event {
        /// Route name.
        route: String,
        /// Source vendor.
        vendor: String,
        /// CloudEvents `id`.
        event_id: String,
        /// Canonical type.
        #[serde(rename = "type")]
        event_type: String,
        /// The event's `partitionkey`: the call id (the user id for presence).
        partitionkey: String,
        /// One per destination of the route, in config order.
        destinations: Vec<DestinationFate>,
    },
    /// The lifecycle tracker dropped an event.
    Dropped {
        /// Route name.
        route: String,
        /// Source vendor.
        vendor: String,
        /// CloudEvents `id`.
        event_id: String,
        /// Canonical type.
        #[serde(rename = "type")]
        event_type: String,
        /// The event's `partitionkey`.
        partitionkey: String,
        /// `duplicate` or `stale`, with the detail.
        reason: String,
    },
    /// The outcome of one delivery attempt (or of a proxy forward).
    Delivery {
        /// Route name.
        route: String,
        /// Destination name.
        destination: String,
        /// The store's id of the message (its dead-letter id if it dies); 0 for a proxy
        /// forward, which is not stored.
        delivery_id: i64,
        /// CloudEvents `id`.
        event_id: String,
        /// Canonical type.
        #[serde(rename = "type")]
        event_type: String,
        /// The event's `partitionkey`.
        partitionkey: String,
        /// `delivered`, `retrying`, `dead` or `skipped`.
        outcome: &'static str,
        /// Which attempt this was, from 1.
        attempt: u32,
        /// The receiver's HTTP status, if it answered.
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// What went wrong, or why it was skipped.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When the next attempt is due (RFC 3339), for `retrying`.
        #[serde(skip_serializing_if = "Option::is_none")]
        next_attempt: Option<String>,
    },
    /// A reload was tried.
    Reload {
        /// `reloaded`, `unchanged` or `rejected`.
        outcome: &'static str,
        /// The snapshot version now served.
        version: u64,
        /// What triggered it (`file`, `signal`, `admin`), and why it was rejected.
        detail: String,
    },
    /// Sent to one subscriber that fell behind: it missed this many records.
    Lagged {
        /// Records missed.
        missed: u64,
    },
}

/// What one destination got of an event.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationFate {
    /// Destination name.
    pub destination: String,
    /// `queued`, `forwarded`, `skipped` or `dead` (the template failed).
    pub status: &'static str,
    /// Why it was skipped or dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rendered body (JSON when it parses), only with `server.tail_bodies`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl Entry {
    fn route(&self) -> &str {
        match self {
            Entry::Event { route, .. }
            | Entry::Dropped { route, .. }
            | Entry::Delivery { route, .. } => route,
            Entry::Reload { .. } | Entry::Lagged { .. } => "",
        }
    }

    /// The SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Event { .. } => "event",
            Entry::Dropped { .. } => "dropped",
            Entry::Delivery { .. } => "delivery",
            Entry::Reload { .. } => "reload",
            Entry::Lagged { .. } => "lagged",
        }
    }
}

/// What a subscriber wants to see; every field set must match. Reload and lag records
/// pass every filter.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Route name.
    pub route: Option<String>,
    /// Destination name (an event record matches when one of its destinations does).
    pub destination: Option<String>,
    /// Canonical type, exact or a prefix ending in `*` (`call.*`).
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// The event's `partitionkey` (a call id; a user id for presence). `call` is accepted too.
    #[serde(alias = "call")]
    pub partitionkey: Option<String>,
}

impl Filter {
    /// Whether `record` passes.
    pub fn matches(&self, record: &Record) -> bool {
        let (route, destinations, event_type, partitionkey): (&str, Vec<&str>, &str, &str) =
            match &record.entry {
                Entry::Event {
                    route,
                    event_type,
                    partitionkey,
                    destinations,
                    ..
                } => (
                    route,
                    destinations
                        .iter()
                        .map(|d| d.destination.as_str())
                        .collect(),
                    event_type,
                    partitionkey,
                ),
                Entry::Dropped {
                    route,
                    event_type,
                    partitionkey,
                    ..
                } => (route, Vec::new(), event_type, partitionkey),
                Entry::Delivery {
                    route,
                    destination,
                    event_type,
                    partitionkey,
                    ..
                } => (route, vec![destination.as_str()], event_type, partitionkey),
                Entry::Reload { .. } | Entry::Lagged { .. } => return true,
            };
        self.route.as_deref().is_none_or(|r| r == route)
            && self
                .destination
                .as_deref()
                .is_none_or(|d| destinations.contains(&d))
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| crate::mapping::encode::type_matches(t, event_type))
            && self
                .partitionkey
                .as_deref()
                .is_none_or(|c| c == partitionkey)
    }
}

/// The tail: cheap to clone, one per gateway.
#[derive(Clone)]
pub struct Tail {
    inner: Arc<Inner>,
}

struct Inner {
    sender: broadcast::Sender<Arc<Record>>,
    closed: watch::Sender<bool>,
    recent: Mutex<HashMap<String, VecDeque<Arc<Record>>>>,
    seq: AtomicU64,
    bodies: AtomicBool,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            inner: Arc::new(Inner {
                sender: broadcast::channel(CHANNEL).0,
                closed: watch::Sender::new(false),
                recent: Mutex::default(),
                seq: AtomicU64::new(0),
                bodies: AtomicBool::new(false),
            }),
        }
    }
}

impl Tail {
    /// Sets whether records carry bodies (`server.tail_bodies`; follows reloads).
    pub fn set_bodies(&self, on: bool) {
        self.inner.bodies.store(on, Ordering::Relaxed);
    }

    /// Whether records carry bodies: callers skip preparing one otherwise.
    pub fn bodies(&self) -> bool {
        self.inner.bodies.load(Ordering::Relaxed)
    }

    /// A body as a record carries it: JSON when it parses, cut to [`MAX_BODY`] bytes.
    pub fn body(&self, text: &str) -> Option<Value> {
        if !self.bodies() {
            return None;
        }
        if text.len() > MAX_BODY {
            let mut end = MAX_BODY;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            return Some(Value::String(format!(
                "{}… ({} bytes in all)",
                &text[..end],
                text.len()
            )));
        }
        Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
    }

    /// Records `entry`: kept in its route's ring and sent to every subscriber.
    pub fn publish(&self, entry: Entry) {
        let record = Arc::new(Record {
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time: rfc3339_now(),
            entry,
        });
        {
            let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
            let ring = recent.entry(record.entry.route().to_string()).or_default();
            if ring.len() == RECENT_PER_ROUTE {
                ring.pop_front();
            }
            ring.push_back(record.clone());
        }
        // No subscriber is not an error.
        let _ = self.inner.sender.send(record);
    }

    /// Ends every subscription: the gateway is stopping, and an open stream would keep its
    /// listener's graceful shutdown waiting forever.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Turns true when [`Tail::close`] was called.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.inner.closed.subscribe()
    }

    /// Subscribes: the kept records after `after` (a `Last-Event-ID`) that pass `filter`,
    /// in order, and a receiver of what comes next. Subscribed before the backlog is read,
    /// so nothing falls between them (a record in both is skipped by its `seq`).
    pub fn subscribe(
        &self,
        filter: &Filter,
        after: u64,
    ) -> (Vec<Arc<Record>>, broadcast::Receiver<Arc<Record>>) {
        let receiver = self.inner.sender.subscribe();
        let recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
        let mut backlog: Vec<Arc<Record>> = recent
            .values()
            .flatten()
            .filter(|r| r.seq > after && filter.matches(r))
            .cloned()
            .collect();
        backlog.sort_by_key(|r| r.seq);
        (backlog, receiver)
    }
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `after` from now as RFC 3339 UTC with milliseconds.
pub fn rfc3339_in(after: std::time::Duration) -> String {
    let at = chrono::Utc::now() + chrono::Duration::from_std(after).unwrap_or_default();
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(route: &str, dest: &str, call: &str, event_type: &str) -> Entry {
        Entry::Delivery {
            route: route.into(),
            destination: dest.into(),
            delivery_id: 1,
            event_id: "e".into(),
            event_type: event_type.into(),
            partitionkey: call.into(),
            outcome: "delivered",
            attempt: 1,
            status: Some(200),
            reason: None,
            next_attempt: None,
        }
    }

    #[test]
    fn filters_match_route_destination_type_prefix_and_call() {
        let tail = Tail::default();
        tail.publish(delivery("rc", "vidyo", "c1", "call.ringing"));
        tail.publish(delivery("rc", "rte", "c2", "call.ended"));
        tail.publish(delivery("isr", "vidyo", "c1", "recording.started"));
        let seqs = |filter: Filter| -> Vec<u64> {
            tail.subscribe(&filter, 0).0.iter().map(|r| r.seq).collect()
        };
        assert_eq!(seqs(Filter::default()), [1, 2, 3]);
        let route = Some("rc".to_string());
        assert_eq!(
            seqs(Filter {
                route: route.clone(),
                ..Filter::default()
            }),
            [1, 2]
        );
        assert_eq!(
            seqs(Filter {
                event_type: Some("call.*".into()),
                ..Filter::default()
            }),
            [1, 2]
        );
        assert_eq!(
            seqs(Filter {
                destination: Some("vidyo".into()),
                partitionkey: Some("c1".into()),
                ..Filter::default()
            }),
            [1, 3]
        );
        assert_eq!(tail.subscribe(&Filter::default(), 2).0.len(), 1, "after");
    }

    #[test]
    fn each_route_keeps_its_last_records_and_bodies_are_off_by_default_and_cut() {
        let tail = Tail::default();
        for _ in 0..RECENT_PER_ROUTE + 10 {
            tail.publish(delivery("busy", "d", "c", "call.ringing"));
        }
        tail.publish(delivery("quiet", "d", "c", "call.ringing"));
        let (backlog, _) = tail.subscribe(&Filter::default(), 0);
        assert_eq!(backlog.len(), RECENT_PER_ROUTE + 1);
        assert_eq!(backlog[0].seq, 11, "the oldest of the busy route went");
        assert_eq!(backlog.last().unwrap().seq, RECENT_PER_ROUTE as u64 + 11);

        assert_eq!(tail.body("{\"a\":1}"), None);
        tail.set_bodies(true);
        assert_eq!(tail.body("{\"a\":1}"), Some(serde_json::json!({"a": 1})));
        let huge = "é".repeat(MAX_BODY);
        let Some(Value::String(cut)) = tail.body(&huge) else {
            panic!("a cut body is text")
        };
        assert!(
            cut.len() < MAX_BODY + 64 && cut.ends_with(&format!("({} bytes in all)", huge.len()))
        );
    }

    #[tokio::test]
    async fn a_subscriber_gets_what_comes_after_its_backlog() {
        let tail = Tail::default();
        tail.publish(delivery("rc", "vidyo", "c1", "call.ringing"));
        let (backlog, mut live) = tail.subscribe(&Filter::default(), 0);
        assert_eq!(backlog.len(), 1);
        tail.publish(delivery("rc", "vidyo", "c1", "call.answered"));
        let next = live.recv().await.unwrap();
        assert_eq!(next.seq, 2);
        let json = serde_json::to_value(next.as_ref()).unwrap();
        assert_eq!(json["kind"], "delivery");
        assert_eq!(json["type"], "call.answered");
        assert_eq!(json["outcome"], "delivered");
    }
}
