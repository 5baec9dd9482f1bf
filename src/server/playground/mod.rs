//! The mapping playground on the admin listener: the page (HTML, CSS and JavaScript embedded
//! in the binary at build time; no build step, no CDN) and the JSON it calls — the shipped
//! fixtures (every mapping case's input), a vendor's mapping files to edit, and
//! `POST /admin/translate`, which runs the pipeline on the live snapshot's mappings with
//! any unsaved edits laid over them (`explain.rs`).

use crate::cases;
use crate::explain::{self, ExplainRequest};
use crate::model::problem::Problem;
use crate::reload::Reloader;
use crate::translate::Translator;
use axum::Router;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// The page and its assets. They hold no data, so they are served without the admin token
/// (a browser cannot send one on navigation); everything they fetch needs it.
pub fn assets() -> Router {
    Router::new()
        .route(
            "/admin/playground",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/admin/playground/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/admin/playground/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// The JSON endpoints the page calls, behind the admin listener's checks.
pub fn api() -> Router<Arc<Reloader>> {
    Router::new()
        .route("/admin/playground/fixtures", get(fixtures))
        .route("/admin/playground/files", get(files))
        .route("/admin/translate", post(translate))
}

/// A static asset with headers that keep the page to itself: scripts and styles only from
/// this listener, no framing, no referrer, no MIME sniffing.
pub(super) fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /admin/playground/fixtures`: the vendors (which decode, which encode), the snapshot
/// version, and every mapping case's input as a fixture to paste.
async fn fixtures(State(reloader): State<Arc<Reloader>>) -> Result<Response, Problem> {
    let snapshot = reloader.snapshots().load_full();
    let body = blocking(move || {
        let mappings = &snapshot.mappings;
        let vendors: Vec<Value> = mappings
            .vendors()
            .map(|v| {
                json!({
                    "id": v.id,
                    "title": v.title,
                    "decodes": v.can_decode(),
                    "encodes": v.encoder().is_some(),
                })
            })
            .collect();
        json!({
            "version": snapshot.version,
            "mappings": mappings.root().display().to_string(),
            "vendors": vendors,
            "fixtures": cases::fixtures(mappings),
        })
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize)]
struct FilesQuery {
    vendor: String,
}

/// `GET /admin/playground/files?vendor=V`: the vendor's mapping files as they are on disk,
/// `{"files": [{"path": "vidyo/encode.yaml", "text": …}]}` (paths relative to the mappings
/// folder: the keys of `edits`). Only vendors of the live mappings.
async fn files(
    State(reloader): State<Arc<Reloader>>,
    Query(query): Query<FilesQuery>,
) -> Result<Response, Problem> {
    let snapshot = reloader.snapshots().load_full();
    if snapshot.mappings.vendor(&query.vendor).is_none() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-vendor",
            "Unknown vendor",
            format!("no vendor `{}` in the mappings", query.vendor),
        ));
    }
    let root = snapshot.mappings.root().to_path_buf();
    let vendor = query.vendor;
    let files = blocking(move || mapping_files(&root, &vendor)).await?;
    Ok(axum::Json(json!({ "files": files })).into_response())
}

/// The editable files of one vendor folder: its YAML files and its templates, sorted.
fn mapping_files(root: &Path, vendor: &str) -> Vec<Value> {
    let folder = root.join(vendor);
    let mut paths: Vec<_> = ["", "templates"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(folder.join(sub))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let rel = path.strip_prefix(root).ok()?.display().to_string();
            Some(json!({ "path": rel, "text": text }))
        })
        .collect()
}

#[derive(Deserialize)]
struct LegacyQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `POST /admin/translate`. With a JSON [`ExplainRequest`] body: the playground's report
/// (canonical events, outputs, lifecycle verdicts, errors with file and line), 200 even
/// when the report holds errors. With `?from=V&to=V` and the raw payload as the body: the
/// outputs only, `{"outputs": [...]}`, 422 on an error (the `translate` command over HTTP).
async fn translate(
    State(reloader): State<Arc<Reloader>>,
    query: Result<Query<LegacyQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    // The extractors' own refusals (a query that does not parse, a body over the admin
    // listener's limit) answer problem+json like every other refusal.
    let Query(query) = query
        .map_err(|e| Problem::new(e.status(), "invalid-query", "Invalid query", e.body_text()))?;
    let body =
        body.map_err(|e| Problem::new(e.status(), "invalid-body", "Invalid body", e.body_text()))?;
    let mappings = reloader.snapshots().load().mappings.clone();
    if let (Some(from), Some(to)) = (query.from, query.to) {
        let text = String::from_utf8(body.to_vec()).map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-body",
                "Invalid body",
                "the payload is not UTF-8",
            )
        })?;
        let outputs = blocking(move || legacy(mappings, &from, &to, &text))
            .await?
            .map_err(|e| {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "translate-failed",
                    "Translation failed",
                    e,
                )
            })?;
        #[derive(serde::Serialize)]
        struct Outputs {
            outputs: Vec<Box<serde_json::value::RawValue>>,
        }
        return Ok(axum::Json(Outputs { outputs }).into_response());
    }
    let request: ExplainRequest =
        axum::Json::<ExplainRequest>::from_bytes(&body)
            .map(|axum::Json(r)| r)
            .map_err(|e: JsonRejection| {
                let json = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-request",
                    "Invalid translate request",
                    if json {
                        e.body_text()
                    } else {
                        format!(
                            "send {{\"from\", \"to\", \"payload\", \"edits\"}} as application/json, or ?from=V&to=V with the payload: {}",
                            e.body_text()
                        )
                    },
                )
            })?;
    let report = blocking(move || explain::explain(&mappings, &request)).await?;
    Ok(axum::Json(report).into_response())
}

/// The outputs of every payload in `text`, as `callgate translate` prints them.
fn legacy(
    mappings: Arc<crate::mapping::MappingSet>,
    from: &str,
    to: &str,
    text: &str,
) -> Result<Vec<Box<serde_json::value::RawValue>>, String> {
    let translator = Translator::new(mappings, from, to, "http://receiver.invalid/")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for payload in translator.read(text).map_err(|e| e.to_string())? {
        for outcome in translator.translate(&payload).map_err(|e| e.to_string())? {
            // The text as sent, keys in the template's order (a `Value` would sort them).
            if let Some(text) = outcome.output_text() {
                out.push(
                    serde_json::value::RawValue::from_string(text).map_err(|e| e.to_string())?,
                );
            }
        }
    }
    Ok(out)
}

/// Runs file reading and template rendering off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            format!("the playground task failed: {e}"),
        )
    })
}
