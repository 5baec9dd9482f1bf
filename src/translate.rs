//! Translation without a network: payload text → [`pipeline::accept`] on a one-route
//! snapshot (`Snapshot::for_translation`) → what the target would receive. Used by
//! `callgate translate`, the mapping cases, `/admin/translate` and the benchmarks; `serve`
//! runs the same pipeline, so they cannot drift apart.

use crate::delivery::{HttpRequest, Request};
use crate::lifecycle::Verdict;
use crate::mapping::decode::DecodeError;
use crate::mapping::schema::PayloadKind;
use crate::mapping::{AUTO, MappingSet};
use crate::model::inbound::Verifier;
use crate::model::params::{BadEscape, parse_url_params};
use crate::pipeline::{self, Fate, PipelineError, Routing};
use crate::route::Route;
use crate::snapshot::Snapshot;
use serde_json::{Map, Value};
use std::sync::Arc;

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
    /// A template failed to render (names the template and the event).
    #[error("{0}")]
    Render(String),
    /// The one-route snapshot could not be built (e.g. `--url` is not a URL).
    #[error("{0}")]
    Setup(String),
    /// A JSON document given to a vendor that sends URL or form parameters.
    #[error(
        "{0}: sends URL or form parameters, not a JSON body: give a URL or query string per line, or a recorded request {{\"method\", \"url\"}}"
    )]
    NotParams(String),
    /// A parameter line whose `%XX` escapes are not UTF-8.
    #[error("{vendor}: {source}")]
    Encoding {
        /// Source vendor id (or `auto`).
        vendor: String,
        /// The parameter at fault.
        source: BadEscape,
    },
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
        /// The request carrying it.
        request: Box<HttpRequest>,
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
    /// The line `translate` prints: the JSON body; `{"method","url"}` for a request with no
    /// body (query targets such as Oracle ISR); `{"method","url","form"}` with the decoded
    /// parameters for a form body (Twilio).
    pub fn output_line(&self) -> Option<Value> {
        let Outcome::Message { request, .. } = self else {
            return None;
        };
        let form = is_form(request);
        Some(match &request.body {
            // A form body is shown as the request with its parameters decoded.
            Some(body) if form => {
                let mut m = Map::new();
                m.insert("method".into(), Value::String(request.method.clone()));
                m.insert("url".into(), Value::String(request.url.clone()));
                m.insert(
                    "form".into(),
                    crate::model::params::parse_urlencoded(body)
                        .unwrap_or_else(|_| Value::String(body.clone())),
                );
                Value::Object(m)
            }
            Some(body) => serde_json::from_str(body).unwrap_or(Value::String(body.clone())),
            None => {
                let mut m = Map::new();
                m.insert("method".into(), Value::String(request.method.clone()));
                m.insert("url".into(), Value::String(request.url.clone()));
                Value::Object(m)
            }
        })
    }
}

impl Outcome {
    /// The line `translate` prints, as text: a JSON body exactly as `serve` sends it (compact,
    /// keys in the template's order); otherwise [`output_line`](Self::output_line).
    pub fn output_text(&self) -> Option<String> {
        let Outcome::Message { request, .. } = self else {
            return None;
        };
        match &request.body {
            // Checked, not parsed into a tree: the text is what is printed.
            Some(body)
                if !is_form(request)
                    && serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() =>
            {
                Some(body.clone())
            }
            _ => self.output_line().map(|line| line.to_string()),
        }
    }
}

/// Whether a request's body is a form (`application/x-www-form-urlencoded`).
fn is_form(request: &crate::model::message::HttpRequest) -> bool {
    request.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value.eq_ignore_ascii_case(crate::mapping::encode::FORM_CONTENT_TYPE)
    })
}

/// Translates payloads from one vendor to another, keeping lifecycle state across calls.
pub struct Translator {
    snapshot: Snapshot,
    route: Arc<Route>,
    from: String,
    params_vendor: bool,
}

impl Translator {
    /// A translator `from` (a vendor id or `auto`) → `to`; `url` is the destination URL of
    /// the requests it builds.
    pub fn new(
        mappings: Arc<MappingSet>,
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
        let params_vendor = mappings
            .vendor(from)
            .is_some_and(|v| v.payload == PayloadKind::Params);
        let snapshot = Snapshot::for_translation(mappings.clone(), from, to, url)
            .map_err(|e| TranslateError::Setup(e.to_string()))?;
        let route = snapshot
            .routes()
            .first()
            .cloned()
            .ok_or_else(|| TranslateError::UnknownVendor(to.into(), known()))?;
        Ok(Translator {
            snapshot,
            route,
            from: from.into(),
            params_vendor,
        })
    }

    /// The same translator with these directories for its directory tables (a case's
    /// `directories:`; without them every directory lookup misses and skips).
    pub fn with_directories(mut self, directories: crate::mapping::directory::Directories) -> Self {
        let mut route = (*self.route).clone();
        route.directories = Arc::new(directories);
        self.route = Arc::new(route);
        self
    }

    /// The one-route snapshot and its route, for callers that run the pipeline's stages
    /// themselves (`explain`).
    pub(crate) fn parts(&self) -> (&Snapshot, &Arc<Route>) {
        (&self.snapshot, &self.route)
    }

    /// Whether the source vendor sends URL or form parameters (Oracle ISR).
    pub fn reads_parameters(&self) -> bool {
        self.params_vendor
    }

    /// Reads input text into payloads: JSON documents one after another (a file, NDJSON, or
    /// concatenated), or for parameter vendors a URL or query string per line, a JSON object
    /// of parameters, or a recorded request `{"method","url","query"}`.
    pub fn read(&self, text: &str) -> Result<Vec<Payload>, TranslateError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(TranslateError::Empty(self.from.clone()));
        }
        let looks_json = trimmed.starts_with('{') || trimmed.starts_with('[');
        if !looks_json && (self.params_vendor || self.from == AUTO) {
            return trimmed
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|line| {
                    Ok(Payload {
                        value: parse_url_params(line).map_err(|source| {
                            TranslateError::Encoding {
                                vendor: self.from.clone(),
                                source,
                            }
                        })?,
                        params: true,
                    })
                })
                .collect();
        }
        let mut payloads = Vec::new();
        for value in serde_json::Deserializer::from_str(trimmed).into_iter::<Value>() {
            let value = value.map_err(|e| TranslateError::Json {
                vendor: self.from.clone(),
                message: e.to_string(),
            })?;
            payloads.push(
                as_payload(value, self.params_vendor, self.from == AUTO)
                    .map_err(|source| TranslateError::Encoding {
                        vendor: self.from.clone(),
                        source,
                    })?
                    .ok_or_else(|| TranslateError::NotParams(self.from.clone()))?,
            );
        }
        Ok(payloads)
    }

    /// Runs one payload through the pipeline (decode, lifecycle, route, encode) and records
    /// its events in the lifecycle tracker.
    pub fn translate(&self, payload: &Payload) -> Result<Vec<Outcome>, TranslateError> {
        // Local input is trusted: the open verifier is what makes it a `VerifiedInbound`.
        let inbound = Verifier::Open
            .verify(&crate::model::signature::Presented::local(), || {
                Ok((payload.value.clone(), payload.params))
            })
            .map_err(|e| TranslateError::Render(e.to_string()))?;
        let accepted = pipeline::accept(&self.snapshot.mappings, &self.route, &inbound).map_err(
            |e| match e {
                PipelineError::Detect(e) | PipelineError::Decode(e) => TranslateError::Decode(e),
            },
        )?;
        accepted.commit();
        let mut outcomes = Vec::with_capacity(accepted.fates.len());
        for fate in accepted.fates {
            let applied = match fate {
                Fate::Dropped(verdict) => {
                    outcomes.push(Outcome::Dropped(verdict));
                    continue;
                }
                Fate::Applied(applied) => applied,
            };
            let event = applied.event;
            outcomes.push(match applied.routed.into_iter().next() {
                Some((_, Routing::Message(message))) => {
                    let request = match message.request {
                        Request::Http(request) => request,
                        Request::Hub(push) => crate::delivery::HttpRequest {
                            method: "POST".into(),
                            url: push.hub,
                            headers: Vec::new(),
                            body: Some(push.body),
                        },
                    };
                    Outcome::Message {
                        request: Box::new(request),
                        event_type: event.event_type,
                    }
                }
                Some((_, Routing::Failed { error, .. })) => {
                    return Err(TranslateError::Render(error));
                }
                Some((_, Routing::Skipped(_))) | None => Outcome::Skipped {
                    event_type: event.event_type,
                    id: event.id,
                },
            });
        }
        Ok(outcomes)
    }
}

/// A JSON input document as a payload: a recorded request (`{"method", "url", "query"}`)
/// gives its parameters; any other document is a JSON body, which a parameter vendor
/// never sends (`None`).
fn as_payload(value: Value, params_vendor: bool, auto: bool) -> Result<Option<Payload>, BadEscape> {
    if (params_vendor || auto)
        && let Some(url) = value.get("url").and_then(Value::as_str)
        && value.get("method").is_some()
    {
        let params = match value.get("query").and_then(Value::as_object) {
            Some(query) => Value::Object(query.clone()),
            None => parse_url_params(url)?,
        };
        return Ok(Some(Payload {
            value: params,
            params: true,
        }));
    }
    Ok((!params_vendor).then_some(Payload {
        value,
        params: false,
    }))
}
