//! The route handler: handshake → verify → read payload → decode → lifecycle → route and
//! encode → durable enqueue (`ack: queued`) or synchronous forward (`ack: proxy`).

use super::problem::Problem;
use crate::adapters::http_out::{OutboundClient, SendError};
use crate::adapters::webhook::{InboundError, PayloadError, read_payload};
use crate::config::{Ack, OnTimeout};
use crate::delivery::{EventBatch, NewTask, Queue, TaskRecord};
use crate::event::CallEvent;
use crate::lifecycle::{Lifecycle, Verdict};
use crate::mapping::{DecodeOptions, MappingSet};
use crate::route::Route;
use crate::telemetry::metrics as m;
use crate::translate::AUTO;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What every route handler shares.
pub struct Shared {
    /// The compiled mappings.
    pub mappings: Arc<MappingSet>,
    /// The durable queue.
    pub queue: Arc<dyn Queue>,
    /// The outbound client (proxy mode, fallback).
    pub client: Arc<OutboundClient>,
    /// Wakes the delivery workers after an enqueue.
    pub wake: Arc<Notify>,
    /// `server.max_body_bytes`.
    pub max_body: usize,
    /// `delivery.max_queue_depth`.
    pub max_depth: u64,
}

/// Handles one request on a route and counts it.
pub async fn handle(shared: Arc<Shared>, route: Arc<Route>, request: Request) -> Response {
    let response = match intake(&shared, &route, request).await {
        Ok(response) => response,
        Err(problem) => {
            tracing::info!(route = %route.name, status = problem.status.as_u16(), detail = %problem.detail, "request refused");
            problem.into_response()
        }
    };
    metrics::counter!(m::REQUESTS, "route" => route.name.clone(), "status" => response.status().as_str().to_string())
        .increment(1);
    response
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn intake(shared: &Shared, route: &Route, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, shared.max_body).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!(
                "the body exceeds server.max_body_bytes ({} bytes)",
                shared.max_body
            ),
        )
    })?;

    // RingCentral's subscription handshake: echo the header, no event, no I/O. A request
    // whose Validation-Token is the route's shared secret is a delivery (protocols.md §3.3).
    if let Some(name) = &route.handshake_header
        && let Some(value) = parts.headers.get(name.as_str())
        && !route.verifier.is_shared_token(value.as_bytes())
    {
        tracing::info!(route = %route.name, "subscription handshake answered");
        let mut response = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "",
        )
            .into_response();
        if let Ok(header_name) = axum::http::HeaderName::from_bytes(name.as_bytes()) {
            response.headers_mut().insert(header_name, value.clone());
        }
        return Ok(response);
    }

    let read = || {
        read_payload(
            &parts.method,
            &parts.headers,
            parts.uri.query(),
            &bytes,
            route.params,
            route.from == AUTO,
        )
    };
    let connection_test = || {
        json_response(
            StatusCode::OK,
            json!({"status": "connection test accepted"}),
        )
    };
    let inbound = match route.verifier.verify(&parts.headers, read) {
        Ok(inbound) if route.accept_empty && inbound.is_empty() => return Ok(connection_test()),
        Err(InboundError::Payload(PayloadError::Empty(_))) if route.accept_empty => {
            return Ok(connection_test());
        }
        Ok(inbound) => inbound,
        Err(InboundError::Refused(e)) => {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Request not verified",
                format!("route `{}`: {e}", route.name),
            ));
        }
        Err(InboundError::Payload(e)) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-payload",
                "Payload could not be read",
                format!("{}: {e}", route.from),
            ));
        }
    };

    let vendor = if route.from == AUTO {
        shared
            .mappings
            .detect(inbound.payload(), inbound.is_params())
            .map_err(|e| {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown-vendor",
                    "Vendor not recognised",
                    e.to_string(),
                )
            })?
            .to_string()
    } else {
        route.from.clone()
    };
    let events = shared
        .mappings
        .decode(
            &vendor,
            inbound.payload(),
            DecodeOptions {
                fidelity: route.fidelity,
            },
        )
        .map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no-decode-rule",
                "Payload not understood",
                e.to_string(),
            )
        })?;

    let total = events.len();
    let mut applied = Vec::with_capacity(total);
    let mut dropped = 0;
    for event in events {
        metrics::counter!(m::EVENTS, "vendor" => vendor.clone(), "type" => event.event_type.clone()).increment(1);
        match route.lifecycle.assess(event) {
            Verdict::Apply(event) => applied.push(*event),
            verdict => {
                dropped += 1;
                let reason = if matches!(verdict, Verdict::Stale { .. }) {
                    "stale"
                } else {
                    "duplicate"
                };
                metrics::counter!(m::DROPPED, "route" => route.name.clone(), "reason" => reason)
                    .increment(1);
                tracing::info!(route = %route.name, ?verdict, "event dropped");
            }
        }
    }

    let (batches, skipped) = encode_all(shared, route, &applied);
    match route.ack {
        Ack::Queued => enqueue(shared, route, &applied, batches, total, skipped, dropped).await,
        Ack::Proxy => proxy(shared, route, &applied, batches).await,
    }
}

/// Routes and encodes every applied event: one batch per event, one message per
/// destination that accepts its type and has a template for it.
fn encode_all(shared: &Shared, route: &Route, events: &[CallEvent]) -> (Vec<EventBatch>, usize) {
    let mut skipped = 0;
    let batches = events
        .iter()
        .map(|event| {
            let mut tasks = Vec::new();
            for dest in &route.destinations {
                let skip = |why: &str| {
                    metrics::counter!(m::SKIPPED, "route" => route.name.clone(), "destination" => dest.name.clone(), "type" => event.event_type.clone()).increment(1);
                    tracing::debug!(route = %route.name, destination = %dest.name, event = %event.id, r#type = %event.event_type, why, "skipped");
                };
                if !dest.accepts(&event.event_type) {
                    skip("type filter");
                    skipped += 1;
                    continue;
                }
                let Some(encoder) = shared.mappings.vendor(&dest.vendor).and_then(|v| v.encoder()) else {
                    continue;
                };
                let base = NewTask {
                    route: route.name.clone(),
                    destination: dest.name.clone(),
                    partition: event.ordering_key().to_string(),
                    event_id: event.id.clone(),
                    event_type: event.event_type.clone(),
                    record: TaskRecord { v: 1, method: String::new(), url: dest.url.clone(), headers: vec![], body: None },
                    failure: None,
                };
                match encoder.render(event) {
                    Ok(Some(rendered)) => tasks.push(NewTask {
                        record: TaskRecord::from(&encoder.outbound(&rendered, &dest.url)),
                        ..base
                    }),
                    Ok(None) => {
                        skip("no template");
                        skipped += 1;
                    }
                    Err(e) => {
                        // A mapping error: the event goes to the dead letters, not lost.
                        tracing::error!(route = %route.name, destination = %dest.name, error = %e, "cannot encode");
                        let body = serde_json::to_string(event).ok();
                        tasks.push(NewTask {
                            record: TaskRecord { method: "POST".into(), body, ..base.record.clone() },
                            failure: Some(e.to_string()),
                            ..base
                        });
                    }
                }
            }
            EventBatch {
                dedupe_key: format!("{}|{}|{}", route.name, Lifecycle::leg_key(event), event.id),
                tasks,
            }
        })
        .collect();
    (batches, skipped)
}

async fn enqueue(
    shared: &Shared,
    route: &Route,
    applied: &[CallEvent],
    batches: Vec<EventBatch>,
    total: usize,
    skipped: usize,
    dropped: usize,
) -> Result<Response, Problem> {
    for dest in &route.destinations {
        let wanted = batches
            .iter()
            .flat_map(|b| &b.tasks)
            .any(|t| t.destination == dest.name);
        if wanted && shared.queue.depth(&route.name, &dest.name) >= shared.max_depth {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue-full",
                "Queue full",
                format!(
                    "destination `{}` of route `{}` has {} messages waiting (delivery.max_queue_depth)",
                    dest.name, route.name, shared.max_depth
                ),
            )
            .retry_after(Duration::from_secs(5)));
        }
    }
    let out = shared.queue.enqueue(batches).await.map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "Store unavailable",
            e.to_string(),
        )
        .retry_after(Duration::from_secs(5))
    })?;
    for event in applied {
        route.lifecycle.record(event);
    }
    if out.duplicates > 0 {
        metrics::counter!(m::DEDUPED, "route" => route.name.clone())
            .increment(out.duplicates as u64);
    }
    if out.stored > 0 {
        shared.wake.notify_one();
    }
    Ok(json_response(
        StatusCode::OK,
        json!({
            "status": "accepted",
            "events": total,
            "stored": out.stored,
            "duplicates": out.duplicates,
            "dropped": dropped,
            "skipped": skipped,
        }),
    ))
}

async fn proxy(
    shared: &Shared,
    route: &Route,
    applied: &[CallEvent],
    batches: Vec<EventBatch>,
) -> Result<Response, Problem> {
    let mut last = None;
    let mut pending = batches.into_iter().peekable();
    while let Some(batch) = pending.next() {
        for task in &batch.tasks {
            if task.failure.is_some() {
                continue;
            }
            match shared.client.send(task).await {
                Ok(reply) if reply.status.is_success() => last = Some(reply),
                Ok(reply) => return Ok(pass_through(reply)),
                Err(SendError::Timeout(after)) if route.on_timeout == OnTimeout::Queue => {
                    tracing::warn!(route = %route.name, ?after, "proxy forward timed out: queued instead");
                    let rest: Vec<EventBatch> = std::iter::once(batch).chain(pending).collect();
                    shared.queue.enqueue(rest).await.map_err(|e| {
                        Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "store-unavailable",
                            "Store unavailable",
                            e.to_string(),
                        )
                    })?;
                    applied.iter().for_each(|e| route.lifecycle.record(e));
                    shared.wake.notify_one();
                    return Ok(json_response(
                        StatusCode::ACCEPTED,
                        json!({"status": "queued", "reason": "receiver timed out"}),
                    ));
                }
                Err(SendError::Timeout(after)) => {
                    return Err(Problem::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "receiver-timeout",
                        "Receiver timed out",
                        format!("no reply within {after:?}"),
                    ));
                }
                Err(e) => {
                    return Err(Problem::new(
                        StatusCode::BAD_GATEWAY,
                        "receiver-unreachable",
                        "Receiver unreachable",
                        e.to_string(),
                    ));
                }
            }
        }
    }
    applied.iter().for_each(|e| route.lifecycle.record(e));
    Ok(match last {
        Some(reply) => pass_through(reply),
        None => json_response(
            StatusCode::OK,
            json!({"status": "skipped", "reason": "no event for the destination"}),
        ),
    })
}

/// The receiver's reply, status and body, with its content type.
fn pass_through(reply: crate::adapters::http_out::Reply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = reply.status;
    if let Some(ct) = reply.headers.get(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, ct.clone());
    } else {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    response
}
