//! Routes at run time: a path, a source vendor, a verifier, and destinations with their type
//! filters. Built once from the validated config.

use crate::adapters::webhook::verify::Verifier;
use crate::config::{Ack, Config, OnTimeout};
use crate::lifecycle::Lifecycle;
use crate::mapping::encode::type_matches;
use crate::mapping::schema::PayloadKind;
use crate::mapping::{MappingSet, VendorMapping};
use crate::translate::AUTO;

/// A destination at run time.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Name within the route.
    pub name: String,
    /// Receiver vendor id.
    pub vendor: String,
    /// Receiver URL.
    pub url: String,
    /// Type patterns it accepts.
    pub types: Vec<String>,
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
    /// Destinations, in config order.
    pub destinations: Vec<Destination>,
    /// The handshake header to echo, when the source vendor has one.
    pub handshake_header: Option<String>,
    /// Whether an empty request is the vendor's connection test.
    pub accept_empty: bool,
    /// Whether the source vendor sends parameters rather than JSON.
    pub params: bool,
    /// Whether decoding must compute fidelity extensions (a destination is the source vendor
    /// itself or CloudEvents).
    pub fidelity: bool,
    /// Per-leg state of this route's events: two routes may well receive the same vendor
    /// event (two subscriptions) and each must deliver it.
    pub lifecycle: Lifecycle,
}

/// The headers a vendor carries a shared token in, from its `vendor.yaml`.
pub fn token_headers(vendor: Option<&VendorMapping>) -> Vec<String> {
    vendor
        .map(|v| [&v.verification_header, &v.handshake_header])
        .into_iter()
        .flatten()
        .flatten()
        .cloned()
        .collect()
}

impl Route {
    /// Builds every route of a validated config.
    pub fn all(config: &Config, mappings: &MappingSet) -> Vec<Route> {
        config
            .routes
            .iter()
            .map(|r| {
                let source = (r.from != AUTO).then(|| mappings.vendor(&r.from)).flatten();
                let destinations: Vec<Destination> =
                    r.to.iter()
                        .map(|d| Destination {
                            name: d.name.clone(),
                            vendor: d.vendor.clone(),
                            url: d.url.value().to_string(),
                            types: d.types.clone(),
                        })
                        .collect();
                let fidelity = destinations.iter().any(|d| {
                    d.vendor == r.from
                        || r.from == AUTO
                        || mappings
                            .vendor(&d.vendor)
                            .is_some_and(|v| v.payload == PayloadKind::Canonical)
                });
                Route {
                    name: r.name.clone(),
                    path: r.path.clone(),
                    from: r.from.clone(),
                    verifier: Verifier::new(r.auth.as_ref(), &token_headers(source)),
                    ack: r.ack,
                    on_timeout: r.on_timeout,
                    destinations,
                    handshake_header: source.and_then(|v| v.handshake_header.clone()),
                    accept_empty: source.is_some_and(|v| v.accept_empty),
                    params: source.is_some_and(|v| v.payload == PayloadKind::Params),
                    fidelity,
                    lifecycle: Lifecycle::default(),
                }
            })
            .collect()
    }
}
