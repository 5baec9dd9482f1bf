//! Translation without a network: payload text → decode → lifecycle → encode. Used by
//! `callgate translate`, the mapping cases and the benchmarks; `serve` runs the same stages.

use crate::lifecycle::{Lifecycle, Verdict};
use crate::mapping::decode::DecodeError;
use crate::mapping::encode::{EncodeError, OutboundMessage, Rendered, TemplateKind};
use crate::mapping::schema::PayloadKind;
use crate::mapping::{DecodeOptions, MappingSet};
use serde_json::{Map, Value};

/// The pseudo-vendor that detects the source vendor from the payload's shape.
pub const AUTO: &str = "auto";

/// Why input could not be read or translated. Each message names the vendor or the position.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// Nothing but whitespace.
    #[error("empty input: expected a {0} payload")]
    Empty(String),
    /// Not JSON (or nested deeper than 128 levels).
    #[error("{vendor}: input is not valid JSON: {message}")]
    Json {
        /// Source vendor id (or `auto`).
        vendor: String,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// An unknown vendor id.
    #[error("unknown vendor `{0}` (known: {1})")]
    UnknownVendor(String, String),
    /// Decoding failed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// One payload as read from input.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The JSON document, or `{name: value}` for parameters.
    pub value: Value,
    /// Whether the payload is URL or form parameters.
    pub params: bool,
}

/// What became of one decoded event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Rendered for the target.
    Message {
        /// The rendered payload.
        rendered: Box<Rendered>,
        /// The request carrying it.
        request: Box<OutboundMessage>,
        /// The canonical type.
        event_type: String,
    },
    /// The target has no template for this type.
    Skipped {
        /// The canonical type.
        event_type: String,
        /// The event id.
        id: String,
    },
    /// The lifecycle tracker dropped the event.
    Dropped(Verdict),
}

impl Outcome {
    /// The line `translate` prints: the JSON body, or `{"method","url"}` for query targets.
    pub fn output_line(&self) -> Option<Value> {
        match self {
            Outcome::Message {
                rendered, request, ..
            } => Some(match rendered.kind {
                TemplateKind::Query => {
                    let mut m = Map::new();
                    m.insert("method".into(), Value::String(request.method.clone()));
                    m.insert("url".into(), Value::String(request.url.clone()));
                    Value::Object(m)
                }
                TemplateKind::JsonBody | TemplateKind::Canonical => rendered.payload.clone(),
            }),
            _ => None,
        }
    }
}

/// Translates payloads from one vendor to another, keeping lifecycle state across calls.
pub struct Translator<'m> {
    mappings: &'m MappingSet,
    lifecycle: Lifecycle,
    from: String,
    to: String,
    url: String,
}

impl<'m> Translator<'m> {
    /// A translator `from` → `to`; `url` is the destination URL for the requests it builds.
    pub fn new(
        mappings: &'m MappingSet,
        from: &str,
        to: &str,
        url: &str,
    ) -> Result<Self, TranslateError> {
        let known = || {
            mappings
                .vendors()
                .map(|v| v.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if from != AUTO && mappings.vendor(from).is_none_or(|v| !v.can_decode()) {
            return Err(TranslateError::UnknownVendor(from.into(), known()));
        }
        if mappings.vendor(to).and_then(|v| v.encoder()).is_none() {
            return Err(TranslateError::UnknownVendor(to.into(), known()));
        }
        Ok(Translator {
            mappings,
            lifecycle: Lifecycle::default(),
            from: from.into(),
            to: to.into(),
            url: url.into(),
        })
    }

    /// Reads input text into payloads: JSON documents one after another (a file, NDJSON, or
    /// concatenated), or for parameter vendors a URL or query string per line, a JSON object
    /// of parameters, or a recorded request `{"method","url","query"}`.
    pub fn read(&self, text: &str) -> Result<Vec<Payload>, TranslateError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(TranslateError::Empty(self.from.clone()));
        }
        let params_vendor = self
            .mappings
            .vendor(&self.from)
            .is_some_and(|v| v.payload == PayloadKind::Params);
        let looks_json = trimmed.starts_with('{') || trimmed.starts_with('[');
        if !looks_json && (params_vendor || self.from == AUTO) {
            return Ok(trimmed
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|line| Payload {
                    value: params_from_url(line),
                    params: true,
                })
                .collect());
        }
        let mut payloads = Vec::new();
        for value in serde_json::Deserializer::from_str(trimmed).into_iter::<Value>() {
            let value = value.map_err(|e| TranslateError::Json {
                vendor: self.from.clone(),
                message: e.to_string(),
            })?;
            payloads.push(as_payload(value, params_vendor));
        }
        Ok(payloads)
    }

    /// Decodes one payload, passes its events through the lifecycle tracker and encodes each.
    pub fn translate(&self, payload: &Payload) -> Result<Vec<Outcome>, TranslateError> {
        let from = if self.from == AUTO {
            self.mappings.detect(&payload.value, payload.params)?
        } else {
            &self.from
        };
        let target_is_canonical = self
            .mappings
            .vendor(&self.to)
            .is_some_and(|v| v.payload == PayloadKind::Canonical);
        let options = DecodeOptions {
            fidelity: from == self.to || target_is_canonical,
        };
        let events = self.mappings.decode(from, &payload.value, options)?;
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let event = match self.lifecycle.observe(event) {
                Verdict::Apply(event) => *event,
                dropped => {
                    outcomes.push(Outcome::Dropped(dropped));
                    continue;
                }
            };
            let encoder = self.mappings.vendor(&self.to).and_then(|v| v.encoder());
            let rendered = match encoder {
                Some(encoder) => encoder
                    .render(&event)?
                    .map(|r| (encoder.outbound(&r, &self.url), r)),
                None => None,
            };
            outcomes.push(match rendered {
                Some((request, rendered)) => Outcome::Message {
                    rendered: Box::new(rendered),
                    request: Box::new(request),
                    event_type: event.event_type,
                },
                None => Outcome::Skipped {
                    event_type: event.event_type,
                    id: event.id,
                },
            });
        }
        Ok(outcomes)
    }
}

fn as_payload(value: Value, params_vendor: bool) -> Payload {
    if let Some(query) = value.get("query").filter(|_| value.get("url").is_some())
        && let Some(obj) = query.as_object()
    {
        return Payload {
            value: Value::Object(obj.clone()),
            params: true,
        };
    }
    Payload {
        value,
        params: params_vendor,
    }
}

/// Parameters of a URL, or of a bare query string, as `{name: value}` (the last of repeated
/// names wins; `+` reads as a space, as in forms).
pub fn params_from_url(line: &str) -> Value {
    let query = match line.split_once('?') {
        Some((_, q)) => q,
        None => line,
    };
    let query = query.split('#').next().unwrap_or_default();
    Value::Object(
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    )
}
