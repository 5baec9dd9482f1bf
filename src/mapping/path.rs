//! Compiled JSONPath (RFC 9535): parsed once at load, evaluated per event without re-parsing.
//!
//! Every path is parsed by `jsonpath-rust`, which defines the accepted syntax. Paths that are a
//! plain chain of member names, indices and `[*]` (most of a mapping) are also compiled to a
//! step list walked directly over `serde_json::Value`, which skips the general evaluator's
//! bookkeeping; the two give the same results (tested below and over every fixture).
//! A path starting with `@` is relative: it reads the current `each` element.

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

/// A JSONPath that failed to parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid JSONPath `{path}`: {reason}")]
pub struct PathError {
    /// The path as written.
    pub path: String,
    /// What the parser said.
    pub reason: String,
}

/// One parsed JSONPath.
#[derive(Debug, Clone)]
pub struct CompiledPath {
    source: String,
    relative: bool,
    eval: Eval,
}

#[derive(Debug, Clone)]
enum Eval {
    Steps(Vec<Step>),
    Query(Box<JpQuery>),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Member(String),
    Index(i64),
    Wildcard,
}

impl CompiledPath {
    /// Parses `path`; `$…` reads the payload root, `@…` the current `each` element.
    pub fn compile(path: &str) -> Result<Self, PathError> {
        let trimmed = path.trim();
        let relative = trimmed.starts_with('@');
        let absolute = if relative {
            format!("${}", &trimmed[1..])
        } else {
            trimmed.to_string()
        };
        let query = parse_json_path(&absolute).map_err(|e| PathError {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        let eval = match simple_steps(&absolute) {
            Some(steps) => Eval::Steps(steps),
            None => Eval::Query(Box::new(query)),
        };
        Ok(CompiledPath {
            source: trimmed.to_string(),
            relative,
            eval,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the path reads the current element (`@…`) rather than the root.
    pub fn is_relative(&self) -> bool {
        self.relative
    }

    /// Every node the path selects, in document order.
    pub fn select<'a>(&self, root: &'a Value, item: &'a Value) -> Vec<&'a Value> {
        let target = if self.relative { item } else { root };
        match &self.eval {
            Eval::Steps(steps) => {
                let mut out = Vec::new();
                walk(target, steps, &mut out);
                out
            }
            Eval::Query(query) => js_path_process(query, target)
                .map(|found| found.into_iter().map(|r| r.val).collect())
                .unwrap_or_default(),
        }
    }

    /// The first node the path selects.
    pub fn first<'a>(&self, root: &'a Value, item: &'a Value) -> Option<&'a Value> {
        let target = if self.relative { item } else { root };
        match &self.eval {
            Eval::Steps(steps) if !steps.contains(&Step::Wildcard) => {
                let mut node = target;
                for step in steps {
                    node = match step {
                        Step::Member(name) => node.get(name.as_str())?,
                        Step::Index(i) => index(node, *i)?,
                        Step::Wildcard => return None,
                    };
                }
                Some(node)
            }
            _ => self.select(root, item).into_iter().next(),
        }
    }
}

fn index(node: &Value, i: i64) -> Option<&Value> {
    let array = node.as_array()?;
    let at = if i < 0 { array.len() as i64 + i } else { i };
    usize::try_from(at).ok().and_then(|at| array.get(at))
}

fn walk<'a>(node: &'a Value, steps: &[Step], out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(node);
        return;
    };
    match step {
        Step::Member(name) => {
            if let Some(next) = node.get(name.as_str()) {
                walk(next, rest, out);
            }
        }
        Step::Index(i) => {
            if let Some(next) = index(node, *i) {
                walk(next, rest, out);
            }
        }
        Step::Wildcard => match node {
            Value::Array(items) => items.iter().for_each(|next| walk(next, rest, out)),
            Value::Object(members) => members.values().for_each(|next| walk(next, rest, out)),
            _ => {}
        },
    }
}

/// Compiles `$.a.b[0]['c-d'][*]` and the like to steps; `None` for anything richer (filters,
/// slices, descendants, unions, functions), which the general evaluator handles.
fn simple_steps(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(".*") {
            steps.push(Step::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()))
                .unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            steps.push(Step::Member(name.to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("[*]") {
            steps.push(Step::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("['") {
            let end = after.find('\'')?;
            let name = &after[..end];
            if name.contains('\\') {
                return None;
            }
            steps.push(Step::Member(name.to_string()));
            rest = after[end..].strip_prefix("']")?;
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let i: i64 = after[..end].trim().parse().ok()?;
            steps.push(Step::Index(i));
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn general(path: &str, doc: &Value) -> Vec<Value> {
        let q = parse_json_path(path).unwrap();
        js_path_process(&q, doc)
            .unwrap()
            .into_iter()
            .map(|r| r.val.clone())
            .collect()
    }

    #[test]
    fn fast_steps_agree_with_the_general_evaluator() {
        let doc = json!({"body": {"parties": [{"id": "a", "status": {"code": "Setup"}},
                                             {"id": "b", "x-y": 2}],
                                  "n": 1}, "aps": {"content-available": 1}});
        for path in [
            "$.body.parties[*].id",
            "$.body.parties[0].status.code",
            "$.body.parties[-1]['x-y']",
            "$.aps['content-available']",
            "$.body.*",
            "$.missing.path",
            "$.body.parties[5]",
        ] {
            let compiled = CompiledPath::compile(path).unwrap();
            assert!(
                matches!(compiled.eval, Eval::Steps(_)),
                "{path} should be fast"
            );
            let fast: Vec<Value> = compiled.select(&doc, &doc).into_iter().cloned().collect();
            assert_eq!(fast, general(path, &doc), "{path}");
            assert_eq!(compiled.first(&doc, &doc), fast.first(), "{path}");
        }
    }

    #[test]
    fn filters_use_the_general_evaluator() {
        let doc = json!({"ownerId": "2", "parties": [{"extensionId": "1"}, {"extensionId": "2"}]});
        let p = CompiledPath::compile("$.parties[?@.extensionId == '2']").unwrap();
        assert!(matches!(p.eval, Eval::Query(_)));
        assert_eq!(p.select(&doc, &doc), vec![&json!({"extensionId": "2"})]);
    }

    #[test]
    fn relative_paths_read_the_element() {
        let root = json!({"a": 1});
        let item = json!({"a": 2});
        let p = CompiledPath::compile("@.a").unwrap();
        assert!(p.is_relative());
        assert_eq!(p.first(&root, &item), Some(&json!(2)));
    }

    #[test]
    fn bad_paths_are_reported_with_the_path() {
        let err = CompiledPath::compile("$.body[").unwrap_err();
        assert_eq!(err.path, "$.body[");
        assert!(err.to_string().contains("$.body["));
    }
}
