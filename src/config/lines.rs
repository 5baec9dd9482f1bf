//! Where a configuration entry is written: a second, span-keeping parse of the config text
//! (routes, destinations and section keys only), so that a semantic problem found by
//! `validate` names its line as a syntax error does. A problem carries its place ([`At`]),
//! set where it is found; its message is never read to find it.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// Line numbers (1-based) of a config file's sections, keys, routes, destinations and sources.
#[derive(Debug, Default)]
pub struct Lines {
    sections: BTreeMap<String, usize>,
    keys: BTreeMap<(String, String), usize>,
    routes: BTreeMap<String, usize>,
    destinations: BTreeMap<(String, String), usize>,
    sources: BTreeMap<String, usize>,
}

/// Where in a configuration a problem is, known when the problem is found (never read back
/// from its message).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum At {
    /// The configuration as a whole.
    #[default]
    Whole,
    /// A key of a section (`server.request_timeout`), or a section (`fallback`).
    Key(&'static str),
    /// A route, by name.
    Route(String),
    /// A destination of a route, by route and destination name.
    Destination(String, String),
    /// A source, by name.
    Source(String),
}

/// One problem of a configuration: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where it is.
    pub at: At,
    /// What is wrong (it names the route, destination, source or key, as it always has).
    pub message: String,
}

/// The top-level sections, named (serde's `flatten` and `untagged` would lose the spans).
#[derive(Deserialize)]
struct Skeleton {
    #[serde(default)]
    server: Option<Spanned<Keys>>,
    #[serde(default)]
    delivery: Option<Spanned<Keys>>,
    #[serde(default)]
    store: Option<Spanned<Keys>>,
    #[serde(default)]
    archive: Option<Spanned<Keys>>,
    #[serde(default)]
    mappings: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    fallback: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    routes: Option<Spanned<Vec<Spanned<Route>>>>,
    #[serde(default)]
    sources: Option<Vec<Spanned<Named>>>,
}

type Keys = BTreeMap<String, Spanned<IgnoredAny>>;

#[derive(Deserialize)]
struct Route {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    to: Vec<Spanned<Named>>,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

fn line<T>(spanned: &Spanned<T>) -> Option<usize> {
    usize::try_from(spanned.referenced.line())
        .ok()
        .filter(|l| *l > 0)
}

impl Lines {
    /// Indexes `text`; text that does not parse yields an empty index (the syntax error is
    /// reported by the real parse).
    pub fn index(text: &str) -> Lines {
        let mut lines = Lines::default();
        let Ok(skeleton) = serde_saphyr::from_str::<Skeleton>(text) else {
            return lines;
        };
        let keyed = [
            ("server", &skeleton.server),
            ("delivery", &skeleton.delivery),
            ("store", &skeleton.store),
            ("archive", &skeleton.archive),
        ];
        for (name, section) in keyed {
            let Some(section) = section else { continue };
            if let Some(l) = line(section) {
                lines.sections.insert(name.to_string(), l);
            }
            for (key, value) in &section.value {
                if let Some(l) = line(value) {
                    lines.keys.insert((name.to_string(), key.clone()), l);
                }
            }
        }
        for (name, section) in [
            ("mappings", &skeleton.mappings),
            ("fallback", &skeleton.fallback),
        ] {
            if let Some(l) = section.as_ref().and_then(line) {
                lines.sections.insert(name.to_string(), l);
            }
        }
        if let Some(routes) = &skeleton.routes {
            if let Some(l) = line(routes) {
                lines.sections.insert("routes".to_string(), l);
            }
            for route in &routes.value {
                let Some(route_name) = &route.value.name else {
                    continue;
                };
                if let Some(l) = line(route) {
                    lines.routes.entry(route_name.clone()).or_insert(l);
                }
                for dest in &route.value.to {
                    if let (Some(dest_name), Some(l)) = (&dest.value.name, line(dest)) {
                        lines
                            .destinations
                            .entry((route_name.clone(), dest_name.clone()))
                            .or_insert(l);
                    }
                }
            }
        }
        for source in skeleton.sources.iter().flatten() {
            if let (Some(name), Some(l)) = (&source.value.name, line(source)) {
                lines.sources.entry(name.clone()).or_insert(l);
            }
        }
        lines
    }

    /// The line of a place in the configuration.
    pub fn at(&self, at: &At) -> Option<usize> {
        match at {
            At::Whole => None,
            At::Key(key) => {
                let (section, key) = key.split_once('.').unwrap_or((key, ""));
                self.keys
                    .get(&(section.to_string(), key.to_string()))
                    .or_else(|| self.sections.get(section))
                    .copied()
            }
            At::Route(route) => self.routes.get(route).copied(),
            At::Destination(route, dest) => self
                .destinations
                .get(&(route.clone(), dest.clone()))
                .or_else(|| self.routes.get(route))
                .copied(),
            At::Source(source) => self.sources.get(source).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_find_their_lines() {
        let lines = Lines::index(
            "server:\n  listen: 127.0.0.1:1\n  request_timeout: 0s\n\
             delivery: { timeout: 0s }\n\
             routes:\n  - name: a\n    path: /a\n    to:\n      - { name: d, vendor: v, url: 'x' }\n\
             \x20 - { name: b, path: /b, to: [] }\n",
        );
        assert_eq!(lines.at(&At::Key("server.request_timeout")), Some(3));
        assert_eq!(lines.at(&At::Key("server.nothing_here")), Some(2));
        assert_eq!(lines.at(&At::Key("delivery.timeout")), Some(4));
        let (a, d) = ("a".to_string(), "d".to_string());
        assert_eq!(lines.at(&At::Destination(a.clone(), d)), Some(9));
        assert_eq!(lines.at(&At::Route(a.clone())), Some(6));
        assert_eq!(lines.at(&At::Route("b".into())), Some(10));
        assert_eq!(lines.at(&At::Route("zz".into())), None);
        assert_eq!(Lines::index(": : :").at(&At::Route(a)), None);
        let sources = Lines::index(
            "routes: []\nsources:\n  - name: rte\n    kind: signalr\n  - { name: ws }\n",
        );
        assert_eq!(sources.at(&At::Source("rte".into())), Some(3));
        assert_eq!(sources.at(&At::Source("ws".into())), Some(5));
    }
}
