//! Validation (README "Configuration reference"): a parsed [`Config`] checked against the mappings, purely (no
//! socket, no file beyond the mappings already loaded), into a [`ValidConfig`] or every
//! problem, each at its place ([`At`]) as it is found. One function per section.

use super::lines::{At, Problem};
use super::valid::{ValidConfig, reply_budget};
use super::{
    Ack, Config, DestinationConfig, EnvString, InboundAuth, RingCentralKeeperConfig, RouteConfig,
    SourceConfig, SourceKind, StoreConfig,
};
use crate::mapping::{AUTO, MappingSet};
use crate::model::standard_webhooks::Secret;
use std::collections::HashSet;
use std::sync::Arc;

/// Checks a loaded config against the mappings: the typed [`ValidConfig`] a snapshot and the
/// supervised components are built from (which then cannot fail), or every problem found.
/// Pure: opens nothing.
pub fn validate(config: &Arc<Config>, mappings: &MappingSet) -> Result<ValidConfig, Vec<Problem>> {
    let problems = problems(config, mappings);
    if !problems.is_empty() {
        return Err(problems);
    }
    ValidConfig::new(config.clone(), mappings)
}

/// The problems as text, each starting `file:line: ` when the config came from a file.
pub fn describe(config: &Config, problems: &[Problem]) -> Vec<String> {
    match &config.origin {
        Some(origin) => problems
            .iter()
            .map(|p| match origin.lines.at(&p.at) {
                Some(line) => format!("{}:{line}: {}", origin.file.display(), p.message),
                None => format!("{}: {}", origin.file.display(), p.message),
            })
            .collect(),
        None => problems.iter().map(|p| p.message.clone()).collect(),
    }
}

/// Problems as they are found, each at the place being checked when it was found.
#[derive(Default)]
struct Found {
    list: Vec<Problem>,
    at: At,
}

impl Found {
    /// From now on, problems are at `at`.
    fn at(&mut self, at: At) {
        self.at = at;
    }

    fn push(&mut self, message: String) {
        self.list.push(Problem {
            at: self.at.clone(),
            message,
        });
    }
}

/// Every problem of `config` against `mappings`, each at its place.
fn problems(config: &Config, mappings: &MappingSet) -> Vec<Problem> {
    let mut found = Found::default();
    let problems = &mut found;
    check_server(config, problems);
    check_store(&config.store, problems);
    if config.archive.max_bytes == 0 && !config.archive.retention.is_zero() {
        problems.at(At::Key("archive.max_bytes"));
        problems.push(
            "archive.max_bytes must be above 0 (to turn the archive off, set archive.retention: 0s)"
                .into(),
        );
    }
    if let Some(fallback) = &config.fallback {
        problems.at(At::Key("fallback"));
        check_url("fallback", fallback.value(), problems);
    }
    check_routes(config, mappings, problems);
    check_sources(config, problems);
    found.list
}

/// `server:` and `delivery:`: limits above zero, addresses that cannot clash.
fn check_server(config: &Config, problems: &mut Found) {
    if !config.server.admin_listen.ip().is_loopback() && config.server.admin_token.is_none() {
        problems.at(At::Key("server.admin_listen"));
        problems.push(format!(
            "server.admin_listen {} is not a loopback address: set server.admin_token",
            config.server.admin_listen
        ));
    }
    let server = &config.server;
    if server.listen == server.admin_listen && server.listen.port() != 0 {
        problems.at(At::Key("server.listen"));
        problems.push(format!(
            "server.listen and server.admin_listen are the same address ({})",
            server.listen
        ));
    }
    if server.request_timeout.is_zero() {
        problems.at(At::Key("server.request_timeout"));
        problems.push("server.request_timeout must be above 0".into());
    }
    if config.delivery.timeout.is_zero() {
        problems.at(At::Key("delivery.timeout"));
        problems.push("delivery.timeout must be above 0".into());
    }
    if config.delivery.max_queue_depth == 0 {
        problems.at(At::Key("delivery.max_queue_depth"));
        problems.push("delivery.max_queue_depth must be above 0".into());
    }
    if let Some(token) = &server.admin_token
        && token.value().is_empty()
    {
        problems.at(At::Key("server.admin_token"));
        problems.push(format!(
            "server.admin_token is empty (`{}` resolved to nothing): an empty token would let anyone in",
            token.raw()
        ));
    }
    if config.server.max_events_per_request == 0 {
        problems.at(At::Key("server.max_events_per_request"));
        problems.push("server.max_events_per_request must be above 0".into());
    }
    if config.server.header_read_timeout.is_zero() {
        problems.at(At::Key("server.header_read_timeout"));
        problems.push("server.header_read_timeout must be above 0".into());
    }
    if config.server.max_connections == 0 {
        problems.at(At::Key("server.max_connections"));
        problems.push("server.max_connections must be above 0".into());
    }
    if config.server.max_header_bytes < 1024 {
        problems.at(At::Key("server.max_header_bytes"));
        problems.push("server.max_header_bytes must be at least 1024".into());
    }
    if config.server.max_concurrent_requests == 0 {
        problems.at(At::Key("server.max_concurrent_requests"));
        problems.push("server.max_concurrent_requests must be above 0".into());
    }
    if config.server.max_body_bytes == 0 {
        problems.at(At::Key("server.max_body_bytes"));
        problems.push("server.max_body_bytes must be above 0".into());
    }
    if config.delivery.retry.is_empty() {
        problems.at(At::Key("delivery.retry"));
        problems.push("delivery.retry needs at least one entry (the first attempt)".into());
    }
    if config.delivery.workers == 0 {
        problems.at(At::Key("delivery.workers"));
        problems.push("delivery.workers must be above 0".into());
    }
}

/// `store:`: a NATS store's URL, stream name and sizes (nothing connects here).
fn check_store(store: &StoreConfig, problems: &mut Found) {
    if let StoreConfig::Nats {
        url,
        stream,
        replicas,
        partitions,
    } = store
    {
        if url.value().trim().is_empty() {
            problems.at(At::Key("store.url"));
            problems.push("store.url is empty".into());
        }
        if stream.is_empty()
            || stream.len() > 32
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            problems.at(At::Key("store.stream"));
            problems.push(format!(
                "store.stream `{stream}` must be 1–32 characters of A–Z, a–z, 0–9, `_` or `-`"
            ));
        }
        if !(1..=5).contains(replicas) {
            problems.at(At::Key("store.replicas"));
            problems.push(format!("store.replicas {replicas} must be 1 to 5"));
        }
        if !(1..=1024).contains(partitions) {
            problems.at(At::Key("store.partitions"));
            problems.push(format!("store.partitions {partitions} must be 1 to 1024"));
        }
    }
}

/// `routes:`: names and paths unique and literal, a decodable source vendor, its auth, and
/// each destination.
fn check_routes(config: &Config, mappings: &MappingSet, problems: &mut Found) {
    let mut names = HashSet::new();
    let mut paths = HashSet::new();
    let mut hubs = HashSet::new();
    for route in &config.routes {
        let at = format!("route `{}`", route.name);
        problems.at(At::Route(route.name.clone()));
        if !names.insert(route.name.as_str()) {
            problems.push(format!("{at}: the name is used twice"));
        }
        if !route.path.starts_with('/') {
            problems.push(format!("{at}: path `{}` must start with /", route.path));
        }
        // Paths match exactly; pattern syntax of any router would never match (and used to
        // make the router panic at start).
        if route
            .path
            .split('/')
            .any(|segment| segment.starts_with(':') || segment.starts_with('*'))
            || route.path.contains(['{', '}', '?', '#'])
        {
            problems.push(format!(
                "{at}: path `{}` is not a literal path (no `{{param}}`, `:param`, `*rest`, `?` or `#`: routes match the path exactly)",
                route.path
            ));
        }
        if route.path.contains("//")
            || route
                .path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            problems.push(format!(
                "{at}: path `{}` has an empty segment or a space: no sender's request would match it",
                route.path.escape_debug()
            ));
        }
        if ["/healthz", "/readyz"].contains(&route.path.as_str()) {
            problems.push(format!("{at}: path `{}` is reserved", route.path));
        }
        // `/hooks/a` and `/hooks/a/` are two routes to the router and one to whoever reads
        // the config: refused.
        let trimmed = route.path.trim_end_matches('/');
        if !paths.insert(if trimmed.is_empty() { "/" } else { trimmed }) {
            problems.push(format!(
                "{at}: path `{}` is used by another route (a trailing slash makes no other path)",
                route.path
            ));
        }
        if let Some(rc) = &route.ringcentral {
            check_keeper(&at, route, rc, problems);
        }
        if route.from != AUTO && !mappings.vendor(&route.from).is_some_and(|v| v.can_decode()) {
            problems.push(format!(
                "{at}: from `{}` is not a vendor with a decode mapping (known: {})",
                route.from,
                known(mappings)
            ));
        }
        let source = (route.from != AUTO)
            .then(|| mappings.vendor(&route.from))
            .flatten();
        if source.is_some_and(|v| v.challenge.is_some())
            && !matches!(route.auth, Some(InboundAuth::Signature(_)))
        {
            problems.push(format!(
                "{at}: {} validates endpoints with a signed challenge: the route needs `auth: {{signature: {{secret: …}}}}`",
                route.from
            ));
        }
        if matches!(route.auth, Some(InboundAuth::Signature(_)))
            && source.is_none_or(|v| v.signature.is_none())
        {
            problems.push(format!(
                "{at}: auth signature needs a source vendor whose vendor.yaml declares `signature:` ({} does not)",
                route.from
            ));
        }
        if let Some(url) = &route.public_url {
            match reqwest::Url::parse(url) {
                Ok(u)
                    if (u.scheme() == "http" || u.scheme() == "https")
                        && u.query().is_none()
                        && u.fragment().is_none() => {}
                _ => problems.push(format!(
                    "{at}: public_url `{url}` must be an http(s) URL without query, like https://hooks.example.com"
                )),
            }
        }
        if let Some(auth) = &route.auth {
            // Exactly one scheme is a parse-time fact: `auth` is an enum.
            if let InboundAuth::Header(h) = auth
                && axum::http::HeaderName::from_bytes(h.name.as_bytes()).is_err()
            {
                problems.push(format!(
                    "{at}: auth header name `{}` is not a valid HTTP header name",
                    h.name.escape_debug()
                ));
            }
            if let InboundAuth::StandardWebhooks(sw) = auth {
                if sw.secrets.is_empty() {
                    problems.push(format!(
                        "{at}: auth standard_webhooks needs at least one secret"
                    ));
                }
                for secret in &sw.secrets {
                    if let Err(e) = Secret::parse(secret.value()) {
                        problems.push(format!(
                            "{at}: auth standard_webhooks secret `{}`: {e}",
                            secret.raw()
                        ));
                    }
                }
                if sw.tolerance.is_zero() {
                    problems.push(format!(
                        "{at}: auth standard_webhooks tolerance must be above 0"
                    ));
                }
            }
            let empty = |name: &str, value: &EnvString, problems: &mut Found| {
                if value.value().is_empty() {
                    problems.push(format!(
                        "{at}: auth {name} is empty (`{}` resolved to nothing): an empty secret would let anyone in",
                        value.raw()
                    ));
                }
            };
            match auth {
                InboundAuth::VerificationToken(v) => empty("verification_token", v, problems),
                InboundAuth::Bearer(v) => empty("bearer", v, problems),
                InboundAuth::Header(h) => empty("header value", &h.value, problems),
                InboundAuth::Signature(key) => empty("signature secret", &key.secret, problems),
                InboundAuth::Basic(b) => empty("basic password", &b.password, problems),
                InboundAuth::StandardWebhooks(_) => {}
            }
            let source = (route.from != AUTO)
                .then(|| mappings.vendor(&route.from))
                .flatten();
            if auth.verification_token().is_some()
                && source.is_none_or(|v| v.token_headers().is_empty())
            {
                problems.push(format!(
                    "{at}: verification_token needs a source vendor whose vendor.yaml names a \
                     verification_header (e.g. ringcentral); use `header: {{name, value}}` otherwise"
                ));
            }
        }
        if route.to.is_empty() {
            problems.push(format!("{at}: `to` needs at least one destination"));
        }
        if let Some(set) = route.forward_timeout {
            let (budget, why) = reply_budget(route, config, mappings);
            if route.ack != Ack::Proxy {
                problems.push(format!(
                    "{at}: forward_timeout is for ack: proxy routes (this one answers once stored)"
                ));
            } else if set.is_zero() || set >= budget {
                problems.push(format!(
                    "{at}: forward_timeout {} must be above 0 and shorter than {why}: otherwise \
                     the sender gives up before the forward can time out (and on_timeout: queue \
                     could never act)",
                    humanize(set)
                ));
            }
        }
        if route.ack == Ack::Proxy && route.to.len() > 1 {
            problems.push(format!(
                "{at}: ack proxy forwards to one destination, but `to` lists {}",
                route.to.len()
            ));
        }
        let mut dest_names = HashSet::new();
        for dest in &route.to {
            let at = format!("{at}, destination `{}`", dest.name);
            problems.at(At::Destination(route.name.clone(), dest.name.clone()));
            if !dest_names.insert(dest.name.as_str()) {
                problems.push(format!("{at}: the name is used twice in this route"));
            }
            check_destination(&at, config, mappings, dest, &mut hubs, problems);
        }
    }
}

/// One destination: an encodable vendor, exactly one transport and its credentials, headers
/// that can be sent, sane lane settings. `hubs` collects the hub paths seen so far.
fn check_destination<'a>(
    at: &str,
    config: &Config,
    mappings: &MappingSet,
    dest: &'a DestinationConfig,
    hubs: &mut HashSet<&'a str>,
    problems: &mut Found,
) {
    // A configuration from a file must name the directories its destinations look up (one
    // made in memory — translate, the cases — brings its own entries or none).
    if config.origin.is_some()
        && let Some(vendor) = mappings.vendor(&dest.vendor)
    {
        for directory in &vendor.directories {
            if !config.directories.contains_key(directory) {
                problems.push(format!(
                    "{at}: vendor `{}` looks up the directory `{directory}`: name its file under `directories:` (a CSV of key,value lines or a YAML map)",
                    dest.vendor
                ));
            }
        }
    }
    if mappings
        .vendor(&dest.vendor)
        .and_then(|v| v.encoder())
        .is_none()
    {
        problems.push(format!(
            "{at}: vendor `{}` has no encode mapping (known: {})",
            dest.vendor,
            known(mappings)
        ));
    }
    match (&dest.url, &dest.hub) {
        (Some(url), None) => check_url(at, url.value(), problems),
        (None, Some(hub)) => {
            if !hub.starts_with('/')
                || hub.contains(['{', '}', '?', '#', ':', '*'])
                || hub.ends_with('/')
            {
                problems.push(format!(
                            "{at}: hub `{hub}` must be a literal path like /rte (no pattern syntax, no trailing /)"
                        ));
            }
            if config.routes.iter().any(|r| r.path == *hub)
                || ["/healthz", "/readyz"].contains(&hub.as_str())
            {
                problems.push(format!("{at}: hub `{hub}` is a route's or a reserved path"));
            }
            if !hubs.insert(hub.as_str()) {
                problems.push(format!(
                    "{at}: hub `{hub}` is served by another destination already"
                ));
            }
            match dest.auth.as_ref().and_then(|a| a.jwt_secret.as_ref()) {
                Some(secret) if secret.value().len() < 16 => problems.push(format!(
                    "{at}: auth jwt_secret (`{}`) must be at least 16 characters",
                    secret.raw()
                )),
                Some(_) => {}
                None => problems.push(format!(
                    "{at}: a hub needs auth.jwt_secret (clients connect with HS256 JWTs)"
                )),
            }
        }
        _ => problems.push(format!("{at}: needs exactly one of url, hub")),
    }
    if dest.undeliverable_after.is_zero() {
        problems.push(format!("{at}: undeliverable_after must be above 0"));
    }
    if dest.types.is_empty() {
        problems.push(format!(
            "{at}: `types` is empty, so nothing would be delivered"
        ));
    }
    for t in &dest.types {
        if t.is_empty() || (t.contains('*') && !t.ends_with('*')) || t.matches('*').count() > 1 {
            problems.push(format!(
                "{at}: type pattern `{t}`: use an exact type or a prefix ending in *"
            ));
        }
    }
    if let Some(rate) = &dest.rate_limit
        && (rate.per_second == 0 || rate.burst == Some(0))
    {
        problems.push(format!(
            "{at}: rate_limit per_second and burst must be above 0"
        ));
    }
    if dest.max_in_flight == 0 {
        problems.push(format!("{at}: max_in_flight must be above 0"));
    }
    if let Some(breaker) = &dest.circuit_breaker
        && (breaker.failures == 0 || breaker.open_for.is_zero())
    {
        problems.push(format!(
            "{at}: circuit_breaker failures and open_for must be above 0"
        ));
    }
    if let Some(sign) = &dest.sign
        && let Err(e) = Secret::parse(sign.standard_webhooks.secret.value())
    {
        problems.push(format!(
            "{at}: sign standard_webhooks secret `{}`: {e}",
            sign.standard_webhooks.secret.raw()
        ));
    }
    if let Some(auth) = &dest.auth {
        let schemes = [
            auth.basic.is_some(),
            auth.bearer.is_some(),
            auth.oauth2_client_credentials.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if dest.hub.is_some() {
            if schemes > 0 {
                problems.push(format!("{at}: a hub's auth takes only jwt_secret"));
            }
        } else if schemes != 1 || auth.jwt_secret.is_some() {
            problems.push(format!(
                "{at}: auth needs exactly one of basic, bearer, oauth2_client_credentials"
            ));
        }
        if let Some(o) = &auth.oauth2_client_credentials {
            check_url(
                &format!("{at}: oauth2_client_credentials token_url"),
                o.token_url.value(),
                problems,
            );
            for (name, value) in [
                ("client_id", &o.client_id),
                ("client_secret", &o.client_secret),
            ] {
                if value.value().is_empty() {
                    problems.push(format!(
                        "{at}: oauth2_client_credentials {name} is empty (`{}` resolved to nothing)",
                        value.raw()
                    ));
                }
            }
        }
    }
    for (name, value) in &dest.headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(format!("{at}: `{name}` is not a valid header name"));
        }
        if reqwest::header::HeaderValue::from_str(value.value()).is_err() {
            problems.push(format!(
                        "{at}: the value of header `{name}` is not a valid header value (no newlines or control characters)"
                    ));
        }
    }
    if let Some(auth) = &dest.auth {
        if let Some(token) = &auth.bearer
            && token.value().is_empty()
        {
            problems.push(format!(
                "{at}: auth bearer is empty (`{}` resolved to nothing)",
                token.raw()
            ));
        }
        if let Some(basic) = &auth.basic
            && basic.password.value().is_empty()
        {
            problems.push(format!(
                "{at}: auth basic password is empty (`{}` resolved to nothing)",
                basic.password.raw()
            ));
        }
    }
}

/// `sources:`: unique names, a configured route, and each kind's own fields.
fn check_sources(config: &Config, problems: &mut Found) {
    let mut sources = HashSet::new();
    for source in &config.sources {
        let at = format!("source `{}`", source.name);
        problems.at(At::Source(source.name.clone()));
        if !sources.insert(source.name.as_str()) {
            problems.push(format!("{at}: the name is used twice"));
        }
        if !config.routes.iter().any(|r| r.name == source.route) {
            problems.push(format!("{at}: route `{}` is not configured", source.route));
        }
        check_timers(&at, source, problems);
        match source.kind {
            SourceKind::RingcentralWebsocket => {
                check_websocket_source(&at, config, source, problems)
            }
            SourceKind::Signalr => check_signalr_source(&at, source, problems),
        }
    }
}

/// Every source's timers: a keep-alive above zero, a server timeout above it.
fn check_timers(at: &str, source: &SourceConfig, problems: &mut Found) {
    if source.keep_alive.is_zero() {
        problems.push(format!(
            "{at}: keep_alive must be above 0 (a zero interval would send Pings without pause)"
        ));
    }
    if source.server_timeout <= source.keep_alive {
        problems.push(format!(
            "{at}: server_timeout ({}) must exceed keep_alive ({}): the server's keep-alives come no faster than ours",
            humantime::format_duration(source.server_timeout),
            humantime::format_duration(source.keep_alive)
        ));
    }
}

/// A `signalr` source: exactly one way to the hub, GUID subscriptions.
fn check_signalr_source(at: &str, source: &SourceConfig, problems: &mut Found) {
    match (&source.token_url, &source.hub_url, &source.token) {
        (Some(url), None, None) => check_url(at, url.value(), problems),
        (None, Some(hub), Some(token)) => {
            if let Err(e) = super::hub_base(hub.value()) {
                problems.push(format!("{at}: {e}"));
            }
            if token.value().is_empty() {
                problems.push(format!(
                    "{at}: token is empty (`{}` resolved to nothing)",
                    token.raw()
                ));
            }
        }
        _ => problems.push(format!(
            "{at}: needs token_url, or hub_url and token (not both)"
        )),
    }
    if source.subscriptions.is_empty() {
        problems.push(format!(
            "{at}: subscriptions is empty, so no event would ever arrive"
        ));
    }
    for s in &source.subscriptions {
        if !crate::mapping::helpers::is_guid(&s.entity_id) {
            problems.push(format!(
                "{at}: entity_id `{}` is not a GUID (RTE would answer Invalid EntityId)",
                s.entity_id
            ));
        }
    }
}

fn humanize(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn known(mappings: &MappingSet) -> String {
    mappings
        .vendors()
        .map(|v| v.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_url(at: &str, url: &str, problems: &mut Found) {
    match reqwest::Url::parse(url) {
        Ok(u) if u.fragment().is_some() => problems.push(format!(
            "{at}: url `{url}` has a #fragment, which is never sent to a server"
        )),
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
        Ok(u) => problems.push(format!(
            "{at}: url scheme `{}` is not http or https",
            u.scheme()
        )),
        Err(e) => problems.push(format!("{at}: url `{url}` is not a URL: {e}")),
    }
}

/// `routes[].ringcentral`: what RingCentral would refuse, or what could not work.
fn check_keeper(at: &str, route: &RouteConfig, rc: &RingCentralKeeperConfig, problems: &mut Found) {
    let at = format!("{at}: ringcentral");
    if route.from != "ringcentral" {
        problems.push(format!(
            "{at}: the route must be `from: ringcentral` (it receives what the subscription sends)"
        ));
    }
    if route
        .auth
        .as_ref()
        .and_then(|a| a.verification_token())
        .is_none()
    {
        problems.push(format!(
            "{at}: the route needs `auth: {{verification_token: …}}` (sent as the subscription's verificationToken)"
        ));
    }
    check_url(&format!("{at}.address"), &rc.address, problems);
    check_ringcentral(
        &format!("{at}."),
        &rc.server,
        [&rc.client_id, &rc.client_secret, &rc.jwt],
        (&format!("{at}.event_filters"), &rc.event_filters),
        problems,
    );
    let expires = rc.expires_in.as_secs();
    if !(60..=315_360_000).contains(&expires) {
        problems.push(format!(
            "{at}.expires_in: {expires} s is out of range (1 minute to 3650 days)"
        ));
    }
    if rc.renew_before.is_some_and(|r| r >= rc.expires_in) {
        problems.push(format!("{at}.renew_before must be shorter than expires_in"));
    }
    if rc.check_every.is_zero() {
        problems.push(format!("{at}.check_every must be more than 0"));
    }
}

/// RingCentral credentials (`server`, then client id, client secret and JWT, each named
/// after `at`) and event filters (named `filters_at`): what the platform would refuse.
fn check_ringcentral(
    at: &str,
    server: &str,
    [client_id, client_secret, jwt]: [&EnvString; 3],
    (filters_at, filters): (&str, &[String]),
    problems: &mut Found,
) {
    check_url(&format!("{at}server"), server, problems);
    for (name, value) in [
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("jwt", jwt),
    ] {
        if value.value().is_empty() {
            problems.push(format!(
                "{at}{name} is empty (`{}` resolved to nothing)",
                value.raw()
            ));
        }
    }
    if filters.is_empty() {
        problems.push(format!(
            "{filters_at} is empty, so no event would ever arrive"
        ));
    }
    for filter in filters {
        if !filter.starts_with("/restapi/") {
            problems.push(format!(
                "{filters_at}: `{filter}` is not a RingCentral event filter (they start with /restapi/)"
            ));
        }
    }
}

/// A `ringcentral-websocket` source: credentials, filters, a RingCentral route.
fn check_websocket_source(at: &str, config: &Config, source: &SourceConfig, problems: &mut Found) {
    let Some(rc) = &source.ringcentral else {
        problems.push(format!(
            "{at}: a ringcentral-websocket source needs `ringcentral: {{client_id, client_secret, jwt}}`"
        ));
        return;
    };
    check_ringcentral(
        &format!("{at}: ringcentral."),
        &rc.server,
        [&rc.client_id, &rc.client_secret, &rc.jwt],
        (&format!("{at}: event_filters"), &source.event_filters),
        problems,
    );
    if config
        .routes
        .iter()
        .find(|r| r.name == source.route)
        .is_some_and(|r| r.from != "ringcentral")
    {
        problems.push(format!(
            "{at}: route `{}` must be `from: ringcentral` (WebSocket events are RingCentral payloads)",
            source.route
        ));
    }
    if !source.subscriptions.is_empty() || source.token_url.is_some() || source.hub_url.is_some() {
        problems.push(format!(
            "{at}: subscriptions, token_url and hub_url are for signalr sources"
        ));
    }
}
