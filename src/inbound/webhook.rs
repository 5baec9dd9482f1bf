//! The webhook transport: one HTTP request on a route → handshake or connection test →
//! verify → [`pipeline::accept`] → [`Intake::submit`] → an HTTP reply. Every refusal is an
//! RFC 9457 problem naming what was wrong.

use crate::delivery::QueueError;
use crate::intake::{IngestError, Intake, SubmitError, Submitted};
use crate::mapping::AUTO;
use crate::mapping::decode::DecodeError;
use crate::model::inbound::{InboundError, PayloadError, read_payload};
use crate::model::problem::Problem;
use crate::model::signature::Presented;
use crate::outbound::http::Reply;
use crate::pipeline::PipelineError;
use crate::route::Route;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics as m;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

/// Handles one request on `route` of `snapshot` (the snapshot current when it arrived) and
/// counts it.
pub async fn handle(
    intake: &Intake,
    max_body: usize,
    snapshot: &Snapshot,
    route: &Route,
    request: Request,
) -> Response {
    let response = match receive(intake, max_body, snapshot, route, request).await {
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

async fn receive(
    intake: &Intake,
    max_body: usize,
    snapshot: &Snapshot,
    route: &Route,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    // What the vendor sends: parameter vendors (and `auto`) GET or POST; JSON vendors POST.
    let allow = if route.params || route.from == AUTO {
        "GET, POST"
    } else {
        "POST"
    };
    if !allow.split(", ").any(|m| m == parts.method.as_str()) {
        let mut response = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!(
                "route `{}` ({}) takes {allow}, not {}",
                route.name, route.from, parts.method
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(response);
    }
    if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
        let content_type = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        let json = essence == "application/json" || essence.ends_with("+json");
        let form = essence == "application/x-www-form-urlencoded";
        let accepted =
            json || essence == "text/plain" || (form && (route.params || route.from == AUTO));
        if !accepted {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Content type not accepted",
                format!(
                    "route `{}` ({}) takes {}, not {essence}",
                    route.name,
                    route.from,
                    if route.params {
                        "URL parameters or application/x-www-form-urlencoded"
                    } else {
                        "application/json"
                    }
                ),
            ));
        }
    }
    let bytes = to_bytes(body, max_body).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body exceeds server.max_body_bytes ({max_body} bytes)"),
        )
    })?;

    // RingCentral's subscription handshake: echo the header, no event, no I/O. A request
    // whose Validation-Token is the route's shared secret is a delivery (docs/protocols.md §3.3),
    // and so is one with a body that passes the route's verifier by another header.
    let echo = route.handshake_header.as_ref().and_then(|name| {
        Some((
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            parts.headers.get(name.as_str())?.clone(),
        ))
    });
    if let Some((_, value)) = &echo
        && !route.verifier.is_shared_token(value.as_bytes())
        && (bytes.trim_ascii().is_empty()
            || !route.verifier.is_token_verifier()
            || route.verifier.check(&parts.headers, &bytes).is_err())
    {
        tracing::info!(route = %route.name, "subscription handshake answered");
        let mut response = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "",
        )
            .into_response();
        if let Some((name, value)) = echo {
            response.headers_mut().insert(name, value);
        }
        return Ok(response);
    }

    // A validation request (Microsoft Graph's `?validationToken=`): the token back as
    // text/plain, no event. It carries no credentials, so it comes before verification; the
    // echo is bounded and plain text.
    if let Some(name) = &route.validation_query
        && let Some(token) = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name.as_str())
                .map(|(_, v)| v.into_owned())
        })
    {
        if token.len() > 1024 || token.chars().any(char::is_control) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-validation",
                "Validation token refused",
                format!("`{name}` must be at most 1024 characters without control characters"),
            ));
        }
        tracing::info!(route = %route.name, "validation request answered");
        return Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            token,
        )
            .into_response());
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
    let presented = Presented {
        method: parts.method.as_str(),
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        headers: &parts.headers,
        body: &bytes,
    };
    let inbound = match route.verifier.verify(&presented, read) {
        Ok(inbound) if route.accept_empty && inbound.is_empty() => return Ok(connection_test()),
        // The vendor's endpoint challenge (Zoom's `endpoint.url_validation`), verified like
        // any request first: an unsigned one never gets the route's HMAC.
        Ok(inbound)
            if let Some(challenge) = &route.challenge
                && let Some(key) = route.verifier.signing_key()
                && let Some(reply) = challenge.answer(inbound.payload(), key) =>
        {
            tracing::info!(route = %route.name, "endpoint challenge answered");
            return Ok(json_response(StatusCode::OK, reply));
        }
        Err(InboundError::Payload(PayloadError::Empty(_))) if route.accept_empty => {
            return Ok(connection_test());
        }
        Ok(inbound) => inbound,
        Err(InboundError::Refused(e)) => {
            let mut response = Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Request not verified",
                format!("route `{}`: {e}", route.name),
            )
            .into_response();
            if let Some(challenge) = route.verifier.challenge() {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            tracing::info!(route = %route.name, status = 401, detail = %e, "request refused");
            return Ok(response);
        }
        Err(InboundError::Payload(e @ PayloadError::NotParams)) => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "JSON body refused",
                format!("{}: {e}", route.from),
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

    if let Some(status) = snapshot
        .hooks
        .get(&route.name)
        .and_then(|h| h.intercept(&inbound))
    {
        return Ok(json_response(StatusCode::OK, json!({ "status": status })));
    }
    let (accepted, submitted) =
        intake
            .ingest(snapshot, route, &inbound)
            .await
            .map_err(|e| match e {
                IngestError::Pipeline(e) => pipeline_problem(e),
                IngestError::Submit(e) => submit_problem(e),
            })?;
    let mut response = match submitted {
        Submitted::Queued { stored, duplicates } => json_response(
            StatusCode::OK,
            json!({
                "status": "accepted",
                "events": accepted.total(),
                "stored": stored,
                "duplicates": duplicates,
                "dropped": accepted.dropped(),
                // Why, per event, as the tail says it (duplicate, stale and the sequences).
                "drops": accepted
                    .drops()
                    .into_iter()
                    .map(|(event_id, reason)| json!({"event_id": event_id, "reason": reason}))
                    .collect::<Vec<_>>(),
                "skipped": accepted.skipped(),
            }),
        ),
        Submitted::Forwarded(reply) | Submitted::Refused(reply) => pass_through(reply),
        Submitted::QueuedAfterTimeout => json_response(
            StatusCode::ACCEPTED,
            json!({"status": "queued", "reason": "receiver timed out"}),
        ),
        Submitted::QueuedBehind => json_response(
            StatusCode::ACCEPTED,
            json!({"status": "queued", "reason": "earlier events of this call are waiting in the queue"}),
        ),
        Submitted::NothingToForward => json_response(
            StatusCode::OK,
            json!({"status": "skipped", "reason": "no event for the destination"}),
        ),
        // Nothing is lost (the messages are in the dead letters), but nothing was forwarded:
        // the sender is told which destination failed and why.
        Submitted::DeadLettered(failed) => json_response(
            StatusCode::OK,
            json!({
                "status": "dead-lettered",
                "reason": "the destination's template failed: nothing was forwarded; the message is in the dead letters (callgate dlq list)",
                "dead_letters": failed
                    .iter()
                    .map(|(destination, error)| json!({"destination": destination, "error": error}))
                    .collect::<Vec<_>>(),
            }),
        ),
    };
    if let Some((name, value)) = echo {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

fn pipeline_problem(e: PipelineError) -> Problem {
    match e {
        PipelineError::Detect(e) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-vendor",
            "Vendor not recognised",
            e.to_string(),
        ),
        PipelineError::Decode(e @ DecodeError::TooManyEvents { .. }) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-events",
            "Too many events in one request",
            e.to_string(),
        ),
        PipelineError::Decode(e @ DecodeError::Convert { .. }) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-value",
            "A value is not in its declared format",
            e.to_string(),
        ),
        PipelineError::Decode(e) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-decode-rule",
            "Payload not understood",
            e.to_string(),
        ),
    }
}

fn submit_problem(e: SubmitError) -> Problem {
    match e {
        SubmitError::QueueFull { .. } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue-full",
            "Queue full",
            e.to_string(),
        )
        .retry_after(Duration::from_secs(5)),
        SubmitError::Store(e @ QueueError::Full { .. }) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue-full",
            "Queue full",
            e.to_string(),
        )
        .retry_after(Duration::from_secs(5)),
        SubmitError::Store(e @ QueueError::NoSpace(_)) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-full",
            "Store full",
            e.to_string(),
        )
        .retry_after(Duration::from_secs(30)),
        SubmitError::Store(e) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "Store unavailable",
            e.to_string(),
        )
        .retry_after(Duration::from_secs(5)),
        SubmitError::Timeout(after) => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "receiver-timeout",
            "Receiver timed out",
            format!("no reply within {after:?}"),
        ),
        SubmitError::Unreachable(e) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "receiver-unreachable",
            "Receiver unreachable",
            e,
        ),
        SubmitError::Deferred { after, .. } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "receiver-protected",
            "Receiver protected by its lane",
            e.to_string(),
        )
        .retry_after(after.max(Duration::from_secs(1))),
    }
}

/// The receiver's reply, status and body, with its content type.
fn pass_through(reply: Reply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = reply.status;
    let content_type = reply
        .headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("text/plain"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}
