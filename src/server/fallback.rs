//! The fallback reverse proxy: a request no route matches goes to the legacy receiver
//! unchanged (method, path, query, headers, body), and its reply comes back unchanged.

use crate::model::problem::Problem;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus those the client
/// library sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Forwards `request` to `base` + its path and query.
pub async fn forward(
    http: &reqwest::Client,
    base: &str,
    max_body: usize,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, max_body).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body exceeds server.max_body_bytes ({max_body} bytes)"),
        )
        .into_response();
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{}", base.trim_end_matches('/'), path_and_query);
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    let sent = http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(bytes)
        .send()
        .await;
    match sent {
        Ok(reply) => {
            let status = reply.status();
            let mut headers = HeaderMap::new();
            copy_headers(reply.headers(), &mut headers);
            // Streamed through, never buffered: the legacy receiver's reply may be large.
            let mut response = Response::new(Body::from_stream(reply.bytes_stream()));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(e) => {
            tracing::warn!(%url, error = %e, "fallback receiver unreachable");
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "fallback-unreachable",
                "Fallback receiver unreachable",
                e.to_string(),
            )
            .into_response()
        }
    }
}
