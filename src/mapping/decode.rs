//! Decode: a vendor payload → canonical events, by the rules of the vendor's `decode.yaml`.
//!
//! The first rule whose `when` paths all match applies; `each` makes one event per selected
//! node; `let` values are computed first, then `type`, `set` and `keep`. Fields the rule does
//! not set get canonical defaults (source, id, state from type, subject and partitionkey).

use super::path::CompiledPath;
use super::value::{ConvertError, Scope, ValueExpr, text};
use crate::model::event::{CallData, CallEvent, CallState, SPEC_VERSION};
use crate::model::fields::Write;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Why a payload could not be decoded. Each names the vendor and what did not match.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No rule's `when` matched.
    #[error("{vendor}: no decode rule matched this payload (tried {tried}); it has {seen}")]
    NoRule {
        /// Vendor id.
        vendor: String,
        /// Each rule with its `when` paths.
        tried: String,
        /// The payload's top-level keys (parameter names for a parameter vendor), as looked at.
        seen: String,
    },
    /// A rule's `each` path selected nothing.
    #[error("{vendor}: rule `{rule}`: `each` path {path} selected nothing")]
    EmptyEach {
        /// Vendor id.
        vendor: String,
        /// Rule name.
        rule: String,
        /// The `each` path.
        path: String,
    },
    /// The rule's `type` gave no value for this payload.
    #[error("{vendor}: rule `{rule}`: `type` gave no value for this payload")]
    NoType {
        /// Vendor id.
        vendor: String,
        /// Rule name.
        rule: String,
    },
    /// The decoded fields do not form a valid canonical event.
    #[error("{vendor}: rule `{rule}`: not a valid canonical event: {message}")]
    Canonical {
        /// Vendor id.
        vendor: String,
        /// Rule name.
        rule: String,
        /// serde's description, naming the field.
        message: String,
    },
    /// The payload is not the shape this vendor sends (e.g. not an object).
    #[error("{vendor}: {message}")]
    Shape {
        /// Vendor id.
        vendor: String,
        /// What is wrong.
        message: String,
    },
    /// `--from auto` found no vendor, or more than one.
    #[error("auto: {0}")]
    Detect(String),
    /// A value did not parse in its declared `convert` format.
    #[error("{vendor}: rule `{rule}`: {field}: {value:?} does not parse as {format}")]
    Convert {
        /// Vendor id.
        vendor: String,
        /// Rule name.
        rule: String,
        /// The canonical field (or `let`/`keep` name) the value was for.
        field: String,
        /// The value as sent.
        value: String,
        /// The declared format(s).
        format: String,
    },
    /// The payload would yield more events than one request may cause.
    #[error(
        "{vendor}: rule `{rule}` would make {count} events from one payload, more than server.max_events_per_request ({max})"
    )]
    TooManyEvents {
        /// Vendor id.
        vendor: String,
        /// Rule name.
        rule: String,
        /// Nodes its `each` selected.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl DecodeError {
    /// The vendor whose mapping gave the error (`None` for `auto` detection).
    pub fn vendor(&self) -> Option<&str> {
        match self {
            DecodeError::NoRule { vendor, .. }
            | DecodeError::EmptyEach { vendor, .. }
            | DecodeError::NoType { vendor, .. }
            | DecodeError::Canonical { vendor, .. }
            | DecodeError::Shape { vendor, .. }
            | DecodeError::Convert { vendor, .. }
            | DecodeError::TooManyEvents { vendor, .. } => Some(vendor),
            DecodeError::Detect(_) => None,
        }
    }

    /// The decode rule at fault, when one rule is.
    pub fn rule(&self) -> Option<&str> {
        match self {
            DecodeError::EmptyEach { rule, .. }
            | DecodeError::NoType { rule, .. }
            | DecodeError::Canonical { rule, .. }
            | DecodeError::Convert { rule, .. }
            | DecodeError::TooManyEvents { rule, .. } => Some(rule),
            _ => None,
        }
    }
}

/// How a decode rule builds its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Each `set` writes its field of the typed event (the default).
    Typed,
    /// The fields go into a JSON object that serde then reads into the event: the reference
    /// the typed writes are tested against, and what a rule with a field no typed write
    /// knows uses.
    Json,
}

/// A compiled `decode.yaml`.
#[derive(Debug)]
pub struct Decoder {
    pub(crate) vendor: String,
    pub(crate) lowercase_keys: bool,
    pub(crate) detect: Vec<CompiledPath>,
    pub(crate) unwrap: Vec<CompiledPath>,
    pub(crate) rules: Vec<Rule>,
}

/// A compiled decode rule.
#[derive(Debug)]
pub struct Rule {
    pub(crate) name: String,
    /// Line of the rule's `when` in `decode.yaml` (what error reports point at).
    pub(crate) line: Option<u64>,
    pub(crate) when: Vec<CompiledPath>,
    pub(crate) each: Option<CompiledPath>,
    pub(crate) lets: Vec<ValueExpr>,
    pub(crate) event_type: ValueExpr,
    /// Canonical field (dotted, as written) → its parts, value and typed write.
    pub(crate) sets: Vec<(String, Vec<String>, ValueExpr, Option<Write>)>,
    /// Every `set` has a typed write, so events are built by them (decided at load).
    pub(crate) typed: bool,
    pub(crate) keeps: Vec<(String, ValueExpr)>,
    /// `let` names, by position.
    pub(crate) let_names: Vec<String>,
}

impl Decoder {
    /// Whether any `detect` path matches the payload.
    pub fn detects(&self, payload: &Value) -> bool {
        let lowered;
        let root = if self.lowercase_keys {
            lowered = lowercase_keys(payload);
            &lowered
        } else {
            payload
        };
        self.detect.iter().any(|p| !p.select(root, root).is_empty())
    }

    /// Decodes one payload into its canonical events (without fidelity extensions); refuses
    /// a payload whose `each` selects more than `max_events` nodes (0: no limit).
    pub fn decode(
        &self,
        payload: &Value,
        max_events: usize,
    ) -> Result<Vec<CallEvent>, DecodeError> {
        self.decode_by(payload, max_events, Build::Typed)
    }

    /// [`Decoder::decode`], building events as `build` says.
    pub fn decode_by(
        &self,
        payload: &Value,
        max_events: usize,
        build: Build,
    ) -> Result<Vec<CallEvent>, DecodeError> {
        if !payload.is_object() {
            return Err(DecodeError::Shape {
                vendor: self.vendor.clone(),
                message: format!("expected a JSON object, found {}", kind(payload)),
            });
        }
        let lowered;
        let mut root = if self.lowercase_keys {
            lowered = lowercase_keys(payload);
            &lowered
        } else {
            payload
        };
        if let Some(inner) = self
            .unwrap
            .iter()
            .find_map(|p| p.first(root, root).filter(|v| v.is_object()))
        {
            root = inner;
        }
        let rule = self
            .rules
            .iter()
            .find(|r| r.when.iter().all(|p| !p.select(root, root).is_empty()))
            .ok_or_else(|| DecodeError::NoRule {
                vendor: self.vendor.clone(),
                tried: self
                    .rules
                    .iter()
                    .map(|r| {
                        let when: Vec<&str> = r.when.iter().map(CompiledPath::as_str).collect();
                        format!("`{}` when {}", r.name, when.join(" and "))
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                seen: describe_keys(root),
            })?;
        let items = match &rule.each {
            Some(each) => {
                let items = each.select(root, root);
                if max_events > 0 && items.len() > max_events {
                    return Err(DecodeError::TooManyEvents {
                        vendor: self.vendor.clone(),
                        rule: rule.name.clone(),
                        count: items.len(),
                        max: max_events,
                    });
                }
                if items.is_empty() {
                    return Err(DecodeError::EmptyEach {
                        vendor: self.vendor.clone(),
                        rule: rule.name.clone(),
                        path: each.as_str().to_string(),
                    });
                }
                items
            }
            None => vec![root],
        };
        let mut events = items
            .into_iter()
            .map(|item| self.decode_item(rule, root, item, build))
            .collect::<Result<Vec<_>, _>>()?;
        // CloudEvents: `source` + `id` is unique per event. One notification that yields
        // several events (RingCentral `parties[]`) gives each the notification id plus `#`
        // and its leg (docs/canonical-model.md).
        if events.len() > 1 {
            for (index, event) in events.iter_mut().enumerate() {
                let leg = event
                    .data
                    .call
                    .as_ref()
                    .and_then(|c| c.leg_id.clone())
                    .unwrap_or_else(|| index.to_string());
                event.id = format!("{}#{leg}", event.id);
            }
        }
        Ok(events)
    }

    fn decode_item(
        &self,
        rule: &Rule,
        root: &Value,
        item: &Value,
        build: Build,
    ) -> Result<CallEvent, DecodeError> {
        let failed = |field: &str, e: ConvertError| self.convert_error(rule, field, e);
        let mut vars: Vec<Option<Value>> = Vec::with_capacity(rule.lets.len());
        for (expr, name) in rule.lets.iter().zip(&rule.let_names) {
            let value = expr
                .eval(&Scope {
                    root,
                    item,
                    vars: &vars,
                })
                .map_err(|e| failed(&format!("let {name}"), e))?
                .map(|v| v.into_owned());
            vars.push(value);
        }
        let scope = Scope {
            root,
            item,
            vars: &vars,
        };
        let event_type = rule
            .event_type
            .eval(&scope)
            .map_err(|e| failed("type", e))?
            .and_then(text)
            .ok_or_else(|| DecodeError::NoType {
                vendor: self.vendor.clone(),
                rule: rule.name.clone(),
            })?;

        let mut extensions = Map::new();
        for (name, expr) in &rule.keeps {
            if let Some(value) = expr
                .eval(&scope)
                .map_err(|e| failed(&format!("keep {name}"), e))?
            {
                extensions.insert(name.clone(), value.into_owned());
            }
        }
        if build == Build::Typed && rule.typed {
            return self.typed_item(rule, &scope, event_type, extensions, item);
        }
        let mut event = Map::new();
        event.insert("specversion".into(), SPEC_VERSION.into());
        event.insert("type".into(), Value::String(event_type.clone()));
        let mut data = Map::new();
        data.insert("vendor".into(), Value::String(self.vendor.clone()));
        event.insert("data".into(), Value::Object(data));
        for (field, target, expr, _) in &rule.sets {
            if let Some(value) = expr.eval(&scope).map_err(|e| failed(field, e))? {
                insert(&mut event, target, value.into_owned());
            }
        }
        self.fill_defaults(&mut event, &event_type, root, item);
        if let Some(Value::Object(data)) = event.get_mut("data") {
            data.insert("extensions".into(), Value::Object(extensions));
        }
        serde_json::from_value(Value::Object(event)).map_err(|e| DecodeError::Canonical {
            vendor: self.vendor.clone(),
            rule: rule.name.clone(),
            message: e.to_string(),
        })
    }

    /// A value of `rule` for `field` that did not parse in its declared format.
    fn convert_error(&self, rule: &Rule, field: &str, e: ConvertError) -> DecodeError {
        DecodeError::Convert {
            vendor: self.vendor.clone(),
            rule: rule.name.clone(),
            field: field.to_string(),
            value: e.value,
            format: e.format,
        }
    }

    /// The event of one item built by typed writes, with the defaults [`Self::fill_defaults`]
    /// gives a JSON-built one.
    fn typed_item(
        &self,
        rule: &Rule,
        scope: &Scope<'_>,
        event_type: String,
        extensions: Map<String, Value>,
        item: &Value,
    ) -> Result<CallEvent, DecodeError> {
        let mut event = CallEvent {
            specversion: SPEC_VERSION.into(),
            id: String::new(),
            source: String::new(),
            event_type,
            time: None,
            subject: None,
            sequence: None,
            partitionkey: None,
            datacontenttype: None,
            data: CallData {
                vendor: self.vendor.clone(),
                ..CallData::default()
            },
            other: Map::new(),
            null_members: Vec::new(),
        };
        // Which defaulted fields a rule wrote (a written null counts, as in the JSON).
        let (mut id, mut source, mut content_type, mut subject, mut key, mut state) =
            (false, false, false, false, false, false);
        for (field, _, expr, write) in &rule.sets {
            let Some(write) = write else { continue };
            let Some(value) = expr
                .eval(scope)
                .map_err(|e| self.convert_error(rule, field, e))?
            else {
                continue;
            };
            write(&mut event, value.into_owned()).map_err(|e| DecodeError::Canonical {
                vendor: self.vendor.clone(),
                rule: rule.name.clone(),
                message: e.to_string(),
            })?;
            match field.as_str() {
                "id" => id = true,
                "source" => source = true,
                "datacontenttype" => content_type = true,
                "subject" => subject = true,
                "partitionkey" => key = true,
                "data.call.state" => state = true,
                _ => {}
            }
        }
        if !source {
            event.source = format!("/vendors/{}", self.vendor);
        }
        if !id {
            event.id = payload_hash(scope.root, item);
        }
        if !content_type {
            event.datacontenttype = Some("application/json".into());
        }
        let call_id = event.data.call.as_ref().and_then(|c| c.id.clone());
        let user_id = event.data.user.as_ref().and_then(|u| u.id.clone());
        if let Some(partition) = call_id.or(user_id) {
            if !subject {
                event.subject = Some(partition.clone());
            }
            if !key {
                event.partitionkey = Some(partition);
            }
        }
        if !state && let Some(call_state) = CallState::for_type(&event.event_type) {
            event.data.call.get_or_insert_with(Default::default).state = Some(call_state);
        }
        event.data.extensions = extensions;
        Ok(event)
    }

    fn fill_defaults(
        &self,
        event: &mut Map<String, Value>,
        event_type: &str,
        root: &Value,
        item: &Value,
    ) {
        event
            .entry("source")
            .or_insert_with(|| Value::String(format!("/vendors/{}", self.vendor)));
        event
            .entry("id")
            .or_insert_with(|| Value::String(payload_hash(root, item)));
        event
            .entry("datacontenttype")
            .or_insert_with(|| "application/json".into());
        let data = event.get("data");
        // `get` chains, not `pointer`, which allocates per token.
        let call_id = data
            .and_then(|d| d.get("call")?.get("id"))
            .filter(|v| !v.is_null())
            .cloned();
        let user_id = data
            .and_then(|d| d.get("user")?.get("id"))
            .filter(|v| !v.is_null())
            .cloned();
        if let Some(key) = call_id.or(user_id) {
            event.entry("subject").or_insert_with(|| key.clone());
            event.entry("partitionkey").or_insert(key);
        }
        if let Some(state) = CallState::for_type(event_type) {
            let path = ["data".to_string(), "call".to_string(), "state".to_string()];
            let has_state = event
                .get("data")
                .and_then(|d| d.get("call")?.get("state"))
                .is_some();
            if !has_state {
                insert(
                    event,
                    &path,
                    serde_json::to_value(state).unwrap_or_default(),
                );
            }
        }
    }
}

/// The id of an event its rule gives none: hex SHA-256 (first 32 digits) of the payload's
/// JSON text, and of the item's when the rule has `each`.
fn payload_hash(root: &Value, item: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(root.to_string().as_bytes());
    if !std::ptr::eq(root, item) {
        hasher.update(item.to_string().as_bytes());
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn insert(target: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = target;
    for key in parents {
        // The key is copied only when its object is new (most rules share parents).
        if !node.get(key).is_some_and(Value::is_object) {
            node.insert(key.clone(), Value::Object(Map::new()));
        }
        node = match node.get_mut(key) {
            Some(Value::Object(m)) => m,
            _ => return,
        };
    }
    match node.get_mut(last) {
        Some(slot) => *slot = value,
        None => {
            node.insert(last.clone(), value);
        }
    }
}

/// "keys a, b, c" of an object (the first 20, each cut at 64 characters), for messages.
fn describe_keys(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return format!("no keys ({})", kind(v));
    };
    if map.is_empty() {
        return "no keys".into();
    }
    let mut names: Vec<String> = map
        .keys()
        .take(20)
        .map(|k| {
            let cut: String = k.chars().take(64).collect();
            format!("`{cut}`")
        })
        .collect();
    if map.len() > 20 {
        names.push(format!("and {} more", map.len() - 20));
    }
    format!("keys {}", names.join(", "))
}

/// A copy of `v` with every object key lower-cased (for case-insensitive vendors).
pub fn lowercase_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.to_lowercase(), lowercase_keys(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(lowercase_keys).collect()),
        other => other.clone(),
    }
}

/// A JSON value's kind, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
