//! Configuration: the types of `config/callgate.yaml` (README "Configuration reference"). Every field states its
//! default. Loading lives in `load.rs`, the checks in `validate.rs`, the typed result in
//! `valid.rs`; nothing here does I/O.

pub mod lines;
pub mod load;
pub mod valid;
pub mod validate;
#[cfg(test)]
mod verifier_tests;

use crate::model::inbound::Verifier;
use crate::model::signature::SignatureScheme;
use crate::model::standard_webhooks::Secret;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use load::{ConfigError, load};
pub use validate::{describe, validate};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// The mappings folder; a relative path is relative to the config file's folder (to the
    /// working directory for the embedded defaults). Default `mappings`.
    #[serde(default = "default_mappings")]
    pub mappings: PathBuf,
    /// Where accepted messages are kept until delivered. Default SQLite at
    /// `data/callgate.db`.
    #[serde(default)]
    pub store: StoreConfig,
    /// Retries, timeouts and limits of outbound delivery.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// What is kept of every accepted payload for replay and call timelines (README
    /// "Replay"). Default: 7 days, at most 1 GiB.
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// Inbound routes: a path, a source vendor, and where its events go.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Connections callgate opens itself to receive events (Enreach RTE's SignalR hub);
    /// each feeds a route. Default: none.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Directory tables' entries by directory name: a CSV (`key,value` per line) or YAML map
    /// file each, relative to this file's folder (mapping/directory.rs). Default: none.
    #[serde(default)]
    pub directories: BTreeMap<String, PathBuf>,
    /// A legacy receiver's base URL: every request no route matches is reverse-proxied there
    /// unchanged (method, path, query, headers, body). Default: none (404).
    #[serde(default)]
    pub fallback: Option<EnvString>,
    /// The file this config was read from, with the lines of its entries (set by
    /// `load::parse`; none for a config built in code). Validation problems name it.
    #[serde(skip)]
    pub origin: Option<std::sync::Arc<Origin>>,
}

/// A source: a connection callgate opens to receive events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// The protocol: `signalr` (Enreach RTE's hub).
    pub kind: SourceKind,
    /// The route whose destinations receive the events (its `from` decodes them).
    pub route: String,
    /// RTE's token endpoint, `GET {api}/token/{userid}/rte/` → `{WssEndpoint, Token}`
    /// (docs/protocols.md §2.1), fetched before every connection. Or `hub_url` + `token`.
    #[serde(default)]
    pub token_url: Option<EnvString>,
    /// Credentials for `token_url` (RTE's REST API: Basic `username:secretkey`).
    #[serde(default)]
    pub rest_auth: Option<OutboundAuth>,
    /// The hub endpoint (`wss://…`, `https://…` or `host/path`), with `token`.
    #[serde(default)]
    pub hub_url: Option<EnvString>,
    /// The bearer token for `hub_url`.
    #[serde(default)]
    pub token: Option<EnvString>,
    /// Also send the token as the `access_token` query parameter (as browsers do).
    /// Default false: the `Authorization: Bearer` header only.
    #[serde(default)]
    pub access_token_in_query: bool,
    /// What to subscribe to after every (re)connect; RTE keeps none across connections.
    /// (`signalr` only.)
    #[serde(default)]
    pub subscriptions: Vec<EntitySubscription>,
    /// RingCentral app credentials (`ringcentral-websocket` only).
    #[serde(default)]
    pub ringcentral: Option<RingCentralAccount>,
    /// RingCentral event filters, all in the one subscription a socket holds
    /// (`ringcentral-websocket` only).
    #[serde(default)]
    pub event_filters: Vec<String>,
    /// Send a SignalR Ping after this long without sending anything (the official client's
    /// `keepAliveIntervalInMilliseconds`); a `ringcentral-websocket` source sends a
    /// `Heartbeat` after this long without a message from the server. Default `15s`.
    #[serde(default = "default_keep_alive", deserialize_with = "duration")]
    pub keep_alive: Duration,
    /// The hub is dead after this long without a message from it — a Ping counts, our own
    /// Pings do not (`serverTimeoutInMilliseconds`): the connection is dropped and made anew.
    /// The same for a `ringcentral-websocket` source (Heartbeat replies count). Default `30s`;
    /// must exceed `keep_alive`.
    #[serde(default = "default_server_timeout", deserialize_with = "duration")]
    pub server_timeout: Duration,
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(15)
}

fn default_server_timeout() -> Duration {
    Duration::from_secs(30)
}

/// RingCentral app credentials for the JWT flow (ringcentral-platform.md A.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingCentralAccount {
    /// Platform base URL. Default `https://platform.ringcentral.com`.
    #[serde(default = "default_rc_server")]
    pub server: String,
    /// The app's client id.
    pub client_id: EnvString,
    /// The app's client secret.
    pub client_secret: EnvString,
    /// The JWT credential.
    pub jwt: EnvString,
}

/// The protocol of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// ASP.NET Core SignalR, JSON hub protocol over WebSockets.
    Signalr,
    /// RingCentral's WebSocket notifications (`wstoken`, one subscription per socket,
    /// session recovery): for sites without a public HTTPS endpoint.
    #[serde(rename = "ringcentral-websocket")]
    RingcentralWebsocket,
}

/// One RTE `EntitySubscription`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySubscription {
    /// `EntityId`: a user, queue or call-list GUID.
    pub entity_id: String,
    /// `EventName`, e.g. `UserCallInComing`.
    pub event: String,
}

/// Where a config came from: its file and the lines of its entries.
#[derive(Debug)]
pub struct Origin {
    /// The config file as given.
    pub file: PathBuf,
    /// Lines of its routes, destinations and keys.
    pub lines: lines::Lines,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            mappings: default_mappings(),
            store: StoreConfig::default(),
            delivery: DeliveryConfig::default(),
            archive: ArchiveConfig::default(),
            routes: Vec::new(),
            sources: Vec::new(),
            origin: None,
            fallback: None,
            directories: BTreeMap::new(),
        }
    }
}

fn default_mappings() -> PathBuf {
    PathBuf::from("mappings")
}

/// Listeners and request limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The public listener for vendor webhooks. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen", deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// The admin listener (`/metrics`, `/admin/*`). Default `127.0.0.1:9090`. It must be a
    /// loopback address unless `admin_token` is set.
    #[serde(default = "default_admin_listen", deserialize_with = "socket_addr")]
    pub admin_listen: SocketAddr,
    /// Bearer token required on the admin listener. Default: none (loopback only).
    #[serde(default)]
    pub admin_token: Option<EnvString>,
    /// Largest accepted request body, in bytes; larger bodies get 413. Default 1048576.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long one inbound request may take before it is answered 408. Default `10s`.
    #[serde(default = "default_request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Requests handled at once on the public listener; beyond it requests are shed at once
    /// with 503 and `Retry-After` (memory stays bounded under a flood). Default 1024.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: usize,
    /// Events one request may yield at most (RingCentral `parties[]`); beyond it the request
    /// is refused with 413 before any event is built. Default 1000.
    #[serde(default = "default_max_events")]
    pub max_events_per_request: usize,
    /// How long a connection may take to deliver a request's headers, counted from the
    /// moment it opens or finishes its previous response. hyper applies this one timer to
    /// both slow headers (slowloris) and idle keep-alive connections. Default `10s`.
    #[serde(default = "default_header_read_timeout", deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// Connections open at once on each listener; beyond it new connections wait in the
    /// kernel's backlog until one closes. Default 2048.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request header section (field lines, not the request line), in bytes; larger
    /// ones, or more than 100 fields, get 431 problem+json. Default 32768.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Whether the live tail (`/admin/tail`, `callgate tail`) shows rendered bodies. Off by
    /// default: bodies may hold personal data (names, numbers). Never URLs or headers.
    #[serde(default)]
    pub tail_bodies: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            admin_token: None,
            tail_bodies: false,
            max_body_bytes: default_max_body(),
            request_timeout: default_request_timeout(),
            max_concurrent_requests: default_max_concurrent(),
            max_events_per_request: default_max_events(),
            header_read_timeout: default_header_read_timeout(),
            max_connections: default_max_connections(),
            max_header_bytes: default_max_header_bytes(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_max_body() -> usize {
    1_048_576
}
fn default_max_events() -> usize {
    1000
}
fn default_max_concurrent() -> usize {
    1024
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_connections() -> usize {
    2048
}
fn default_max_header_bytes() -> usize {
    32 * 1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The durable store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// Embedded SQLite (WAL, `synchronous=FULL`, batched commits).
    Sqlite {
        /// Database file; its folder is created. A relative path is relative to the config
        /// file's folder. Default `data/callgate.db`.
        #[serde(default = "default_store_path")]
        path: PathBuf,
    },
    /// NATS JetStream, shared by several callgate instances (README "Scaling out on NATS").
    Nats {
        /// Server URL, e.g. `nats://127.0.0.1:4222` (several: comma-separated).
        url: EnvString,
        /// The work-queue stream's name (A–Z, 0–9, `_`, `-`); the dead letters live in
        /// `<stream>_DLQ`, the event dedupe keys in the stream `<stream>_dedupe`.
        /// Default `CALLGATE`.
        #[serde(default = "default_stream")]
        stream: String,
        /// Stream replicas (1, or an odd number up to 5 on a cluster). Default 1.
        #[serde(default = "default_replicas")]
        replicas: usize,
        /// Ordering partitions per destination: a destination's calls are hashed into this
        /// many lines, each delivered in order, one message at a time, by whichever instance
        /// holds it. Default 16.
        #[serde(default = "default_partitions")]
        partitions: u32,
    },
}

fn default_stream() -> String {
    "CALLGATE".into()
}

fn default_replicas() -> usize {
    1
}

fn default_partitions() -> u32 {
    16
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Sqlite {
            path: default_store_path(),
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("data/callgate.db")
}

/// Outbound delivery.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Wait before each attempt; after the last, the message goes to the dead letters. Each
    /// wait gets up to 10% random jitter; a receiver's `Retry-After` overrides it.
    /// Default `[0s, 5s, 5m, 30m, 2h, 5h, 10h, 10h]`.
    #[serde(default = "default_retry", deserialize_with = "durations")]
    pub retry: Vec<Duration>,
    /// Timeout of one delivery attempt. Default `15s`.
    #[serde(default = "default_delivery_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Attempts in flight at once, over all destinations. Default 64.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Messages waiting per destination beyond which intake answers 503 with `Retry-After`.
    /// Default 100000.
    #[serde(default = "default_max_depth")]
    pub max_queue_depth: u64,
    /// How long an inbound event id is remembered, across restarts, so that a redelivery
    /// is acknowledged without being queued again. Default `24h`.
    #[serde(default = "default_dedupe_window", deserialize_with = "duration")]
    pub dedupe_window: Duration,
}

/// The archive (README "Replay", "Call timeline"): every accepted inbound payload with its
/// canonical events and their fates, then each delivery's outcome, kept on the store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// How long a record is kept. `0s` turns the archive off. Default `7d`.
    #[serde(default = "default_archive_retention", deserialize_with = "duration")]
    pub retention: Duration,
    /// Most bytes of records kept; the oldest go first beyond it (SQLite: record text; NATS:
    /// the stream's `max_bytes`). Default 1 GiB.
    #[serde(default = "default_archive_max_bytes")]
    pub max_bytes: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            retention: default_archive_retention(),
            max_bytes: default_archive_max_bytes(),
        }
    }
}

impl ArchiveConfig {
    /// Whether anything is archived.
    pub fn enabled(&self) -> bool {
        !self.retention.is_zero() && self.max_bytes > 0
    }
}

fn default_archive_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_archive_max_bytes() -> u64 {
    1 << 30
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry: default_retry(),
            timeout: default_delivery_timeout(),
            workers: default_workers(),
            max_queue_depth: default_max_depth(),
            dedupe_window: default_dedupe_window(),
        }
    }
}

fn default_retry() -> Vec<Duration> {
    [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_workers() -> usize {
    64
}
fn default_max_depth() -> u64 {
    100_000
}
fn default_dedupe_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// One inbound route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// The request path, e.g. `/hooks/ringcentral`.
    pub path: String,
    /// The source vendor id, or `auto`.
    pub from: String,
    /// How requests prove they come from the vendor. Default: none.
    #[serde(default)]
    pub auth: Option<InboundAuth>,
    /// The route's URL as the sender sees it, up to the path (`https://hooks.example.com`),
    /// when callgate is behind a proxy: signature schemes that sign the URL (Twilio) sign
    /// this base + the request's path and query. Default: `http://` + the `Host` header.
    #[serde(default)]
    pub public_url: Option<String>,
    /// `queued` (default): answer 2xx once every outbound message is durably stored.
    /// `proxy`: forward to the first destination and return its reply.
    #[serde(default)]
    pub ack: Ack,
    /// In proxy mode, what a timed-out forward does: `fail` (default, 504) or `queue`
    /// (store it durably and answer 202).
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// In proxy mode, how long a forward may take before `on_timeout` acts. Default: derived
    /// from the sender's reply budget — the source vendor's `reply_within` (RingCentral 3 s)
    /// or else `server.request_timeout` — less a fifth for answering in time, and at most
    /// `delivery.timeout`. `callgate check` prints what it derived. Set, it must be shorter
    /// than that budget.
    #[serde(default, deserialize_with = "optional_duration")]
    pub forward_timeout: Option<Duration>,
    /// The destinations.
    #[serde(default)]
    pub to: Vec<DestinationConfig>,
    /// Keep this route's RingCentral webhook subscription (create, renew, recreate when
    /// blacklisted). A reload that adds, removes or changes it starts, stops or restarts the keeper.
    #[serde(default)]
    pub ringcentral: Option<RingCentralKeeperConfig>,
}

/// `routes[].ringcentral`: the subscription keeper (ringcentral-platform.md A.1–A.6). The
/// route must be `from: ringcentral` with `auth.verification_token`, which becomes the
/// subscription's `verificationToken`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingCentralKeeperConfig {
    /// Platform base URL. Default `https://platform.ringcentral.com`.
    #[serde(default = "default_rc_server")]
    pub server: String,
    /// The app's client id.
    pub client_id: EnvString,
    /// The app's client secret.
    pub client_secret: EnvString,
    /// The JWT credential (JWT bearer grant; one session, then refresh tokens).
    pub jwt: EnvString,
    /// This route's public HTTPS URL, where RingCentral posts (`deliveryMode.address`).
    pub address: String,
    /// Event filters, e.g. `/restapi/v1.0/account/~/telephony/sessions`.
    pub event_filters: Vec<String>,
    /// `expiresIn`, always sent. Default 7d; at most 3650d (RingCentral's webhook maximum).
    #[serde(default = "default_rc_expires_in", deserialize_with = "duration")]
    pub expires_in: Duration,
    /// Renew when less than this is left. Default: half of `expires_in`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub renew_before: Option<Duration>,
    /// Look at the subscription (status, filters, expiry) at least this often. Default 15m.
    #[serde(default = "default_rc_check_every", deserialize_with = "duration")]
    pub check_every: Duration,
}

fn default_rc_server() -> String {
    "https://platform.ringcentral.com".into()
}
fn default_rc_expires_in() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_rc_check_every() -> Duration {
    Duration::from_secs(15 * 60)
}

/// Acknowledgement mode of a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ack {
    /// 2xx after the durable write.
    #[default]
    Queued,
    /// Forward synchronously and return the receiver's reply.
    Proxy,
}

/// What a proxy route does when the forward times out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Answer 504.
    #[default]
    Fail,
    /// Store the message durably, answer 202, and deliver it with retries.
    Queue,
}

/// Inbound verification: exactly one scheme, written as a map with one key
/// (`auth: { basic: { username, password } }`); a map with none or several is refused by the
/// parse, with the line.
#[derive(Debug, Clone)]
pub enum InboundAuth {
    /// RingCentral's shared token, sent as `Verification-Token` (or `Validation-Token`).
    VerificationToken(EnvString),
    /// HTTP Basic credentials.
    Basic(BasicAuth),
    /// An `Authorization: Bearer` token.
    Bearer(EnvString),
    /// A token in a named header.
    Header(HeaderToken),
    /// Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`; docs/protocols.md §8).
    StandardWebhooks(StandardWebhooksVerify),
    /// The source vendor's own signature scheme (`signature:` in its `vendor.yaml`: Twilio's
    /// `X-Twilio-Signature`, Zoom's `x-zm-signature`), keyed with this secret (Twilio's auth
    /// token, Zoom's secret token). The vendor's challenge handshake, if it declares one, is
    /// answered with the same secret.
    Signature(SignatureKey),
}

/// `auth: { signature: { secret } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureKey {
    /// The signing secret.
    pub secret: EnvString,
}

/// The schemes of [`InboundAuth`], as written.
const INBOUND_AUTH_SCHEMES: &[&str] = &[
    "verification_token",
    "basic",
    "bearer",
    "header",
    "standard_webhooks",
    "signature",
];

impl<'de> Deserialize<'de> for InboundAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AuthVisitor;
        impl<'de> de::Visitor<'de> for AuthVisitor {
            type Value = InboundAuth;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a map with exactly one of {}",
                    INBOUND_AUTH_SCHEMES.join(", ")
                )
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<InboundAuth, A::Error> {
                let one_of = INBOUND_AUTH_SCHEMES.join(", ");
                let Some(scheme) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!("auth needs one of {one_of}")));
                };
                let auth = match scheme.as_str() {
                    "verification_token" => InboundAuth::VerificationToken(map.next_value()?),
                    "basic" => InboundAuth::Basic(map.next_value()?),
                    "bearer" => InboundAuth::Bearer(map.next_value()?),
                    "header" => InboundAuth::Header(map.next_value()?),
                    "standard_webhooks" => InboundAuth::StandardWebhooks(map.next_value()?),
                    "signature" => InboundAuth::Signature(map.next_value()?),
                    other => return Err(de::Error::unknown_field(other, INBOUND_AUTH_SCHEMES)),
                };
                if let Some(second) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "auth takes exactly one of {one_of}: found `{scheme}` and `{second}`"
                    )));
                }
                Ok(auth)
            }
        }
        d.deserialize_map(AuthVisitor)
    }
}

impl InboundAuth {
    /// The shared token, for `verification_token`.
    pub fn verification_token(&self) -> Option<&EnvString> {
        match self {
            InboundAuth::VerificationToken(token) => Some(token),
            _ => None,
        }
    }
}

/// An inbound Standard Webhooks verifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardWebhooksVerify {
    /// Secrets (`whsec_` + base64) any of which may have signed; several during a rotation.
    pub secrets: Vec<EnvString>,
    /// How far `webhook-timestamp` may be from now, either way. Default `5m`.
    #[serde(default = "default_signature_tolerance", deserialize_with = "duration")]
    pub tolerance: Duration,
}

fn default_signature_tolerance() -> Duration {
    crate::model::standard_webhooks::DEFAULT_TOLERANCE
}

/// How a destination signs what it sends: exactly one scheme.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// Standard Webhooks v1 (HMAC-SHA256): adds `webhook-id` (stable per message, the same on
    /// every retry), `webhook-timestamp` (this attempt) and `webhook-signature`.
    pub standard_webhooks: StandardWebhooksSign,
}

/// The secret a destination signs with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardWebhooksSign {
    /// `whsec_` + base64 of the key (24–64 random bytes).
    pub secret: EnvString,
}

/// HTTP Basic credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: EnvString,
    /// Password.
    pub password: EnvString,
}

/// A token carried in a named header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderToken {
    /// Header name, e.g. `X-Api-Key`.
    pub name: String,
    /// Expected value.
    pub value: EnvString,
}

/// One destination of a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Unique name within the route, used in logs, metrics and the dead letters.
    pub name: String,
    /// The receiver's vendor id (its mapping renders the request).
    pub vendor: String,
    /// The receiver's URL (HTTP destinations). Exactly one of `url` and `hub`.
    #[serde(default)]
    pub url: Option<EnvString>,
    /// A SignalR hub path on the public listener (e.g. `/rte`): RTE-compatible clients
    /// connect there and receive this destination's events as `MessageReceived`
    /// (docs/protocols.md §2). Needs `auth.jwt_secret`.
    #[serde(default)]
    pub hub: Option<String>,
    /// How long a message may wait for someone to deliver it to (a hub with no subscriber
    /// for its entity and event) before it is dead-lettered. Default `10m`.
    #[serde(default = "default_undeliverable_after", deserialize_with = "duration")]
    pub undeliverable_after: Duration,
    /// Outbound credentials. Default: none.
    #[serde(default)]
    pub auth: Option<OutboundAuth>,
    /// Extra request headers. Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, EnvString>,
    /// Canonical types this destination receives (exact or ending in `*`). Default `["*"]`.
    #[serde(default = "default_types")]
    pub types: Vec<String>,
    /// The most requests per second this receiver gets, with a burst. Default: no limit.
    /// Messages over the rate wait in the queue without spending their retry budget.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Attempts in flight to this receiver at most. Default 32.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Pause deliveries to this receiver after consecutive failures. Default: none.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Sign every request (Standard Webhooks). Default: unsigned.
    #[serde(default)]
    pub sign: Option<Signing>,
}

fn default_types() -> Vec<String> {
    vec!["*".into()]
}
fn default_undeliverable_after() -> Duration {
    Duration::from_secs(600)
}
fn default_max_in_flight() -> usize {
    32
}

/// A destination's rate limit (a token bucket, `governor`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second, above 0.
    pub per_second: u32,
    /// Requests that may go at once after a quiet spell. Default: `per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A destination's circuit breaker: after `failures` consecutive retryable failures
/// (connect errors, timeouts, 408, 429, 5xx) no attempt is made for `open_for`; then one
/// probe goes, and its success closes the breaker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker, above 0. Default 5.
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    /// How long it stays open before a probe. Default `30s`.
    #[serde(default = "default_open_for", deserialize_with = "duration")]
    pub open_for: Duration,
}

fn default_breaker_failures() -> u32 {
    5
}
fn default_open_for() -> Duration {
    Duration::from_secs(30)
}

/// Outbound credentials: exactly one of the fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundAuth {
    /// HTTP Basic.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// `Authorization: Bearer`.
    #[serde(default)]
    pub bearer: Option<EnvString>,
    /// Hub destinations: the HS256 secret that signs the JWTs clients connect with.
    #[serde(default)]
    pub jwt_secret: Option<EnvString>,
    /// `Authorization: Bearer` with a token fetched by the OAuth 2.0 client credentials grant
    /// (RFC 6749 §4.4; Microsoft Graph's app-only tokens), cached until a minute before it
    /// expires and fetched again once when the receiver answers 401. Never logged.
    #[serde(default)]
    pub oauth2_client_credentials: Option<OAuth2ClientCredentials>,
}

/// `auth: { oauth2_client_credentials: { token_url, client_id, client_secret, scope } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentials {
    /// The token endpoint (`https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`).
    pub token_url: EnvString,
    /// The client id.
    pub client_id: EnvString,
    /// The client secret.
    pub client_secret: EnvString,
    /// The scope (`https://graph.microsoft.com/.default`). Default: none sent.
    #[serde(default)]
    pub scope: Option<String>,
}

/// A string that may hold `${NAME}` references to environment variables, resolved at load.
/// The resolved value is held as a `secrecy::SecretString`: no `Debug`, log line or error
/// can show it, only the raw text (which names variables, never their values).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct EnvString {
    raw: String,
    #[serde(skip)]
    resolved: Option<SecretString>,
}

impl PartialEq for EnvString {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw && self.value() == other.value()
    }
}

impl Eq for EnvString {}

impl EnvString {
    /// A literal value (no `${}` expansion needed).
    pub fn literal(value: &str) -> EnvString {
        EnvString {
            raw: value.to_string(),
            resolved: Some(SecretString::from(value)),
        }
    }

    /// The value with every `${NAME}` replaced; empty before `load` resolved it. Exposes
    /// the secret: use it where it is sent or compared, never where it is shown.
    pub fn value(&self) -> &str {
        self.resolved
            .as_ref()
            .map(|s| s.expose_secret())
            .unwrap_or_default()
    }

    /// The text as written in the file.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Resolves `${NAME}` references with `lookup`; returns the names that are missing.
    pub(crate) fn resolve(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let mut out = String::new();
        let mut missing = Vec::new();
        let mut rest = self.raw.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => missing.push(name.to_string()),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        self.resolved = Some(SecretString::from(out));
        missing
    }
}

impl fmt::Debug for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The raw text names variables, never their values.
        write!(f, "{:?}", self.raw)
    }
}

/// Parses a duration: `250ms`, `5s`, `5m`, `2h`, `1d`, `1h 30m` (humantime), or a bare
/// number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("`{text}` is not a duration of zero or more seconds"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration like 250ms, 5s, 5m, 2h: {e}"))
}

/// `host:port`, with a message that says what is wrong (a port above 65535, a missing port).
fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        let port = text.rsplit_once(':').map(|(_, p)| p);
        de::Error::custom(match port.map(str::parse::<u64>) {
            Some(Ok(p)) if p > 65535 => {
                format!("`{text}`: port {p} is out of range (0 to 65535)")
            }
            Some(Ok(_)) => format!("`{text}` is not an IP address and port, e.g. 127.0.0.1:8080"),
            _ => format!("`{text}` needs an IP address and a port, e.g. 127.0.0.1:8080"),
        })
    })
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = serde_json::Value::deserialize(d)?;
    let text = match text {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        other => {
            return Err(de::Error::custom(format!(
                "expected a duration, found {other}"
            )));
        }
    };
    parse_duration(&text).map_err(de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<serde_json::Value>::deserialize(d)?
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => parse_duration(&s).map_err(de::Error::custom),
            serde_json::Value::Number(n) => {
                parse_duration(&n.to_string()).map_err(de::Error::custom)
            }
            other => Err(de::Error::custom(format!(
                "expected a duration, found {other}"
            ))),
        })
        .collect()
}

/// The verifier a route's `auth` configures. `token_headers` are the headers the source
/// vendor carries a shared token in (empty for vendors that declare none: config
/// validation refuses `verification_token` there). Errors name a secret that does not parse.
/// `signature` is the source vendor's declared scheme with the route's `public_url`.
pub fn verifier(
    auth: Option<&InboundAuth>,
    token_headers: &[String],
    signature: Option<(&std::sync::Arc<SignatureScheme>, Option<&str>)>,
) -> Result<Verifier, String> {
    Ok(match auth {
        None => Verifier::Open,
        Some(InboundAuth::VerificationToken(token)) => Verifier::VerificationToken {
            headers: token_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            secret: token.value().as_bytes().to_vec(),
        },
        Some(InboundAuth::Basic(basic)) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                basic.username.value(),
                basic.password.value()
            ));
            Verifier::Basic(encoded.into_bytes())
        }
        Some(InboundAuth::Bearer(token)) => Verifier::Bearer(token.value().as_bytes().to_vec()),
        Some(InboundAuth::Header(header)) => Verifier::Header(
            header.name.to_ascii_lowercase(),
            header.value.value().as_bytes().to_vec(),
        ),
        // Every secret is parsed here; one that does not parse fails the build (validation
        // has refused it already), it is never dropped.
        Some(InboundAuth::StandardWebhooks(sw)) => Verifier::StandardWebhooks {
            secrets: sw
                .secrets
                .iter()
                .map(|s| {
                    Secret::parse(s.value())
                        .map_err(|e| format!("auth standard_webhooks secret `{}`: {e}", s.raw()))
                })
                .collect::<Result<_, _>>()?,
            tolerance: sw.tolerance,
        },
        Some(InboundAuth::Signature(key)) => {
            let Some((scheme, public_url)) = signature else {
                return Err(
                    "auth signature needs a source vendor whose vendor.yaml declares `signature:`"
                        .into(),
                );
            };
            Verifier::Signature {
                scheme: scheme.clone(),
                key: key.secret.value().as_bytes().to_vec(),
                public_url: public_url.map(str::to_string),
            }
        }
    })
}

/// Normalises a hub endpoint to the `http(s)` base the client negotiates against:
/// `wss://` → `https://`, `ws://` → `http://`, no scheme → `https://`.
pub fn hub_base(endpoint: &str) -> Result<reqwest::Url, String> {
    let endpoint = endpoint.trim();
    let with_scheme = if let Some(rest) = endpoint.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = endpoint.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if endpoint.starts_with("https://") || endpoint.starts_with("http://") {
        endpoint.to_string()
    } else if endpoint.contains("://") {
        return Err(format!(
            "hub endpoint `{endpoint}`: the scheme must be wss, ws, https or http"
        ));
    } else {
        format!("https://{endpoint}")
    };
    let url =
        reqwest::Url::parse(&with_scheme).map_err(|e| format!("hub endpoint `{endpoint}`: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("hub endpoint `{endpoint}` has no host"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("not a duration like")
        );
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn env_strings_resolve_and_report_missing_names() {
        let mut s = EnvString {
            raw: "Bearer ${A}-${B}".into(),
            resolved: None,
        };
        let missing = s.resolve(&|name| (name == "A").then(|| "x".to_string()));
        assert_eq!(missing, vec!["B"]);
        assert_eq!(s.value(), "Bearer x-");
        assert_eq!(format!("{s:?}"), "\"Bearer ${A}-${B}\"");
    }
}
