//! What a transport does with an [`Accepted`] payload, whatever the transport: on a queued
//! route, commit every message durably before anything is acknowledged; on a proxy route,
//! forward synchronously and hand back the receiver's reply (or queue on timeout). Then the
//! lifecycle tracker records the events. The transport turns [`Submitted`] or
//! [`SubmitError`] into its own reply.

use crate::config::{Ack, OnTimeout};
use crate::delivery::archive::{
    ArchivedEvent, Archiver, DestinationFate as ArchivedFate, Received, Record,
};
use crate::delivery::lane::Admission;
use crate::delivery::{EventBatch, Producer, QueueError};
use crate::model::inbound::VerifiedInbound;
use crate::outbound::http::{Reply, SendError, classify_forward};
use crate::pipeline::{self, Accepted, Fate, PipelineError, Routing};
use crate::route::Route;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics as m;
use crate::telemetry::tail::{DestinationFate, Entry, Tail};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument as _;

/// What intake needs: the store's producer half and the workers' wake-up.
#[derive(Clone)]
pub struct Intake {
    /// The store.
    pub producer: Arc<dyn Producer>,
    /// Wakes the delivery workers after an enqueue.
    pub wake: Arc<Notify>,
    /// `delivery.max_queue_depth`.
    pub max_depth: u64,
    /// One call's payloads take turns from lifecycle to commit.
    pub turns: Arc<Turns>,
    /// The live tail: every accepted or dropped event, and every proxy forward.
    pub tail: Tail,
    /// The archive's writer, when the store keeps one: every accepted payload is archived
    /// (a queued route's with its messages, in the same write; a proxy route's through it).
    pub archiver: Option<Archiver>,
}

/// How many locks the calls share (a call waits only for payloads of calls that hash alike).
const STRIPES: usize = 256;

/// Per-call turns: between the lifecycle decision and the durable commit, a call's payloads
/// go one at a time, so one that was judged first is also stored first (its messages are
/// then delivered first). Striped: calls hash onto a fixed set of locks.
pub struct Turns(Vec<Arc<tokio::sync::Mutex<()>>>);

impl Default for Turns {
    fn default() -> Self {
        Turns((0..STRIPES).map(|_| Arc::default()).collect())
    }
}

/// Held while a payload's calls are judged and committed; dropping it ends the turn.
pub struct Turn {
    _guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turns {
    /// Waits for the turn of every call in `keys` on `route` (locks taken in stripe order, so
    /// two payloads naming the same calls cannot deadlock).
    pub async fn take<'a>(&self, route: &str, keys: impl Iterator<Item = &'a str>) -> Turn {
        use std::hash::{Hash, Hasher};
        let mut stripes: Vec<usize> = keys
            .map(|key| {
                let mut h = std::hash::DefaultHasher::new();
                (route, key).hash(&mut h);
                (h.finish() as usize) % STRIPES
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.0[stripe].clone().lock_owned().await);
        }
        Turn { _guards: guards }
    }
}

/// How an accepted payload was taken.
#[derive(Debug)]
pub enum Submitted {
    /// Durably stored (queued route).
    Queued {
        /// Messages stored.
        stored: usize,
        /// Events that were duplicates within the dedupe window.
        duplicates: usize,
    },
    /// Forwarded; the receiver's last reply (proxy route).
    Forwarded(Reply),
    /// The receiver answered with an error status: passed back as it is, nothing recorded.
    Refused(Reply),
    /// The forward timed out and the rest was queued (`on_timeout: queue`).
    QueuedAfterTimeout,
    /// The call already had messages waiting in the queue, so this payload's were queued
    /// behind them instead of being forwarded around them (proxy route).
    QueuedBehind,
    /// A proxy route had nothing to forward (every event skipped or dropped).
    NothingToForward,
    /// A proxy route's messages could not be rendered: each went to the dead letters with
    /// its error (destination, error), and nothing was forwarded.
    DeadLettered(Vec<(String, String)>),
}

/// Why an accepted payload could not be taken; nothing of it was recorded.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A destination has `delivery.max_queue_depth` messages waiting.
    #[error(
        "destination `{destination}` of route `{route}` has {depth} messages waiting (delivery.max_queue_depth)"
    )]
    QueueFull {
        /// Route name.
        route: String,
        /// Destination name.
        destination: String,
        /// Its depth.
        depth: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(QueueError),
    /// The proxy forward timed out (`on_timeout: fail`).
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The proxy forward could not reach the receiver.
    #[error("{0}")]
    Unreachable(String),
    /// The destination's lane said not now (breaker open, rate or in-flight limit) and the
    /// route does not queue (`on_timeout: fail`): try again after this long.
    #[error(
        "destination `{destination}` is not taking requests now ({reason}): try again in {after:?}"
    )]
    Deferred {
        /// Destination name.
        destination: String,
        /// The lane's reason (`breaker_open`, `rate_limited`, `in_flight`).
        reason: &'static str,
        /// When to try again.
        after: Duration,
    },
}

/// Why [`Intake::ingest`] took nothing.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The payload was not understood (unknown vendor, no decode rule, too many events).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// It could not be stored or forwarded.
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

impl Intake {
    /// One verified payload on `route`, whatever transport brought it: decode, then, in the
    /// turn of its calls, lifecycle and routing, then the durable enqueue (or the proxy
    /// forward) and the lifecycle commit.
    pub async fn ingest(
        &self,
        snapshot: &Snapshot,
        route: &Route,
        inbound: &VerifiedInbound,
    ) -> Result<(Accepted, Submitted), IngestError> {
        // One span per inbound payload; its events' ids link it to their delivery spans.
        let span = tracing::info_span!(
            "request",
            route = %route.name,
            vendor = tracing::field::Empty,
            event_ids = tracing::field::Empty,
        );
        async {
            let decoded = pipeline::decode(&snapshot.mappings, route, inbound)?;
            let span = tracing::Span::current();
            span.record("vendor", decoded.vendor.as_str());
            if !span.is_disabled() {
                let ids: Vec<&str> = decoded.events.iter().map(|e| e.id.as_str()).collect();
                span.record("event_ids", ids.join(",").as_str());
            }
            let _turn = self.turns.take(&route.name, decoded.partitionkeys()).await;
            let accepted = pipeline::route_events(&snapshot.mappings, route, decoded);
            let submitted = self.submit(route, inbound, &accepted).await?;
            Ok((accepted, submitted))
        }
        .instrument(span)
        .await
    }

    /// One event from a source's authenticated connection (SignalR, RingCentral WebSocket):
    /// ingested on the current snapshot's `route` like a webhook. Such transports have no
    /// acknowledgement, so a full or unavailable store holds the caller (backpressure on the
    /// connection) until the event is taken; an event the route cannot understand is
    /// logged and dropped.
    pub async fn ingest_from_connection(
        &self,
        snapshots: &arc_swap::ArcSwap<Snapshot>,
        source: &str,
        route: &str,
        payload: serde_json::Value,
    ) {
        let inbound = VerifiedInbound::from_connection(payload);
        let mut wait = Duration::from_millis(100);
        loop {
            let snapshot = snapshots.load_full();
            let Some(route) = snapshot.route(route).cloned() else {
                tracing::error!(source, route, "the source's route is gone: event dropped");
                return;
            };
            match self.ingest(&snapshot, &route, &inbound).await {
                Ok(_) => return,
                Err(IngestError::Pipeline(error)) => {
                    tracing::warn!(source, %error, "event not understood: dropped");
                    return;
                }
                Err(IngestError::Submit(error)) => {
                    tracing::warn!(source, %error, retry_in = ?wait, "cannot store the event yet");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Takes an accepted payload on `route`, and archives it: on a queued route in the same
    /// write as its messages, on a proxy route once the forward is answered.
    pub async fn submit(
        &self,
        route: &Route,
        inbound: &VerifiedInbound,
        accepted: &Accepted,
    ) -> Result<Submitted, SubmitError> {
        let submitted = match route.ack {
            Ack::Queued => {
                let record = self
                    .archiver
                    .as_ref()
                    .map(|_| received(route, inbound, accepted, "queued"));
                let queued = self.enqueue(route, accepted.batches(), record).await?;
                self.publish(route, accepted, "queued");
                queued
            }
            Ack::Proxy => {
                // Before the forward, so that the tail shows the event before its outcome.
                self.publish(route, accepted, "forwarded");
                let submitted = self.proxy(route, accepted).await?;
                self.archive_forwarded(route, inbound, accepted, &submitted)
                    .await;
                submitted
            }
        };
        if !matches!(submitted, Submitted::Refused(_)) {
            accepted.commit();
        }
        Ok(submitted)
    }

    /// Archives a proxy route's payload (when there is an archive) once the forward is
    /// answered, with the receiver's reply as each forwarded message's outcome: handed to the
    /// archiver (in order, under the call's turn), so the sender's answer never waits for a
    /// write.
    async fn archive_forwarded(
        &self,
        route: &Route,
        inbound: &VerifiedInbound,
        accepted: &Accepted,
        submitted: &Submitted,
    ) {
        let Some(archiver) = &self.archiver else {
            return;
        };
        let status = match submitted {
            // The vendor gets the receiver's error and sends again: nothing was taken.
            Submitted::Refused(_) => return,
            // (`Queued` is a queued route's answer: archived with its messages, not here.)
            Submitted::Queued { .. } | Submitted::QueuedAfterTimeout | Submitted::QueuedBehind => {
                "queued"
            }
            Submitted::Forwarded(_) => "forwarded",
            Submitted::NothingToForward | Submitted::DeadLettered(_) => "dead",
        };
        let record = received(route, inbound, accepted, status);
        let mut records = Vec::new();
        if let Submitted::Forwarded(reply) = submitted {
            for (_, routing) in accepted.applied().flat_map(|a| &a.routed) {
                if let Routing::Message(m) = routing {
                    records.push(Record::Outcome(crate::delivery::archive::Outcome {
                        at: record.at,
                        route: m.route.clone(),
                        destination: m.destination.clone(),
                        event_id: m.event_id.clone(),
                        partitionkey: m.partitionkey.clone(),
                        outcome: "delivered".into(),
                        attempt: 1,
                        status: Some(reply.status.as_u16()),
                        detail: Some(reply.body.chars().take(200).collect()),
                    }));
                }
            }
        }
        archiver.record(Record::Received(record)).await;
        for outcome in records {
            archiver.record(outcome).await;
        }
    }

    /// Tells the tail what became of each event of an accepted payload: `status` for each
    /// destination that got a message.
    fn publish(&self, route: &Route, accepted: &Accepted, status: &'static str) {
        for fate in &accepted.fates {
            let entry = match fate {
                Fate::Applied(applied) => Entry::Event {
                    route: route.name.clone(),
                    vendor: accepted.vendor.clone(),
                    event_id: applied.event.id.clone(),
                    event_type: applied.event.event_type.clone(),
                    partitionkey: applied.event.effective_partitionkey().to_string(),
                    destinations: applied
                        .routed
                        .iter()
                        .map(|(name, routing)| {
                            let (status, reason) = routing.status(status);
                            let body = match routing {
                                Routing::Message(m) => m.request.body(),
                                _ => None,
                            };
                            DestinationFate {
                                destination: name.clone(),
                                status,
                                reason,
                                body: body.and_then(|b| self.tail.body(b)),
                            }
                        })
                        .collect(),
                },
                Fate::Dropped(verdict) => {
                    let event = verdict.event();
                    Entry::Dropped {
                        route: route.name.clone(),
                        vendor: accepted.vendor.clone(),
                        event_id: event.id.clone(),
                        event_type: event.event_type.clone(),
                        partitionkey: event.effective_partitionkey().to_string(),
                        reason: verdict.reason(),
                    }
                }
            };
            self.tail.publish(entry);
        }
    }

    async fn enqueue(
        &self,
        route: &Route,
        batches: Vec<EventBatch>,
        record: Option<Received>,
    ) -> Result<Submitted, SubmitError> {
        for dest in &route.destinations {
            let wanted = batches
                .iter()
                .flat_map(|b| &b.messages)
                .any(|t| t.failure.is_none() && t.message.destination == dest.name);
            let depth = self.producer.depth(&route.name, &dest.name);
            if wanted && depth >= self.max_depth {
                return Err(SubmitError::QueueFull {
                    route: route.name.clone(),
                    destination: dest.name.clone(),
                    depth,
                });
            }
        }
        let out = match record {
            Some(record) => self.producer.enqueue_archived(batches, record).await,
            None => self.producer.enqueue(batches).await,
        }
        .map_err(SubmitError::Store)?;
        if out.duplicates > 0 {
            metrics::counter!(m::DEDUPED, "route" => route.name.clone())
                .increment(out.duplicates as u64);
        }
        if out.stored > 0 {
            self.wake.notify_one();
        }
        Ok(Submitted::Queued {
            stored: out.stored,
            duplicates: out.duplicates,
        })
    }

    async fn proxy(&self, route: &Route, accepted: &Accepted) -> Result<Submitted, SubmitError> {
        // A message whose template failed is dead-lettered with its error, as on a queued
        // route: never skipped silently. (Its own dedupe key: the event may still be queued
        // whole later, after a timeout.)
        let any_failed = accepted
            .applied()
            .flat_map(|a| &a.routed)
            .any(|(_, r)| matches!(r, Routing::Failed { .. }));
        if any_failed {
            let failed: Vec<EventBatch> = accepted
                .batches()
                .into_iter()
                .map(|b| EventBatch {
                    dedupe_key: format!("{}|render-failed", b.dedupe_key),
                    messages: b
                        .messages
                        .into_iter()
                        .filter(|m| m.failure.is_some())
                        .collect(),
                })
                .filter(|b| !b.messages.is_empty())
                .collect();
            self.producer
                .enqueue(failed)
                .await
                .map_err(SubmitError::Store)?;
        }
        // What is left to queue from the `index`-th applied event on, when the forward
        // cannot go on (built only then: the usual forward copies no message).
        let live = |index: usize| -> Vec<EventBatch> {
            accepted
                .batches()
                .into_iter()
                .skip(index)
                .map(|mut b| {
                    b.messages.retain(|m| m.failure.is_none());
                    b
                })
                .collect()
        };
        let mut last = None;
        for (index, applied) in accepted.applied().enumerate() {
            for (name, routing) in &applied.routed {
                let Routing::Message(message) = routing else {
                    continue;
                };
                let Some((dest, http)) = route
                    .destinations
                    .iter()
                    .find(|d| &d.name == name)
                    .and_then(|d| Some((d, d.http.as_ref()?)))
                else {
                    continue;
                };
                if self
                    .producer
                    .is_waiting(&route.name, name, &message.partitionkey)
                {
                    tracing::info!(event_id = %message.event_id, partitionkey = %message.partitionkey, "the call has messages waiting: queued behind them");
                    self.enqueue(route, live(index), None).await?;
                    return Ok(Submitted::QueuedBehind);
                }
                // The lane protects the receiver in proxy mode too: an open breaker or an
                // exhausted rate queues the message (`on_timeout: queue`) or answers 503.
                let permit = match dest.lane.admit() {
                    Admission::Go(permit) => permit,
                    Admission::Defer(after, why) => {
                        metrics::counter!(m::DEFERRED, "destination" => dest.key.clone(), "reason" => why.label())
                            .increment(1);
                        if route.on_timeout == OnTimeout::Queue {
                            self.enqueue(route, live(index), None).await?;
                            return Ok(Submitted::QueuedAfterTimeout);
                        }
                        return Err(SubmitError::Deferred {
                            destination: name.clone(),
                            reason: why.label(),
                            after,
                        });
                    }
                };
                let forwarded = http.forward_within(message, route.forward_timeout).await;
                // Classified once, as a worker's attempt is: the lane's breaker and the
                // deliveries metric see proxy forwards in the one outcome vocabulary (no log
                // details are built: the reply itself goes back to the sender).
                let (attempt, label) = classify_forward(&forwarded);
                dest.lane.record(permit, &attempt);
                metrics::counter!(m::DELIVERIES, "destination" => dest.key.clone(), "outcome" => label)
                    .increment(1);
                let (outcome, status, reason) = match &forwarded {
                    Ok(reply) if reply.status.is_success() => {
                        ("delivered", Some(reply.status.as_u16()), None)
                    }
                    Ok(reply) => (
                        "refused",
                        Some(reply.status.as_u16()),
                        Some("passed back to the sender".to_string()),
                    ),
                    Err(e) => ("failed", None, Some(e.to_string())),
                };
                self.tail.publish(Entry::Delivery {
                    route: route.name.clone(),
                    destination: name.clone(),
                    delivery_id: 0,
                    event_id: message.event_id.clone(),
                    event_type: message.event_type.clone(),
                    partitionkey: message.partitionkey.clone(),
                    outcome,
                    attempt: 1,
                    status,
                    reason,
                    next_attempt: None,
                });
                match forwarded {
                    Ok(reply) if reply.status.is_success() => last = Some(reply),
                    Ok(reply) => return Ok(Submitted::Refused(reply)),
                    Err(SendError::Timeout(after)) if route.on_timeout == OnTimeout::Queue => {
                        tracing::warn!(event_id = %message.event_id, partitionkey = %message.partitionkey, ?after, "proxy forward timed out: queued instead");
                        self.enqueue(route, live(index), None).await?;
                        return Ok(Submitted::QueuedAfterTimeout);
                    }
                    Err(SendError::Timeout(after)) => return Err(SubmitError::Timeout(after)),
                    Err(e) => return Err(SubmitError::Unreachable(e.to_string())),
                }
            }
        }
        Ok(match last {
            Some(reply) => Submitted::Forwarded(reply),
            None if any_failed => Submitted::DeadLettered(
                accepted
                    .applied()
                    .flat_map(|a| &a.routed)
                    .filter_map(|(name, r)| match r {
                        Routing::Failed { error, .. } => Some((name.clone(), error.clone())),
                        _ => None,
                    })
                    .collect(),
            ),
            None => Submitted::NothingToForward,
        })
    }
}

/// The archive record of an accepted payload: its events, the lifecycle's verdicts and each
/// destination's fate, `message_status` for the destinations that got a message.
fn received(
    route: &Route,
    inbound: &VerifiedInbound,
    accepted: &Accepted,
    message_status: &'static str,
) -> Received {
    let events = accepted
        .fates
        .iter()
        .map(|fate| match fate {
            Fate::Applied(applied) => ArchivedEvent {
                event: applied.event.clone(),
                verdict: "apply".into(),
                reason: None,
                fates: applied
                    .routed
                    .iter()
                    .map(|(name, routing)| {
                        let (status, reason) = routing.status(message_status);
                        ArchivedFate {
                            destination: name.clone(),
                            status: status.into(),
                            reason,
                        }
                    })
                    .collect(),
            },
            Fate::Dropped(verdict) => ArchivedEvent {
                event: verdict.event().clone(),
                verdict: verdict.label().into(),
                reason: Some(verdict.reason()),
                fates: Vec::new(),
            },
        })
        .collect();
    Received {
        at: crate::model::clock::now_ms(),
        route: route.name.clone(),
        vendor: accepted.vendor.clone(),
        payload: inbound.payload().clone(),
        params: inbound.is_params(),
        events,
    }
}
