//! Loading the configuration: YAML → `Config`, then `${NAME}` references resolved from the
//! environment (after parsing, so a secret never appears in a YAML error). Validation against
//! the mappings follows (`validate.rs`), before anything opens a socket.

use super::{Config, EnvString, InboundAuth, OutboundAuth, StoreConfig};
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    // The I/O error is in the message, not a `source`: error chains would print it twice.
    #[error("{file}: cannot read: {error}")]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        error: std::io::Error,
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
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        file: path.to_path_buf(),
        error,
    })?;
    parse(path, &text, &|name| std::env::var(name).ok())
}

/// Parses config text and resolves `${NAME}` with `lookup`. Relative paths (`mappings`,
/// `store.path`, defaults included) are made relative to `path`'s directory instead of the
/// current one (`Path::join` keeps an absolute path as it is).
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
    // Relative paths in a file mean "next to this file", whichever directory callgate is
    // started from (`callgate dlq --config /etc/callgate/callgate.yaml list` from anywhere).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        config.mappings = dir.join(&config.mappings);
        if let StoreConfig::Sqlite { path } = &mut config.store {
            *path = dir.join(&*path);
        }
        for file in config.directories.values_mut() {
            *file = dir.join(&*file);
        }
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
                InboundAuth::Signature(key) => f(&mut key.secret),
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
                oauth2_client_credentials,
            }) = dest.auth.as_mut()
            {
                bearer.iter_mut().for_each(&mut *f);
                jwt_secret.iter_mut().for_each(&mut *f);
                if let Some(o) = oauth2_client_credentials {
                    f(&mut o.token_url);
                    f(&mut o.client_id);
                    f(&mut o.client_secret);
                }
                if let Some(b) = basic {
                    f(&mut b.username);
                    f(&mut b.password);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::MappingSet;
    use std::sync::Arc;

    /// Every problem `validate` finds, as `callgate check` prints them.
    fn validate(config: &Config, mappings: &MappingSet) -> Vec<String> {
        let config = Arc::new(config.clone());
        match super::super::validate(&config, mappings) {
            Ok(_) => Vec::new(),
            Err(problems) => super::super::describe(&config, &problems),
        }
    }

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
            "server: { admin_listen: 0.0.0.0:9 }\nroutes:\n  - { name: a, path: /a, from: skype, to: [ { name: d, vendor: nope, url: 'ftp://x' } ] }\n  - { name: a, path: /a, from: vidyo, ack: proxy, to: [] }\n  - { name: v, path: /v, from: vidyo, auth: { verification_token: t }, to: [ { name: d, vendor: vidyo, url: 'http://x/' } ] }\n  - { name: p, path: /p, from: vidyo, ack: proxy, forward_timeout: 10s, to: [ { name: d, vendor: vidyo, url: 'http://x/' } ] }\n  - { name: q, path: /q, from: vidyo, forward_timeout: 1s, to: [ { name: d, vendor: vidyo, url: 'http://x/' } ] }\n  - { name: l, path: /l, from: vidyo, to: [ { name: d, vendor: vidyo, url: 'http://x/', rate_limit: { per_second: 0 }, max_in_flight: 0, circuit_breaker: { failures: 0 } } ] }\n",
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
            "route `p`: forward_timeout 10s must be above 0 and shorter than server.request_timeout 10s",
            "route `q`: forward_timeout is for ack: proxy routes",
            "route `l`, destination `d`: circuit_breaker failures and open_for must be above 0",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    /// Vendor signature schemes: `auth: { signature }` only where the source vendor declares
    /// one, a vendor with a signed challenge only with it, and `public_url` a base URL.
    #[test]
    fn signature_auth_fits_its_vendor() {
        let mappings =
            MappingSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
        let config = parse_text(
            "routes:\n  - { name: v, path: /v, from: vidyo, auth: { signature: { secret: s } }, to: [ { name: d, vendor: vidyo, url: 'http://x/' } ] }\n  - { name: z, path: /z, from: zoom-phone, to: [ { name: d, vendor: vidyo, url: 'http://x/' } ] }\n  - { name: t, path: /t, from: twilio, public_url: 'https://h/x?y=1', auth: { signature: { secret: s } }, to: [ { name: d, vendor: vidyo, url: 'http://x/' } ] }\n",
        )
        .unwrap();
        let all = validate(&config, &mappings).join("\n");
        for expected in [
            "route `v`: auth signature needs a source vendor whose vendor.yaml declares `signature:` (vidyo does not)",
            "route `z`: zoom-phone validates endpoints with a signed challenge: the route needs `auth: {signature: {secret: …}}`",
            "route `t`: public_url `https://h/x?y=1` must be an http(s) URL without query",
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
