//! The HTTP servers: the public router (routes, health, fallback), the admin router, and
//! RFC 9457 problems. Handlers are small; the pipeline lives in `intake`.

pub mod admin;
pub mod fallback;
pub mod intake;
pub mod problem;

use crate::delivery::Queue;
use crate::route::Route;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use intake::Shared;
use problem::Problem;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Health endpoints: `/healthz` (the process answers) and `/readyz` (store open, mappings
/// loaded, not shutting down).
pub fn health(queue: Arc<dyn Queue>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(move || {
                let (queue, ready) = (queue.clone(), ready.clone());
                async move {
                    if !ready.load(Ordering::Relaxed) {
                        return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", "starting or shutting down").into_response();
                    }
                    match queue.lease(0).await {
                        Ok(_) => axum::Json(serde_json::json!({"status": "ready", "mappings": "loaded", "store": "open"})).into_response(),
                        Err(e) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Store unavailable", e.to_string()).into_response(),
                    }
                }
            }),
        )
}

/// The public router: one handler per route path, health, and the fallback.
pub fn public_router(
    shared: Arc<Shared>,
    routes: Vec<Route>,
    fallback: Option<String>,
    request_timeout: Duration,
    health: Router,
) -> Router {
    let mut router = Router::new();
    for route in routes {
        let path = route.path.clone();
        let route = Arc::new(route);
        let shared = shared.clone();
        router = router.route(
            &path,
            any(move |request: Request| intake::handle(shared.clone(), route.clone(), request)),
        );
    }
    let fallback_shared = shared.clone();
    router
        .merge(health)
        .fallback(move |request: Request| {
            let shared = fallback_shared.clone();
            let fallback = fallback.clone();
            async move {
                match fallback {
                    Some(base) => {
                        fallback::forward(shared.client.http(), &base, shared.max_body, request)
                            .await
                    }
                    None => Problem::new(
                        StatusCode::NOT_FOUND,
                        "no-route",
                        "No route",
                        format!(
                            "no route for {} {} and no fallback configured",
                            request.method(),
                            request.uri().path()
                        ),
                    )
                    .into_response(),
                }
            }
        })
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| async move {
                timeout(request_timeout, request, next).await
            },
        ))
}

async fn timeout(limit: Duration, request: Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "Request timed out",
            format!("the request took longer than server.request_timeout ({limit:?})"),
        )
        .into_response(),
    }
}
