//! Encode: a canonical event → a vendor payload and the request that carries it.
//!
//! Templates are registered once at load. A JSON body template escapes `{{x}}` as JSON string
//! content and its output is parsed before it is returned; a query template percent-encodes
//! `{{x}}` and is read back as a parameter object. Encoding to the vendor an event came from
//! applies the event's fidelity extensions, so same-vendor output equals the original payload.

use super::fidelity;
use super::helpers::{QUERY_VALUE, json_escape, percent_escape};
use super::plan::{RenderPlan, Unplanned};
use crate::model::event::CallEvent;
use handlebars::{Context, Handlebars};
use percent_encoding::{percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Why an event could not be encoded. Names the template and the event.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The template failed to render (a missing field in strict mode, a helper error).
    #[error("{vendor}: template {template} failed for event {event_id}: {message}")]
    Render {
        /// Target vendor id.
        vendor: String,
        /// Template file.
        template: String,
        /// CloudEvents id of the event.
        event_id: String,
        /// Line in the template where rendering stopped, when Handlebars knows it.
        line: Option<usize>,
        /// What Handlebars said.
        message: String,
    },
    /// A directory table has no entry for the event's key: this destination is skipped.
    #[error(transparent)]
    DirectoryMiss(#[from] super::directory::DirectoryMiss),
    /// The template rendered text that is not JSON.
    #[error("{vendor}: template {template} rendered invalid JSON for event {event_id}: {message}")]
    InvalidJson {
        /// Target vendor id.
        vendor: String,
        /// Template file.
        template: String,
        /// CloudEvents id of the event.
        event_id: String,
        /// The parser's message with line and column.
        message: String,
    },
    /// The event could not be serialised (canonical vendor).
    #[error("cannot serialise event {event_id}: {message}")]
    Serialise {
        /// CloudEvents id of the event.
        event_id: String,
        /// serde's message.
        message: String,
    },
}

impl EncodeError {
    /// The template at fault — vendor id, template file relative to the vendor's folder,
    /// and line when known — for an error of one template.
    pub fn template(&self) -> Option<(&str, &str, Option<usize>)> {
        match self {
            EncodeError::Render {
                vendor,
                template,
                line,
                ..
            } => Some((vendor, template, *line)),
            EncodeError::InvalidJson {
                vendor, template, ..
            } => Some((vendor, template, None)),
            EncodeError::Serialise { .. } | EncodeError::DirectoryMiss(_) => None,
        }
    }
}

/// How a template's output is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// A JSON request body.
    JsonBody,
    /// URL query parameters (`GET url?name=value&...`).
    Query,
    /// The canonical event itself as CloudEvents structured JSON.
    Canonical,
}

/// A rendered payload, as it will be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// How the payload travels.
    pub kind: TemplateKind,
    /// The template file that rendered it (`canonical` for CloudEvents).
    pub template: Arc<str>,
    /// The payload.
    pub body: RenderedBody,
    /// The rendered `path:` to append to the destination's URL (percent-encoded values).
    pub path: Option<String>,
}

/// The payload of a [`Rendered`].
#[derive(Debug, Clone, PartialEq)]
pub enum RenderedBody {
    /// Compact JSON text: a JSON body template's output as written, whitespace removed (the
    /// template's key order, numbers' and strings' own text), or the CloudEvents event.
    Json(String),
    /// A query template's parameters `{name: decoded value}`, and the names in template order.
    Query {
        /// `{name: value}`.
        params: Value,
        /// Parameter names in template order.
        order: Vec<String>,
    },
}

impl Rendered {
    /// The payload as a JSON value: the body parsed, or the parameter object (for fidelity
    /// diffs and reports; the send path uses the text).
    pub fn payload(&self) -> Value {
        match &self.body {
            RenderedBody::Json(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            RenderedBody::Query { params, .. } => params.clone(),
        }
    }
}

/// One event as Handlebars data, built on first use and then shared by every template the
/// event is rendered with (one serialisation per event, not one per destination).
pub struct EventContext<'a> {
    event: &'a CallEvent,
    context: std::cell::OnceCell<Context>,
}

impl<'a> EventContext<'a> {
    /// The context of `event` (nothing is serialised until a template needs it).
    pub fn new(event: &'a CallEvent) -> Self {
        EventContext {
            event,
            context: std::cell::OnceCell::new(),
        }
    }

    /// The event.
    pub fn event(&self) -> &'a CallEvent {
        self.event
    }

    fn get(&self) -> Result<&Context, handlebars::RenderError> {
        if let Some(context) = self.context.get() {
            return Ok(context);
        }
        let context = Context::wraps(self.event)?;
        Ok(self.context.get_or_init(|| context))
    }
}

/// One HTTP request to a receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// HTTP method.
    pub method: String,
    /// Full URL, query included.
    pub url: String,
    /// Extra request headers (`Content-Type` among them when there is a body).
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<String>,
}

#[derive(Debug)]
pub(crate) struct EncodeTemplate {
    pub(crate) types: Vec<String>,
    pub(crate) file: Arc<str>,
    pub(crate) kind: TemplateKind,
    /// The canonical fields the template reads (dotted paths, from the compile step).
    pub(crate) reads: Arc<[String]>,
    /// Its `path:` template's name in the query (percent-escaping) registry.
    pub(crate) path: Option<Arc<str>>,
    /// The body or query template compiled into a plan, or why it has none (`handlebars`
    /// renders it then).
    pub(crate) plan: Result<RenderPlan, Unplanned>,
    /// The `path:` template's plan, or why it has none; `None` without a `path:`.
    pub(crate) path_plan: Option<Result<RenderPlan, Unplanned>>,
}

/// What renders a template: its plan (the default), or `handlebars`, the reference the plans
/// are tested against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The plan; `handlebars` when the template has none or the plan refuses the event
    /// (then `handlebars`' own error is reported).
    Planned,
    /// The plan only: a template without one, or an event it refuses, is an
    /// [`EncodeError::Render`] (for the differential test).
    PlanOnly,
    /// `handlebars` only.
    Handlebars,
}

/// The media type of a form body: parameter templates are sent as the body with it.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// A compiled `encode.yaml` (or the built-in canonical encoder).
pub struct Encoder {
    pub(crate) vendor: String,
    pub(crate) method: String,
    pub(crate) content_type: String,
    /// Parameter templates go in the body (`content_type: application/x-www-form-urlencoded`),
    /// not in the URL.
    pub(crate) form_body: bool,
    pub(crate) json: Handlebars<'static>,
    pub(crate) query: Handlebars<'static>,
    pub(crate) templates: Vec<EncodeTemplate>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("vendor", &self.vendor)
            .field("templates", &self.templates)
            .finish()
    }
}

/// Whether a canonical type matches a `types` entry (exact, or a prefix ending in `*`).
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

impl Encoder {
    /// The built-in encoder of the canonical format (CloudEvents structured JSON).
    pub fn canonical(vendor: &str) -> Encoder {
        Encoder {
            vendor: vendor.to_string(),
            method: "POST".into(),
            content_type: "application/cloudevents+json".into(),
            form_body: false,
            json: Handlebars::new(),
            query: Handlebars::new(),
            templates: vec![EncodeTemplate {
                types: vec!["*".into()],
                file: "canonical".into(),
                kind: TemplateKind::Canonical,
                reads: Arc::from([]),
                path: None,
                plan: Err(Unplanned(
                    "the built-in CloudEvents encoder has no template".into(),
                )),
                path_plan: None,
            }],
        }
    }

    /// The vendor id this encoder renders for.
    pub fn vendor(&self) -> &str {
        &self.vendor
    }

    /// The template file (relative to the vendor's folder; `canonical` for the built-in
    /// encoder) that renders this canonical type, if any.
    pub fn template_file(&self, event_type: &str) -> Option<&str> {
        self.template_for(event_type).map(|t| &*t.file)
    }

    /// The canonical fields (dotted paths such as `data.call.direction`) that the template
    /// rendering `event_type` reads, as the compile step found them; empty when none does.
    pub fn template_reads(&self, event_type: &str) -> &[String] {
        self.template_for(event_type)
            .map(|t| &*t.reads)
            .unwrap_or_default()
    }

    fn template_for(&self, event_type: &str) -> Option<&EncodeTemplate> {
        self.templates
            .iter()
            .find(|t| t.types.iter().any(|p| type_matches(p, event_type)))
    }

    /// Renders an event; `Ok(None)` when no template handles its type (skip, not an error).
    pub fn render(&self, event: &CallEvent) -> Result<Option<Rendered>, EncodeError> {
        self.render_in(&EventContext::new(event))
    }

    /// Renders an event with the given [`Engine`].
    pub fn render_with(
        &self,
        event: &CallEvent,
        engine: Engine,
    ) -> Result<Option<Rendered>, EncodeError> {
        self.render_by(&EventContext::new(event), engine)
    }

    /// The template files (and `#path` templates) that have no render plan, each with what
    /// keeps it from one: `handlebars` renders them.
    pub fn unplanned(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for t in &self.templates {
            if let (false, Err(Unplanned(why))) = (t.kind == TemplateKind::Canonical, &t.plan) {
                found.push((t.file.to_string(), why.clone()));
            }
            if let Some(Err(Unplanned(why))) = &t.path_plan {
                found.push((format!("{}#path", t.file), why.clone()));
            }
        }
        found
    }

    /// The JSON body templates whose plan is not proven to write valid JSON: their output
    /// is parsed to check it before it is sent.
    pub fn unproven(&self) -> Vec<String> {
        self.templates
            .iter()
            .filter(|t| t.kind == TemplateKind::JsonBody)
            .filter(|t| !t.plan.as_ref().is_ok_and(RenderPlan::writes_compact_json))
            .map(|t| t.file.to_string())
            .collect()
    }

    /// A template's text from its plan or from `handlebars`, as `engine` says, and whether
    /// it came from a plan proven to write compact JSON.
    fn text(
        &self,
        template: &EncodeTemplate,
        plan: Option<&RenderPlan>,
        name: &str,
        registry: &Handlebars<'static>,
        context: &EventContext<'_>,
        engine: Engine,
    ) -> Result<(String, bool), EncodeError> {
        let event = context.event();
        if engine != Engine::Handlebars {
            if let Some(plan) = plan {
                let mut out = String::with_capacity(1024);
                if plan.render(event, &mut out).is_ok() {
                    return Ok((out, plan.writes_compact_json()));
                }
            }
            if engine == Engine::PlanOnly {
                return Err(EncodeError::Render {
                    vendor: self.vendor.clone(),
                    template: template.file.to_string(),
                    event_id: event.id.clone(),
                    line: None,
                    message: match plan {
                        Some(_) => "the render plan refused the event".into(),
                        None => "the template has no render plan".into(),
                    },
                });
            }
        }
        let data = context
            .get()
            .map_err(|e| self.render_error(template, event, e))?;
        registry
            .render_with_context(name, data)
            .map(|text| (text, false))
            .map_err(|e| self.render_error(template, event, e))
    }

    /// Renders an event from its shared [`EventContext`]. A JSON body is validated and
    /// compacted without a JSON tree, unless the event goes back to its own vendor
    /// with fidelity extensions to apply, which patch a parsed tree.
    pub fn render_in(&self, context: &EventContext<'_>) -> Result<Option<Rendered>, EncodeError> {
        self.render_by(context, Engine::Planned)
    }

    fn render_by(
        &self,
        context: &EventContext<'_>,
        engine: Engine,
    ) -> Result<Option<Rendered>, EncodeError> {
        let event = context.event();
        let Some(template) = self.template_for(&event.event_type) else {
            return Ok(None);
        };
        let body = match template.kind {
            TemplateKind::Canonical => RenderedBody::Json(self.canonical_json(event)?),
            TemplateKind::JsonBody | TemplateKind::Query => {
                let registry = if template.kind == TemplateKind::Query {
                    &self.query
                } else {
                    &self.json
                };
                let (text, compact) = self.text(
                    template,
                    template.plan.as_ref().ok(),
                    &template.file,
                    registry,
                    context,
                    engine,
                )?;
                let patch = event.data.vendor == self.vendor
                    && fidelity::has_residual(&event.data.extensions);
                let invalid = |message: String| EncodeError::InvalidJson {
                    vendor: self.vendor.clone(),
                    template: template.file.to_string(),
                    event_id: event.id.clone(),
                    message,
                };
                match template.kind {
                    TemplateKind::Query => {
                        let (mut params, order) = parse_query_lines(&text);
                        if patch {
                            fidelity::apply(&mut params, &event.data.extensions);
                        }
                        RenderedBody::Query { params, order }
                    }
                    _ if patch => {
                        let mut payload: Value =
                            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
                        fidelity::apply(&mut payload, &event.data.extensions);
                        RenderedBody::Json(payload.to_string())
                    }
                    // Proven at load: valid and compact already.
                    _ if compact => RenderedBody::Json(text),
                    _ => RenderedBody::Json(compact_json(&text).map_err(invalid)?),
                }
            }
        };
        let path = match &template.path {
            Some(name) => Some(
                self.text(
                    template,
                    template.path_plan.as_ref().and_then(|p| p.as_ref().ok()),
                    name,
                    &self.query,
                    context,
                    engine,
                )?
                .0,
            ),
            None => None,
        };
        Ok(Some(Rendered {
            kind: template.kind,
            template: template.file.clone(),
            body,
            path,
        }))
    }

    /// The event as CloudEvents structured JSON, with the `null` members of an incoming
    /// CloudEvents event written back.
    fn canonical_json(&self, event: &CallEvent) -> Result<String, EncodeError> {
        let serialise = |e: serde_json::Error| EncodeError::Serialise {
            event_id: event.id.clone(),
            message: e.to_string(),
        };
        if event.null_members.is_empty() {
            return serde_json::to_string(event).map_err(serialise);
        }
        let mut value = serde_json::to_value(event).map_err(serialise)?;
        for pointer in &event.null_members {
            fidelity::set(&mut value, pointer, Value::Null);
        }
        Ok(value.to_string())
    }

    fn render_error(
        &self,
        template: &EncodeTemplate,
        event: &CallEvent,
        e: handlebars::RenderError,
    ) -> EncodeError {
        if let handlebars::RenderErrorReason::NestedError(inner) = e.reason()
            && let Some(miss) = inner.downcast_ref::<super::directory::DirectoryMiss>()
        {
            return EncodeError::DirectoryMiss(miss.clone());
        }
        EncodeError::Render {
            vendor: self.vendor.clone(),
            template: template.file.to_string(),
            event_id: event.id.clone(),
            line: e.line_no,
            message: e.to_string(),
        }
    }

    /// The request that carries a rendered payload to `url`.
    pub fn outbound(&self, rendered: Rendered, url: &str) -> OutboundMessage {
        // The rendered path goes after the URL's path, before its query.
        let joined;
        let url = match &rendered.path {
            Some(path) => {
                let (base, query) = url
                    .split_once('?')
                    .map_or((url, None), |(b, q)| (b, Some(q)));
                joined = format!(
                    "{}{path}{}",
                    base.trim_end_matches('/'),
                    query.map(|q| format!("?{q}")).unwrap_or_default()
                );
                joined.as_str()
            }
            None => url,
        };
        match rendered.body {
            RenderedBody::Query { params, order } if self.form_body => OutboundMessage {
                method: self.method.clone(),
                url: url.to_string(),
                headers: vec![("content-type".into(), self.content_type.clone())],
                body: Some(query_string(&params, &order)),
            },
            RenderedBody::Query { params, order } => {
                let query = query_string(&params, &order);
                let sep = if url.contains('?') { '&' } else { '?' };
                OutboundMessage {
                    method: self.method.clone(),
                    url: if query.is_empty() {
                        url.to_string()
                    } else {
                        format!("{url}{sep}{query}")
                    },
                    headers: Vec::new(),
                    body: None,
                }
            }
            RenderedBody::Json(text) => OutboundMessage {
                method: self.method.clone(),
                url: url.to_string(),
                headers: vec![("content-type".into(), self.content_type.clone())],
                body: Some(text),
            },
        }
    }
}

/// A JSON text, validated, with the whitespace between tokens removed: keys keep their
/// order, strings and numbers stay exactly as written (no JSON tree, and no re-serialising,
/// which with `arbitrary_precision` would need serde_json's private number form). Errors give
/// serde_json's message with line and column.
fn compact_json(text: &str) -> Result<String, String> {
    use serde::Deserialize as _;
    let mut input = serde_json::Deserializer::from_str(text);
    serde::de::IgnoredAny::deserialize(&mut input)
        .and_then(|_| input.end())
        .map_err(|e| e.to_string())?;
    // Valid JSON from here on: outside strings, whitespace is exactly space, tab, CR and LF.
    Ok(super::plan::strip_json_whitespace(text, false))
}

/// Reads a rendered query template: one `name=value` per non-blank line, values already
/// percent-encoded; returns `{name: decoded value}` and the names in order.
fn parse_query_lines(text: &str) -> (Value, Vec<String>) {
    let mut params = Map::new();
    let mut order = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        for pair in line.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            let name = decode(name);
            order.push(name.clone());
            params.insert(name, Value::String(decode(value)));
        }
    }
    (Value::Object(params), order)
}

/// Writes a parameter object as a query string, percent-encoding names and values (UTF-8):
/// the names of `order` first, in that order, then any others.
pub fn query_string(params: &Value, order: &[String]) -> String {
    let Some(params) = params.as_object() else {
        return String::new();
    };
    let rest = params.keys().filter(|k| !order.contains(k));
    order
        .iter()
        .chain(rest)
        .filter_map(|name| params.get(name).map(|value| (name, value)))
        .map(|(name, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            format!(
                "{}={}",
                utf8_percent_encode(name, QUERY_VALUE),
                percent_escape(&value)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Builds the two registries of an encoder: JSON-escaping and percent-encoding, both strict.
pub(crate) fn registries(
    tables: std::sync::Arc<std::collections::HashMap<String, std::sync::Arc<super::table::Table>>>,
) -> (Handlebars<'static>, Handlebars<'static>) {
    let make = |escape: fn(&str) -> String| {
        let mut r = Handlebars::new();
        r.set_strict_mode(true);
        r.set_prevent_indent(true);
        r.register_escape_fn(escape);
        super::helpers::register(&mut r, tables.clone());
        r
    };
    (make(json_escape), make(percent_escape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_lines_round_trip() {
        let (params, order) = parse_query_lines("event=A%20B\n\n  x=sip%3A1%402 \nempty=\n");
        assert_eq!(params, json!({"event": "A B", "x": "sip:1@2", "empty": ""}));
        assert_eq!(
            query_string(&params, &order),
            "event=A%20B&x=sip%3A1%402&empty="
        );
    }

    #[test]
    fn compacting_keeps_key_order_strings_and_numbers_as_written() {
        let text = "{\n  \"z\": 1.50,\n  \"a\": [ -0, 18446744073709551616 ],\n  \"s\": \"a \\\" b\\u00e9\" \n}";
        assert_eq!(
            compact_json(text).unwrap(),
            r#"{"z":1.50,"a":[-0,18446744073709551616],"s":"a \" b\u00e9"}"#
        );
        let broken = compact_json("{\"a\": }").unwrap_err();
        assert!(broken.contains("line 1"), "{broken}");
        assert!(compact_json("{} trailing").is_err());
    }

    #[test]
    fn type_patterns() {
        assert!(type_matches("call.*", "call.ended"));
        assert!(type_matches("*", "x"));
        assert!(!type_matches("call.ended", "call.ended.x"));
    }
}
