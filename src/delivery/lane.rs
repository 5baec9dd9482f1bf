//! Lanes protect receivers (README "Running the gateway"): per destination a rate limit (`governor`), a cap
//! on attempts in flight, and a circuit breaker (closed → open after N consecutive failures
//! → half-open: one probe → closed on success, open again on failure).
//!
//! A lane never makes a message wait inside a worker: when it says no, the message is
//! deferred in the queue (head of its line, retry budget untouched) and the worker moves on,
//! so a slow or failing destination does not hold up another. Lanes live outside the
//! snapshot, keyed by `route/destination`, so a reload keeps their state when their settings
//! do not change. Time comes through `tokio::time`, so tests run on paused time.

use crate::config::valid::ValidDestination;
use crate::model::outbound::AttemptOutcome;
use crate::telemetry::metrics as m;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a message waits when the lane is at `max_in_flight` or a probe is out.
const BUSY_WAIT: Duration = Duration::from_millis(100);

/// governor's clock on top of `tokio::time`, so paused-time tests control rate limits too.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// A lane's settings, from its destination's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneSettings {
    /// Requests per second and burst, when rate-limited.
    pub rate: Option<(NonZeroU32, NonZeroU32)>,
    /// Attempts in flight at most.
    pub max_in_flight: usize,
    /// Consecutive failures that open the breaker, and how long it stays open.
    pub breaker: Option<(u32, Duration)>,
}

impl LaneSettings {
    /// The settings `rate_limit`, `max_in_flight` and `circuit_breaker` configure.
    pub fn of(dest: &ValidDestination) -> LaneSettings {
        LaneSettings {
            rate: dest.rate_limit.as_ref().and_then(|r| {
                let per_second = NonZeroU32::new(r.per_second)?;
                let burst = r.burst.and_then(NonZeroU32::new).unwrap_or(per_second);
                Some((per_second, burst))
            }),
            max_in_flight: dest.max_in_flight.max(1),
            breaker: dest
                .circuit_breaker
                .as_ref()
                .map(|b| (b.failures.max(1), b.open_for)),
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Attempts flow; `failures` consecutive ones failed so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// No attempts until `until`.
    Open {
        /// When a probe may go.
        until: Instant,
    },
    /// One probe is allowed; `probing` while it is out.
    HalfOpen {
        /// Whether the probe is in flight.
        probing: bool,
    },
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    fn gauge(&self) -> f64 {
        match self {
            BreakerState::Closed { .. } => 0.0,
            BreakerState::Open { .. } => 1.0,
            BreakerState::HalfOpen { .. } => 2.0,
        }
    }
}

/// Why a lane deferred a message (the `reason` label of the deferral metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferReason {
    /// The breaker is open, or its probe is out.
    BreakerOpen,
    /// `max_in_flight` attempts are out.
    InFlight,
    /// The rate limit is exhausted.
    RateLimited,
}

impl DeferReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            DeferReason::BreakerOpen => "breaker_open",
            DeferReason::InFlight => "max_in_flight",
            DeferReason::RateLimited => "rate_limited",
        }
    }
}

/// A lane's answer to "may this message go now?".
#[derive(Debug)]
pub enum Admission {
    /// Go; report the outcome with [`Lane::record`].
    Go(Permit),
    /// Not now: defer the message this long.
    Defer(Duration, DeferReason),
}

/// Permission for one attempt; holds one of the lane's in-flight places until dropped.
#[derive(Debug)]
pub struct Permit {
    in_flight: Arc<AtomicUsize>,
    probe: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One destination's lane.
pub struct Lane {
    key: String,
    settings: LaneSettings,
    limiter: Option<Limiter>,
    in_flight: Arc<AtomicUsize>,
    breaker: Mutex<BreakerState>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("key", &self.key)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Lane {
    /// A lane for the destination `key` (`route/destination`).
    pub fn new(key: &str, settings: LaneSettings) -> Lane {
        Lane {
            key: key.to_string(),
            settings,
            limiter: settings.rate.map(|(per_second, burst)| {
                RateLimiter::direct_with_clock(
                    Quota::per_second(per_second).allow_burst(burst),
                    TokioClock {
                        origin: Instant::now(),
                    },
                )
            }),
            in_flight: Arc::default(),
            breaker: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// The breaker's current state.
    pub fn breaker(&self) -> BreakerState {
        *self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attempts in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Decides whether one attempt may go now: breaker first, then the in-flight cap, then
    /// the rate (so a refused attempt never spends a rate token).
    pub fn admit(&self) -> Admission {
        let mut probe = false;
        if self.settings.breaker.is_some() {
            let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
            match *breaker {
                BreakerState::Closed { .. } => {}
                BreakerState::Open { until } => {
                    let now = Instant::now();
                    if now < until {
                        return Admission::Defer(until - now, DeferReason::BreakerOpen);
                    }
                    self.set_breaker(&mut breaker, BreakerState::HalfOpen { probing: true });
                    probe = true;
                }
                BreakerState::HalfOpen { probing: true } => {
                    return Admission::Defer(BUSY_WAIT, DeferReason::BreakerOpen);
                }
                BreakerState::HalfOpen { probing: false } => {
                    self.set_breaker(&mut breaker, BreakerState::HalfOpen { probing: true });
                    probe = true;
                }
            }
        }
        let previous = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit {
            in_flight: self.in_flight.clone(),
            probe,
        };
        if previous >= self.settings.max_in_flight {
            self.release_probe(&permit);
            return Admission::Defer(BUSY_WAIT, DeferReason::InFlight);
        }
        if let Some(limiter) = &self.limiter
            && let Err(not_until) = limiter.check()
        {
            self.release_probe(&permit);
            let wait = not_until.wait_time_from(limiter_now(limiter));
            return Admission::Defer(wait.max(Duration::from_millis(1)), DeferReason::RateLimited);
        }
        Admission::Go(permit)
    }

    /// Records an attempt's outcome: a delivery closes the breaker, a retryable failure
    /// counts towards opening it (a dead letter is the receiver's clear answer, not an
    /// outage), a failed probe opens it again.
    pub fn record(&self, permit: Permit, outcome: &AttemptOutcome) {
        let Some((threshold, open_for)) = self.settings.breaker else {
            return;
        };
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        let next = match (outcome, *breaker) {
            (
                AttemptOutcome::Delivered
                | AttemptOutcome::Skipped { .. }
                | AttemptOutcome::Dead { .. },
                _,
            ) => BreakerState::Closed { failures: 0 },
            (AttemptOutcome::Retry { .. }, BreakerState::Closed { failures }) => {
                if failures + 1 >= threshold {
                    BreakerState::Open {
                        until: Instant::now() + open_for,
                    }
                } else {
                    BreakerState::Closed {
                        failures: failures + 1,
                    }
                }
            }
            (AttemptOutcome::Retry { .. }, _) if permit.probe => BreakerState::Open {
                until: Instant::now() + open_for,
            },
            (_, state) if permit.probe => match state {
                BreakerState::HalfOpen { .. } => BreakerState::HalfOpen { probing: false },
                other => other,
            },
            (_, state) => state,
        };
        if next != *breaker {
            self.set_breaker(&mut breaker, next);
        }
    }

    fn release_probe(&self, permit: &Permit) {
        if permit.probe {
            let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
            self.set_breaker(&mut breaker, BreakerState::HalfOpen { probing: false });
        }
    }

    fn set_breaker(&self, current: &mut BreakerState, next: BreakerState) {
        let opened = matches!(next, BreakerState::Open { .. })
            && !matches!(current, BreakerState::Open { .. });
        *current = next;
        metrics::gauge!(m::BREAKER_STATE, "destination" => self.key.clone()).set(next.gauge());
        if opened {
            metrics::counter!(m::BREAKER_OPENED, "destination" => self.key.clone()).increment(1);
            tracing::warn!(destination = %self.key, "circuit breaker open: deliveries paused");
        } else if next == (BreakerState::Closed { failures: 0 }) {
            tracing::info!(destination = %self.key, "circuit breaker closed: deliveries resume");
        }
    }
}

fn limiter_now(limiter: &Limiter) -> Duration {
    limiter.clock().now()
}

/// Every destination's lane, by `route/destination`; outlives reloads.
#[derive(Default)]
pub struct Lanes(Mutex<HashMap<String, Arc<Lane>>>);

impl Lanes {
    /// The lane of `key` with `settings`: the existing one when its settings are the same
    /// (state kept across a reload), a fresh one otherwise.
    pub fn get_or_create(&self, key: &str, settings: LaneSettings) -> Arc<Lane> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some(lane) if lane.settings == settings => lane.clone(),
            _ => {
                let lane = Arc::new(Lane::new(key, settings));
                map.insert(key.to_string(), lane.clone());
                lane
            }
        }
    }

    /// How many lanes there are (tests: a refused build registers none).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: Option<u32>, in_flight: usize, breaker: Option<u32>) -> LaneSettings {
        LaneSettings {
            rate: rate.map(|r| (NonZeroU32::new(r).unwrap(), NonZeroU32::new(1).unwrap())),
            max_in_flight: in_flight,
            breaker: breaker.map(|n| (n, Duration::from_secs(30))),
        }
    }

    fn go(a: Admission) -> Permit {
        match a {
            Admission::Go(p) => p,
            other => panic!("expected Go, got {other:?}"),
        }
    }

    fn deferred(a: Admission) -> (Duration, DeferReason) {
        match a {
            Admission::Defer(d, r) => (d, r),
            Admission::Go(_) => panic!("expected Defer"),
        }
    }

    const FAIL: AttemptOutcome = AttemptOutcome::Retry { after: None };

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_probes_once_and_closes_on_success() {
        let lane = Lane::new("r/d", settings(None, 10, Some(3)));
        for _ in 0..3 {
            let p = go(lane.admit());
            lane.record(p, &FAIL);
        }
        assert!(matches!(lane.breaker(), BreakerState::Open { .. }));
        let (wait, why) = deferred(lane.admit());
        assert_eq!(
            (wait, why),
            (Duration::from_secs(30), DeferReason::BreakerOpen)
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        let probe = go(lane.admit());
        assert_eq!(lane.breaker(), BreakerState::HalfOpen { probing: true });
        assert_eq!(
            deferred(lane.admit()).1,
            DeferReason::BreakerOpen,
            "one probe only"
        );
        lane.record(probe, &FAIL);
        assert!(
            matches!(lane.breaker(), BreakerState::Open { .. }),
            "failed probe"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        let probe = go(lane.admit());
        lane.record(probe, &AttemptOutcome::Delivered);
        assert_eq!(lane.breaker(), BreakerState::Closed { failures: 0 });
        let p = go(lane.admit());
        lane.record(p, &AttemptOutcome::Delivered);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_cap_and_rate_defer_without_spending_tokens() {
        let lane = Lane::new("r/d", settings(Some(2), 1, None));
        let first = go(lane.admit());
        assert_eq!(deferred(lane.admit()).1, DeferReason::InFlight);
        drop(first);
        assert_eq!(lane.in_flight(), 0);
        // Burst 1 at 2/s: the next token comes 500 ms after the first.
        let (wait, why) = deferred(lane.admit());
        assert_eq!(why, DeferReason::RateLimited);
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::ZERO,
            "{wait:?}"
        );
        tokio::time::advance(wait).await;
        drop(go(lane.admit()));
        assert_eq!(lane.in_flight(), 0);
    }

    #[test]
    fn lanes_keep_state_unless_settings_change() {
        let lanes = Lanes::default();
        let a = lanes.get_or_create("r/d", settings(None, 4, None));
        let b = lanes.get_or_create("r/d", settings(None, 4, None));
        assert!(Arc::ptr_eq(&a, &b));
        let c = lanes.get_or_create("r/d", settings(None, 5, None));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
