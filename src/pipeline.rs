//! The one pipeline (README "How it fits together"): a [`VerifiedInbound`] × the compiled mappings × a route
//! (with its lifecycle tracker) → decode → lifecycle → route → encode → [`Accepted`]. Every
//! transport (the webhook handler, the SignalR and RingCentral WebSocket sources),
//! `callgate translate`, the mapping cases and `/admin/translate` call it; transports only
//! adapt their input and turn the result into their reply. It knows no snapshot and no
//! transport.
//!
//! `accept` does no I/O. What to do with the messages (durable enqueue, or a synchronous
//! forward) is `intake.rs`; once that succeeded the transport calls [`Accepted::commit`], so
//! the lifecycle tracker records only events that were really taken.

use crate::delivery::{EventBatch, HttpRequest, HubPush, Message, NewMessage, Request};
use crate::lifecycle::{Reservation, Verdict};
use crate::mapping::decode::DecodeError;
use crate::mapping::encode::EventContext;
use crate::mapping::{AUTO, DecodeOptions, MappingSet};
use crate::model::event::CallEvent;
use crate::model::inbound::VerifiedInbound;
use crate::route::{Destination, Route};
use crate::telemetry::metrics as m;

/// Why a verified payload was not accepted (answered 422 by HTTP transports).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// `from: auto` matched no vendor, or several.
    #[error(transparent)]
    Detect(DecodeError),
    /// The payload does not decode (no rule matched, wrong shape, invalid canonical event).
    #[error(transparent)]
    Decode(DecodeError),
}

/// Why a destination does not get an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Its `types` filter does not take the event's type.
    TypeFilter,
    /// Its vendor's mapping has no template for the type.
    NoTemplate,
    /// It is the source vendor, and an earlier event of the same notification already
    /// carries the whole notification to it (README "Round-trip fidelity").
    SameNotification,
    /// A directory table of its template has no entry for the event's key (an unmapped user).
    NoDirectoryEntry,
}

impl SkipReason {
    /// The metric label and log text.
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::TypeFilter => "type filter",
            SkipReason::NoTemplate => "no template",
            SkipReason::SameNotification => "same notification",
            SkipReason::NoDirectoryEntry => "no directory entry",
        }
    }
}

/// What became of an event for one destination.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// A message to deliver.
    Message(Message),
    /// Not for this destination.
    Skipped(SkipReason),
    /// The template failed: the message goes to the dead letters with `error`, never lost.
    Failed {
        /// The event as CloudEvents JSON, in place of the body that could not be rendered.
        message: Message,
        /// The mapping error, naming the template and the event.
        error: String,
        /// The template file and line at fault, when known.
        at: Option<crate::mapping::Location>,
    },
}

impl Routing {
    /// The fate in words, as the tail and the archive say it: `sent` (`queued`,
    /// `forwarded`) for a message, `skipped` with its reason, `dead` with the mapping error.
    pub fn status(&self, sent: &'static str) -> (&'static str, Option<String>) {
        match self {
            Routing::Message(_) => (sent, None),
            Routing::Skipped(why) => ("skipped", Some(why.label().to_string())),
            Routing::Failed { error, .. } => ("dead", Some(error.clone())),
        }
    }
}

/// An event the lifecycle tracker let through, with what it became per destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The event (its type may have become `call.resumed`).
    pub event: CallEvent,
    /// Remembered by the store for the dedupe window: route, leg and event id.
    pub dedupe_key: String,
    /// One entry per destination of the route, in config order.
    pub routed: Vec<(String, Routing)>,
}

/// What became of one decoded event.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Applied and routed.
    Applied(Box<Applied>),
    /// Dropped by the lifecycle tracker (duplicate or stale).
    Dropped(Verdict),
}

/// A decoded payload, before the lifecycle tracker has seen it.
#[derive(Debug)]
pub struct Decoded {
    /// The source vendor (detected for `from: auto`).
    pub vendor: String,
    /// Its events, in payload order.
    pub events: Vec<CallEvent>,
}

impl Decoded {
    /// The ordering keys (calls, users) of its events: a transport that runs several
    /// payloads at once takes each key's turn before [`route_events`], so that one call's
    /// events are judged and committed one payload at a time.
    pub fn partitionkeys(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(|e| e.effective_partitionkey())
    }
}

/// The pipeline's result for one inbound payload.
#[derive(Debug)]
pub struct Accepted {
    /// The source vendor (detected for `from: auto`).
    pub vendor: String,
    /// Every decoded event, in payload order.
    pub fates: Vec<Fate>,
    reservations: Vec<Reservation>,
}

impl Accepted {
    /// Events decoded.
    pub fn total(&self) -> usize {
        self.fates.len()
    }

    /// Events the lifecycle tracker dropped.
    pub fn dropped(&self) -> usize {
        self.fates
            .iter()
            .filter(|f| matches!(f, Fate::Dropped(_)))
            .count()
    }

    /// Why each dropped event was dropped: (event id, reason), as the tail says it.
    pub fn drops(&self) -> Vec<(String, String)> {
        self.fates
            .iter()
            .filter_map(|f| match f {
                Fate::Dropped(verdict) => Some((verdict.event().id.clone(), verdict.reason())),
                Fate::Applied(_) => None,
            })
            .collect()
    }

    /// Events applied.
    pub fn applied(&self) -> impl Iterator<Item = &Applied> {
        self.fates.iter().filter_map(|f| match f {
            Fate::Applied(a) => Some(a.as_ref()),
            Fate::Dropped(_) => None,
        })
    }

    /// (event, destination) pairs skipped.
    pub fn skipped(&self) -> usize {
        self.applied()
            .flat_map(|a| &a.routed)
            .filter(|(_, r)| matches!(r, Routing::Skipped(_)))
            .count()
    }

    /// The store batches: one per applied event, with its messages (failed renders marked
    /// to go straight to the dead letters).
    pub fn batches(&self) -> Vec<EventBatch> {
        self.applied()
            .map(|a| EventBatch {
                dedupe_key: a.dedupe_key.clone(),
                messages: a
                    .routed
                    .iter()
                    .filter_map(|(_, r)| match r {
                        Routing::Message(m) => Some(NewMessage {
                            message: m.clone(),
                            failure: None,
                        }),
                        Routing::Failed { message, error, .. } => Some(NewMessage {
                            message: message.clone(),
                            failure: Some(error.clone()),
                        }),
                        Routing::Skipped(_) => None,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Keeps the applied events' places in the route's lifecycle tracker: call once the
    /// messages were durably stored or delivered. Dropped uncommitted, the places are given
    /// back, so a failed write leaves the vendor's retry welcome.
    pub fn commit(&self) {
        for reservation in &self.reservations {
            reservation.commit();
        }
    }
}

/// Runs a verified payload through decode, lifecycle, route and encode for `route`:
/// [`decode`] then [`route_events`]. No I/O.
pub fn accept(
    mappings: &MappingSet,
    route: &Route,
    inbound: &VerifiedInbound,
) -> Result<Accepted, PipelineError> {
    Ok(route_events(
        mappings,
        route,
        decode(mappings, route, inbound)?,
    ))
}

/// Detects the vendor (for `from: auto`) and decodes the payload. Pure.
pub fn decode(
    mappings: &MappingSet,
    route: &Route,
    inbound: &VerifiedInbound,
) -> Result<Decoded, PipelineError> {
    let vendor = if route.from == AUTO {
        mappings
            .detect(inbound.payload(), inbound.is_params())
            .map_err(PipelineError::Detect)?
            .to_string()
    } else {
        route.from.clone()
    };
    let events = mappings
        .decode(
            &vendor,
            inbound.payload(),
            DecodeOptions {
                fidelity: route.fidelity,
                max_events: route.max_events,
            },
        )
        .map_err(PipelineError::Decode)?;
    Ok(Decoded { vendor, events })
}

/// Passes decoded events through the route's lifecycle tracker (reserving each applied
/// event's place), routes them and encodes one message per accepting destination.
pub fn route_events(mappings: &MappingSet, route: &Route, decoded: Decoded) -> Accepted {
    // Every template rendered here sees the route's directories: set once per notification.
    crate::mapping::directory::scope(&route.directories, || {
        route_in_scope(mappings, route, decoded)
    })
}

fn route_in_scope(mappings: &MappingSet, route: &Route, decoded: Decoded) -> Accepted {
    let Decoded { vendor, events } = decoded;
    let several = events.len() > 1;
    // The notification's first event carries it whole to a destination of its own vendor.
    let carrier = events.first().filter(|_| several).cloned();
    let drops_stale = mappings.vendor(&vendor).is_some_and(|v| v.drops_stale);
    let mut fates = Vec::with_capacity(events.len());
    let mut reservations = Vec::new();
    // Destinations of the source vendor that already got this notification.
    let mut carried = vec![false; route.destinations.len()];
    // The notification's first event as template data, for same-vendor destinations.
    let carrier = carrier.as_ref().map(EventContext::new);
    for event in events {
        metrics::counter!(m::EVENTS, "vendor" => vendor.clone(), "type" => m::type_label(&event.event_type, &vendor))
            .increment(1);
        match route.lifecycle.reserve(event, drops_stale) {
            // `reserve` always hands an applied event its reservation.
            (Verdict::Apply(event), Some(reservation)) => {
                let dedupe_key = format!("{}|{}|{}", route.name, reservation.leg_key(), event.id);
                reservations.push(reservation);
                // Serialised for the templates once, whatever the number of destinations.
                let context = EventContext::new(&event);
                let routed = route
                    .destinations
                    .iter()
                    .zip(carried.iter_mut())
                    .map(|(dest, carried)| {
                        let same_vendor = several && dest.vendor == vendor;
                        let routing = match &carrier {
                            Some(_) if same_vendor && *carried => {
                                Routing::Skipped(SkipReason::SameNotification)
                            }
                            Some(first) if same_vendor && dest.accepts(&event.event_type) => {
                                encode(mappings, route, dest, first)
                            }
                            _ => encode(mappings, route, dest, &context),
                        };
                        if same_vendor && !matches!(routing, Routing::Skipped(_)) {
                            *carried = true;
                        }
                        (dest.name.clone(), routing)
                    })
                    .collect();
                drop(context);
                fates.push(Fate::Applied(Box::new(Applied {
                    dedupe_key,
                    event: *event,
                    routed,
                })));
            }
            (verdict, _) => {
                metrics::counter!(m::DROPPED, "route" => route.name.clone(), "reason" => verdict.label())
                    .increment(1);
                tracing::info!(route = %route.name, event_id = %verdict.event().id, partitionkey = %verdict.event().effective_partitionkey(), reason = %verdict.reason(), "event dropped");
                fates.push(Fate::Dropped(verdict));
            }
        }
    }
    Accepted {
        vendor,
        fates,
        reservations,
    }
}

/// Renders one event for one destination of `route` (a replay's: the route's directories
/// in scope, no lifecycle).
pub fn encode_event(
    mappings: &MappingSet,
    route: &Route,
    dest: &Destination,
    event: &CallEvent,
) -> Routing {
    crate::mapping::directory::scope(&route.directories, || {
        encode(mappings, route, dest, &EventContext::new(event))
    })
}

/// Renders one event for one destination.
fn encode(
    mappings: &MappingSet,
    route: &Route,
    dest: &Destination,
    context: &EventContext<'_>,
) -> Routing {
    let event = context.event();
    let skip = |why: SkipReason| {
        metrics::counter!(m::SKIPPED, "route" => route.name.clone(), "destination" => dest.name.clone(), "type" => m::type_label(&event.event_type, &route.from), "reason" => why.label())
            .increment(1);
        tracing::debug!(route = %route.name, destination = %dest.name, event_id = %event.id, partitionkey = %event.effective_partitionkey(), r#type = %event.event_type, why = why.label(), "skipped");
        Routing::Skipped(why)
    };
    if !dest.accepts(&event.event_type) {
        return skip(SkipReason::TypeFilter);
    }
    let Some(encoder) = mappings.vendor(&dest.vendor).and_then(|v| v.encoder()) else {
        return skip(SkipReason::NoTemplate);
    };
    let message = |request: Request| Message {
        route: route.name.clone(),
        destination: dest.name.clone(),
        partitionkey: event.effective_partitionkey().to_string(),
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        request,
    };
    match encoder.render_in(context) {
        Ok(Some(rendered)) => {
            let out = encoder.outbound(rendered, &dest.url);
            match &dest.hub {
                Some(hub) => Routing::Message(message(Request::Hub(HubPush {
                    hub: hub.path().to_string(),
                    body: out.body.unwrap_or_default(),
                }))),
                None => Routing::Message(message(Request::Http(HttpRequest {
                    method: out.method,
                    url: out.url,
                    headers: out.headers,
                    body: out.body,
                }))),
            }
        }
        Ok(None) => skip(SkipReason::NoTemplate),
        Err(crate::mapping::encode::EncodeError::DirectoryMiss(miss)) => {
            tracing::info!(route = %route.name, destination = %dest.name, event_id = %event.id, %miss, "skipped: no directory entry");
            skip(SkipReason::NoDirectoryEntry)
        }
        Err(e) => {
            tracing::error!(route = %route.name, destination = %dest.name, event_id = %event.id, partitionkey = %event.effective_partitionkey(), error = %e, "cannot encode: dead letter");
            Routing::Failed {
                message: message(Request::Http(HttpRequest {
                    method: "POST".into(),
                    url: dest.url.clone(),
                    headers: vec![("content-type".into(), "application/cloudevents+json".into())],
                    body: serde_json::to_string(event).ok(),
                })),
                at: mappings.locate_template(&e),
                error: e.to_string(),
            }
        }
    }
}
