//! Lookup tables of `tables.yaml`, compiled: exact keys hashed, wildcard keys kept in order.
//!
//! A key may join several values with `/` (`Proceeding/Inbound`); a `*` inside one part
//! matches any text within that part (`*Transfer` matches `BlindTransfer`).

use super::schema::TableFile;
use serde_json::Value;
use serde_saphyr::Spanned;
use std::collections::HashMap;

/// A compiled table.
#[derive(Debug)]
pub struct Table {
    exact: HashMap<String, Value>,
    /// Wildcard keys in file order: each part as written, and compiled.
    patterns: Vec<(Vec<String>, Vec<Glob>, Value)>,
    default: Option<Value>,
    ignore_case: bool,
    /// Every value with its line in `tables.yaml` (the default's too), for load-time checks.
    lines: Vec<(Value, u64)>,
    /// Its entries come from this directory (`{directory: name}`).
    directory: Option<String>,
}

/// A value as written, with no line (tests and built-in tables).
pub fn unspanned(value: Value) -> Spanned<Value> {
    let nowhere = serde_saphyr::Location::UNKNOWN;
    Spanned::new(value, nowhere, nowhere)
}

impl Table {
    /// Compiles a table as read from `tables.yaml`.
    pub fn compile(file: &TableFile) -> Table {
        let fold = |k: &str| {
            if file.ignore_case {
                k.to_ascii_lowercase()
            } else {
                k.to_string()
            }
        };
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        let mut lines = Vec::new();
        for (key, spanned) in &file.map {
            let value = &spanned.value;
            lines.push((value.clone(), spanned.referenced.line()));
            let key = fold(&key.0);
            if key.contains('*') {
                let parts: Vec<String> = key.split('/').map(str::to_string).collect();
                let globs = parts.iter().map(|p| Glob::compile(p)).collect();
                patterns.push((parts, globs, value.clone()));
            } else {
                exact.entry(key).or_insert_with(|| value.clone());
            }
        }
        if let Some(d) = &file.default {
            lines.push((d.value.clone(), d.referenced.line()));
        }
        Table {
            exact,
            patterns,
            default: file.default.as_ref().map(|d| d.value.clone()),
            ignore_case: file.ignore_case,
            lines,
            directory: file.directory.as_ref().map(|d| d.value.clone()),
        }
    }

    /// The directory its entries come from, if it is a directory table.
    pub fn directory(&self) -> Option<&str> {
        self.directory.as_deref()
    }

    /// Whether the table has a `default` (so every lookup finds a value).
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }

    /// Every value the table can yield with its line in `tables.yaml` (0: unknown).
    pub fn values_with_lines(&self) -> &[(Value, u64)] {
        &self.lines
    }

    /// The texts that part `index` of a `parts`-part key takes in the table's keys (a `*` in
    /// a pattern part stands for any text, given as the pattern with `*` removed): the values
    /// a free-text key part is tried with when the table's coverage is checked.
    pub fn texts_at(&self, index: usize, parts: usize) -> Vec<String> {
        let mut texts: Vec<String> = Vec::new();
        let exact = self.exact.keys().map(|k| k.split('/').collect::<Vec<_>>());
        let patterns = self
            .patterns
            .iter()
            .map(|(p, _, _)| p.iter().map(String::as_str).collect::<Vec<_>>());
        for key in exact.chain(patterns) {
            if key.len() == parts
                && let Some(part) = key.get(index)
            {
                let text = part.replace('*', "");
                if !texts.contains(&text) {
                    texts.push(text);
                }
            }
        }
        texts
    }

    /// The value for `key`: an exact key, else the first matching wildcard key, else the
    /// table's default.
    pub fn get(&self, key: &str) -> Option<&Value> {
        // Lower-cased only when it has upper-case letters: most keys come folded already.
        let folded;
        let key = if self.ignore_case && key.bytes().any(|b| b.is_ascii_uppercase()) {
            folded = key.to_ascii_lowercase();
            folded.as_str()
        } else {
            key
        };
        if let Some(v) = self.exact.get(key) {
            return Some(v);
        }
        if !self.patterns.is_empty() {
            // The key's parts, split once (keys have a few parts; more go to the heap).
            let mut inline = [""; 8];
            let mut count = 0;
            let mut spilled = Vec::new();
            for part in key.split('/') {
                if count < inline.len() {
                    inline[count] = part;
                } else {
                    spilled.push(part);
                }
                count += 1;
            }
            let parts: &[&str] = if count <= inline.len() {
                &inline[..count]
            } else {
                spilled.splice(0..0, inline);
                &spilled
            };
            for (_, globs, value) in &self.patterns {
                if globs.len() == parts.len() && globs.iter().zip(parts).all(|(g, s)| g.matches(s))
                {
                    return Some(value);
                }
            }
        }
        self.default.as_ref()
    }
}

/// One part of a wildcard key, compiled: `*` matches any run of characters, everything else
/// matches itself.
#[derive(Debug)]
enum Glob {
    /// No `*`: the text itself.
    Exact(String),
    /// `first*middle*…*last`.
    Wild {
        first: String,
        middle: Vec<String>,
        last: String,
    },
}

impl Glob {
    fn compile(pattern: &str) -> Glob {
        let mut pieces: Vec<String> = pattern.split('*').map(str::to_string).collect();
        if pieces.len() == 1 {
            return Glob::Exact(pattern.to_string());
        }
        let last = pieces.pop().unwrap_or_default();
        let first = pieces.remove(0);
        Glob::Wild {
            first,
            middle: pieces.into_iter().filter(|p| !p.is_empty()).collect(),
            last,
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Glob::Exact(exact) => exact == text,
            Glob::Wild {
                first,
                middle,
                last,
            } => {
                let Some(mut rest) = text.strip_prefix(first.as_str()) else {
                    return false;
                };
                for piece in middle {
                    match rest.find(piece.as_str()) {
                        Some(at) => rest = &rest[at + piece.len()..],
                        None => return false,
                    }
                }
                rest.len() >= last.len() && rest.ends_with(last.as_str())
            }
        }
    }
}

#[cfg(test)]
fn glob(pattern: &str, text: &str) -> bool {
    Glob::compile(pattern).matches(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::schema::ScalarKey;
    use serde_json::json;

    fn table(entries: &[(&str, &str)], default: Option<&str>, ignore_case: bool) -> Table {
        Table::compile(&TableFile {
            map: entries
                .iter()
                .map(|(k, v)| (ScalarKey(k.to_string()), unspanned(json!(v))))
                .collect(),
            default: default.map(|d| unspanned(json!(d))),
            ignore_case,
            directory: None,
        })
    }

    #[test]
    fn exact_beats_pattern_and_patterns_keep_file_order() {
        let t = table(
            &[
                ("disconnected/*/true", "missed"),
                ("disconnected/*transfer/*", "transferred"),
                ("disconnected/noanswer/*", "no_answer"),
                ("disconnected/*/*", "completed"),
                ("disconnected/x/false", "exact"),
            ],
            None,
            true,
        );
        assert_eq!(t.get("Disconnected/NoAnswer/true"), Some(&json!("missed")));
        assert_eq!(
            t.get("Disconnected/NoAnswer/false"),
            Some(&json!("no_answer"))
        );
        assert_eq!(
            t.get("Disconnected/BlindTransfer/"),
            Some(&json!("transferred"))
        );
        assert_eq!(t.get("Disconnected/X/false"), Some(&json!("exact")));
        assert_eq!(t.get("Disconnected/Other/false"), Some(&json!("completed")));
        assert_eq!(t.get("Answered//"), None);
    }

    #[test]
    fn default_and_case() {
        let t = table(&[("Online", "available")], Some("busy"), false);
        assert_eq!(t.get("Online"), Some(&json!("available")));
        assert_eq!(t.get("online"), Some(&json!("busy")));
    }

    #[test]
    fn keys_of_many_parts_match_part_by_part() {
        let t = table(&[("a/b/c/d/e/f/g/h/i*/j", "ten")], None, false);
        assert_eq!(t.get("a/b/c/d/e/f/g/h/ix/j"), Some(&json!("ten")));
        assert_eq!(t.get("a/b/c/d/e/f/g/h/ix/k"), None);
        assert_eq!(t.get("a/b/c/d/e/f/g/h/ix"), None);
    }

    #[test]
    fn glob_matches() {
        assert!(glob("*", ""));
        assert!(glob("ring*", "RingNoAnswer".to_ascii_lowercase().as_str()));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
        assert!(!glob("ab", "abc"));
        assert!(glob("*ab*", "xxabyy"));
    }
}
