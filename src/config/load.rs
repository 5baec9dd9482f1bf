//! Loading the configuration: YAML → `Config`, then `${NAME}` references resolved from the
//! environment (after parsing, so a secret never appears in a YAML error), then pure
//! validation against the mappings before anything opens a socket.

use super::lines::{At, Problem};
use super::{Ack, Config, EnvString, InboundAuth, OutboundAuth, StoreConfig};
use crate::mapping::AUTO;
use crate::mapping::MappingSet;
use crate::model::standard_webhooks::Secret;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not fit the schema (unknown key, wrong type); the message has the line.
    #[error("{file}: {message}")]
    Parse {
        /// The config file.
        file: PathBuf,
        /// serde-saphyr's message with line and column.
        message: String,
    },
    /// `${NAME}` references to variables that are not set.
    #[error("{file}: environment variable(s) not set: {}", names.join(", "))]
    MissingEnv {
        /// The config file.
        file: PathBuf,
        /// The missing names.
        names: Vec<String>,
    },
    /// Semantic problems (unknown vendor, duplicate path, ...), one per entry.
    #[error("{file}: invalid configuration:\n  {}", problems.join("\n  "))]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// Each problem.
        problems: Vec<String>,
    },
}

/// Reads and parses a config file and resolves its `${NAME}` references from the process
/// environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(path, &text, &|name| std::env::var(name).ok())
}

/// Parses config text and resolves `${NAME}` with `lookup`.
pub fn parse(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut config: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut missing = Vec::new();
    for_each_env_string(&mut config, &mut |s| missing.extend(s.resolve(lookup)));
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(ConfigError::MissingEnv {
            file: path.to_path_buf(),
            names: missing,
        });
    }
    config.origin = Some(std::sync::Arc::new(super::Origin {
        file: path.to_path_buf(),
        lines: super::lines::Lines::index(text),
    }));
    Ok(config)
}

fn for_each_env_string(config: &mut Config, f: &mut dyn FnMut(&mut EnvString)) {
    if let Some(t) = config.server.admin_token.as_mut() {
        f(t);
    }
    if let Some(fallback) = config.fallback.as_mut() {
        f(fallback);
    }
    if let StoreConfig::Nats { url, .. } = &mut config.store {
        f(url);
    }
    for source in &mut config.sources {
        source.token_url.iter_mut().for_each(&mut *f);
        source.hub_url.iter_mut().for_each(&mut *f);
        source.token.iter_mut().for_each(&mut *f);
        if let Some(rc) = source.ringcentral.as_mut() {
            f(&mut rc.client_id);
            f(&mut rc.client_secret);
            f(&mut rc.jwt);
        }
        if let Some(auth) = source.rest_auth.as_mut() {
            auth.bearer.iter_mut().for_each(&mut *f);
            if let Some(b) = auth.basic.as_mut() {
                f(&mut b.username);
                f(&mut b.password);
            }
        }
    }
    for route in &mut config.routes {
        if let Some(auth) = route.auth.as_mut() {
            match auth {
                InboundAuth::VerificationToken(token) | InboundAuth::Bearer(token) => f(token),
                InboundAuth::StandardWebhooks(sw) => sw.secrets.iter_mut().for_each(&mut *f),
                InboundAuth::Basic(b) => {
                    f(&mut b.username);
                    f(&mut b.password);
                }
                InboundAuth::Header(h) => f(&mut h.value),
            }
        }
        if let Some(rc) = route.ringcentral.as_mut() {
            f(&mut rc.client_id);
            f(&mut rc.client_secret);
            f(&mut rc.jwt);
        }
        for dest in &mut route.to {
            dest.url.iter_mut().for_each(&mut *f);
            dest.headers.values_mut().for_each(&mut *f);
            if let Some(sign) = dest.sign.as_mut() {
                f(&mut sign.standard_webhooks.secret);
            }
            if let Some(OutboundAuth {
                basic,
                bearer,
                jwt_secret,
            }) = dest.auth.as_mut()
            {
                bearer.iter_mut().for_each(&mut *f);
                jwt_secret.iter_mut().for_each(&mut *f);
                if let Some(b) = basic {
                    f(&mut b.username);
                    f(&mut b.password);
                }
            }
        }
    }
}

/// Checks a loaded config against the mappings; returns every problem (empty: valid),
/// each starting `file:line: ` when the config came from a file. Pure: opens nothing.
pub fn validate(config: &Config, mappings: &MappingSet) -> Vec<String> {
    let problems = problems(config, mappings);
    match &config.origin {
        Some(origin) => problems
            .into_iter()
            .map(|p| match origin.lines.at(&p.at) {
                Some(line) => format!("{}:{line}: {}", origin.file.display(), p.message),
                None => format!("{}: {}", origin.file.display(), p.message),
            })
            .collect(),
        None => problems.into_iter().map(|p| p.message).collect(),
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

fn problems(config: &Config, mappings: &MappingSet) -> Vec<Problem> {
    let mut problems = Found::default();
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
    if let StoreConfig::Nats {
        url,
        stream,
        replicas,
        partitions,
    } = &config.store
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
    if let Some(fallback) = &config.fallback {
        problems.at(At::Key("fallback"));
        check_url("fallback", fallback.value(), &mut problems);
    }
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
            check_keeper(&at, route, rc, &mut problems);
        }
        if route.from != AUTO && !mappings.vendor(&route.from).is_some_and(|v| v.can_decode()) {
            problems.push(format!(
                "{at}: from `{}` is not a vendor with a decode mapping (known: {})",
                route.from,
                known(mappings)
            ));
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
                InboundAuth::VerificationToken(v) => empty("verification_token", v, &mut problems),
                InboundAuth::Bearer(v) => empty("bearer", v, &mut problems),
                InboundAuth::Header(h) => empty("header value", &h.value, &mut problems),
                InboundAuth::Basic(b) => empty("basic password", &b.password, &mut problems),
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
        if route.ack == Ack::Proxy && config.server.request_timeout <= config.delivery.timeout {
            problems.push(format!(
                "{at}: ack proxy forwards within delivery.timeout ({}), which must be shorter than \
                 server.request_timeout ({}): otherwise the sender gets 408 before the forward \
                 can time out (and on_timeout: queue could never act)",
                humanize(config.delivery.timeout),
                humanize(config.server.request_timeout)
            ));
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
                (Some(url), None) => check_url(&at, url.value(), &mut problems),
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
                if t.is_empty()
                    || (t.contains('*') && !t.ends_with('*'))
                    || t.matches('*').count() > 1
                {
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
                if dest.hub.is_some() {
                    if auth.basic.is_some() || auth.bearer.is_some() {
                        problems.push(format!("{at}: a hub's auth takes only jwt_secret"));
                    }
                } else if auth.basic.is_some() == auth.bearer.is_some() || auth.jwt_secret.is_some()
                {
                    problems.push(format!("{at}: auth needs exactly one of basic, bearer"));
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
    }
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
        if source.kind == super::SourceKind::RingcentralWebsocket {
            check_websocket_source(&at, config, source, &mut problems);
            continue;
        }
        if source.keep_alive.is_zero() {
            problems.push(format!(
                "{at}: keep_alive must be above 0 (a zero interval would send Pings without pause)"
            ));
        }
        if source.server_timeout <= source.keep_alive {
            problems.push(format!(
                "{at}: server_timeout ({}) must exceed keep_alive ({}): the hub's Pings come no faster than ours",
                humantime::format_duration(source.server_timeout),
                humantime::format_duration(source.keep_alive)
            ));
        }
        match (&source.token_url, &source.hub_url, &source.token) {
            (Some(url), None, None) => check_url(&at, url.value(), &mut problems),
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
    problems.list
}

fn humanize(d: std::time::Duration) -> String {
    format!("{d:?}")
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
fn check_keeper(
    at: &str,
    route: &super::RouteConfig,
    rc: &super::RingCentralKeeperConfig,
    problems: &mut Found,
) {
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
    [client_id, client_secret, jwt]: [&super::EnvString; 3],
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
fn check_websocket_source(
    at: &str,
    config: &super::Config,
    source: &super::SourceConfig,
    problems: &mut Found,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("test.yaml"), text, &|name| {
            (name == "TOKEN").then(|| "s3cret".to_string())
        })
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let err = parse_text("server:\n  listen: 127.0.0.1:1\n  lisen: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn source_timers_that_cannot_work_are_refused() {
        let mappings = crate::mapping::MappingSet::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
        )
        .unwrap();
        let source = |timers: &str| {
            format!(
                "routes:\n  - {{ name: r, path: /r, from: enreach, to: [ {{ name: d, vendor: vidyo, url: 'http://x/' }} ] }}\nsources:\n  - {{ name: rte, kind: signalr, route: r, token_url: 'http://127.0.0.1:1/t', subscriptions: [ {{ entity_id: '00000000-0000-0000-0000-000000000000', event: UserCallInComing }} ]{timers} }}\n"
            )
        };
        let all =
            |timers: &str| validate(&parse_text(&source(timers)).unwrap(), &mappings).join("\n");
        assert!(all("").is_empty(), "{}", all(""));
        let equal = all(", keep_alive: 30s, server_timeout: 30s");
        assert!(
            equal.contains("server_timeout (30s) must exceed keep_alive (30s)"),
            "{equal}"
        );
        // A zero keep-alive would send Pings in a tight loop.
        let zero = all(", keep_alive: 0s");
        assert!(zero.contains("keep_alive must be above 0"), "{zero}");
    }

    #[test]
    fn hostile_paths_and_header_names_are_refused() {
        let mappings = crate::mapping::MappingSet::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
        )
        .unwrap();
        let route = |name: &str, path: &str, auth: &str| {
            format!(
                "  - {{ name: {name}, path: '{path}', from: vidyo{auth}, to: [ {{ name: d, vendor: vidyo, url: 'http://x/' }} ] }}\n"
            )
        };
        let text = format!(
            "routes:\n{}{}{}{}{}",
            route("empty", "/hooks//", ""),
            route("space", "/hooks/a b", ""),
            route("plain", "/hooks/c", ""),
            route("slash", "/hooks/c/", ""),
            route(
                "hdr",
                "/hooks/h",
                ", auth: { header: { name: 'X Key', value: v } }"
            )
        );
        let config = parse_text(&text).unwrap();
        let all = validate(&config, &mappings).join("\n");
        for expected in [
            "route `empty`: path `/hooks//` has an empty segment",
            "route `space`: path `/hooks/a b` has an empty segment or a space",
            "route `slash`: path `/hooks/c/` is used by another route",
            "route `hdr`: auth header name `X Key` is not a valid HTTP header name",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn auth_takes_exactly_one_scheme_by_its_type() {
        let route = |auth: &str| {
            format!(
                "routes:\n  - name: r\n    path: /r\n    from: vidyo\n    auth: {auth}\n    to: [ {{ name: d, vendor: vidyo, url: 'http://x/' }} ]\n"
            )
        };
        let two = parse_text(&route("{ bearer: a, basic: { username: u, password: p } }"))
            .unwrap_err()
            .to_string();
        assert!(
            two.contains("line 5") && two.contains("found `bearer` and `basic`"),
            "{two}"
        );
        let none = parse_text(&route("{}")).unwrap_err().to_string();
        assert!(
            none.contains("auth needs one of verification_token"),
            "{none}"
        );
        let typo = parse_text(&route("{ baerer: a }")).unwrap_err().to_string();
        assert!(typo.contains("baerer"), "{typo}");
        assert!(parse_text(&route("{ bearer: a }")).is_ok());
    }

    #[test]
    fn missing_variables_are_named_and_values_never_printed() {
        let text = "routes:\n  - name: r\n    path: /r\n    from: vidyo\n    auth: { bearer: \"${TOKEN}\" }\n    to:\n      - { name: d, vendor: vidyo, url: \"http://x/${NOPE}\" }\n";
        let err = parse_text(text).unwrap_err();
        assert!(matches!(&err, ConfigError::MissingEnv { names, .. } if names == &["NOPE"]));
        let ok = parse_text(&text.replace("${NOPE}", "y")).unwrap();
        let Some(crate::config::InboundAuth::Bearer(bearer)) = &ok.routes[0].auth else {
            panic!("a bearer auth: {:?}", ok.routes[0].auth);
        };
        assert_eq!(bearer.value(), "s3cret");
        assert!(!format!("{ok:?}").contains("s3cret"));
    }

    #[test]
    fn validation_reports_every_problem() {
        let mappings =
            MappingSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
        let config = parse_text(
            "server: { admin_listen: 0.0.0.0:9 }\nroutes:\n  - { name: a, path: /a, from: skype, to: [ { name: d, vendor: nope, url: 'ftp://x' } ] }\n  - { name: a, path: /a, from: vidyo, ack: proxy, to: [] }\n  - { name: v, path: /v, from: vidyo, auth: { verification_token: t }, to: [ { name: d, vendor: vidyo, url: 'http://x/' } ] }\n  - { name: p, path: /p, from: vidyo, ack: proxy, to: [ { name: d, vendor: vidyo, url: 'http://x/' } ] }\n  - { name: l, path: /l, from: vidyo, to: [ { name: d, vendor: vidyo, url: 'http://x/', rate_limit: { per_second: 0 }, max_in_flight: 0, circuit_breaker: { failures: 0 } } ] }\n",
        )
        .unwrap();
        let problems = validate(&config, &mappings);
        let all = problems.join("\n");
        for expected in [
            "admin_listen 0.0.0.0:9 is not a loopback address",
            "from `skype`",
            "vendor `nope`",
            "scheme `ftp`",
            "the name is used twice",
            "path `/a` is used by another route",
            "`to` needs at least one destination",
            "route `v`: verification_token needs a source vendor whose vendor.yaml names a verification_header",
            "route `l`, destination `d`: rate_limit per_second and burst must be above 0",
            "route `l`, destination `d`: max_in_flight must be above 0",
            "route `p`: ack proxy forwards within delivery.timeout (15s), which must be shorter than server.request_timeout (10s)",
            "route `l`, destination `d`: circuit_breaker failures and open_for must be above 0",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    /// Configs that passed `check` and then failed (or misbehaved) at `serve` (issue 11).
    #[test]
    fn careless_configs_are_refused_naming_what_is_wrong() {
        let mappings =
            MappingSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
        let config = parse(
            Path::new("test.yaml"),
            "server: { listen: 127.0.0.1:7000, admin_listen: 127.0.0.1:7000, request_timeout: 0s, admin_token: \"${EMPTY}\", header_read_timeout: 0s, max_connections: 0 }\n\
             delivery: { timeout: 0s, max_queue_depth: 0 }\n\
             routes:\n\
             \x20 - { name: a, path: '/a/{id}', from: vidyo, to: [ { name: d, vendor: vidyo, url: 'http://x/#frag', headers: { X-Bad: \"a\\nb\" } } ] }\n\
             \x20 - { name: b, path: '/b/*rest', from: vidyo, auth: { bearer: \"${EMPTY}\" }, to: [ { name: d, vendor: vidyo, url: 'http://x/' } ] }\n\
             \x20 - { name: c, path: '/c/:id', from: vidyo, to: [ { name: d, vendor: vidyo, url: 'http://x/', auth: { basic: { username: u, password: \"${EMPTY}\" } } } ] }\n\
             \x20 - { name: e, path: '/e', from: vidyo, auth: { standard_webhooks: { secrets: [plain] } }, to: [ { name: d, vendor: vidyo, url: 'http://x/', sign: { standard_webhooks: { secret: 'whsec_' } } } ] }\n\
             \x20 - { name: k, path: '/k', from: vidyo, ringcentral: { client_id: c, client_secret: \"${EMPTY}\", jwt: j, address: 'gw.example.com/k', event_filters: [telephony], expires_in: 20s, renew_before: 1h }, to: [] }\n\
             \x20 - { name: h, path: '/h', from: vidyo, to: [ { name: both, vendor: enreach, url: 'http://x/', hub: /rte }, { name: open, vendor: enreach, hub: /e }, { name: short, vendor: enreach, hub: '/x/', auth: { jwt_secret: s } }, { name: twice, vendor: enreach, hub: /x, auth: { jwt_secret: 0123456789abcdef } }, { name: again, vendor: enreach, hub: /x, auth: { jwt_secret: 0123456789abcdef, bearer: b } } ] }\n\
             sources:\n\
             \x20 - { name: s, kind: signalr, route: nowhere, token_url: 'http://x/t', hub_url: 'wss://h/rte', subscriptions: [ { entity_id: bob, event: UserStatus } ] }\n\
             \x20 - { name: t, kind: signalr, route: a, hub_url: 'wss://h/rte', token: \"${EMPTY}\", subscriptions: [] }\n",
            &|name| (name == "EMPTY").then(String::new),
        )
        .unwrap();
        let all = validate(&config, &mappings).join("\n");
        for expected in [
            "server.listen and server.admin_listen are the same address",
            "server.request_timeout must be above 0",
            "server.header_read_timeout must be above 0",
            "server.max_connections must be above 0",
            "delivery.timeout must be above 0",
            "delivery.max_queue_depth must be above 0",
            "server.admin_token is empty",
            "route `a`: path `/a/{id}` is not a literal path",
            "route `k`: ringcentral: the route must be `from: ringcentral`",
            "route `k`: ringcentral: the route needs `auth: {verification_token: …}`",
            "route `k`: ringcentral.address: url `gw.example.com/k` is not a URL",
            "route `k`: ringcentral.client_secret is empty",
            "route `k`: ringcentral.event_filters: `telephony` is not a RingCentral event filter",
            "route `k`: ringcentral.expires_in: 20 s is out of range",
            "route `k`: ringcentral.renew_before must be shorter than expires_in",
            "route `b`: path `/b/*rest` is not a literal path",
            "route `c`: path `/c/:id` is not a literal path",
            "route `a`, destination `d`: url `http://x/#frag` has a #fragment",
            "route `a`, destination `d`: the value of header `X-Bad` is not a valid header value",
            "route `b`: auth bearer is empty",
            "route `c`, destination `d`: auth basic password is empty",
            "route `e`: auth standard_webhooks secret `plain`: a Standard Webhooks secret is `whsec_`",
            "route `e`, destination `d`: sign standard_webhooks secret `whsec_`: a Standard Webhooks secret",
            "route `h`, destination `both`: needs exactly one of url, hub",
            "route `h`, destination `open`: hub `/e` is a route's or a reserved path",
            "route `h`, destination `open`: a hub needs auth.jwt_secret",
            "route `h`, destination `short`: hub `/x/` must be a literal path",
            "route `h`, destination `short`: auth jwt_secret (`s`) must be at least 16 characters",
            "route `h`, destination `again`: hub `/x` is served by another destination already",
            "route `h`, destination `again`: a hub's auth takes only jwt_secret",
            "source `s`: route `nowhere` is not configured",
            "source `s`: needs token_url, or hub_url and token (not both)",
            "source `s`: entity_id `bob` is not a GUID",
            "source `t`: subscriptions is empty",
            "source `t`: token is empty",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn a_nats_store_is_checked_before_anything_connects() {
        let mappings =
            MappingSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
        let config = parse(
            Path::new("test.yaml"),
            "store: { kind: nats, url: \"${EMPTY}\", stream: 'bad.name', replicas: 7, partitions: 0 }\n",
            &|name| (name == "EMPTY").then(String::new),
        )
        .unwrap();
        let all = validate(&config, &mappings).join("\n");
        for expected in [
            "store.url is empty",
            "store.stream `bad.name` must be 1–32 characters",
            "store.replicas 7 must be 1 to 5",
            "store.partitions 0 must be 1 to 1024",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        let good = parse(
            Path::new("test.yaml"),
            "store: { kind: nats, url: 'nats://127.0.0.1:4222' }\n",
            &|_| None,
        )
        .unwrap();
        assert!(validate(&good, &mappings).is_empty());
    }

    #[test]
    fn a_port_out_of_range_says_so() {
        let err = parse_text("server: { listen: 127.0.0.1:99999 }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port") && err.contains("65535"), "{err}");
    }
}
