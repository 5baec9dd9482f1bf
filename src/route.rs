//! Routes and destinations at run time: a path, a source vendor, a verifier, and destinations
//! with their type filters, outbound adapter and lane. Built by `snapshot.rs` from a
//! validated config; stateful parts (lifecycle, lanes) are handles on state kept outside.

use crate::config::{Ack, OnTimeout};
use crate::delivery::lane::Lane;
use crate::lifecycle::Lifecycle;
use crate::mapping::encode::type_matches;
use crate::model::inbound::Verifier;
use crate::model::outbound::Outbound;
use crate::outbound::http::HttpOutbound;
use std::sync::Arc;

/// A destination at run time.
pub struct Destination {
    /// Name within the route.
    pub name: String,
    /// `route/destination`: its key in lanes, metrics, depth counters and the store.
    pub key: String,
    /// Receiver vendor id (its mapping renders the messages).
    pub vendor: String,
    /// Receiver URL (HTTP destinations; empty for hubs).
    pub url: String,
    /// The SignalR hub, for hub destinations.
    pub hub: Option<Arc<crate::outbound::signalr::hub::Hub>>,
    /// How long a deferred message may wait for a receiver before it is dead-lettered.
    pub undeliverable_after: std::time::Duration,
    /// Type patterns it accepts.
    pub types: Vec<String>,
    /// The transport that delivers its messages.
    pub outbound: Arc<dyn Outbound>,
    /// The same adapter as HTTP, for proxy mode (which passes the reply through).
    pub http: Option<Arc<HttpOutbound>>,
    /// Its lane (rate limit, in-flight cap, breaker).
    pub lane: Arc<Lane>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("key", &self.key)
            .field("vendor", &self.vendor)
            .finish()
    }
}

impl Destination {
    /// Whether this destination receives events of `event_type`.
    pub fn accepts(&self, event_type: &str) -> bool {
        self.types.iter().any(|p| type_matches(p, event_type))
    }
}

/// A route at run time.
#[derive(Clone)]
pub struct Route {
    /// Route name.
    pub name: String,
    /// Request path.
    pub path: String,
    /// Source vendor id, or `auto`.
    pub from: String,
    /// The verifier requests must pass.
    pub verifier: Verifier,
    /// Acknowledgement mode.
    pub ack: Ack,
    /// Proxy-mode timeout behaviour.
    pub on_timeout: OnTimeout,
    /// How long a proxy forward may take before `on_timeout` acts.
    pub forward_timeout: std::time::Duration,
    /// The source vendor's endpoint challenge, answered after verification (Zoom).
    pub challenge: Option<Arc<crate::model::signature::Challenge>>,
    /// The source vendor's validation query parameter, echoed as `text/plain` (Graph).
    pub validation_query: Option<String>,
    /// The directory tables' entries its templates look up.
    pub directories: Arc<crate::mapping::directory::Directories>,
    /// Destinations, in config order.
    pub destinations: Vec<Arc<Destination>>,
    /// The handshake header to echo, when the source vendor has one.
    pub handshake_header: Option<String>,
    /// Whether an empty request is the vendor's connection test.
    pub accept_empty: bool,
    /// Whether the source vendor sends parameters rather than JSON.
    pub params: bool,
    /// Whether decoding computes the fidelity extensions: a destination is the source vendor
    /// itself or CloudEvents, or the source is detected (`auto`). The one rule, for every
    /// transport and for `translate`.
    pub fidelity: bool,
    /// `server.max_events_per_request`.
    pub max_events: usize,
    /// Per-leg state of this route's events (a handle on state that outlives reloads): two
    /// routes may well receive the same vendor event (two subscriptions) and each must
    /// deliver it.
    pub lifecycle: Lifecycle,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("from", &self.from)
            .field("destinations", &self.destinations)
            .finish()
    }
}
