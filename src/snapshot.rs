//! The snapshot: everything a request or a delivery needs that a reload may change — the
//! compiled mappings, the routes by path and name, the destinations with their transports out
//! — built whole from a checked configuration (`check.rs` runs the same checks as `callgate
//! check`, mapping cases included) and swapped atomically (`reload.rs`). A request or delivery keeps the
//! `Arc<Snapshot>` it started with. State that must outlive a swap (lifecycle per route,
//! lanes per destination, the queue, the HTTP connection pool) lives in [`Resources`] and is
//! only referenced from here.

use crate::config::valid::{Transport, ValidConfig, ValidDestination, ValidRoute};
use crate::config::{self, Ack, Config, DestinationConfig, EnvString, OnTimeout, RouteConfig};
use crate::delivery::lane::{LaneSettings, Lanes};
use crate::lifecycle::Lifecycles;
use crate::mapping::schema::PayloadKind;
use crate::mapping::{AUTO, MappingSet, Problems};
use crate::model::inbound::RouteHooks;
use crate::model::outbound::Outbound;
use crate::outbound::http::{self, HttpOutbound};
use crate::outbound::signalr::hub::{Hub, Hubs};
use crate::route::{Destination, Route};
use crate::telemetry::tail::Tail;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// Why a snapshot could not be built. Every variant lists every problem, each naming its
/// file and line, route or destination.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    /// The mappings are invalid.
    #[error("invalid mappings:\n{0}")]
    Mappings(Problems),
    /// The configuration is invalid.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    /// Mapping cases fail.
    #[error("mapping cases fail:\n  {}", .0.join("\n  "))]
    Cases(Vec<String>),
}

/// State that outlives snapshots: the HTTP connection pool, lanes and lifecycle trackers.
#[derive(Clone)]
pub struct Resources {
    /// The shared HTTP client.
    pub http: reqwest::Client,
    /// Lanes by `route/destination`.
    pub lanes: Arc<Lanes>,
    /// Lifecycle trackers by route name.
    pub lifecycles: Arc<Lifecycles>,
    /// SignalR hubs by path (their connections outlive a snapshot).
    pub hubs: Arc<Hubs>,
    /// The live tail.
    pub tail: Tail,
    /// Route hooks by route name, registered by the adapters that need code for a vendor
    /// (they outlive snapshots).
    pub hooks: Arc<RouteHooks>,
}

impl Resources {
    /// Fresh resources with their own HTTP client.
    pub fn new() -> Result<Resources, String> {
        Ok(Resources {
            http: http::shared_client()?,
            lanes: Arc::default(),
            lifecycles: Arc::default(),
            hubs: Arc::default(),
            tail: Tail::default(),
            hooks: Arc::default(),
        })
    }

    /// Resources for work that sends nothing (`translate`, mapping cases): a process-wide
    /// client that is never used to connect, fresh lanes and trackers.
    pub fn offline() -> Resources {
        static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
        Resources {
            http: CLIENT.get_or_init(reqwest::Client::new).clone(),
            lanes: Arc::default(),
            lifecycles: Arc::default(),
            hubs: Arc::default(),
            tail: Tail::default(),
            hooks: Arc::default(),
        }
    }
}

/// One consistent, validated set of mappings, routes and destinations.
pub struct Snapshot {
    /// 1 for the set loaded at start, +1 per successful reload.
    pub version: u64,
    /// Hex SHA-256 of the configuration and every mapping file.
    pub content_hash: String,
    /// When it was built.
    pub loaded_at: SystemTime,
    /// The compiled mappings.
    pub mappings: Arc<MappingSet>,
    /// The configuration it was built from, as parsed.
    pub config: Arc<Config>,
    /// The same configuration, validated and typed (what the supervised components are
    /// built from).
    pub valid: Arc<ValidConfig>,
    routes: Vec<Arc<Route>>,
    by_path: HashMap<String, Arc<Route>>,
    destinations: HashMap<String, Arc<Destination>>,
    /// Route hooks by route name (shared with the adapters that register them).
    pub hooks: Arc<RouteHooks>,
    /// What delivers a replay's messages to a URL no route names (`replay --to-url`): a
    /// plain HTTP adapter (no auth, no signing) and one lane for all such URLs.
    to_url: (Arc<HttpOutbound>, Arc<crate::delivery::lane::Lane>),
}

/// The destination-name prefix of `replay --to-url` messages: `to-url-<16 hex of URL and
/// vendor>`.
pub const TO_URL_PREFIX: &str = "to-url-";

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("content_hash", &self.content_hash)
            .field("routes", &self.routes)
            .finish()
    }
}

impl Snapshot {
    /// Builds the run-time routes and destinations of a validated config (its content hash
    /// left empty: [`crate::check::load_snapshot`] computes it). It cannot fail: everything
    /// that could was done by validation, so the hubs, lanes and lifecycle trackers it
    /// registers in the shared state belong to a snapshot that will exist.
    pub fn build(
        valid: Arc<ValidConfig>,
        mappings: Arc<MappingSet>,
        resources: &Resources,
        version: u64,
    ) -> Snapshot {
        let config = valid.config.clone();
        let mut routes = Vec::new();
        let mut destinations = HashMap::new();
        for r in &valid.routes {
            let dests: Vec<Arc<Destination>> =
                r.to.iter()
                    .map(|d| {
                        let dest = Arc::new(destination(
                            r,
                            d,
                            config.delivery.timeout,
                            resources,
                            &mappings,
                        ));
                        destinations.insert(dest.key.clone(), dest.clone());
                        dest
                    })
                    .collect();
            routes.push(Arc::new(route(
                r,
                &valid.directories,
                dests,
                &mappings,
                resources,
                config.server.max_events_per_request,
            )));
        }
        let by_path = routes.iter().map(|r| (r.path.clone(), r.clone())).collect();
        let plain = crate::config::valid::HttpTarget {
            stored_url: String::new(),
            sent_url: String::new().into(),
            headers: Vec::new(),
            signer: None,
            oauth2: None,
        };
        let to_url = (
            Arc::new(HttpOutbound::new(
                resources.http.clone(),
                config.delivery.timeout,
                &plain,
            )),
            resources.lanes.get_or_create(
                TO_URL_PREFIX,
                LaneSettings {
                    rate: None,
                    // A few at a time: a replay to a URL is a catch-up, not live traffic.
                    max_in_flight: 8,
                    breaker: None,
                },
            ),
        );
        Snapshot {
            version,
            content_hash: String::new(),
            loaded_at: SystemTime::now(),
            mappings,
            config,
            valid,
            routes,
            by_path,
            destinations,
            hooks: resources.hooks.clone(),
            to_url,
        }
    }

    /// A destination of `route` for a URL no route names, rendered by `vendor`'s mapping
    /// (`replay --to-url`): its name is [`TO_URL_PREFIX`] + 16 hex digits of the URL and
    /// vendor, and the workers deliver it through the plain HTTP adapter.
    pub fn to_url_destination(&self, route: &str, url: &str, vendor: &str) -> Destination {
        let name = format!(
            "{TO_URL_PREFIX}{}",
            crate::delivery::hex16(&format!("{vendor} {url}"))
        );
        Destination {
            key: format!("{route}/{name}"),
            name,
            vendor: vendor.to_string(),
            url: url.to_string(),
            hub: None,
            undeliverable_after: Duration::from_secs(600),
            types: vec!["*".into()],
            outbound: self.to_url.0.clone(),
            http: Some(self.to_url.0.clone()),
            lane: self.to_url.1.clone(),
        }
    }

    /// A snapshot of one route `translate` from `from` to one destination `target` of vendor
    /// `to` at `url`: what `callgate translate`, the mapping cases and `/admin/translate` run
    /// the pipeline on.
    pub fn for_translation(
        mappings: Arc<MappingSet>,
        from: &str,
        to: &str,
        url: &str,
    ) -> Result<Snapshot, BuildError> {
        // Translation feeds the pipeline directly (it verifies nothing), so the route's auth
        // only has to be one validation accepts: a vendor that signs gets its own scheme.
        let auth = mappings
            .vendor(from)
            .and_then(|v| v.signature.as_ref())
            .map(|_| {
                config::InboundAuth::Signature(config::SignatureKey {
                    secret: EnvString::literal("translate"),
                })
            });
        let config = Arc::new(Config {
            mappings: mappings.root().to_path_buf(),
            routes: vec![RouteConfig {
                name: "translate".into(),
                path: "/translate".into(),
                from: from.into(),
                auth,
                public_url: None,
                ack: Ack::Queued,
                on_timeout: OnTimeout::Fail,
                forward_timeout: None,
                ringcentral: None,
                to: vec![DestinationConfig {
                    name: "target".into(),
                    vendor: to.into(),
                    url: Some(EnvString::literal(url)),
                    hub: None,
                    undeliverable_after: Duration::from_secs(600),
                    auth: None,
                    headers: Default::default(),
                    types: vec!["*".into()],
                    rate_limit: None,
                    max_in_flight: 1,
                    circuit_breaker: None,
                    sign: None,
                }],
            }],
            ..Config::default()
        });
        let valid = config::validate(&config, &mappings)
            .map_err(|problems| BuildError::Config(config::describe(&config, &problems)))?;
        Ok(Snapshot::build(
            Arc::new(valid),
            mappings,
            &Resources::offline(),
            0,
        ))
    }

    /// The route serving `path`.
    pub fn route_for_path(&self, path: &str) -> Option<&Arc<Route>> {
        self.by_path.get(path)
    }

    /// The route named `name`.
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Every route, in config order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The hub serving `path` (its WebSocket endpoint or `/negotiate`), if any.
    pub fn hub_for_path(&self, path: &str) -> Option<Arc<Hub>> {
        self.destinations
            .values()
            .filter_map(|d| d.hub.as_ref())
            .find(|hub| Hub::serves(path, hub.path()))
            .cloned()
    }

    /// The destination with key `route/destination`.
    pub fn destination(&self, key: &str) -> Option<&Arc<Destination>> {
        self.destinations.get(key)
    }
}

impl crate::delivery::worker::Targets for Snapshot {
    fn target(&self, key: &str) -> Option<crate::delivery::worker::Target<'_>> {
        if let Some(d) = self.destinations.get(key) {
            return Some(crate::delivery::worker::Target {
                lane: &d.lane,
                outbound: d.outbound.as_ref(),
                undeliverable_after: d.undeliverable_after,
            });
        }
        // A replay's message to a URL (the URL is in the message itself).
        let (_, destination) = key.split_once('/')?;
        destination
            .starts_with(TO_URL_PREFIX)
            .then(|| crate::delivery::worker::Target {
                lane: &self.to_url.1,
                outbound: self.to_url.0.as_ref(),
                undeliverable_after: Duration::from_secs(600),
            })
    }
}

/// A destination of a validated route, its hub and lane registered in the shared state.
fn destination(
    route: &ValidRoute,
    d: &ValidDestination,
    timeout: Duration,
    resources: &Resources,
    mappings: &MappingSet,
) -> Destination {
    let key = format!("{}/{}", route.name, d.name);
    let (url, outbound, http, hub): (String, Arc<dyn Outbound>, _, _) = match &d.transport {
        Transport::Http(target) => {
            let http = Arc::new(HttpOutbound::new(resources.http.clone(), timeout, target));
            // Messages are stored with the URL as written, `${NAME}` unresolved and without
            // userinfo: the HTTP adapter puts the secrets back at send time.
            (target.stored_url.clone(), http.clone(), Some(http), None)
        }
        Transport::Hub(target) => {
            let events = mappings
                .vendor(&d.vendor)
                .map(|v| v.hub_events.clone())
                .unwrap_or_default();
            let hub = resources.hubs.get_or_create(
                &target.path,
                target.jwt_secret.value().as_bytes(),
                &events,
            );
            (
                String::new(),
                hub.clone() as Arc<dyn Outbound>,
                None,
                Some(hub),
            )
        }
    };
    Destination {
        name: d.name.clone(),
        vendor: d.vendor.clone(),
        url,
        hub,
        undeliverable_after: d.undeliverable_after,
        types: d.types.clone(),
        outbound,
        http,
        lane: resources.lanes.get_or_create(&key, LaneSettings::of(d)),
        key,
    }
}

fn route(
    r: &ValidRoute,
    directories: &Arc<crate::mapping::directory::Directories>,
    destinations: Vec<Arc<Destination>>,
    mappings: &MappingSet,
    resources: &Resources,
    max_events: usize,
) -> Route {
    let source = (r.from != AUTO).then(|| mappings.vendor(&r.from)).flatten();
    let fidelity = r.from == AUTO
        || destinations.iter().any(|d| {
            d.vendor == r.from
                || mappings
                    .vendor(&d.vendor)
                    .is_some_and(|v| v.payload == PayloadKind::Canonical)
        });
    Route {
        name: r.name.clone(),
        path: r.path.clone(),
        from: r.from.clone(),
        verifier: r.verifier.clone(),
        ack: r.ack,
        on_timeout: r.on_timeout,
        forward_timeout: r.forward_timeout,
        destinations,
        handshake_header: source.and_then(|v| v.handshake_header.clone()),
        challenge: source.and_then(|v| v.challenge.clone()),
        validation_query: source.and_then(|v| v.validation_query.clone()),
        directories: directories.clone(),
        accept_empty: source.is_some_and(|v| v.accept_empty),
        params: source.is_some_and(|v| v.payload == PayloadKind::Params),
        fidelity,
        max_events,
        lifecycle: resources.lifecycles.get_or_create(&r.name),
    }
}

/// Whether a file under the mappings folder is part of the set (editors' and deploy tools'
/// temporary files are not).
pub fn is_mapping_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "yaml" || e == "yml" || e == "hbs")
}

/// Hex SHA-256 of `config` and of every mapping file under `mappings` (names and contents,
/// in name order): equal hashes mean the same set.
pub fn content_hash(config: &str, mappings: &Path) -> String {
    let mut hasher = Sha256::new();
    hasher.update(config.as_bytes());
    let mut files = Vec::new();
    let mut stack = vec![mappings.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_mapping_file(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).unwrap_or_default());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
