//! The validated configuration (README "Configuration reference"): what [`validate`](super::validate) returns once
//! every check passed. Where the file says "exactly one of", this has an enum; headers are
//! `HeaderName`/`HeaderValue`, signing keys parsed, verifiers built. A snapshot and the
//! supervised components are built from it, and that build cannot fail.

use super::lines::{At, Problem};
use super::{
    Ack, CircuitBreaker, Config, DestinationConfig, EntitySubscription, EnvString, OnTimeout,
    OutboundAuth, RateLimit, RingCentralAccount, RingCentralKeeperConfig, RouteConfig,
    SourceConfig, SourceKind,
};
use crate::mapping::{AUTO, MappingSet};
use crate::model::inbound::Verifier;
use crate::model::standard_webhooks::Secret;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

/// A configuration that passed validation, typed.
pub struct ValidConfig {
    /// The configuration as parsed (server, store and delivery settings are typed there
    /// already; the admin API shows it).
    pub config: Arc<Config>,
    /// The routes, in config order.
    pub routes: Vec<ValidRoute>,
    /// The sources callgate connects out to, in config order.
    pub sources: Vec<ValidSource>,
    /// The directory tables' entries, read from their files.
    pub directories: Arc<crate::mapping::directory::Directories>,
}

/// A route: its verifier built, its destinations typed.
pub struct ValidRoute {
    /// Unique name.
    pub name: String,
    /// The literal path it serves.
    pub path: String,
    /// The source vendor id, or `auto`.
    pub from: String,
    /// The check every request must pass (`auth:`).
    pub verifier: Verifier,
    /// When the sender gets its answer.
    pub ack: Ack,
    /// What a proxy route does when the forward times out.
    pub on_timeout: OnTimeout,
    /// How long a proxy forward may take (`forward_timeout`, or derived from the sender's
    /// reply budget: [`forward_timeout`]).
    pub forward_timeout: Duration,
    /// The destinations, in config order.
    pub to: Vec<ValidDestination>,
    /// The RingCentral subscription keeper of this route (`ringcentral:`), if any.
    pub keeper: Option<ValidKeeper>,
}

/// A route's RingCentral subscription keeper (`routes[].ringcentral`), with the route's
/// verification token, which the subscription carries.
#[derive(Debug, Clone)]
pub struct ValidKeeper {
    /// The route's name.
    pub route: String,
    /// The keeper's settings.
    pub settings: RingCentralKeeperConfig,
    /// The route's `auth.verification_token` (validation made sure there is one).
    pub verification_token: EnvString,
}

/// A destination: how its messages leave, and its lane's settings.
pub struct ValidDestination {
    /// Unique name within the route.
    pub name: String,
    /// The receiver's vendor id.
    pub vendor: String,
    /// Canonical type patterns it receives.
    pub types: Vec<String>,
    /// How long a hub message may wait for a subscriber.
    pub undeliverable_after: Duration,
    /// Requests per second, with a burst.
    pub rate_limit: Option<RateLimit>,
    /// Attempts in flight at most (above 0).
    pub max_in_flight: usize,
    /// Pause after consecutive failures.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// How its messages leave.
    pub transport: Transport,
}

/// How a destination's messages leave: exactly one of `url` and `hub`.
pub enum Transport {
    /// An HTTP request to a URL.
    Http(HttpTarget),
    /// A message to the clients of a SignalR hub callgate serves.
    Hub(HubTarget),
}

/// An HTTP destination, every header parsed once.
pub struct HttpTarget {
    /// The URL as stored in messages and shown: as written, `${NAME}` unresolved, without
    /// userinfo.
    pub stored_url: String,
    /// The URL as sent: `${NAME}` resolved, without userinfo (it moved into `headers`).
    pub sent_url: secrecy::SecretString,
    /// Headers sent with every request: `headers:`, then `Authorization` from `auth:` or from
    /// the URL's userinfo (marked sensitive, so never logged).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The Standard Webhooks signing key (`sign:`).
    pub signer: Option<Secret>,
    /// Bearer tokens from a client credentials grant (`auth.oauth2_client_credentials`).
    pub oauth2: Option<super::OAuth2ClientCredentials>,
}

/// A hub destination.
pub struct HubTarget {
    /// The hub path on the public listener (`/rte`).
    pub path: String,
    /// The HS256 secret client JWTs are signed with (at least 16 bytes).
    pub jwt_secret: EnvString,
}

/// A source callgate connects out to (`sources:`).
#[derive(Debug, Clone)]
pub struct ValidSource {
    /// Unique name (logs, metrics, `/readyz`).
    pub name: String,
    /// The route its events go through.
    pub route: String,
    /// What it connects to, by kind.
    pub kind: SourceSpec,
}

/// A source's kind with the fields that kind takes.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// An Enreach RTE SignalR hub.
    Signalr(SignalrSource),
    /// RingCentral's WebSocket notifications.
    RingcentralWebsocket(RingCentralWebSocketSource),
}

/// A `kind: signalr` source.
#[derive(Debug, Clone)]
pub struct SignalrSource {
    /// How the hub and its token are found.
    pub connect: HubConnect,
    /// Send the token as `access_token` in the WebSocket URL too.
    pub access_token_in_query: bool,
    /// The (entity, event) pairs it subscribes to (entity ids are GUIDs).
    pub subscriptions: Vec<EntitySubscription>,
    /// Ping interval.
    pub keep_alive: Duration,
    /// Silence from the hub after which the connection is dead (above `keep_alive`).
    pub server_timeout: Duration,
}

/// Where a SignalR source's hub and token come from: exactly one of these.
#[derive(Debug, Clone)]
pub enum HubConnect {
    /// RTE's REST token endpoint answers both (`token_url`, with `rest_auth`).
    TokenUrl {
        /// The token endpoint.
        url: EnvString,
        /// Its credentials.
        auth: Option<RestAuth>,
    },
    /// Configured directly (`hub_url` and `token`).
    Direct {
        /// The hub's `http(s)` base (normalised from `wss://`, `ws://` or a bare host).
        hub: reqwest::Url,
        /// The bearer token.
        token: EnvString,
    },
}

/// Credentials for a REST call a source makes.
#[derive(Debug, Clone)]
pub enum RestAuth {
    /// HTTP Basic.
    Basic {
        /// User name.
        username: EnvString,
        /// Password.
        password: EnvString,
    },
    /// `Authorization: Bearer`.
    Bearer(EnvString),
}

impl RestAuth {
    /// Adds these credentials to a request.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            RestAuth::Basic { username, password } => {
                request.basic_auth(username.value(), Some(password.value()))
            }
            RestAuth::Bearer(token) => request.bearer_auth(token.value()),
        }
    }
}

/// A `kind: ringcentral-websocket` source.
#[derive(Debug, Clone)]
pub struct RingCentralWebSocketSource {
    /// The account it logs in with.
    pub account: RingCentralAccount,
    /// The event filters it subscribes to (`/restapi/…`).
    pub event_filters: Vec<String>,
    /// Send a `Heartbeat` after this long without a message from the server.
    pub keep_alive: Duration,
    /// Silence from the server after which the connection is dead (above `keep_alive`).
    pub server_timeout: Duration,
}

/// How soon the sender of a route's requests wants its answer, and where that comes from:
/// the source vendor's `reply_within` when it is shorter than `server.request_timeout`, else
/// `server.request_timeout` (after which callgate answers 408 itself).
pub fn reply_budget(r: &RouteConfig, config: &Config, mappings: &MappingSet) -> (Duration, String) {
    let request_timeout = config.server.request_timeout;
    match mappings.vendor(&r.from).and_then(|v| v.reply_within) {
        Some(budget) if budget < request_timeout => (
            budget,
            format!(
                "{}'s reply budget {} (reply_within in its vendor.yaml)",
                r.from,
                humantime::format_duration(budget)
            ),
        ),
        _ => (
            request_timeout,
            format!(
                "server.request_timeout {}",
                humantime::format_duration(request_timeout)
            ),
        ),
    }
}

/// A proxy route's forward timeout and how it was reached: `forward_timeout` as set, or four
/// fifths of the [`reply_budget`] (the last fifth answers the sender: the reply passed back,
/// or 202 after `on_timeout: queue` stored the event), at most `delivery.timeout`.
pub fn forward_timeout(
    r: &RouteConfig,
    config: &Config,
    mappings: &MappingSet,
) -> (Duration, String) {
    if let Some(set) = r.forward_timeout {
        return (set, "forward_timeout as set".into());
    }
    let (budget, why) = reply_budget(r, config, mappings);
    let derived = (budget * 4 / 5).min(config.delivery.timeout);
    let why = if derived == config.delivery.timeout {
        format!("delivery.timeout, within {why}")
    } else {
        format!("four fifths of {why}")
    };
    (derived, why)
}

impl ValidConfig {
    /// Types a configuration whose checks passed. The steps here can still refuse (a header
    /// value, a secret that does not parse); each such refusal is a problem at its place,
    /// never a fallback.
    pub(super) fn new(config: Arc<Config>, mappings: &MappingSet) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut routes = Vec::new();
        for r in &config.routes {
            match route(r, &config, mappings) {
                Ok(route) => routes.push(route),
                Err(mut p) => problems.append(&mut p),
            }
        }
        let mut sources = Vec::new();
        for s in &config.sources {
            match source(s) {
                Ok(source) => sources.push(source),
                Err(message) => problems.push(Problem {
                    at: At::Source(s.name.clone()),
                    message: format!("source `{}`: {message}", s.name),
                }),
            }
        }
        let mut directories = crate::mapping::directory::Directories::default();
        for (name, file) in &config.directories {
            match crate::mapping::directory::load(file) {
                Ok(entries) => {
                    directories.0.insert(name.clone(), Arc::new(entries));
                }
                Err(message) => problems.push(Problem {
                    at: At::Key("directories"),
                    message: format!("directories.{name}: {message}"),
                }),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ValidConfig {
            config,
            routes,
            sources,
            directories: Arc::new(directories),
        })
    }

    /// The route named `name`.
    pub fn route(&self, name: &str) -> Option<&ValidRoute> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// What validation derived rather than read, one line each (`callgate check` prints
    /// them): each proxy route's forward timeout and its reason.
    pub fn derived(&self, mappings: &MappingSet) -> Vec<String> {
        self.config
            .routes
            .iter()
            .filter(|r| r.ack == Ack::Proxy)
            .map(|r| {
                let (after, why) = forward_timeout(r, &self.config, mappings);
                format!(
                    "route `{}`: proxy forwards time out after {} ({why}), then on_timeout: {}",
                    r.name,
                    humantime::format_duration(after),
                    match r.on_timeout {
                        OnTimeout::Fail => "fail (504)",
                        OnTimeout::Queue => "queue (202)",
                    }
                )
            })
            .collect()
    }
}

fn route(
    r: &RouteConfig,
    config: &Config,
    mappings: &MappingSet,
) -> Result<ValidRoute, Vec<Problem>> {
    let source = (r.from != AUTO).then(|| mappings.vendor(&r.from)).flatten();
    let headers = source.map(|v| v.token_headers()).unwrap_or_default();
    let mut problems = Vec::new();
    let signature = source
        .and_then(|v| v.signature.as_ref())
        .map(|scheme| (scheme, r.public_url.as_deref()));
    let verifier = super::verifier(r.auth.as_ref(), &headers, signature).map_err(|e| Problem {
        at: At::Route(r.name.clone()),
        message: format!("route `{}`: {e}", r.name),
    });
    let mut to = Vec::new();
    for d in &r.to {
        match destination(d) {
            Ok(d) => to.push(d),
            Err(message) => problems.push(Problem {
                at: At::Destination(r.name.clone(), d.name.clone()),
                message: format!("route `{}`, destination `{}`: {message}", r.name, d.name),
            }),
        }
    }
    let keeper = match (
        &r.ringcentral,
        r.auth.as_ref().and_then(|a| a.verification_token()),
    ) {
        (Some(settings), Some(token)) => Some(ValidKeeper {
            route: r.name.clone(),
            settings: settings.clone(),
            verification_token: token.clone(),
        }),
        (None, _) => None,
        (Some(_), None) => {
            problems.push(Problem {
                at: At::Route(r.name.clone()),
                message: format!(
                    "route `{}`: ringcentral needs auth.verification_token",
                    r.name
                ),
            });
            None
        }
    };
    match verifier {
        Ok(verifier) if problems.is_empty() => Ok(ValidRoute {
            name: r.name.clone(),
            path: r.path.clone(),
            from: r.from.clone(),
            verifier,
            ack: r.ack,
            on_timeout: r.on_timeout,
            forward_timeout: forward_timeout(r, config, mappings).0,
            to,
            keeper,
        }),
        Ok(_) => Err(problems),
        Err(p) => {
            problems.push(p);
            Err(problems)
        }
    }
}

fn destination(d: &DestinationConfig) -> Result<ValidDestination, String> {
    let transport = match (&d.url, &d.hub) {
        (Some(url), None) => Transport::Http(HttpTarget {
            stored_url: without_userinfo(url.raw()).into_owned(),
            sent_url: without_userinfo(url.value()).as_ref().into(),
            headers: headers(d, url)?,
            signer: d
                .sign
                .as_ref()
                .map(|sign| Secret::parse(sign.standard_webhooks.secret.value()))
                .transpose()
                .map_err(|e| format!("sign standard_webhooks: {e}"))?,
            oauth2: d
                .auth
                .as_ref()
                .and_then(|a| a.oauth2_client_credentials.clone()),
        }),
        (None, Some(path)) => Transport::Hub(HubTarget {
            path: path.clone(),
            jwt_secret: d
                .auth
                .as_ref()
                .and_then(|a| a.jwt_secret.clone())
                .ok_or("a hub needs auth.jwt_secret")?,
        }),
        _ => return Err("needs exactly one of url, hub".into()),
    };
    Ok(ValidDestination {
        name: d.name.clone(),
        vendor: d.vendor.clone(),
        types: d.types.clone(),
        undeliverable_after: d.undeliverable_after,
        rate_limit: d.rate_limit.clone(),
        max_in_flight: d.max_in_flight,
        circuit_breaker: d.circuit_breaker.clone(),
        transport,
    })
}

/// An HTTP destination's headers: `headers:`, then the credentials of `auth:` or, without
/// it, of the URL's userinfo.
fn headers(
    d: &DestinationConfig,
    url: &EnvString,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut out = Vec::new();
    for (name, value) in &d.headers {
        out.push((
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"))?,
            HeaderValue::from_str(value.value())
                .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?,
        ));
    }
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let credentials = match &d.auth {
        Some(OutboundAuth {
            basic: Some(b),
            bearer: None,
            oauth2_client_credentials: None,
            ..
        }) => Some(basic(b.username.value(), b.password.value())),
        Some(OutboundAuth {
            basic: None,
            bearer: Some(token),
            oauth2_client_credentials: None,
            ..
        }) => Some(format!("Bearer {}", token.value())),
        // Fetched at send time by the HTTP adapter.
        Some(OutboundAuth {
            basic: None,
            bearer: None,
            oauth2_client_credentials: Some(_),
            ..
        }) => None,
        Some(_) => {
            return Err(
                "auth needs exactly one of basic, bearer, oauth2_client_credentials".into(),
            );
        }
        None => userinfo(url.value()).map(|(u, p)| basic(&u, &p)),
    };
    if let Some(credentials) = credentials {
        let mut value = HeaderValue::from_str(&credentials)
            .map_err(|_| "the credentials are not a valid header value".to_string())?;
        value.set_sensitive(true);
        out.push((AUTHORIZATION, value));
    }
    Ok(out)
}

fn source(s: &SourceConfig) -> Result<ValidSource, String> {
    let kind = match s.kind {
        SourceKind::Signalr => {
            let connect = match (&s.token_url, &s.hub_url, &s.token) {
                (Some(url), None, None) => HubConnect::TokenUrl {
                    url: url.clone(),
                    auth: rest_auth(s.rest_auth.as_ref())?,
                },
                (None, Some(hub), Some(token)) => HubConnect::Direct {
                    hub: super::hub_base(hub.value())?,
                    token: token.clone(),
                },
                _ => return Err("needs token_url, or hub_url and token (not both)".into()),
            };
            SourceSpec::Signalr(SignalrSource {
                connect,
                access_token_in_query: s.access_token_in_query,
                subscriptions: s.subscriptions.clone(),
                keep_alive: s.keep_alive,
                server_timeout: s.server_timeout,
            })
        }
        SourceKind::RingcentralWebsocket => {
            SourceSpec::RingcentralWebsocket(RingCentralWebSocketSource {
                account: s
                    .ringcentral
                    .clone()
                    .ok_or("a ringcentral-websocket source needs `ringcentral:`")?,
                event_filters: s.event_filters.clone(),
                keep_alive: s.keep_alive,
                server_timeout: s.server_timeout,
            })
        }
    };
    Ok(ValidSource {
        name: s.name.clone(),
        route: s.route.clone(),
        kind,
    })
}

fn rest_auth(auth: Option<&OutboundAuth>) -> Result<Option<RestAuth>, String> {
    Ok(match auth {
        None => None,
        Some(OutboundAuth {
            basic: Some(b),
            bearer: None,
            jwt_secret: None,
            oauth2_client_credentials: None,
        }) => Some(RestAuth::Basic {
            username: b.username.clone(),
            password: b.password.clone(),
        }),
        Some(OutboundAuth {
            basic: None,
            bearer: Some(token),
            jwt_secret: None,
            oauth2_client_credentials: None,
        }) => Some(RestAuth::Bearer(token.clone())),
        Some(_) => return Err("rest_auth needs exactly one of basic, bearer".into()),
    })
}

/// `url` without its userinfo (`user:password@`), as text: what is stored and shown.
fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.into();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end], &url[scheme_end + at + 1..]).into(),
        None => url.into(),
    }
}

/// The userinfo of `url`, percent-decoded: (user, password).
fn userinfo(url: &str) -> Option<(String, String)> {
    let parsed = reqwest::Url::parse(url).ok()?;
    if parsed.username().is_empty() && parsed.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((
        decode(parsed.username()),
        decode(parsed.password().unwrap_or_default()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::path::Path;

    fn valid(text: &str) -> Result<ValidConfig, Vec<String>> {
        let config = Arc::new(
            super::super::load::parse(Path::new("t.yaml"), text, &|name| {
                (name == "PASSWORD").then(|| "pa ss".to_string())
            })
            .unwrap(),
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        let mappings = MappingSet::load(&root).unwrap();
        super::super::validate(&config, &mappings)
            .map_err(|problems| problems.into_iter().map(|p| p.message).collect())
    }

    /// What the file spells as "exactly one of" arrives as one enum case, every header
    /// parsed, the URL's credentials moved into a sensitive `Authorization` header and out
    /// of both URLs.
    #[test]
    fn a_valid_config_is_typed() {
        let valid = valid(
            "routes:\n  - name: r\n    path: /r\n    from: ringcentral\n    to:\n      - { name: h, vendor: enreach, hub: /rte, auth: { jwt_secret: 0123456789abcdef } }\n      - { name: d, vendor: vidyo, url: 'http://robot:${PASSWORD}@127.0.0.1:9/x', headers: { x-tenant: acme } }\nsources:\n  - { name: s, kind: signalr, route: r, hub_url: 'wss://rte.example/hub', token: t, subscriptions: [{ entity_id: 4f9a7c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b, event: UserStatus }] }\n",
        )
        .unwrap();
        let route = valid.route("r").unwrap();
        let Transport::Hub(hub) = &route.to[0].transport else {
            panic!("the hub destination is not a hub");
        };
        assert_eq!(hub.path, "/rte");
        let Transport::Http(http) = &route.to[1].transport else {
            panic!("the url destination is not HTTP");
        };
        assert_eq!(http.stored_url, "http://127.0.0.1:9/x");
        assert_eq!(http.sent_url.expose_secret(), "http://127.0.0.1:9/x");
        assert_eq!(http.headers[0].0, "x-tenant");
        assert_eq!(http.headers[1].0, AUTHORIZATION);
        assert!(http.headers[1].1.is_sensitive());
        let SourceSpec::Signalr(source) = &valid.sources[0].kind else {
            panic!("not a signalr source");
        };
        let HubConnect::Direct { hub, .. } = &source.connect else {
            panic!("hub_url and token are a direct connection");
        };
        assert_eq!(hub.as_str(), "https://rte.example/hub");
    }

    /// Two credentials where one is allowed are refused, never one of them picked.
    #[test]
    fn a_source_with_two_rest_credentials_is_refused() {
        let problems = valid(
            "routes:\n  - { name: r, path: /r, from: enreach, to: [{ name: d, vendor: vidyo, url: 'http://127.0.0.1:9/' }] }\nsources:\n  - { name: s, kind: signalr, route: r, token_url: 'http://127.0.0.1:9/token', rest_auth: { bearer: b, basic: { username: u, password: p } }, subscriptions: [{ entity_id: 4f9a7c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b, event: UserStatus }] }\n",
        )
        .err()
        .unwrap();
        assert_eq!(
            problems,
            ["source `s`: rest_auth needs exactly one of basic, bearer"]
        );
    }

    #[test]
    fn userinfo_is_cut_from_urls() {
        assert_eq!(
            without_userinfo("http://u:${P}@h:1/x?k=${K}"),
            "http://h:1/x?k=${K}"
        );
        assert_eq!(without_userinfo("https://h/x@y"), "https://h/x@y");
        assert_eq!(without_userinfo("http://a@b@h/"), "http://h/");
        assert_eq!(
            userinfo("http://robot:pa%2055@h/"),
            Some(("robot".into(), "pa 55".into()))
        );
        assert_eq!(userinfo("http://h/"), None);
    }
}
