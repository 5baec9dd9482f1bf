//! Delivery workers: lease due messages, pass each through its destination's lane (rate
//! limit, in-flight cap, breaker), send it with the destination's [`Outbound`] adapter, and
//! settle the lease: acknowledged, retried after the schedule's wait, deferred (the lane said
//! not now: no attempt spent), or dead. Waits come through `tokio::time`.
//!
//! Each attempt runs on the destinations current when it started ([`Targets`], which the
//! gateway hands in: the snapshot); a message whose destination a reload removed goes to the
//! dead letters, from where it can be replayed once it is back. Delivery never names a
//! transport: it sends through `dyn Outbound`.

use super::QueueError;
use super::archive::{Archiver, Outcome as ArchivedOutcome, Record};
use super::lane::Admission;
use super::{AttemptLog, Consumer, Leased, Settlement, Store};
use crate::delivery::lane::Lane;
use crate::model::clock::now_ms;
use crate::model::outbound::AttemptOutcome;
use crate::model::outbound::Outbound;
use crate::telemetry::metrics as m;
use crate::telemetry::tail::{Entry, Tail, rfc3339_in};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tracing::Instrument as _;

/// How often the dispatcher looks for due messages when nothing wakes it.
const POLL: Duration = Duration::from_millis(100);

/// The retry schedule: the wait before each attempt; after the last, dead letter.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Waits, the first before attempt 1 (normally 0s).
    pub schedule: Vec<Duration>,
}

impl RetryPolicy {
    /// When to try again after `attempts` failed attempts, honouring the receiver's
    /// `Retry-After`; `None` when the schedule is exhausted. Up to 10% jitter is added.
    pub fn next_wait(&self, attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.schedule.get(attempts as usize)?;
        let jitter = if base.is_zero() {
            Duration::ZERO
        } else {
            base.mul_f64(rand::rng().random_range(0.0..0.1))
        };
        Some((base + jitter).max(retry_after.unwrap_or_default()))
    }
}

/// What a worker delivers a message to: its destination's lane, transport and patience.
pub struct Target<'a> {
    /// The destination's lane (rate limit, in-flight cap, breaker).
    pub lane: &'a Lane,
    /// The transport that sends its messages.
    pub outbound: &'a dyn Outbound,
    /// How long a deferred message may wait for a receiver before it is dead-lettered.
    pub undeliverable_after: Duration,
}

/// The destinations of one configuration, by key (`route/destination`).
pub trait Targets: Send + Sync {
    /// The destination `key`, or `None` when the configuration has none by that key.
    fn target(&self, key: &str) -> Option<Target<'_>>;
}

/// The destinations current now (the gateway's snapshot, swapped on reload).
pub type CurrentTargets = Arc<dyn Fn() -> Arc<dyn Targets> + Send + Sync>;

/// Runs the delivery loop until `stop` turns true, then waits for attempts in flight.
pub async fn run(
    store: Store,
    targets: CurrentTargets,
    policy: RetryPolicy,
    workers: usize,
    wake: Arc<Notify>,
    tail: Tail,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(workers));
    loop {
        if *stop.borrow() {
            break;
        }
        let free = slots.available_permits();
        if free > 0 {
            match store.consumer.lease(free).await {
                Ok(leased) => {
                    for leased in leased {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            break;
                        };
                        let consumer = store.consumer.clone();
                        let archiver = store.archiver.clone();
                        let targets = targets();
                        let (policy, wake, tail) = (policy.clone(), wake.clone(), tail.clone());
                        tokio::spawn(async move {
                            let settled = Settled {
                                consumer: consumer.as_ref(),
                                archiver: archiver.as_ref(),
                            };
                            attempt(settled, targets.as_ref(), &policy, &tail, leased).await;
                            drop(permit);
                            // The call's next message may be due now.
                            wake.notify_one();
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot lease messages"),
            }
        }
        metrics::gauge!(m::QUEUE_DEPTH).set(store.producer.total_depth() as f64);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
    // Let attempts in flight finish; their leases are recovered at the next start otherwise.
    let _ = slots.acquire_many(workers as u32).await;
}

/// One leased message: lane, send, settle; in a `delivery` span naming the route,
/// destination, delivery id, event id, call id and attempt.
pub async fn attempt(
    consumer: Settled<'_>,
    targets: &dyn Targets,
    policy: &RetryPolicy,
    tail: &Tail,
    leased: Leased,
) {
    let span = tracing::info_span!(
        "delivery",
        route = %leased.message.route,
        destination = %leased.message.destination,
        delivery_id = leased.lease.id(),
        event_id = %leased.message.event_id,
        partitionkey = %leased.message.partitionkey,
        attempt = leased.attempts + 1,
    );
    attempt_in_span(consumer, targets, policy, tail, leased)
        .instrument(span)
        .await
}

async fn attempt_in_span(
    consumer: Settled<'_>,
    targets: &dyn Targets,
    policy: &RetryPolicy,
    tail: &Tail,
    leased: Leased,
) {
    let Leased {
        lease,
        message,
        attempts,
        created_at,
    } = leased;
    let key = message.destination_key();
    let Some(dest) = targets.target(&key) else {
        tracing::warn!("destination no longer configured: dead letter");
        let log = AttemptLog {
            at: now_ms(),
            status: None,
            error: Some(format!("destination `{key}` is no longer configured")),
            excerpt: None,
        };
        TailedAttempt {
            delivery_id: lease.id(),
            attempt: attempts + 1,
            outcome: "dead",
            status: None,
            reason: log.error.clone(),
            next_attempt: None,
        }
        .publish(tail, &message);
        let outcome = ArchivedOutcome {
            at: log.at,
            route: message.route.clone(),
            destination: message.destination.clone(),
            event_id: message.event_id.clone(),
            partitionkey: message.partitionkey.clone(),
            outcome: "dead".into(),
            attempt: attempts + 1,
            status: None,
            detail: log.error.clone(),
        };
        consumer
            .settle(lease, Settlement::Dead { log }, Some(outcome))
            .await;
        return;
    };
    let permit = match dest.lane.admit() {
        Admission::Go(permit) => permit,
        Admission::Defer(after, reason) => {
            metrics::counter!(m::DEFERRED, "destination" => key.clone(), "reason" => reason.label())
                .increment(1);
            tracing::debug!(?after, reason = reason.label(), "deferred by the lane");
            consumer
                .settle(lease, Settlement::Defer { after }, None)
                .await;
            return;
        }
    };
    let started = Instant::now();
    let result = dest.outbound.send(&message).await;
    metrics::histogram!(m::ATTEMPT_SECONDS, "destination" => key.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(m::DELIVERIES, "destination" => key.clone(), "outcome" => result.label)
        .increment(1);
    dest.lane.record(permit, &result.outcome);
    let log = AttemptLog {
        at: now_ms(),
        status: result.status,
        error: result.error.clone(),
        excerpt: result.excerpt.clone(),
    };
    let skipped = match &result.outcome {
        AttemptOutcome::Skipped { reason } => Some(*reason),
        _ => None,
    };
    let settlement = match result.outcome {
        AttemptOutcome::Delivered | AttemptOutcome::Skipped { .. } => Settlement::Ack,
        AttemptOutcome::Retry { after } => match policy.next_wait(attempts + 1, after) {
            Some(wait) => Settlement::Retry { after: wait, log },
            None => Settlement::Dead { log },
        },
        AttemptOutcome::Dead { reason } => Settlement::Dead {
            log: AttemptLog {
                error: log.error.or(Some(reason)),
                ..log
            },
        },
        AttemptOutcome::Defer { until } => {
            let waited = Duration::from_millis(now_ms().saturating_sub(created_at).max(0) as u64);
            if waited > dest.undeliverable_after {
                Settlement::Dead {
                    log: AttemptLog {
                        error: Some(format!(
                            "undeliverable for {} (the destination's undeliverable_after): {}",
                            humantime::format_duration(Duration::from_secs(waited.as_secs())),
                            log.error.as_deref().unwrap_or("no receiver")
                        )),
                        ..log
                    },
                }
            } else {
                Settlement::Defer { after: until }
            }
        }
    };
    match &settlement {
        Settlement::Ack => {
            tracing::debug!(status = result.status, "delivered")
        }
        Settlement::Retry { after, log } => tracing::info!(
            status = log.status,
            error = log.error.as_deref(),
            retry_in_ms = after.as_millis() as u64,
            "delivery failed, will retry"
        ),
        Settlement::Dead { log } => {
            metrics::counter!(m::DEAD_LETTERS, "destination" => key.clone()).increment(1);
            tracing::warn!(
                status = log.status,
                error = log.error.as_deref(),
                "delivery failed for good: dead letter"
            )
        }
        Settlement::Defer { .. } => {}
    }
    let (outcome, next_attempt) = match &settlement {
        Settlement::Ack if skipped.is_some() => ("skipped", None),
        Settlement::Ack => ("delivered", None),
        Settlement::Retry { after, .. } => ("retrying", Some(rfc3339_in(*after))),
        Settlement::Dead { .. } => ("dead", None),
        Settlement::Defer { .. } => ("", None),
    };
    if !outcome.is_empty() {
        let reason = match &settlement {
            Settlement::Retry { log, .. } | Settlement::Dead { log } => log.error.clone(),
            _ => skipped.map(str::to_string),
        };
        TailedAttempt {
            delivery_id: lease.id(),
            attempt: attempts + 1,
            outcome,
            status: result.status,
            reason,
            next_attempt,
        }
        .publish(tail, &message);
    }
    let archived = (!outcome.is_empty()).then(|| ArchivedOutcome {
        at: now_ms(),
        route: message.route.clone(),
        destination: message.destination.clone(),
        event_id: message.event_id.clone(),
        partitionkey: message.partitionkey.clone(),
        outcome: if outcome == "retrying" {
            "retry"
        } else {
            outcome
        }
        .to_string(),
        attempt: attempts + 1,
        status: result.status,
        detail: match &settlement {
            Settlement::Retry { log, .. } | Settlement::Dead { log } => {
                log.error.clone().or(log.excerpt.clone())
            }
            _ => result.excerpt.clone(),
        },
    });
    consumer.settle(lease, settlement, archived).await;
}

/// Where an attempt is recorded: the store's consumer and, when the store keeps one, the
/// archive's writer (the attempt's outcome).
#[derive(Clone, Copy)]
pub struct Settled<'a> {
    /// Settles the lease.
    pub consumer: &'a dyn Consumer,
    /// Archives the outcome.
    pub archiver: Option<&'a Archiver>,
}

impl Settled<'_> {
    /// Settles the lease, then hands the outcome to the archiver (written in its next batch).
    async fn settle(
        self,
        lease: super::Lease,
        settlement: Settlement,
        outcome: Option<ArchivedOutcome>,
    ) {
        let id = lease.id();
        settle(self.consumer, id, lease, settlement).await;
        if let (Some(archiver), Some(outcome)) = (self.archiver, outcome) {
            archiver.record(Record::Outcome(outcome)).await;
        }
    }
}

/// An attempt's outcome, as the tail shows it.
struct TailedAttempt {
    delivery_id: i64,
    attempt: u32,
    outcome: &'static str,
    status: Option<u16>,
    reason: Option<String>,
    next_attempt: Option<String>,
}

impl TailedAttempt {
    /// Publishes it as the delivery record of `message`.
    fn publish(self, tail: &Tail, message: &super::Message) {
        tail.publish(Entry::Delivery {
            route: message.route.clone(),
            destination: message.destination.clone(),
            delivery_id: self.delivery_id,
            event_id: message.event_id.clone(),
            event_type: message.event_type.clone(),
            partitionkey: message.partitionkey.clone(),
            outcome: self.outcome,
            attempt: self.attempt,
            status: self.status,
            reason: self.reason,
            next_attempt: self.next_attempt,
        });
    }
}

/// Records an attempt's settlement. A store that could not write it and said so before
/// writing anything (disk full, writer busy) is asked again, backing off from 100 ms to 5 s,
/// for up to half the lease: the message and the rest of its call go on as soon as the store
/// writes again, instead of waiting for the lease to expire. Any other error leaves the
/// lease to expire (at-least-once).
async fn settle(consumer: &dyn Consumer, id: i64, lease: super::Lease, settlement: Settlement) {
    let give_up = tokio::time::Instant::now() + SETTLE_FOR;
    let mut wait = Duration::from_millis(100);
    let mut told = false;
    loop {
        // The same handle again: the refused settlement changed nothing.
        let again = super::Lease { id: lease.id };
        match consumer.settle(again, settlement.clone()).await {
            Ok(()) => {
                if told {
                    tracing::info!(id, "the attempt is recorded after all");
                }
                return;
            }
            Err(e)
                if !matches!(e, QueueError::NoSpace(_) | QueueError::Busy)
                    || tokio::time::Instant::now() + wait > give_up =>
            {
                tracing::error!(id, error = %e, "cannot record the attempt; the lease will expire");
                return;
            }
            Err(e) => {
                if !told {
                    tracing::warn!(id, error = %e, "cannot record the attempt yet; asking the store again");
                    told = true;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How long a settlement is retried: half the store's lease.
const SETTLE_FOR: Duration = Duration::from_secs(150);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_then_dead_with_jitter_and_retry_after() {
        let p = RetryPolicy {
            schedule: vec![
                Duration::ZERO,
                Duration::from_secs(10),
                Duration::from_secs(60),
            ],
        };
        assert_eq!(p.next_wait(0, None), Some(Duration::ZERO));
        let w = p.next_wait(1, None).unwrap();
        assert!(
            w >= Duration::from_secs(10) && w < Duration::from_secs(11),
            "{w:?}"
        );
        assert_eq!(
            p.next_wait(1, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
        assert!(p.next_wait(3, None).is_none(), "exhausted");
    }
}
