//! A fake RingCentral platform, written from the documented API (ringcentral-platform.md
//! A.1–A.5): the OAuth token endpoint (JWT bearer grant, single-use refresh tokens), the
//! subscription resource (list, create with the Validation-Token check of the address,
//! read, update, renew, delete), 429 with `Retry-After`, and blacklisting. It records every
//! request so tests can assert what was sent and when.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "client-1";
pub const CLIENT_SECRET: &str = "secret-1";
pub const JWT: &str = "jwt-credential-1";
/// What `~` resolves to in echoed filters.
pub const ACCOUNT: &str = "809646016";

/// One request the platform received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Default)]
pub struct PlatformState {
    pub seen: Vec<Seen>,
    pub subscriptions: Vec<Value>,
    /// Instants each subscription expires (by id), on the platform's clock.
    pub expiry: Vec<(String, Instant)>,
    pub jwt_grants: usize,
    pub refreshes: usize,
    pub access_tokens: Vec<String>,
    pub refresh_tokens: Vec<String>,
    /// Answer the next this-many requests with 429 and `Retry-After`.
    pub rate_limit_next: usize,
    /// Answer the next this-many token requests with 503.
    pub token_unavailable_next: usize,
    pub retry_after_secs: u64,
    /// The lifetime the platform grants, whatever `expiresIn` asks (tests use seconds).
    pub lifetime: Duration,
    /// Access token lifetime (`expires_in`).
    pub token_lifetime_secs: u64,
    /// Renewals that arrived after the subscription had expired.
    pub late_renewals: usize,
    pub renewals: usize,
    pub creations: usize,
    next_id: usize,
    pub ws: WsState,
}

/// The WebSocket gateway's side (B.1–B.6).
#[derive(Default)]
pub struct WsState {
    /// `ws_access_token`s issued and not used yet (single use).
    pub tokens: Vec<String>,
    /// The session's `wsc` token; replaced when a session cannot be recovered.
    pub session: String,
    pub sequence: u64,
    pub connections: usize,
    pub recovered: usize,
    pub recovery_failed: usize,
    /// Subscriptions made over sockets.
    pub subscriptions: usize,
    /// The next recovery attempt fails (`recoveryState: Failed`).
    pub fail_recovery: bool,
    /// Notifications published while no socket was open: replayed on recovery.
    pub missed: Vec<Value>,
    /// The last notification sent, replayed again on recovery (a duplicate to drop).
    pub last_sent: Option<Value>,
    /// The open socket's control, when one is open and subscribed.
    pub live: Option<tokio::sync::mpsc::UnboundedSender<WsCommand>>,
    /// The sockets open now stay open but answer nothing (a hung server).
    pub mute: bool,
}

/// What a test makes the open socket do.
pub enum WsCommand {
    Notify(Value),
    /// A text frame as it is, whatever it holds.
    Raw(String),
    Drop,
}

#[derive(Clone)]
pub struct FakePlatform {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<PlatformState>>,
}

impl FakePlatform {
    pub async fn start(lifetime: Duration) -> FakePlatform {
        let state = Arc::new(Mutex::new(PlatformState {
            lifetime,
            retry_after_secs: 2,
            token_lifetime_secs: 2,
            ..PlatformState::default()
        }));
        let app = Router::new()
            .route("/restapi/oauth/token", post(token))
            .route("/restapi/v1.0/subscription", get(list).post(create))
            .route(
                "/restapi/v1.0/subscription/{id}",
                get(read).put(update).delete(delete),
            )
            .route("/restapi/v1.0/subscription/{id}/renew", post(renew))
            .route("/restapi/oauth/wstoken", post(wstoken))
            .route("/ws", get(websocket))
            .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakePlatform { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut PlatformState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Sends a notification on the open socket, or keeps it for a recovery.
    pub fn publish(&self, notification: Value) {
        self.with(|s| match &s.ws.live {
            Some(live) => {
                let _ = live.send(WsCommand::Notify(notification));
            }
            None => s.ws.missed.push(notification),
        })
    }

    /// Sends a text frame as it is on the open socket.
    pub fn send_raw(&self, text: String) {
        self.with(|s| {
            if let Some(live) = &s.ws.live {
                let _ = live.send(WsCommand::Raw(text));
            }
        })
    }

    /// Drops the open socket without a close frame, as a network change does.
    pub fn drop_socket(&self) {
        self.with(|s| {
            if let Some(live) = s.ws.live.take() {
                let _ = live.send(WsCommand::Drop);
            }
        })
    }

    /// Marks a subscription `Blacklisted` as RingCentral does after failed deliveries.
    pub fn blacklist(&self, id: &str) {
        self.with(|s| {
            for sub in s.subscriptions.iter_mut().filter(|x| x["id"] == id) {
                sub["status"] = json!("Blacklisted");
                sub["blacklistedData"] = json!({
                    "reason": "Webhook responses with code: [404], reason: [Not Found]",
                    "blacklistedAt": "2026-12-02T00:00:00.000Z"
                });
            }
        })
    }
}

/// A token endpoint refusal as RFC 6749 §5.2 shapes it (400, `error`, `error_description`),
/// with RingCentral's `errorCode` and `errors` beside it.
fn oauth_error(error: &str, code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": message, "errorCode": code, "message": message, "errors": [{"errorCode": code, "message": message}]})),
    )
        .into_response()
}

fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errorCode": code, "message": message, "errors": [{"errorCode": code, "message": message}]})),
    )
        .into_response()
}

/// Logs every request; answers 429 while told to; checks the bearer token on the API.
async fn gate(
    State(state): State<Arc<Mutex<PlatformState>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (method, path) = (
        request.method().to_string(),
        request.uri().path().to_string(),
    );
    let limited = {
        let mut s = state.lock().unwrap();
        if s.rate_limit_next > 0 {
            s.rate_limit_next -= 1;
            Some(s.retry_after_secs)
        } else {
            None
        }
    };
    let response = if let Some(after) = limited {
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "CMN-301",
            "Request rate exceeded",
        );
        r.headers_mut()
            .insert("retry-after", after.to_string().parse().unwrap());
        r
    } else if !path.starts_with("/restapi/oauth/") && path != "/ws" {
        let token = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let valid = token.is_some_and(|t| state.lock().unwrap().access_tokens.last() == Some(&t));
        if valid {
            next.run(request).await
        } else {
            problem(StatusCode::UNAUTHORIZED, "OAU-140", "Invalid token")
        }
    } else {
        next.run(request).await
    };
    state.lock().unwrap().seen.push(Seen {
        at: Instant::now(),
        method,
        path,
        status: response.status().as_u16(),
    });
    response
}

async fn token(
    State(state): State<Arc<Mutex<PlatformState>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return problem(
            StatusCode::UNAUTHORIZED,
            "OAU-123",
            "Client authentication is required",
        );
    }
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut s = state.lock().unwrap();
    if s.token_unavailable_next > 0 {
        s.token_unavailable_next -= 1;
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "CMN-211",
            "Service unavailable",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
            if form.get("assertion").map(String::as_str) == Some(JWT) =>
        {
            s.jwt_grants += 1
        }
        Some("refresh_token") => {
            // Single use: only the latest refresh token works.
            let given = form.get("refresh_token");
            if given.is_none() || s.refresh_tokens.last() != given {
                return oauth_error("invalid_grant", "OAU-211", "Token is revoked");
            }
            s.refreshes += 1;
        }
        _ => return oauth_error("invalid_grant", "OAU-250", "Invalid grant"),
    }
    let n = s.access_tokens.len() + 1;
    let (access, refresh) = (format!("access-{n}"), format!("refresh-{n}"));
    s.access_tokens.push(access.clone());
    s.refresh_tokens.push(refresh.clone());
    axum::Json(json!({
        "access_token": access, "token_type": "bearer", "expires_in": s.token_lifetime_secs,
        "refresh_token": refresh, "refresh_token_expires_in": 604799, "owner_id": ACCOUNT
    }))
    .into_response()
}

async fn list(State(state): State<Arc<Mutex<PlatformState>>>) -> Response {
    let s = state.lock().unwrap();
    axum::Json(json!({ "records": s.subscriptions.clone() })).into_response()
}

fn expiration(lifetime: Duration) -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(lifetime).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Creates a subscription once the address answered the Validation-Token check (A.1).
async fn create(State(state): State<Arc<Mutex<PlatformState>>>, body: String) -> Response {
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "CMN-100", "Invalid JSON");
    };
    let Some(address) = request["deliveryMode"]["address"].as_str() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "CMN-101",
            "Parameter [deliveryMode.address] value is invalid",
        );
    };
    if request["expiresIn"].as_u64().is_none_or(|e| e < 1) {
        return problem(
            StatusCode::BAD_REQUEST,
            "CMN-101",
            "Parameter [expiresIn] value is invalid",
        );
    }
    let check = reqwest::Client::new()
        .post(address)
        .header("validation-token", "check-123")
        .timeout(Duration::from_millis(3000))
        .send()
        .await;
    let echoed = check.as_ref().is_ok_and(|r| {
        r.status() == 200
            && r.headers()
                .get("validation-token")
                .and_then(|v| v.to_str().ok())
                == Some("check-123")
    });
    if !echoed {
        return problem(
            StatusCode::BAD_REQUEST,
            "SUB-525",
            "WebHook server response is invalid",
        );
    }
    let mut s = state.lock().unwrap();
    s.next_id += 1;
    s.creations += 1;
    let id = format!("sub-{}", s.next_id);
    let filters: Vec<Value> = request["eventFilters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|f| json!(f.as_str().unwrap_or("").replace('~', ACCOUNT)))
        .collect();
    let disabled: Vec<Value> = filters
        .iter()
        .filter(|f| f.as_str().unwrap_or("").contains("forbidden"))
        .map(
            |f| json!({"filter": f, "reason": "Permission", "message": "Insufficient permissions"}),
        )
        .collect();
    let lifetime = s.lifetime;
    let sub = json!({
        "id": id, "uri": format!("/restapi/v1.0/subscription/{id}"),
        "eventFilters": filters, "disabledFilters": disabled,
        "expirationTime": expiration(lifetime), "expiresIn": lifetime.as_secs(),
        "status": "Active", "creationTime": expiration(Duration::ZERO),
        "deliveryMode": {"transportType": "WebHook", "encryption": false, "address": address,
                         "verificationToken": request["deliveryMode"]["verificationToken"]}
    });
    s.expiry.push((id, Instant::now() + lifetime));
    s.subscriptions.push(sub.clone());
    axum::Json(sub).into_response()
}

async fn read(State(state): State<Arc<Mutex<PlatformState>>>, Path(id): Path<String>) -> Response {
    let s = state.lock().unwrap();
    match s.subscriptions.iter().find(|x| x["id"] == id.as_str()) {
        Some(sub) => axum::Json(sub.clone()).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "CMN-102",
            "Resource for parameter [subscriptionId] is not found",
        ),
    }
}

async fn update(
    State(state): State<Arc<Mutex<PlatformState>>>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    let lifetime = s.lifetime;
    let Some(sub) = s.subscriptions.iter_mut().find(|x| x["id"] == id.as_str()) else {
        return problem(StatusCode::NOT_FOUND, "CMN-102", "not found");
    };
    if let Some(filters) = request["eventFilters"].as_array() {
        sub["eventFilters"] = json!(
            filters
                .iter()
                .map(|f| f.as_str().unwrap_or("").replace('~', ACCOUNT))
                .collect::<Vec<_>>()
        );
    }
    sub["expirationTime"] = json!(expiration(lifetime));
    let sub = sub.clone();
    for e in s.expiry.iter_mut().filter(|(x, _)| *x == id) {
        e.1 = Instant::now() + lifetime;
    }
    axum::Json(sub).into_response()
}

async fn renew(State(state): State<Arc<Mutex<PlatformState>>>, Path(id): Path<String>) -> Response {
    let mut s = state.lock().unwrap();
    let lifetime = s.lifetime;
    let expired = s
        .expiry
        .iter()
        .find(|(x, _)| *x == id)
        .is_some_and(|(_, at)| *at < Instant::now());
    if expired {
        s.late_renewals += 1;
        return problem(StatusCode::NOT_FOUND, "SUB-507", "Subscription was expired");
    }
    let Some(sub) = s.subscriptions.iter_mut().find(|x| x["id"] == id.as_str()) else {
        return problem(StatusCode::NOT_FOUND, "CMN-102", "not found");
    };
    sub["expirationTime"] = json!(expiration(lifetime));
    let sub = sub.clone();
    for e in s.expiry.iter_mut().filter(|(x, _)| *x == id) {
        e.1 = Instant::now() + lifetime;
    }
    s.renewals += 1;
    axum::Json(sub).into_response()
}

async fn delete(
    State(state): State<Arc<Mutex<PlatformState>>>,
    Path(id): Path<String>,
) -> Response {
    let mut s = state.lock().unwrap();
    let before = s.subscriptions.len();
    s.subscriptions.retain(|x| x["id"] != id.as_str());
    if s.subscriptions.len() == before {
        return problem(StatusCode::NOT_FOUND, "CMN-102", "not found");
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn wstoken(State(state): State<Arc<Mutex<PlatformState>>>, headers: HeaderMap) -> Response {
    let mut s = state.lock().unwrap();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_none() || s.access_tokens.last().map(String::as_str) != bearer {
        return problem(StatusCode::UNAUTHORIZED, "OAU-140", "Invalid token");
    }
    let token = format!("ws-{}", s.ws.tokens.len() + s.ws.connections + 1);
    s.ws.tokens.push(token.clone());
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    axum::Json(
        json!({"ws_access_token": token, "uri": format!("ws://{host}/ws"), "expires_in": 30}),
    )
    .into_response()
}

#[derive(serde::Deserialize)]
struct WsQuery {
    access_token: String,
    wsc: Option<String>,
}

async fn websocket(
    State(state): State<Arc<Mutex<PlatformState>>>,
    axum::extract::Query(query): axum::extract::Query<WsQuery>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    {
        let mut s = state.lock().unwrap();
        let Some(at) = s.ws.tokens.iter().position(|t| *t == query.access_token) else {
            return problem(StatusCode::UNAUTHORIZED, "OAU-140", "Invalid ws token");
        };
        s.ws.tokens.remove(at);
        s.ws.connections += 1;
    }
    upgrade.on_upgrade(move |socket| ws_session(socket, state, query.wsc))
}

fn header(s: &mut PlatformState, kind: &str, message_id: &str) -> Value {
    s.ws.sequence += 1;
    json!({"type": kind, "messageId": message_id, "status": 200,
           "wsc": {"token": s.ws.session, "sequence": s.ws.sequence},
           "headers": {"RCRequestId": message_id}})
}

async fn ws_session(
    mut socket: axum::extract::ws::WebSocket,
    state: Arc<Mutex<PlatformState>>,
    wsc: Option<String>,
) {
    use axum::extract::ws::Message;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<WsCommand>();
    let (details, replay) = {
        let mut s = state.lock().unwrap();
        if s.ws.session.is_empty() {
            s.ws.session = "wsc-session-1".into();
        }
        let mut body = json!({"creationTime": "2026-12-02T10:00:00.000+0000", "maxConnectionsPerSession": 50,
            "recoveryBufferSize": 100, "recoveryTimeout": 180, "idleTimeout": 1800,
            "absoluteTimeout": 86400, "maxActiveRequests": 10});
        let mut replay = Vec::new();
        match wsc {
            Some(token) if token == s.ws.session && !s.ws.fail_recovery => {
                body["recoveryState"] = json!("Successful");
                s.ws.recovered += 1;
                replay.extend(s.ws.last_sent.clone());
                replay.append(&mut s.ws.missed);
                s.ws.live = Some(tx.clone());
            }
            Some(_) => {
                body["recoveryState"] = json!("Failed");
                body["recoveryErrorCode"] = json!("WSG-1005");
                s.ws.recovery_failed += 1;
                s.ws.fail_recovery = false;
                s.ws.missed.clear(); // lost
                s.ws.session = format!("wsc-session-{}", s.ws.connections);
            }
            None => {
                s.ws.missed.clear();
                s.ws.session = format!("wsc-session-{}", s.ws.connections);
            }
        }
        let h = header(
            &mut s,
            "ConnectionDetails",
            "156eec30-0000-0000-0000-005056bf7145",
        );
        (json!([h, body]), replay)
    };
    if socket
        .send(Message::text(details.to_string()))
        .await
        .is_err()
    {
        return;
    }
    for notification in replay {
        let _ = tx.send(WsCommand::Notify(notification));
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(Message::Text(text))) = incoming else { break };
                let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(&text) else { continue };
                let head = &parts[0];
                let id = head["messageId"].as_str().unwrap_or("").to_string();
                let reply = {
                    let mut s = state.lock().unwrap();
                    if s.ws.mute {
                        continue;
                    }
                    match head["type"].as_str() {
                        Some("ClientRequest") if head["path"] == "/restapi/v1.0/subscription/" => {
                            s.ws.subscriptions += 1;
                            s.ws.live = Some(tx.clone());
                            let filters = parts[1]["eventFilters"].clone();
                            Some(json!([header(&mut s, "ClientRequest", &id),
                                {"id": format!("ws-sub-{}", s.ws.subscriptions), "status": "Active",
                                 "eventFilters": filters, "deliveryMode": {"transportType": "WebSocket"}}]))
                        }
                        Some("Heartbeat") => Some(json!([header(&mut s, "Heartbeat", &id)])),
                        _ => None,
                    }
                };
                if let Some(reply) = reply
                    && socket.send(Message::text(reply.to_string())).await.is_err()
                {
                    break;
                }
            }
            command = rx.recv() => match command {
                Some(WsCommand::Notify(body)) => {
                    let frame = {
                        let mut s = state.lock().unwrap();
                        s.ws.last_sent = Some(body.clone());
                        let id = body["uuid"].as_str().unwrap_or("").to_string();
                        json!([header(&mut s, "ServerNotification", &id), body])
                    };
                    if socket.send(Message::text(frame.to_string())).await.is_err() {
                        break;
                    }
                }
                Some(WsCommand::Raw(text)) => {
                    if socket.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(WsCommand::Drop) | None => return, // dropped: no close frame
            },
        }
    }
    let mut s = state.lock().unwrap();
    s.ws.live = None;
}
