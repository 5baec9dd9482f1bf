//! The admin listener: `/metrics` (Prometheus), `/healthz`, `/readyz`, the dead letters
//! (`/admin/deliveries…`), `/admin/reload`, `/admin/mappings`, the mapping playground
//! (`/admin/playground`, `/admin/translate`: `playground/`) and the live tail
//! (`/admin/tail`: `tail.rs`).
//! Loopback by default; with `server.admin_token` every request needs
//! `Authorization: Bearer <token>`.

use super::playground;
use crate::delivery::{DeadLetters, QueueError};
use crate::mapping::helpers::guid_for;
use crate::model::problem::Problem;
use crate::outbound::signalr::hub::{Claims, issue_token};
use crate::reload::{Reloaded, Reloader, Trigger};
use crate::telemetry::metrics;
use crate::telemetry::tail::Tail;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What the admin handlers need.
pub struct Admin {
    /// The dead letters.
    pub dead_letters: Arc<dyn DeadLetters>,
    /// Reloads and the snapshot being served (its mappings serve `/admin/translate`).
    pub reloader: Arc<Reloader>,
    /// `Bearer <admin_token>`, when set.
    pub token: Option<String>,
    /// The admin listener's bound address (the only `Host` it answers without a token).
    pub listen: std::net::SocketAddr,
    /// The public listener's bound address (hub endpoints in issued tokens).
    pub public: std::net::SocketAddr,
    /// The live tail (`/admin/tail`).
    pub tail: Tail,
    /// RingCentral subscription keepers (`/admin/ringcentral`).
    pub keepers: Arc<crate::inbound::ringcentral::keeper::Keepers>,
    /// Replay and call timelines (`/admin/replay`, `/admin/calls…`).
    pub archive: Arc<super::archive::ArchiveApi>,
}

type AdminState = Arc<Admin>;

/// The admin router.
pub fn router(admin: Arc<Admin>, health: Router) -> Router {
    Router::new()
        .route("/metrics", get(|| async { metrics::handle().render() }))
        .route("/admin/deliveries", get(list).delete(purge))
        .route("/admin/deliveries/replay", post(replay_all))
        .route("/admin/deliveries/{id}", get(show))
        .route("/admin/deliveries/{id}/replay", post(replay_one))
        .route("/admin/reload", post(reload))
        .route("/admin/mappings", get(mappings))
        .route("/admin/ringcentral", get(ringcentral))
        .route("/token/{user}/rte/", get(rte_token))
        .merge(playground::api().with_state(admin.reloader.clone()))
        .merge(super::archive::api().with_state(admin.archive.clone()))
        .route(
            "/admin/tail",
            get(super::tail::tail).with_state(admin.tail.clone()),
        )
        .fallback(|request: Request| async move {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                format!(
                    "no admin endpoint {} {}",
                    request.method(),
                    request.uri().path()
                ),
            )
        })
        .layer(middleware::from_fn_with_state(admin.clone(), authorize))
        .layer(middleware::from_fn_with_state(admin.clone(), same_origin))
        .with_state(admin)
        .merge(health)
        .merge(playground::assets())
        .merge(super::archive::assets())
}

/// Refuses what a web page on the same host could make a browser send: without a token,
/// any request whose `Host` is not this listener's loopback address (DNS rebinding); and a
/// state-changing request whose `Origin` is another site (CSRF). Scripts (curl, `callgate
/// dlq`) send no `Origin` and pass.
async fn same_origin(State(admin): State<AdminState>, request: Request, next: Next) -> Response {
    let port = admin.listen.port();
    let local = |host: &str| {
        [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            admin.listen.to_string(),
        ]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let forbidden = |detail: String| {
        Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Request refused",
            detail,
        )
        .into_response()
    };
    if admin.token.is_none() && !local(&host) {
        return forbidden(format!(
            "Host `{host}` is not this admin listener ({}): refused (DNS rebinding)",
            admin.listen
        ));
    }
    let state_changing = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if state_changing && let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or_default();
        let same = if admin.token.is_none() {
            local(origin_host)
        } else {
            origin_host.eq_ignore_ascii_case(&host)
        };
        if !same {
            return forbidden(format!(
                "Origin `{origin}` is another site: state-changing admin requests are refused (CSRF)"
            ));
        }
    }
    next.run(request).await
}

async fn authorize(State(admin): State<AdminState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &admin.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !bool::from(given.ct_eq(expected.as_bytes())) {
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Admin token required",
                "send Authorization: Bearer <server.admin_token>",
            )
            .into_response();
        }
    }
    next.run(request).await
}

fn store_problem(e: QueueError) -> Problem {
    match e {
        QueueError::NotFound(id) => Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such dead letter",
            format!("no dead letter with id {id}"),
        ),
        other => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "Store unavailable",
            other.to_string(),
        ),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list(
    State(admin): State<AdminState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| {
        Problem::new(
            e.status(),
            "invalid-query",
            "Invalid query",
            format!("{} (`limit` is a number of dead letters)", e.body_text()),
        )
    })?;
    let dead = admin
        .dead_letters
        .list(q.limit.unwrap_or(100))
        .await
        .map_err(store_problem)?;
    let items: Vec<_> = dead.iter().map(|d| d.to_json()).collect();
    Ok(axum::Json(json!({ "dead_letters": items })).into_response())
}

/// A dead-letter id from the path; anything else is a 400 problem.
fn dead_letter_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, Problem> {
    id.map(|Path(id)| id).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "Invalid dead-letter id",
            e.body_text(),
        )
    })
}

async fn show(
    State(admin): State<AdminState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, Problem> {
    let id = dead_letter_id(id)?;
    let dead = admin.dead_letters.show(id).await.map_err(store_problem)?;
    Ok(axum::Json(dead.to_json()).into_response())
}

async fn replay_one(
    State(admin): State<AdminState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, Problem> {
    let id = dead_letter_id(id)?;
    let n = admin
        .dead_letters
        .replay(Some(id))
        .await
        .map_err(store_problem)?;
    Ok(axum::Json(json!({ "replayed": n })).into_response())
}

async fn replay_all(State(admin): State<AdminState>) -> Result<Response, Problem> {
    let n = admin
        .dead_letters
        .replay(None)
        .await
        .map_err(store_problem)?;
    Ok(axum::Json(json!({ "replayed": n })).into_response())
}

async fn purge(State(admin): State<AdminState>) -> Result<Response, Problem> {
    let n = admin.dead_letters.purge().await.map_err(store_problem)?;
    Ok(axum::Json(json!({ "purged": n })).into_response())
}

async fn reload(State(admin): State<AdminState>) -> Result<Response, Problem> {
    match admin.reloader.reload(Trigger::Admin).await {
        Ok(Reloaded::Swapped { version }) => {
            Ok(axum::Json(json!({ "status": "reloaded", "version": version })).into_response())
        }
        Ok(Reloaded::Unchanged { version }) => {
            Ok(axum::Json(json!({ "status": "unchanged", "version": version })).into_response())
        }
        Err(e) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload-rejected",
            "Reload rejected; the previous mappings and routes keep serving",
            e,
        )),
    }
}

/// Query of `GET /token/{user}/rte/`.
#[derive(Deserialize)]
struct TokenQuery {
    /// The hub path, when several hub destinations exist.
    hub: Option<String>,
    /// Comma-separated entity ids the token allows; default the user id (`me`: any). Ids
    /// that are not GUIDs become the GUID the mappings' `guid` helper derives from them
    /// (a RingCentral extension id becomes the `EntityId` its events carry).
    entities: Option<String>,
    /// Lifetime, humantime; default 1h.
    ttl: Option<String>,
}

/// Issues an RTE-style token for a hub destination, as Enreach's
/// `GET {api}/token/{userid}/rte/` does: `{"WssEndpoint": …, "Token": …}` (docs/protocols.md
/// §2.1). Behind the admin token like every admin endpoint.
async fn rte_token(
    State(admin): State<AdminState>,
    Path(user): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let snapshot = admin.reloader.snapshots().load_full();
    let hubs: Vec<_> = snapshot
        .config
        .routes
        .iter()
        .flat_map(|r| &r.to)
        .filter_map(|d| Some((d.hub.clone()?, d.auth.as_ref()?.jwt_secret.clone()?)))
        .filter(|(path, _)| query.hub.as_ref().is_none_or(|h| h == path))
        .collect();
    let (path, secret) = match hubs.as_slice() {
        [one] => one.clone(),
        [] => {
            return Problem::new(
                StatusCode::NOT_FOUND,
                "no-hub",
                "No such hub",
                "no hub destination is configured (or none at ?hub=)",
            )
            .into_response();
        }
        _ => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "which-hub",
                "Several hubs",
                "several hub destinations are configured: name one with ?hub=/path",
            )
            .into_response();
        }
    };
    let ttl = match query.ttl.as_deref().map(humantime::parse_duration) {
        None => std::time::Duration::from_secs(3600),
        Some(Ok(ttl)) => ttl,
        Some(Err(e)) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-ttl",
                "Invalid ttl",
                format!("ttl: {e}"),
            )
            .into_response();
        }
    };
    let entities = match (&query.entities, user.as_str()) {
        (Some(list), _) => list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(guid_for)
            .collect(),
        (None, "me") => vec!["*".to_string()],
        (None, id) => vec![guid_for(id)],
    };
    let claims = Claims {
        sub: user,
        exp: (crate::model::clock::now_ms() / 1000) as u64 + ttl.as_secs(),
        entities,
    };
    let token = issue_token(secret.value().as_bytes(), &claims);
    axum::Json(serde_json::json!({
        "WssEndpoint": format!("ws://{}{path}", admin.public),
        "Token": token,
        "EntityIds": claims.entities,
    }))
    .into_response()
}

/// `GET /admin/ringcentral`: each subscription keeper's state (`{"subscriptions": [...]}`).
async fn ringcentral(State(admin): State<AdminState>) -> Response {
    axum::Json(json!({ "subscriptions": admin.keepers.statuses() })).into_response()
}

async fn mappings(State(admin): State<AdminState>) -> Response {
    axum::Json(admin.reloader.status_json()).into_response()
}
