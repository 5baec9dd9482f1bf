//! One listener's accept loop: at most `server.max_connections` connections at once (the
//! rest wait in the kernel's backlog), each served by hyper's HTTP/1.1 with a header read
//! timeout that also closes idle keep-alive connections, drained gracefully on stop.

use crate::model::problem::Problem;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// hyper's own ceiling on a request head; requests between `server.max_header_bytes` and
/// this get callgate's 431 problem+json, larger ones hyper's bare 431.
const HYPER_MAX_HEADER_BYTES: usize = 256 * 1024;
/// hyper's own ceiling on header fields (callgate's own limit, 100, answers below it).
const HYPER_MAX_HEADERS: usize = 256;

/// Connection limits from `server:` (see `ServerConfig`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `server.header_read_timeout`.
    pub header_read_timeout: Duration,
    /// `server.max_connections`.
    pub max_connections: usize,
    /// `server.max_header_bytes`.
    pub max_header_bytes: usize,
}

/// Longest request target answered; longer ones get 414 problem+json. RFC 9112 §3 asks
/// for at least 8000 octets.
pub const MAX_URI_BYTES: usize = 8192;
/// Most header fields answered; more get 431 problem+json.
pub const MAX_HEADERS: usize = 100;

/// Refuses request heads beyond callgate's limits with problem+json (hyper's own, higher
/// ceilings answer bare): a request target over [`MAX_URI_BYTES`] with 414, more than
/// [`MAX_HEADERS`] fields or more than `max_header_bytes` of them with 431.
async fn head_limits(
    max_header_bytes: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    // The request target as sent (origin form: path and query; absolute form: the whole URI).
    let uri = request.uri();
    let uri = match (uri.scheme(), uri.path_and_query()) {
        (None, Some(target)) => target.as_str().len(),
        _ => uri.to_string().len(),
    };
    if uri > MAX_URI_BYTES {
        return Problem::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "Request target too long",
            format!("the request target is {uri} bytes; at most {MAX_URI_BYTES} are answered"),
        )
        .into_response();
    }
    let headers = request.headers();
    // Field lines as sent: name, ": ", value, CRLF.
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > max_header_bytes {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request header fields too large",
            format!(
                "{} header fields, {bytes} bytes; at most {MAX_HEADERS} fields and \
                 server.max_header_bytes ({max_header_bytes}) bytes are answered",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Serves `app` on `listener` until `stop` turns true, then stops accepting, lets every open
/// connection finish its request in flight, and returns once all are closed. `name` labels
/// the `callgate_connections_open` gauge (`public`, `admin`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let max_header_bytes = limits.max_header_bytes;
    let app = app.layer(axum::middleware::from_fn(move |request, next| {
        head_limits(max_header_bytes, request, next)
    }));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = metrics::gauge!(crate::telemetry::metrics::CONNECTIONS_OPEN, "listener" => name);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and the like: back off rather than spin; the slot is returned.
                    tracing::warn!(listener = name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        let open = open.clone();
        open.increment(1.0);
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_headers(HYPER_MAX_HEADERS)
                .max_header_size(HYPER_MAX_HEADER_BYTES);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            open.decrement(1.0);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
