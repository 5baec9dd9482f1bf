//! The playground's translation report: a payload through every pipeline stage (decode,
//! lifecycle, route, encode) on the live mappings, or on the live mappings with unsaved
//! edits laid over them, with each problem pointing at its file and line. Served as JSON by
//! `POST /admin/translate`; no I/O beyond reading the mapping files.

use crate::delivery::Request;
use crate::mapping::{Edits, Location, MappingSet, Problem};
use crate::model::inbound::Verifier;
use crate::pipeline::{self, Fate, PipelineError, Routing};
use crate::translate::{Payload, Translator};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Body of `POST /admin/translate` (`Content-Type: application/json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// Source vendor id, or `auto`.
    pub from: String,
    /// Target vendor id.
    pub to: String,
    /// The payload: text — one or more JSON documents, or (Oracle ISR) a URL or query string
    /// per line, what `callgate translate` reads — or a JSON value, read as its JSON text (a
    /// JSON vendor's payload as an object; a parameter vendor's as a recorded request
    /// `{"method", "url"}`).
    #[serde(deserialize_with = "payload_text")]
    pub payload: String,
    /// Unsaved mapping edits: path relative to the mappings folder → text.
    #[serde(default)]
    pub edits: Edits,
}

/// A `payload` given as text is that text; any other JSON value is its JSON text.
fn payload_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(
        match <serde_json::Value as serde::Deserialize>::deserialize(d)? {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        },
    )
}

/// The whole report. `errors` empty means every stage passed for every event.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The source vendor asked for.
    pub from: String,
    /// The target vendor.
    pub to: String,
    /// The source vendor detected (`from: auto`) or given, once the input decoded.
    pub vendor: Option<String>,
    /// Whether the report used edited mappings.
    pub edited: bool,
    /// One entry per decoded event, in input order.
    pub events: Vec<EventReport>,
    /// What went wrong, each pointing at its stage, file and line.
    pub errors: Vec<Diagnostic>,
}

/// One decoded event and what became of it.
#[derive(Debug, Serialize)]
pub struct EventReport {
    /// Index of the payload (document or line) in the input, from 0.
    pub payload: usize,
    /// The canonical event (CloudEvents JSON), as the lifecycle tracker left it.
    pub canonical: Value,
    /// The lifecycle tracker's verdict.
    pub lifecycle: LifecycleReport,
    /// What the target receives.
    pub output: OutputReport,
}

/// The lifecycle tracker's verdict on one event.
#[derive(Debug, Serialize)]
pub struct LifecycleReport {
    /// `apply`, `duplicate` or `stale`.
    pub verdict: &'static str,
    /// Why, in words (the derived type, the duplicate id, the sequences).
    pub detail: String,
}

/// What one event becomes for the target.
#[derive(Debug, Serialize)]
pub struct OutputReport {
    /// `rendered`, `skipped`, `failed` or `dropped`.
    pub status: &'static str,
    /// The template used, under the mappings folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// HTTP method (rendered only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request URL: carries the parameters for query targets such as Oracle ISR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The body as sent: JSON when it parses (keys in the template's order), else text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<serde_json::value::RawValue>>,
    /// Canonical fields the template reads that this event lacks: each was rendered as a
    /// default (`creationTimestamp: 0`) or left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
    /// Why it was skipped or dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One problem, pointing at where to fix it.
#[derive(Debug, Serialize)]
pub struct Diagnostic {
    /// `input` (the payload text), `load` (an edited mapping that does not compile),
    /// `decode` or `encode`.
    pub stage: &'static str,
    /// What is wrong.
    pub message: String,
    /// The mapping file at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based line in `file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Index of the payload the problem is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<usize>,
}

impl Diagnostic {
    fn new(stage: &'static str, message: String, at: Option<Location>) -> Self {
        let (file, line) = match at {
            Some(at) => (Some(at.file.display().to_string()), at.line),
            None => (None, None),
        };
        Diagnostic {
            stage,
            message,
            file,
            line,
            payload: None,
        }
    }

    fn of_problem(problem: &Problem) -> Self {
        Diagnostic {
            stage: "load",
            message: problem.message.clone(),
            file: Some(problem.file.display().to_string()),
            line: problem.line,
            payload: None,
        }
    }
}

/// Runs `request` against `live` (the snapshot's mappings) or, with edits, against the
/// same folder reloaded with the edits laid over it. Never fails: every problem is a
/// [`Diagnostic`]; a fresh lifecycle tracker judges the input's events among themselves.
pub fn explain(live: &Arc<MappingSet>, request: &ExplainRequest) -> Report {
    let mut report = Report {
        from: request.from.clone(),
        to: request.to.clone(),
        vendor: None,
        edited: !request.edits.is_empty(),
        events: Vec::new(),
        errors: Vec::new(),
    };
    let mappings = if request.edits.is_empty() {
        live.clone()
    } else {
        match MappingSet::load_edited(live.root(), &request.edits) {
            Ok(set) => Arc::new(set),
            Err(problems) => {
                report.errors = problems.0.iter().map(Diagnostic::of_problem).collect();
                return report;
            }
        }
    };
    let translator = match Translator::new(
        mappings.clone(),
        &request.from,
        &request.to,
        "http://receiver.invalid/events",
    ) {
        Ok(t) => t,
        Err(e) => {
            report
                .errors
                .push(Diagnostic::new("input", e.to_string(), None));
            return report;
        }
    };
    let payloads = match translator.read(&request.payload) {
        Ok(p) => p,
        Err(e) => {
            report
                .errors
                .push(Diagnostic::new("input", e.to_string(), None));
            return report;
        }
    };
    for (index, payload) in payloads.iter().enumerate() {
        explain_one(&mappings, &translator, index, payload, &mut report);
    }
    report
}

fn explain_one(
    mappings: &MappingSet,
    translator: &Translator,
    index: usize,
    payload: &Payload,
    report: &mut Report,
) {
    let (snapshot, route) = translator.parts();
    let located = |stage, message: String, at: Option<Location>| Diagnostic {
        payload: Some(index),
        ..Diagnostic::new(stage, message, at)
    };
    // Local input is trusted: the open verifier is what makes it a `VerifiedInbound`.
    let inbound = match Verifier::Open.verify(&crate::model::signature::Presented::local(), || {
        Ok((payload.value.clone(), payload.params))
    }) {
        Ok(inbound) => inbound,
        Err(e) => {
            report.errors.push(located("input", e.to_string(), None));
            return;
        }
    };
    let decoded = match pipeline::decode(&snapshot.mappings, route, &inbound) {
        Ok(decoded) => decoded,
        Err(PipelineError::Detect(e) | PipelineError::Decode(e)) => {
            report
                .errors
                .push(located("decode", e.to_string(), mappings.locate(&e)));
            return;
        }
    };
    report.vendor = Some(decoded.vendor.clone());
    let decoded_events = decoded.events.clone();
    let accepted = pipeline::route_events(&snapshot.mappings, route, decoded);
    accepted.commit();
    let target = mappings.vendor(&report.to).and_then(|v| v.encoder());
    for (fate, decoded_event) in accepted.fates.into_iter().zip(decoded_events) {
        let (event, lifecycle, output) = match fate {
            Fate::Dropped(verdict) => {
                let output = OutputReport {
                    status: "dropped",
                    reason: Some(format!("lifecycle: {}", verdict.label())),
                    ..OutputReport::empty()
                };
                let lifecycle = LifecycleReport {
                    verdict: verdict.label(),
                    detail: verdict.reason(),
                };
                (decoded_event, lifecycle, output)
            }
            Fate::Applied(applied) => {
                let applied = *applied;
                let detail = if applied.event.event_type == decoded_event.event_type {
                    String::new()
                } else {
                    format!(
                        "{} became {} (the call was held)",
                        decoded_event.event_type, applied.event.event_type
                    )
                };
                let template = target
                    .and_then(|e| e.template_file(&applied.event.event_type))
                    .map(|t| {
                        mappings
                            .root()
                            .join(&report.to)
                            .join(t)
                            .display()
                            .to_string()
                    });
                let output = match applied.routed.into_iter().next().map(|(_, r)| r) {
                    Some(Routing::Message(message)) => {
                        let (method, url, body) = match message.request {
                            Request::Http(r) => (r.method, r.url, r.body),
                            Request::Hub(push) => ("SignalR".into(), push.hub, Some(push.body)),
                        };
                        let canonical = serde_json::to_value(&applied.event).unwrap_or_default();
                        OutputReport {
                            status: "rendered",
                            template,
                            method: Some(method),
                            url: Some(url),
                            body: body.map(raw_body),
                            absent: target
                                .map(|e| e.template_reads(&applied.event.event_type))
                                .unwrap_or_default()
                                .iter()
                                .filter(|path| is_absent(&canonical, path))
                                .cloned()
                                .collect(),
                            reason: None,
                        }
                    }
                    Some(Routing::Failed { error, at, .. }) => {
                        report.errors.push(located("encode", error.clone(), at));
                        OutputReport {
                            status: "failed",
                            template,
                            reason: Some(error),
                            ..OutputReport::empty()
                        }
                    }
                    Some(Routing::Skipped(why)) => OutputReport {
                        status: "skipped",
                        reason: Some(why.label().to_string()),
                        ..OutputReport::empty()
                    },
                    None => OutputReport {
                        status: "skipped",
                        reason: Some("no destination".into()),
                        ..OutputReport::empty()
                    },
                };
                let lifecycle = LifecycleReport {
                    verdict: "apply",
                    detail,
                };
                (applied.event, lifecycle, output)
            }
        };
        report.events.push(EventReport {
            payload: index,
            canonical: serde_json::to_value(&event).unwrap_or(Value::Null),
            lifecycle,
            output,
        });
    }
}

/// A body as the page shows it: the JSON text as sent, or, when it is not JSON, as a string.
fn raw_body(body: String) -> Box<serde_json::value::RawValue> {
    use serde_json::value::{RawValue, to_raw_value};
    match serde_json::from_str::<&RawValue>(body.trim()) {
        Ok(raw) => raw.to_owned(),
        Err(_) => to_raw_value(&body).unwrap_or_else(|_| RawValue::NULL.to_owned()),
    }
}

/// Whether a dotted path (`data.call.direction`) is missing or null in a canonical event.
fn is_absent(event: &Value, path: &str) -> bool {
    path.split('.')
        .try_fold(event, |v, key| v.get(key))
        .is_none_or(Value::is_null)
}

impl OutputReport {
    fn empty() -> Self {
        OutputReport {
            status: "skipped",
            template: None,
            method: None,
            url: None,
            body: None,
            absent: Vec::new(),
            reason: None,
        }
    }
}
