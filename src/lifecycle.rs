//! Per-leg call state across events: drops duplicate event ids (per leg: one vendor
//! notification may carry several parties under one id) and stale sequences, and
//! derives `call.resumed` when a leg goes from held back to connected.
//!
//! State lives in two bounded moka caches with idle expiry, so a gateway that sees millions
//! of calls keeps only the recent ones. Keys are 128-bit hashes of the leg and event ids
//! (a String key per entry roughly doubled the memory); the durable store keeps its own,
//! longer dedupe window. Decisions reserve atomically per leg (`and_compute_with`), so
//! concurrent requests for one call cannot both pass the sequence check; a reservation is
//! released if its event is not taken after all.

use crate::model::event::{CallEvent, CallState};
use moka::ops::compute::Op;
use moka::sync::Cache;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where committed leg states go when the gateway shares them (set once).
type Outbox = Arc<OnceLock<mpsc::UnboundedSender<LegUpdate>>>;

/// What the tracker decided about an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Apply the event (its type may have been rewritten to `call.resumed`).
    Apply(Box<CallEvent>),
    /// The same vendor event id was seen within the window.
    Duplicate {
        /// The dropped event.
        event: Box<CallEvent>,
    },
    /// The vendor sequence is at or below the last applied one for this leg.
    Stale {
        /// The leg key.
        leg: String,
        /// The last applied sequence.
        last: u64,
        /// The sequence of the dropped event.
        got: u64,
        /// The dropped event.
        event: Box<CallEvent>,
    },
}

impl Verdict {
    /// The event judged.
    pub fn event(&self) -> &CallEvent {
        match self {
            Verdict::Apply(event) | Verdict::Duplicate { event } | Verdict::Stale { event, .. } => {
                event
            }
        }
    }

    /// `apply`, `duplicate` or `stale`: the metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Apply(_) => "apply",
            Verdict::Duplicate { .. } => "duplicate",
            Verdict::Stale { .. } => "stale",
        }
    }

    /// Why, in words, for logs, the tail and the playground.
    pub fn reason(&self) -> String {
        match self {
            Verdict::Apply(_) => "applied".into(),
            Verdict::Duplicate { event } => {
                format!(
                    "duplicate: event {} was already seen within the window",
                    event.id
                )
            }
            Verdict::Stale { leg, last, got, .. } => {
                format!("stale: leg {leg} sequence {got} is at or below the last applied {last}")
            }
        }
    }
}

/// What the tracker keeps of a leg: the last applied vendor sequence and call state.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LegState {
    /// The highest sequence applied (vendors with a per-leg sequence).
    #[serde(rename = "seq")]
    pub last_sequence: Option<u64>,
    /// The call state after the last applied event.
    #[serde(rename = "state")]
    pub last_state: Option<CallState>,
}

impl LegState {
    /// Whether this state may replace `current`: a higher sequence, or, for vendors
    /// without sequences, the later write.
    fn supersedes(&self, current: &LegState) -> bool {
        match (self.last_sequence, current.last_sequence) {
            (Some(new), Some(old)) => new > old,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => true,
        }
    }
}

/// A leg's state after an event was committed, as shared with the other instances of a
/// scaled-out gateway (`Lifecycles::share`).
#[derive(Debug, Clone, PartialEq)]
pub struct LegUpdate {
    /// The route whose tracker it belongs to.
    pub route: Arc<str>,
    /// The leg's 128-bit key hash.
    pub leg: u128,
    /// Its state.
    pub state: LegState,
}

/// Sizing of the tracker.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleLimits {
    /// Legs remembered at most.
    pub max_legs: u64,
    /// Event ids remembered at most.
    pub max_ids: u64,
    /// How long an idle leg or a seen id is remembered.
    pub idle: Duration,
}

impl Default for LifecycleLimits {
    fn default() -> Self {
        LifecycleLimits {
            max_legs: 20_000,
            max_ids: 20_000,
            idle: Duration::from_secs(2 * 3600),
        }
    }
}

/// A 128-bit hash of a key: two independent SipHash-1-3 runs (std's `DefaultHasher` with
/// fixed keys, so stable within a process).
fn key128(parts: &[&str]) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        parts.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// The per-leg state tracker.
#[derive(Clone)]
pub struct Lifecycle {
    seen: Cache<u128, ()>,
    legs: Cache<u128, LegState>,
    route: Arc<str>,
    outbox: Outbox,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("legs", &self.legs.entry_count())
            .field("ids", &self.seen.entry_count())
            .finish()
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new(LifecycleLimits::default())
    }
}

impl Lifecycle {
    /// A tracker with the given limits.
    pub fn new(limits: LifecycleLimits) -> Lifecycle {
        Lifecycle {
            seen: Cache::builder()
                .max_capacity(limits.max_ids)
                .time_to_idle(limits.idle)
                .build(),
            legs: Cache::builder()
                .max_capacity(limits.max_legs)
                .time_to_idle(limits.idle)
                .build(),
            route: Arc::from(""),
            outbox: Outbox::default(),
        }
    }

    /// What the tracker holds now, after its caches' pending evictions ran: (legs, event
    /// ids). Each is at most its [`LifecycleLimits`] bound.
    pub fn held(&self) -> (u64, u64) {
        self.legs.run_pending_tasks();
        self.seen.run_pending_tasks();
        (self.legs.entry_count(), self.seen.entry_count())
    }

    /// Takes a leg state learnt from another instance, unless this tracker already has a
    /// newer one.
    pub fn merge(&self, leg: u128, state: LegState) {
        self.legs
            .entry(leg)
            .and_compute_with(|current| match current {
                Some(current) if !state.supersedes(current.value()) => Op::Nop,
                _ => Op::Put(state),
            });
    }

    /// The state kept for a leg key ([`Lifecycle::leg_key`]), if any.
    pub fn leg_state(&self, leg_key: &str) -> Option<LegState> {
        self.legs.get(&key128(&[leg_key]))
    }

    /// The leg an event belongs to: vendor, call id and leg id for call events; vendor and
    /// ordering key (the user for presence) otherwise.
    pub fn leg_key(event: &CallEvent) -> String {
        match &event.data.call {
            Some(call) if call.id.is_some() => format!(
                "{}|{}|{}",
                event.data.vendor,
                call.id.as_deref().unwrap_or_default(),
                call.leg_id.as_deref().unwrap_or_default()
            ),
            _ => format!(
                "{}|{}|{}",
                event.data.vendor,
                event.event_type,
                event.effective_partitionkey()
            ),
        }
    }

    /// Decides about one event and records it at once (`translate`, tests).
    pub fn observe(&self, event: CallEvent) -> Verdict {
        let (verdict, reservation) = self.reserve(event, true);
        if let Some(r) = reservation {
            r.commit();
        }
        verdict
    }

    /// Decides about one event and, if it applies, reserves its place atomically per leg:
    /// its id counts as seen and its sequence and state as the leg's last, so a concurrent
    /// event of the same leg is judged against it. The returned reservation is released
    /// (the leg restored) when dropped uncommitted — the enqueue or forward failed, and the
    /// vendor's retry must be welcome. The event may have become `call.resumed`.
    /// `drops_stale`: the vendor's sequence rises per leg (`sequence: monotonic_per_leg`),
    /// so an event at or below the last applied one is dropped; otherwise it only orders.
    pub fn reserve(
        &self,
        mut event: CallEvent,
        drops_stale: bool,
    ) -> (Verdict, Option<Reservation>) {
        let leg = Lifecycle::leg_key(&event);
        let leg_hash = key128(&[&leg]);
        let id_hash = key128(&[&leg, &event.id]);
        let sequence = sequence_of(&event);
        enum Judged {
            Duplicate,
            Stale(u64, u64),
            Applied(Option<LegState>, LegState),
        }
        let mut judged = Judged::Duplicate;
        self.legs.entry(leg_hash).and_compute_with(|current| {
            let previous = current.map(|e| *e.value());
            if self.seen.contains_key(&id_hash) {
                return Op::Nop;
            }
            let last = previous.and_then(|p| p.last_sequence);
            if let (true, Some(last), Some(got)) = (drops_stale, last, sequence)
                && got <= last
            {
                judged = Judged::Stale(last, got);
                return Op::Nop;
            }
            if event.event_type == "call.connected"
                && previous.and_then(|p| p.last_state) == Some(CallState::Held)
            {
                event.event_type = "call.resumed".into();
            }
            let placed = LegState {
                last_sequence: sequence.max(last),
                last_state: CallState::for_type(&event.event_type)
                    .or(previous.and_then(|p| p.last_state)),
            };
            self.seen.insert(id_hash, ());
            judged = Judged::Applied(previous, placed);
            Op::Put(placed)
        });
        match judged {
            Judged::Duplicate => (
                Verdict::Duplicate {
                    event: Box::new(event),
                },
                None,
            ),
            Judged::Stale(last, got) => (
                Verdict::Stale {
                    leg,
                    last,
                    got,
                    event: Box::new(event),
                },
                None,
            ),
            Judged::Applied(previous, placed) => (
                Verdict::Apply(Box::new(event)),
                Some(Reservation {
                    lifecycle: self.clone(),
                    leg_key: leg,
                    leg: leg_hash,
                    id: id_hash,
                    previous,
                    placed,
                    committed: AtomicBool::new(false),
                }),
            ),
        }
    }
}

/// An applied event's place in its leg's state: kept by [`Reservation::commit`], given back
/// when dropped uncommitted.
pub struct Reservation {
    lifecycle: Lifecycle,
    leg_key: String,
    leg: u128,
    id: u128,
    previous: Option<LegState>,
    placed: LegState,
    committed: AtomicBool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("placed", &self.placed)
            .field("committed", &self.committed)
            .finish()
    }
}

impl Reservation {
    /// The event's leg key ([`Lifecycle::leg_key`]), computed once by the judgement.
    pub fn leg_key(&self) -> &str {
        &self.leg_key
    }

    /// Keeps the reservation: the event was durably stored or delivered. When the gateway
    /// shares leg states, the leg's new state is sent to the other instances.
    pub fn commit(&self) {
        if self.committed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(outbox) = self.lifecycle.outbox.get() {
            let _ = outbox.send(LegUpdate {
                route: self.lifecycle.route.clone(),
                leg: self.leg,
                state: self.placed,
            });
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.committed.load(Ordering::Acquire) {
            return;
        }
        let (previous, placed) = (self.previous, self.placed);
        // Only if nothing newer was placed on the leg meanwhile.
        self.lifecycle
            .legs
            .entry(self.leg)
            .and_compute_with(|current| match current {
                Some(entry) if *entry.value() == placed => match previous {
                    Some(p) => Op::Put(p),
                    None => Op::Remove,
                },
                _ => Op::Nop,
            });
        self.lifecycle.seen.invalidate(&self.id);
    }
}

/// Every route's tracker, by route name; outlives reloads, so rebuilding a route keeps what
/// its calls have seen.
#[derive(Default)]
pub struct Lifecycles {
    by_route: std::sync::Mutex<std::collections::HashMap<String, Lifecycle>>,
    outbox: Outbox,
}

impl Lifecycles {
    /// The tracker of route `name` (created on first use; a handle on shared state).
    pub fn get_or_create(&self, name: &str) -> Lifecycle {
        self.by_route
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Lifecycle {
                route: Arc::from(name),
                outbox: self.outbox.clone(),
                ..Lifecycle::default()
            })
            .clone()
    }

    /// From now on every committed leg state is also sent to the returned receiver (for
    /// the other instances of a scaled-out gateway). `None` if already shared.
    pub fn share(&self) -> Option<mpsc::UnboundedReceiver<LegUpdate>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.outbox.set(tx).ok().map(|()| rx)
    }

    /// Applies a leg state learnt from another instance.
    pub fn merge(&self, update: LegUpdate) {
        self.get_or_create(&update.route)
            .merge(update.leg, update.state);
    }
}

fn sequence_of(event: &CallEvent) -> Option<u64> {
    event
        .sequence
        .as_deref()
        .and_then(|s| s.trim().parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, ty: &str, seq: u64) -> CallEvent {
        serde_json::from_value(json!({
            "specversion": "1.0", "id": id, "source": "/v", "type": ty, "sequence": seq.to_string(),
            "data": { "vendor": "v", "call": { "id": "c1", "leg_id": "l1" } }
        }))
        .unwrap()
    }

    fn applied_type(v: Verdict) -> String {
        match v {
            Verdict::Apply(e) => e.event_type.clone(),
            other => panic!("expected Apply, got {other:?}"),
        }
    }

    #[test]
    fn connected_after_held_is_resumed() {
        let lc = Lifecycle::default();
        assert_eq!(
            applied_type(lc.observe(event("1", "call.connected", 1))),
            "call.connected"
        );
        assert_eq!(
            applied_type(lc.observe(event("2", "call.held", 2))),
            "call.held"
        );
        assert_eq!(
            applied_type(lc.observe(event("3", "call.connected", 3))),
            "call.resumed"
        );
        assert_eq!(
            applied_type(lc.observe(event("4", "call.connected", 4))),
            "call.connected"
        );
    }

    #[test]
    fn duplicates_and_stale_sequences_are_dropped() {
        let lc = Lifecycle::default();
        assert_eq!(
            applied_type(lc.observe(event("1", "call.alerting", 5))),
            "call.alerting"
        );
        let again = lc.observe(event("1", "call.alerting", 5));
        assert!(
            matches!(&again, Verdict::Duplicate { event } if event.id == "1"),
            "{again:?}"
        );
        assert!(matches!(
            lc.observe(event("2", "call.initiated", 4)),
            Verdict::Stale {
                last: 5,
                got: 4,
                ..
            }
        ));
        assert!(matches!(
            lc.observe(event("3", "call.initiated", 5)),
            Verdict::Stale {
                last: 5,
                got: 5,
                ..
            }
        ));
        assert_eq!(
            applied_type(lc.observe(event("4", "call.ended", 6))),
            "call.ended"
        );
    }

    #[test]
    fn a_reservation_is_atomic_and_given_back_unless_committed() {
        let lc = Lifecycle::default();
        let (first, held) = lc.reserve(event("1", "call.alerting", 5), true);
        assert!(matches!(first, Verdict::Apply(_)));
        // A concurrent event is judged against the reservation already.
        assert!(matches!(
            lc.reserve(event("2", "call.initiated", 4), true).0,
            Verdict::Stale {
                last: 5,
                got: 4,
                ..
            }
        ));
        assert!(matches!(
            lc.reserve(event("1", "call.alerting", 5), true).0,
            Verdict::Duplicate { .. }
        ));
        drop(held); // the enqueue failed
        let (again, kept) = lc.reserve(event("1", "call.alerting", 5), true);
        assert!(
            matches!(again, Verdict::Apply(_)),
            "the vendor's retry is welcome"
        );
        kept.unwrap().commit();
        assert!(matches!(
            lc.reserve(event("1", "call.alerting", 5), true).0,
            Verdict::Duplicate { .. }
        ));
    }

    #[test]
    fn legs_are_independent() {
        let lc = Lifecycle::default();
        let mut other = event("9", "call.alerting", 1);
        other.data.call.as_mut().unwrap().leg_id = Some("l2".into());
        assert_eq!(
            applied_type(lc.observe(event("1", "call.alerting", 5))),
            "call.alerting"
        );
        assert_eq!(applied_type(lc.observe(other)), "call.alerting");
    }

    #[test]
    fn events_without_sequence_are_never_stale() {
        let lc = Lifecycle::default();
        let mut a = event("1", "call.held", 0);
        a.sequence = None;
        let mut b = event("2", "call.connected", 0);
        b.sequence = None;
        assert_eq!(applied_type(lc.observe(a)), "call.held");
        assert_eq!(applied_type(lc.observe(b)), "call.resumed");
    }
}
