//! An RTE-compatible SignalR hub on callgate's public listener (docs/protocols.md §1–§2; seed
//! `enreach-rte-signalr-api.txt`): negotiate, the WebSocket transport, the JSON handshake,
//! keep-alive, the hub methods `Subscribe`, `Unsubscribe`, `UnsubscribeAll`,
//! `AvailableSubscriptions`, `ActiveSubscriptions`, and — as an [`Outbound`] — pushing each
//! message as `MessageReceived {subscription, data}` to every connection subscribed to its
//! entity and event. Clients authenticate with HS256 JWTs whose `entities` claim lists the
//! entity ids they may subscribe to (`*`: any).

use super::protocol::member;
use super::protocol::{
    DEFAULT_MAX_RECORD, Framer, HandshakeRequest, HandshakeResponse, HubMessage, Negotiated,
};
use crate::mapping::helpers::is_guid;
use crate::model::message::{Message, Request};
use crate::model::outbound::BoxFuture;
use crate::model::outbound::{Attempt, AttemptOutcome, Outbound, label};
use crate::model::problem::Problem;
use axum::extract::FromRequest;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Send a Ping after this long without sending anything (`KeepAliveInterval`).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Close a connection after this long without receiving anything (`ClientTimeoutInterval`).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The handshake must arrive within this (`HandshakeTimeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A negotiated connection token not used within this is forgotten.
const NEGOTIATED_TTL: Duration = Duration::from_secs(60);
/// Records queued for one connection; a client that cannot keep up is closed.
const OUTBOX: usize = 1024;

/// The claims of a client's JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user the token was issued to.
    pub sub: String,
    /// Expiry, Unix seconds (checked when the connection is made).
    pub exp: u64,
    /// Entity ids (user, queue or call-list GUIDs) this client may subscribe to; `*`: any.
    #[serde(default)]
    pub entities: Vec<String>,
}

impl Claims {
    fn allows(&self, entity: &str) -> bool {
        self.entities
            .iter()
            .any(|e| e == "*" || e.eq_ignore_ascii_case(entity))
    }
}

/// Issues an HS256 JWT for `claims` with `secret`.
pub fn issue_token(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of plain claims cannot fail")
}

/// Hubs by path, kept across snapshot swaps so that connections survive a reload.
#[derive(Default)]
pub struct Hubs {
    by_path: Mutex<HashMap<String, Arc<Hub>>>,
}

impl Hubs {
    /// The hub at `path`, created on first use; its secret and events follow the config.
    pub fn get_or_create(&self, path: &str, secret: &[u8], events: &[String]) -> Arc<Hub> {
        let mut hubs = self.by_path.lock().expect("hub registry lock");
        let hub = hubs
            .entry(path.to_string())
            .or_insert_with(|| Arc::new(Hub::new(path)))
            .clone();
        *hub.secret.write().expect("hub secret lock") = secret.to_vec();
        *hub.events.write().expect("hub events lock") = events.to_vec();
        hub
    }

    /// How many hubs there are (tests: a refused build registers none).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_path.lock().expect("hub registry lock").len()
    }

    /// Closes every connection of every hub (shutdown).
    pub fn close_all(&self) {
        for hub in self.by_path.lock().expect("hub registry lock").values() {
            hub.close_all();
        }
    }
}

/// One subscription: entity id and event name, both lower-cased (RTE compares them so).
type Subscription = (String, String);

struct Connection {
    id: String,
    claims: Claims,
    subscriptions: Mutex<BTreeSet<Subscription>>,
    outbox: mpsc::Sender<Outgoing>,
}

enum Outgoing {
    /// A record, and who wants to know that it was written.
    Record(Vec<u8>, Option<oneshot::Sender<()>>),
    /// Send Close and end the connection.
    Close(Option<String>),
}

/// A SignalR hub serving RTE clients at one path.
pub struct Hub {
    path: String,
    secret: RwLock<Vec<u8>>,
    events: RwLock<Vec<String>>,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    negotiated: Mutex<HashMap<String, (Claims, Instant)>>,
    next: AtomicU64,
}

impl Hub {
    fn new(path: &str) -> Hub {
        Hub {
            path: path.to_string(),
            secret: RwLock::default(),
            events: RwLock::default(),
            connections: Mutex::default(),
            negotiated: Mutex::default(),
            next: AtomicU64::new(1),
        }
    }

    /// The hub's path (`/rte`).
    pub fn path(&self) -> &str {
        &self.path
    }

    fn close_all(&self) {
        for connection in self.connections.lock().expect("hub lock").values() {
            let _ = connection.outbox.try_send(Outgoing::Close(None));
        }
    }

    /// Whether `path` is this hub's (the WebSocket endpoint or its `/negotiate`).
    pub fn serves(path: &str, hub: &str) -> bool {
        path == hub || path.strip_prefix(hub) == Some("/negotiate")
    }

    fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let random: u64 = rand::random();
        format!("{n:x}-{random:016x}")
    }

    /// Validates the request's JWT: `Authorization: Bearer` or the `access_token` query
    /// parameter (browsers cannot set WebSocket headers).
    fn authenticate(&self, request: &axum::extract::Request) -> Result<Claims, Problem> {
        let refuse = |detail: String| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Hub connection not authorized",
                detail,
            )
        };
        let from_header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_string())
            });
        let from_query = request.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
        });
        let Some(token) = from_header.or(from_query) else {
            return Err(refuse(
                "no token: send Authorization: Bearer <jwt> or access_token=<jwt>".into(),
            ));
        };
        let secret = self.secret.read().expect("hub secret lock").clone();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(&secret),
            &validation,
        )
        .map(|data| data.claims)
        .map_err(|e| refuse(format!("invalid token: {e}")))
    }

    /// Answers a request for this hub: `POST {hub}/negotiate`, or the WebSocket upgrade
    /// at `{hub}` (with the negotiated `id`, or without it: skip-negotiation).
    pub async fn handle(self: Arc<Self>, request: axum::extract::Request) -> Response {
        let claims = match self.authenticate(&request) {
            Ok(claims) => claims,
            Err(problem) => return problem.into_response(),
        };
        let path = request.uri().path().to_string();
        if path != self.path {
            if request.method() != Method::POST {
                return method_not_allowed("POST");
            }
            let token = self.new_id();
            let id = self.new_id();
            let mut negotiated = self.negotiated.lock().expect("hub lock");
            negotiated.retain(|_, (_, at)| at.elapsed() < NEGOTIATED_TTL);
            negotiated.insert(token.clone(), (claims, Instant::now()));
            return axum::Json(Negotiated::websocket_v1(&token, &id)).into_response();
        }
        if request.method() != Method::GET {
            return method_not_allowed("GET");
        }
        let id = request.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "id")
                .map(|(_, v)| v.into_owned())
        });
        let claims = match id {
            Some(id) => match self.negotiated.lock().expect("hub lock").remove(&id) {
                Some((negotiated, at)) if at.elapsed() < NEGOTIATED_TTL => negotiated,
                _ => {
                    return Problem::new(
                        StatusCode::NOT_FOUND,
                        "unknown-connection",
                        "Unknown connection id",
                        "the id is unknown, already used or expired: negotiate again",
                    )
                    .into_response();
                }
            },
            None => claims,
        };
        let upgrade = match WebSocketUpgrade::from_request(request, &()).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    "not-websocket",
                    "WebSocket upgrade required",
                    format!("the hub speaks SignalR over WebSockets only: {rejection}"),
                )
                .into_response();
            }
        };
        upgrade
            .max_message_size(DEFAULT_MAX_RECORD * 4)
            .on_upgrade(move |socket| self.serve(socket, claims))
    }

    async fn serve(self: Arc<Self>, socket: WebSocket, claims: Claims) {
        let (mut sink, mut stream) = socket.split();
        let mut framer = Framer::new(DEFAULT_MAX_RECORD);
        // The handshake, possibly followed by messages in the same frame.
        let mut pending = Vec::new();
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            while let Some(Ok(frame)) = stream.next().await {
                let bytes = match frame {
                    ws::Message::Text(text) => text.as_bytes().to_vec(),
                    ws::Message::Binary(bytes) => bytes.to_vec(),
                    ws::Message::Close(_) => return None,
                    _ => continue,
                };
                let mut records = framer.push(&bytes).ok()?.into_iter();
                if let Some(first) = records.next() {
                    pending.extend(records);
                    return Some(HandshakeRequest::parse(&first));
                }
            }
            None
        })
        .await;
        let refusal = match handshake {
            Ok(Some(Ok(request))) if request.protocol == "json" => None,
            Ok(Some(Ok(request))) => Some(format!(
                "Requested protocol '{}' is not available.",
                request.protocol
            )),
            Ok(Some(Err(e))) => Some(format!("invalid handshake: {e}")),
            _ => return,
        };
        let response = HandshakeResponse {
            error: refusal.clone(),
        };
        if sink.send(text(response.encode())).await.is_err() || refusal.is_some() {
            let _ = sink.close().await;
            return;
        }
        let (outbox, mut inbox) = mpsc::channel::<Outgoing>(OUTBOX);
        let connection = Arc::new(Connection {
            id: self.new_id(),
            claims,
            subscriptions: Mutex::default(),
            outbox: outbox.clone(),
        });
        self.connections
            .lock()
            .expect("hub lock")
            .insert(connection.id.clone(), connection.clone());
        tracing::info!(hub = %self.path, connection = %connection.id, user = %connection.claims.sub, "hub client connected");

        let writer = tokio::spawn(async move {
            loop {
                match tokio::time::timeout(KEEP_ALIVE, inbox.recv()).await {
                    Ok(Some(Outgoing::Record(bytes, written))) => {
                        if sink.send(text(bytes)).await.is_err() {
                            break;
                        }
                        if let Some(written) = written {
                            let _ = written.send(());
                        }
                    }
                    Ok(Some(Outgoing::Close(error))) => {
                        let close = HubMessage::Close {
                            error,
                            allow_reconnect: true,
                        };
                        let _ = sink.send(text(close.encode())).await;
                        let _ = sink.close().await;
                        break;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        if sink.send(text(HubMessage::Ping.encode())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });

        let mut records: Vec<Vec<u8>> = pending;
        'read: loop {
            for record in records.drain(..) {
                match HubMessage::parse(&record) {
                    Ok(Some(message)) => {
                        if !self.on_message(&connection, message).await {
                            break 'read;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = outbox.send(Outgoing::Close(Some(e.to_string()))).await;
                        break 'read;
                    }
                }
            }
            let frame = match tokio::time::timeout(CLIENT_TIMEOUT, stream.next()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(_) => break,
                Err(_) => {
                    let _ = outbox
                        .send(Outgoing::Close(Some(
                            "Client timeout elapsed without receiving a message.".into(),
                        )))
                        .await;
                    break;
                }
            };
            let bytes = match frame {
                ws::Message::Text(text) => text.as_bytes().to_vec(),
                ws::Message::Close(_) => break,
                ws::Message::Binary(_) => {
                    let _ = outbox
                        .send(Outgoing::Close(Some(
                            "binary frames are not the JSON protocol".into(),
                        )))
                        .await;
                    break;
                }
                _ => continue,
            };
            match framer.push(&bytes) {
                Ok(more) => records = more,
                Err(e) => {
                    let _ = outbox.send(Outgoing::Close(Some(e.to_string()))).await;
                    break;
                }
            }
        }
        self.connections
            .lock()
            .expect("hub lock")
            .remove(&connection.id);
        drop(outbox);
        drop(connection);
        let _ = writer.await;
        tracing::info!(hub = %self.path, "hub client disconnected");
    }

    /// Handles one client message; false ends the connection.
    async fn on_message(&self, connection: &Arc<Connection>, message: HubMessage) -> bool {
        match message {
            HubMessage::Invocation {
                invocation_id: Some(invocation_id),
                target,
                arguments,
                ..
            } => {
                let outcome = self.invoke(connection, &target, &arguments);
                let completion = HubMessage::Completion {
                    invocation_id,
                    outcome: outcome.map(Some),
                };
                connection
                    .outbox
                    .send(Outgoing::Record(completion.encode(), None))
                    .await
                    .is_ok()
            }
            HubMessage::StreamInvocation { invocation_id, .. } => {
                let completion = HubMessage::Completion {
                    invocation_id,
                    outcome: Err("this hub has no streaming methods".into()),
                };
                connection
                    .outbox
                    .send(Outgoing::Record(completion.encode(), None))
                    .await
                    .is_ok()
            }
            HubMessage::Close { .. } => false,
            _ => true,
        }
    }

    /// The hub methods of the seed, in its validation order.
    fn invoke(
        &self,
        connection: &Connection,
        target: &str,
        arguments: &[Value],
    ) -> Result<Value, String> {
        let events = self.events.read().expect("hub events lock").clone();
        let mut subscriptions = connection.subscriptions.lock().expect("subscriptions lock");
        match target {
            "Subscribe" | "Unsubscribe" => {
                let subscribe = target == "Subscribe";
                let items = arguments.first().and_then(Value::as_array).ok_or_else(|| {
                    format!("{target} takes one argument: an array of {{EntityId, EventName}}")
                })?;
                let results: Vec<Value> = items
                    .iter()
                    .map(|item| {
                        let field = |name: &str| {
                            member(item, name)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string()
                        };
                        let (entity, event) = (field("EntityId"), field("EventName"));
                        let refusal = if !is_guid(&entity) {
                            Some("Invalid EntityId")
                        } else if !events.iter().any(|e| e.eq_ignore_ascii_case(&event)) {
                            Some("Invalid event name")
                        } else if !connection.claims.allows(&entity) {
                            Some("Unauthorized")
                        } else {
                            None
                        };
                        let key = (entity.to_ascii_lowercase(), event.to_ascii_lowercase());
                        let subscribed = match (refusal, subscribe) {
                            (Some(_), _) => false,
                            (None, true) => {
                                subscriptions.insert(key.clone());
                                true
                            }
                            (None, false) => {
                                subscriptions.remove(&key);
                                false
                            }
                        };
                        json!({"subscribed": subscribed, "message": refusal, "entityId": entity, "eventName": key.1})
                    })
                    .collect();
                Ok(Value::Array(results))
            }
            "UnsubscribeAll" => {
                subscriptions.clear();
                Ok(Value::Bool(true))
            }
            "AvailableSubscriptions" => Ok(json!(events)),
            "ActiveSubscriptions" => Ok(Value::Array(
                subscriptions
                    .iter()
                    .map(|(entity, event)| subscription_json(&connection.id, entity, event, None))
                    .collect(),
            )),
            other => Err(format!("Unknown hub method '{other}'")),
        }
    }
}

/// The `subscription` object of `MessageReceived` (seed: `id, allRootEntities,
/// rootEntityId, rootEntityType, organizationId, eventType, entityType, entityId,
/// allEntities`).
fn subscription_json(connection: &str, entity: &str, event: &str, data: Option<&Value>) -> Value {
    let from_data = |name: &str| {
        data.and_then(|d| member(d, name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    json!({
        "id": format!("{connection}:{entity}:{event}"),
        "allRootEntities": false,
        "rootEntityId": from_data("RootEntityId"),
        "rootEntityType": from_data("RootEntityType"),
        "organizationId": from_data("OrganizationId"),
        "eventType": event,
        "entityType": from_data("EntityType"),
        "entityId": entity,
        "allEntities": false,
    })
}

fn text(bytes: Vec<u8>) -> ws::Message {
    // Records are serde_json output plus 0x1E: always UTF-8.
    ws::Message::Text(String::from_utf8(bytes).unwrap_or_default().into())
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("this hub endpoint takes {allow}"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

impl Outbound for Hub {
    /// Writes the message as `MessageReceived` to every connection subscribed to its
    /// `EntityId` and `EventType` (read from the rendered event); delivered once every one
    /// of them has it written. Connections following the entity but none this event: done
    /// (skipped, as RTE would not send it). Nobody following the entity (e.g. its client is
    /// reconnecting): deferred, and the worker dead-letters it after the destination's
    /// `undeliverable_after`.
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let dead = |reason: String| Attempt {
                outcome: AttemptOutcome::Dead {
                    reason: reason.clone(),
                },
                label: label::DEAD_UNSENDABLE,
                status: None,
                error: Some(reason),
                excerpt: None,
            };
            let Request::Hub(push) = &message.request else {
                return dead("not a hub message".into());
            };
            let data: Value = match serde_json::from_str(&push.body) {
                Ok(data) => data,
                Err(e) => return dead(format!("the rendered event is not JSON: {e}")),
            };
            let field = |name: &str| {
                member(&data, name)
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase)
            };
            let (Some(entity), Some(event)) = (field("EntityId"), field("EventType")) else {
                return dead("the rendered event has no EntityId or EventType".into());
            };
            let key = (entity.clone(), event.clone());
            let mut entity_watched = false;
            let subscribers: Vec<Arc<Connection>> = self
                .connections
                .lock()
                .expect("hub lock")
                .values()
                .filter(|c| {
                    let subscriptions = c.subscriptions.lock().expect("subscriptions lock");
                    entity_watched |= subscriptions.iter().any(|(e, _)| *e == entity);
                    subscriptions.contains(&key)
                })
                .cloned()
                .collect();
            if subscribers.is_empty() && entity_watched {
                // Clients follow this entity but chose other events: RTE would not send this
                // one either. Waiting would hold the call's later events behind it.
                tracing::debug!(hub = %self.path, %entity, %event, "no subscriber wants this event: skipped");
                return Attempt {
                    outcome: AttemptOutcome::Skipped {
                        reason: label::SKIPPED_NOT_SUBSCRIBED,
                    },
                    label: label::SKIPPED_NOT_SUBSCRIBED,
                    status: None,
                    error: None,
                    excerpt: None,
                };
            }
            if subscribers.is_empty() {
                return Attempt {
                    outcome: AttemptOutcome::Defer {
                        until: Duration::from_secs(1),
                    },
                    label: label::DEFERRED_NO_SUBSCRIBER,
                    status: None,
                    error: Some(format!("no connection subscribed to {entity} {event}")),
                    excerpt: None,
                };
            }
            let mut written = Vec::new();
            for connection in &subscribers {
                let push = HubMessage::Invocation {
                    invocation_id: None,
                    target: "MessageReceived".into(),
                    arguments: vec![json!({
                        "subscription": subscription_json(&connection.id, &entity, &event, Some(&data)),
                        "data": data,
                    })],
                    stream_ids: Vec::new(),
                };
                let (done, wait) = oneshot::channel();
                if connection
                    .outbox
                    .try_send(Outgoing::Record(push.encode(), Some(done)))
                    .is_ok()
                {
                    written.push(wait);
                }
            }
            let total = subscribers.len();
            let mut delivered = 0;
            for wait in written {
                if tokio::time::timeout(Duration::from_secs(10), wait)
                    .await
                    .is_ok_and(|r| r.is_ok())
                {
                    delivered += 1;
                }
            }
            if delivered == total {
                Attempt {
                    outcome: AttemptOutcome::Delivered,
                    label: label::DELIVERED,
                    status: None,
                    error: None,
                    excerpt: None,
                }
            } else {
                Attempt {
                    outcome: AttemptOutcome::Retry { after: None },
                    label: label::RETRY_CONNECT,
                    status: None,
                    error: Some(format!(
                        "written to {delivered} of {total} subscribed connections"
                    )),
                    excerpt: None,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_allow_their_entities_in_any_case() {
        let claims = Claims {
            sub: "u".into(),
            exp: 0,
            entities: vec!["A1EEB030-FF4B-EA11-AC9C-00155D4FDCF3".into()],
        };
        assert!(claims.allows("a1eeb030-ff4b-ea11-ac9c-00155d4fdcf3"));
        assert!(!claims.allows("b1eeb030-ff4b-ea11-ac9c-00155d4fdcf3"));
    }
}
