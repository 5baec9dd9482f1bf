//! Delivery workers: lease due messages, send each over HTTP, classify the result, and record
//! delivered / retry-at / dead. Waits come through `tokio::time`.

use super::classify::{AttemptResult, Decision, classify};
use super::{AttemptLog, Completion, Queue, Task, ms, now_ms};
use crate::adapters::http_out::OutboundClient;
use crate::telemetry::metrics as m;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, watch};

/// How often the dispatcher looks for due messages when nothing wakes it.
const POLL: Duration = Duration::from_millis(100);
/// How much of a receiver's reply body a dead letter keeps.
const EXCERPT: usize = 512;

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

/// Runs the delivery loop until `stop` turns true, then waits for attempts in flight.
pub async fn run(
    queue: Arc<dyn Queue>,
    client: Arc<OutboundClient>,
    policy: RetryPolicy,
    workers: usize,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(workers));
    loop {
        if *stop.borrow() {
            break;
        }
        let free = slots.available_permits();
        if free > 0 {
            match queue.lease(free).await {
                Ok(tasks) => {
                    for task in tasks {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            break;
                        };
                        let (queue, client, policy, wake) =
                            (queue.clone(), client.clone(), policy.clone(), wake.clone());
                        tokio::spawn(async move {
                            attempt(queue.as_ref(), &client, &policy, task).await;
                            drop(permit);
                            // The call's next message may be due now.
                            wake.notify_one();
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot lease messages"),
            }
        }
        metrics::gauge!(m::QUEUE_DEPTH).set(queue.total_depth() as f64);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
    // Let attempts in flight finish; their leases are recovered at the next start otherwise.
    let _ = slots.acquire_many(workers as u32).await;
}

async fn attempt(queue: &dyn Queue, client: &OutboundClient, policy: &RetryPolicy, task: Task) {
    let started = Instant::now();
    let destination = format!("{}/{}", task.task.route, task.task.destination);
    let sent = client.send(&task.task).await;
    metrics::histogram!(m::ATTEMPT_SECONDS, "destination" => destination.clone())
        .record(started.elapsed().as_secs_f64());
    let (result, status, body, error) = match &sent {
        Ok(reply) => (
            AttemptResult::Status(reply.status, &reply.headers),
            Some(reply.status.as_u16()),
            Some(reply.body.clone()),
            None,
        ),
        Err(e) => (e.as_attempt_result(), None, None, Some(e.to_string())),
    };
    let (decision, label) = classify(&result);
    metrics::counter!(m::DELIVERIES, "destination" => destination.clone(), "outcome" => label)
        .increment(1);
    let log = AttemptLog {
        at: now_ms(),
        status,
        error,
        excerpt: body.map(|b| excerpt(&b)),
    };
    let completion = match decision {
        Decision::Delivered => Completion::Delivered,
        Decision::Retry { after } => match policy.next_wait(task.attempts + 1, after) {
            Some(wait) => Completion::Retry {
                at: now_ms() + ms(wait),
                log,
            },
            None => Completion::Dead { log },
        },
        Decision::Dead => Completion::Dead { log },
    };
    match &completion {
        Completion::Delivered => {
            tracing::debug!(id = task.id, %destination, event = %task.task.event_id, "delivered")
        }
        Completion::Retry { at, log } => tracing::info!(
            id = task.id, %destination, event = %task.task.event_id, status = ?log.status,
            error = ?log.error, retry_in_ms = at - now_ms(), "delivery failed, will retry"
        ),
        Completion::Dead { log } => {
            metrics::counter!(m::DEAD_LETTERS, "destination" => destination.clone()).increment(1);
            tracing::warn!(
                id = task.id, %destination, event = %task.task.event_id, status = ?log.status,
                error = ?log.error, attempts = task.attempts + 1, "delivery failed for good: dead letter"
            )
        }
    }
    if let Err(e) = queue.complete(task.id, completion).await {
        tracing::error!(id = task.id, error = %e, "cannot record the attempt; the lease will expire");
    }
}

fn excerpt(body: &str) -> String {
    match body.char_indices().nth(EXCERPT) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_string(),
    }
}

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
