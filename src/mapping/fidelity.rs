//! Round-trip fidelity: what a vendor's own template cannot rebuild from canonical fields.
//!
//! At decode time the event is rendered back through its own vendor's template and compared
//! with the original payload. Every difference is recorded in `data.extensions`:
//! `unmapped` maps a JSON Pointer (RFC 6901) of the original payload to its original value,
//! and `omitted` lists pointers the template writes but the original did not have. Encoding
//! to the same vendor applies both to the rendered output, so decode → encode reproduces the
//! payload exactly; other vendors ignore them.

use serde_json::{Map, Value};

/// `data.extensions` key of the pointer → original value map.
pub const UNMAPPED: &str = "unmapped";
/// `data.extensions` key of the list of pointers to remove.
pub const OMITTED: &str = "omitted";

/// The difference between an original payload and its re-rendering.
#[derive(Debug, Default, PartialEq)]
pub struct Residual {
    /// JSON Pointer → the original's value there.
    pub unmapped: Map<String, Value>,
    /// JSON Pointers present in the rendering but absent from the original.
    pub omitted: Vec<String>,
}

impl Residual {
    /// Whether the rendering already equals the original.
    pub fn is_empty(&self) -> bool {
        self.unmapped.is_empty() && self.omitted.is_empty()
    }

    /// Stores the residual into an event's `data.extensions`.
    pub fn store(self, extensions: &mut Map<String, Value>) {
        extensions.remove(UNMAPPED);
        extensions.remove(OMITTED);
        if !self.unmapped.is_empty() {
            extensions.insert(UNMAPPED.into(), Value::Object(self.unmapped));
        }
        if !self.omitted.is_empty() {
            extensions.insert(
                OMITTED.into(),
                Value::Array(self.omitted.into_iter().map(Value::String).collect()),
            );
        }
    }
}

/// Computes what must change in `rendered` to obtain `original`.
pub fn diff(original: &Value, rendered: &Value) -> Residual {
    let mut residual = Residual::default();
    walk(original, rendered, &mut String::new(), &mut residual);
    residual
}

fn walk(original: &Value, rendered: &Value, at: &mut String, out: &mut Residual) {
    match (original, rendered) {
        (Value::Object(o), Value::Object(r)) => {
            for (key, ov) in o {
                let len = at.len();
                push_token(at, key);
                match r.get(key) {
                    Some(rv) => walk(ov, rv, at, out),
                    None => {
                        out.unmapped.insert(at.clone(), ov.clone());
                    }
                }
                at.truncate(len);
            }
            for key in r.keys().filter(|k| !o.contains_key(*k)) {
                let len = at.len();
                push_token(at, key);
                out.omitted.push(at.clone());
                at.truncate(len);
            }
        }
        (Value::Array(o), Value::Array(r)) if o.len() == r.len() => {
            for (i, (ov, rv)) in o.iter().zip(r).enumerate() {
                let len = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                walk(ov, rv, at, out);
                at.truncate(len);
            }
        }
        _ if original == rendered => {}
        _ => {
            out.unmapped.insert(at.clone(), original.clone());
        }
    }
}

fn push_token(at: &mut String, key: &str) {
    at.push('/');
    at.push_str(&key.replace('~', "~0").replace('/', "~1"));
}

/// Whether `extensions` hold a residual to apply (`unmapped` or `omitted`).
pub fn has_residual(extensions: &Map<String, Value>) -> bool {
    extensions.contains_key(UNMAPPED) || extensions.contains_key(OMITTED)
}

/// Applies the `unmapped` and `omitted` entries of `extensions` to a rendered payload.
pub fn apply(rendered: &mut Value, extensions: &Map<String, Value>) {
    if let Some(Value::Array(omitted)) = extensions.get(OMITTED) {
        for pointer in omitted.iter().filter_map(Value::as_str) {
            remove(rendered, pointer);
        }
    }
    if let Some(Value::Object(unmapped)) = extensions.get(UNMAPPED) {
        for (pointer, value) in unmapped {
            set(rendered, pointer, value.clone());
        }
    }
}

/// JSON Pointers (from the root, `prefix` first) of every `null` member under `value`.
pub fn null_members(value: &Value, prefix: &str) -> Vec<String> {
    fn walk(value: &Value, at: &mut String, out: &mut Vec<String>) {
        match value {
            Value::Null => out.push(at.clone()),
            Value::Object(map) => {
                for (key, v) in map {
                    let len = at.len();
                    push_token(at, key);
                    walk(v, at, out);
                    at.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&i.to_string());
                    walk(v, at, out);
                    at.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut prefix.to_string(), &mut out);
    out
}

fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn remove(target: &mut Value, pointer: &str) {
    let mut tokens = tokens(pointer);
    let Some(last) = tokens.pop() else { return };
    let mut node = target;
    for token in &tokens {
        node = match node {
            Value::Object(m) => match m.get_mut(token) {
                Some(n) => n,
                None => return,
            },
            Value::Array(a) => match token.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(n) => n,
                None => return,
            },
            _ => return,
        };
    }
    if let Value::Object(m) = node {
        m.remove(&last);
    }
}

pub(crate) fn set(target: &mut Value, pointer: &str, value: Value) {
    if pointer.is_empty() {
        *target = value;
        return;
    }
    let mut node = target;
    let tokens = tokens(pointer);
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    for token in parents {
        if !node.is_object() && !node.is_array() {
            *node = Value::Object(Map::new());
        }
        node = match node {
            Value::Object(m) => m
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(a) => match token.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(n) => n,
                None => return,
            },
            _ => return,
        };
    }
    match node {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => a[i] = value,
            Ok(i) if i == a.len() => a.push(value),
            _ => {}
        },
        other => {
            let mut m = Map::new();
            m.insert(last.clone(), value);
            *other = Value::Object(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn diff_then_apply_restores_the_original() {
        let original = json!({"a": 1, "b": {"c": null, "d/e": [1, 2]}, "f": [1], "g": "x"});
        let rendered = json!({"a": "1", "b": {"d/e": [1, 3], "z": true}, "f": [1, 2], "h": 0});
        let residual = diff(&original, &rendered);
        assert_eq!(residual.omitted, vec!["/b/z", "/h"]);
        assert_eq!(residual.unmapped["/b/d~1e/1"], json!(2));
        let mut ext = Map::new();
        residual.store(&mut ext);
        let mut out = rendered.clone();
        apply(&mut out, &ext);
        assert_eq!(out, original);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z~/]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c~/]{1,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_rendering_is_repaired(original in json_value(), rendered in json_value()) {
            let mut ext = Map::new();
            diff(&original, &rendered).store(&mut ext);
            let mut out = rendered.clone();
            apply(&mut out, &ext);
            prop_assert_eq!(out, original);
        }
    }
}
