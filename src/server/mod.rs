//! The HTTP servers: the public listener (one handler that finds the route in the current
//! snapshot, health endpoints, the fallback proxy) and the admin listener. Handlers are
//! small; the webhook transport is `inbound/webhook.rs`, the pipeline `pipeline.rs`.

pub mod admin;
pub mod archive;
pub mod fallback;
pub mod listen;
pub mod playground;
pub mod tail;

use crate::delivery::Producer;
use crate::inbound::signalr::client::SourceStates;
use crate::inbound::webhook;
use crate::intake::Intake;
use crate::model::problem::Problem;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What the public listener's handler shares.
pub struct Public {
    /// The snapshot being served; each request keeps the one current when it arrived.
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    /// Intake (enqueue, proxy).
    pub intake: Intake,
    /// The shared HTTP client, for the fallback proxy.
    pub http: reqwest::Client,
    /// `server.max_body_bytes`.
    pub max_body: usize,
}

/// Health endpoints: `/healthz` (the process answers) and `/readyz` (store open and writing —
/// 503 `store-full` while its disk is full — mappings loaded, not shutting down).
pub fn health(
    producer: Arc<dyn Producer>,
    ready: Arc<AtomicBool>,
    sources: Arc<SourceStates>,
    keepers: Arc<crate::inbound::ringcentral::keeper::Keepers>,
) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let (producer, ready, sources, keepers) = (
                    producer.clone(),
                    ready.clone(),
                    sources.clone(),
                    keepers.clone(),
                );
                async move {
                    if !ready.load(Ordering::Relaxed) {
                        return Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not-ready",
                            "Not ready",
                            "starting or shutting down",
                        )
                        .into_response();
                    }
                    // Nothing can be accepted while the disk is full: a load balancer should
                    // send webhooks elsewhere.
                    if producer.no_space() {
                        return Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "store-full",
                            "Store full",
                            "the store's disk is full: webhooks get 503 until space is freed",
                        )
                        .into_response();
                    }
                    // A source that is down does not stop webhook intake: it is reported,
                    // and the listener stays ready.
                    let states: serde_json::Map<String, serde_json::Value> = sources
                        .list()
                        .into_iter()
                        .map(|(name, up)| (name, (if up { "connected" } else { "down" }).into()))
                        .collect();
                    // A subscription keeper that is not active is reported too: the route
                    // still takes webhooks, but RingCentral may stop sending them.
                    let subscriptions: serde_json::Map<String, serde_json::Value> = keepers
                        .statuses()
                        .into_iter()
                        .map(|k| (k.route, k.state.into()))
                        .collect();
                    let degraded = states.values().any(|v| v == "down")
                        || subscriptions.values().any(|v| v != "active");
                    axum::Json(serde_json::json!({
                        "status": if degraded { "degraded" } else { "ready" },
                        "mappings": "loaded", "store": "open",
                        "waiting": producer.total_depth(),
                        "sources": states,
                        "ringcentral_subscriptions": subscriptions,
                    }))
                    .into_response()
                }
            }),
        )
}

/// The public router: every request not for health goes to [`dispatch`]. At most
/// `max_concurrent` requests are handled at once; the rest are shed at once with 503.
pub fn public_router(
    public: Arc<Public>,
    request_timeout: Duration,
    max_concurrent: usize,
    health: Router,
) -> Router {
    Router::new()
        .fallback(dispatch)
        .with_state(public)
        .merge(health)
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| async move {
                timeout(request_timeout, request, next).await
            },
        ))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
                .layer(tower::load_shed::LoadShedLayer::new())
                .layer(tower::limit::ConcurrencyLimitLayer::new(max_concurrent)),
        )
}

async fn overloaded(error: tower::BoxError) -> Response {
    let detail = if error.is::<tower::load_shed::error::Overloaded>() {
        "server.max_concurrent_requests requests are in progress".to_string()
    } else {
        error.to_string()
    };
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "Gateway overloaded",
        detail,
    )
    .retry_after(Duration::from_secs(1))
    .into_response()
}

/// Finds the request's route in the current snapshot; unmatched requests go to the fallback
/// receiver, or get 404.
async fn dispatch(State(public): State<Arc<Public>>, request: Request) -> Response {
    let snapshot = public.snapshots.load_full();
    if let Some(hub) = snapshot.hub_for_path(request.uri().path()) {
        return hub.handle(request).await;
    }
    if let Some(route) = snapshot.route_for_path(request.uri().path()).cloned() {
        return webhook::handle(&public.intake, public.max_body, &snapshot, &route, request).await;
    }
    match &snapshot.config.fallback {
        Some(base) => fallback::forward(&public.http, base.value(), public.max_body, request).await,
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
