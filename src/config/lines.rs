//! Where a configuration entry is written: a second, span-keeping parse of the config text
//! (routes, destinations and section keys only), so that a semantic problem found by
//! `validate` names its line as a syntax error does.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// Line numbers (1-based) of a config file's sections, keys, routes and destinations.
#[derive(Debug, Default)]
pub struct Lines {
    sections: BTreeMap<String, usize>,
    keys: BTreeMap<(String, String), usize>,
    routes: BTreeMap<String, usize>,
    destinations: BTreeMap<(String, String), usize>,
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
    mappings: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    fallback: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    routes: Option<Spanned<Vec<Spanned<Route>>>>,
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
        lines
    }

    /// The line a `validate` problem is about, read from the place it starts with:
    /// ``route `a`, destination `d`: …``, ``route `a`: …``, `server.key …`, `delivery.key …`,
    /// `store …`, `fallback …`.
    pub fn of(&self, problem: &str) -> Option<usize> {
        if let Some(rest) = problem.strip_prefix("route `") {
            let (route, rest) = rest.split_once('`')?;
            if let Some(rest) = rest.strip_prefix(", destination `") {
                let (dest, _) = rest.split_once('`')?;
                if let Some(l) = self
                    .destinations
                    .get(&(route.to_string(), dest.to_string()))
                {
                    return Some(*l);
                }
            }
            return self.routes.get(route).copied();
        }
        let section: String = problem
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let key: String = problem[section.len()..]
            .strip_prefix('.')
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        self.keys
            .get(&(section.clone(), key))
            .or_else(|| self.sections.get(&section))
            .copied()
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
        assert_eq!(lines.of("server.request_timeout must be above 0"), Some(3));
        assert_eq!(lines.of("server.nothing_here must be above 0"), Some(2));
        assert_eq!(lines.of("delivery.timeout must be above 0"), Some(4));
        assert_eq!(lines.of("route `a`, destination `d`: url"), Some(9));
        assert_eq!(lines.of("route `a`: path"), Some(6));
        assert_eq!(lines.of("route `b`: `to` needs"), Some(10));
        assert_eq!(lines.of("route `zz`: unknown"), None);
        assert_eq!(Lines::index(": : :").of("route `a`: x"), None);
    }
}
