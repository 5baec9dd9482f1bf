//! The archive's admin endpoints (README "Replay", "Call timeline"): `POST /admin/replay`
//! (a window sent again, or a dry run), `GET /admin/calls?q=TERM` (calls a call id, leg id,
//! user or phone number finds), `GET /admin/calls/{id}` (a call's timeline as JSON) and the
//! timeline page, `/admin/timeline` (`timeline/`: the page draws the SVG itself).

use super::playground::asset;
use crate::delivery::QueueError;
use crate::delivery::archive::Archive;
use crate::intake::Intake;
use crate::model::problem::Problem;
use crate::reload::Reloader;
use crate::replay::{ReplayError, ReplayRequest};
use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("timeline/index.html");
const APP_JS: &str = include_str!("timeline/app.js");
const STYLE_CSS: &str = include_str!("timeline/style.css");

/// What the archive endpoints need.
pub struct ArchiveApi {
    /// The store's archive (`None`: `archive.retention: 0s`).
    pub archive: Option<Arc<dyn Archive>>,
    /// Where replays queue (the store, the calls' turns, the workers' wake-up).
    pub intake: Intake,
    /// Today's snapshot (its routes and mappings render replays).
    pub reloader: Arc<Reloader>,
}

/// The JSON endpoints, behind the admin listener's checks.
pub fn api() -> Router<Arc<ArchiveApi>> {
    Router::new()
        .route("/admin/replay", post(replay))
        .route("/admin/calls", get(search))
        .route("/admin/calls/{id}", get(timeline))
}

/// The timeline page's static files.
pub fn assets() -> Router {
    Router::new()
        .route(
            "/admin/timeline",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/admin/timeline/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/admin/timeline/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn no_archive() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "no-archive",
        "No archive",
        "the store keeps no archive (archive.retention is 0s)",
    )
}

fn store_problem(e: QueueError) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store-unavailable",
        "Store unavailable",
        e.to_string(),
    )
}

/// `POST /admin/replay` with a [`ReplayRequest`]: the [`crate::replay::ReplayReport`].
async fn replay(
    State(api): State<Arc<ArchiveApi>>,
    body: Result<axum::Json<ReplayRequest>, JsonRejection>,
) -> Result<Response, Problem> {
    let axum::Json(request) = body.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-replay",
            "Invalid replay request",
            e.body_text(),
        )
    })?;
    let snapshot = api.reloader.snapshots().load_full();
    match crate::replay::replay(&snapshot, &api.intake, api.archive.as_deref(), &request).await {
        Ok(report) => Ok(axum::Json(report).into_response()),
        Err(ReplayError::Invalid(detail)) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-replay",
            "Invalid replay request",
            detail,
        )),
        Err(ReplayError::NoArchive) => Err(no_archive()),
        Err(ReplayError::Store(e)) => Err(store_problem(e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: String,
    limit: Option<usize>,
}

/// The longest search term or id taken.
const MAX_TERM: usize = 200;

fn term(text: &str) -> Result<&str, Problem> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_TERM || text.chars().any(char::is_control) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-term",
            "Invalid search term",
            format!(
                "a call id, leg id, user or phone number: 1 to {MAX_TERM} characters, no control characters"
            ),
        ));
    }
    Ok(text)
}

/// `GET /admin/calls?q=TERM[&limit=N]`: `{"calls": [CallSummary…]}`, most recent first.
async fn search(
    State(api): State<Arc<ArchiveApi>>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query",
            format!(
                "{} (`q` is a call id, leg id, user or phone number; `limit` a number)",
                e.body_text()
            ),
        )
    })?;
    let archive = api.archive.as_deref().ok_or_else(no_archive)?;
    let found = crate::timeline::search(
        archive,
        term(&query.q)?,
        query.limit.unwrap_or(50).min(1000),
    )
    .await
    .map_err(store_problem)?;
    Ok(axum::Json(serde_json::json!({ "calls": found })).into_response())
}

/// `GET /admin/calls/{id}`: the [`crate::timeline::Timeline`]; 404 when nothing matches.
async fn timeline(
    State(api): State<Arc<ArchiveApi>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(id) = id.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "Invalid call id",
            e.body_text(),
        )
    })?;
    let archive = api.archive.as_deref().ok_or_else(no_archive)?;
    let timeline = crate::timeline::timeline(archive, term(&id)?)
        .await
        .map_err(store_problem)?;
    if timeline.events.is_empty() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-call",
            "No such call",
            format!("the archive has no event of `{}`", id.trim()),
        ));
    }
    Ok(axum::Json(timeline).into_response())
}
