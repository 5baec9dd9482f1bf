//! The SignalR client source (Enreach RTE; docs/protocols.md §1–§2): fetch a token, negotiate
//! (falling back to skip-negotiation on 404/405), open the WebSocket with the bearer
//! header, handshake, `Subscribe` to the configured entities and events, and feed every
//! `MessageReceived` to the route's pipeline as a verified payload — the same path a
//! webhook takes. Reconnects forever (0, 2, 10, 30 s, then every 30 s, jittered) with a fresh
//! token, re-subscribing each time: RTE keeps no subscriptions across connections, and
//! replays nothing sent while callgate was away.

use super::endpoint::{RteToken, negotiate_url, reconnect_delay, websocket_url};
use crate::config::hub_base;
use crate::config::valid::{HubConnect, SignalrSource};
use crate::intake::Intake;
use crate::outbound::signalr::protocol::{
    Framer, HandshakeRequest, HandshakeResponse, HubMessage, Negotiated,
};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics as m;
use arc_swap::ArcSwap;
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Largest record accepted from the server.
const MAX_RECORD: usize = 1024 * 1024;
/// `Negotiate redirection limit exceeded` in the official client.
const MAX_REDIRECTS: usize = 100;
/// The invocation id of the `Subscribe` call made after each connect.
const SUBSCRIBE_ID: &str = "0";

/// What a running source shares with the rest of the gateway.
#[derive(Clone)]
pub struct SourceState {
    /// The source's name.
    pub name: String,
    /// Whether it is connected and subscribed now (`/readyz`).
    pub connected: Arc<AtomicBool>,
}

/// The sources running now and whether each is connected (`/readyz`): each source adds itself
/// when it starts and removes itself when it stops, so a reload that adds or removes one shows.
#[derive(Default)]
pub struct SourceStates(std::sync::Mutex<Vec<SourceState>>);

impl SourceStates {
    /// A state for the source `name`, registered until [`SourceStates::remove`].
    pub fn add(&self, name: &str) -> SourceState {
        let state = SourceState {
            name: name.to_string(),
            connected: Arc::default(),
        };
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|s| s.name != name);
        all.push(state.clone());
        state
    }

    /// Forgets the source `name`.
    pub fn remove(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.name != name);
    }

    /// Every running source as (name, connected).
    pub fn list(&self) -> Vec<(String, bool)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| (s.name.clone(), s.connected.load(Ordering::Relaxed)))
            .collect()
    }
}

/// A `kind: signalr` source: its name, the route its events go through, and its settings.
pub struct Source {
    /// The source's name.
    pub name: String,
    /// The route its events go through.
    pub route: String,
    /// Its validated settings.
    pub spec: SignalrSource,
}

/// Runs a source until `stop` turns true.
pub async fn run(
    source: Source,
    http: reqwest::Client,
    snapshots: Arc<ArcSwap<Snapshot>>,
    intake: Intake,
    state: SourceState,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        let delay = reconnect_delay(failures, rand::random::<f64>());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let session = Session {
            source: &source,
            http: &http,
            snapshots: &snapshots,
            intake: &intake,
            state: &state,
        };
        let outcome = tokio::select! {
            outcome = session.run() => outcome,
            _ = stop.wait_for(|s| *s) => {
                state.connected.store(false, Ordering::Relaxed);
                return;
            }
        };
        state.connected.store(false, Ordering::Relaxed);
        metrics::gauge!(m::SOURCE_CONNECTED, "source" => source.name.clone()).set(0.0);
        metrics::counter!(m::SOURCE_RECONNECTS, "source" => source.name.clone()).increment(1);
        match outcome {
            // Connected, then lost: try again at once, then back off.
            Ok(reason) => {
                tracing::warn!(source = %source.name, %reason, "source disconnected: reconnecting");
                failures = 0;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(source = %source.name, %error, retry_in = ?reconnect_delay(failures, 0.0), "source connection failed");
            }
        }
    }
}

/// The record bytes a frame carries. JSON records belong in text frames, but some servers
/// (aiosignalr) send them as binary frames: both are read.
fn payload(frame: &Frame) -> Option<&[u8]> {
    match frame {
        Frame::Text(text) => Some(text.as_bytes()),
        Frame::Binary(bytes) => Some(bytes),
        _ => None,
    }
}

/// What to do after a hub message.
enum Step {
    Continue,
    Reply(HubMessage),
    End(String),
}

struct Session<'a> {
    source: &'a Source,
    http: &'a reqwest::Client,
    snapshots: &'a Arc<ArcSwap<Snapshot>>,
    intake: &'a Intake,
    state: &'a SourceState,
}

impl Session<'_> {
    /// One connection: `Ok(reason)` once it was up and then ended, `Err` if it never was.
    async fn run(&self) -> Result<String, String> {
        let (base, token) = self.credentials().await?;
        let (base, token, connection_token) = self.negotiate(base, token).await?;
        let url = websocket_url(
            &base,
            connection_token.as_deref(),
            self.source
                .spec
                .access_token_in_query
                .then_some(token.as_str()),
        );
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("WebSocket request: {e}"))?;
        request.headers_mut().insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}")
                .parse()
                .map_err(|_| "the token is not a valid header value".to_string())?,
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| format!("WebSocket to {}: {e}", url.host_str().unwrap_or("?")))?;
        let (mut sink, mut stream) = socket.split();
        let send =
            |bytes: Vec<u8>| Frame::Text(String::from_utf8(bytes).unwrap_or_default().into());
        sink.send(send(HandshakeRequest::json().encode()))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let mut framer = Framer::new(MAX_RECORD);
        let mut records = VecDeque::new();
        while records.is_empty() {
            let frame = tokio::time::timeout(self.source.spec.server_timeout, stream.next())
                .await
                .map_err(|_| "no handshake response".to_string())?
                .ok_or("closed during the handshake")?
                .map_err(|e| format!("handshake: {e}"))?;
            if let Some(bytes) = payload(&frame) {
                records.extend(framer.push(bytes).map_err(|e| e.to_string())?);
            }
        }
        let response = HandshakeResponse::parse(&records.pop_front().unwrap_or_default())
            .map_err(|e| format!("handshake: {e}"))?;
        if let Some(error) = response.error {
            return Err(format!("the hub refused the handshake: {error}"));
        }
        let subscriptions: Vec<Value> = self
            .source
            .spec
            .subscriptions
            .iter()
            .map(|s| json!({"EntityId": s.entity_id, "EventName": s.event}))
            .collect();
        let subscribe = HubMessage::Invocation {
            invocation_id: Some(SUBSCRIBE_ID.into()),
            target: "Subscribe".into(),
            arguments: vec![Value::Array(subscriptions)],
            stream_ids: Vec::new(),
        };
        sink.send(send(HubMessage::Ping.encode()))
            .await
            .map_err(|e| e.to_string())?;
        sink.send(send(subscribe.encode()))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(source = %self.source.name, host = url.host_str().unwrap_or("?"), "source connected; subscribing");
        let (keep_alive, server_timeout) =
            (self.source.spec.keep_alive, self.source.spec.server_timeout);
        // Only what the hub sends re-arms the server timeout; our own Pings re-arm the
        // keep-alive alone (a hub that keeps the socket open but stops talking is dead).
        let mut last_sent = Instant::now();
        let mut last_received = Instant::now();
        loop {
            while let Some(record) = records.pop_front() {
                match HubMessage::parse(&record) {
                    Ok(Some(message)) => match self.on_message(message).await {
                        Step::Continue => {}
                        Step::Reply(reply) => {
                            if let Err(e) = sink.send(send(reply.encode())).await {
                                return Ok(format!("WebSocket error: {e}"));
                            }
                            last_sent = Instant::now();
                        }
                        Step::End(reason) => return Ok(reason),
                    },
                    Ok(None) => {}
                    Err(e) => return Ok(format!("malformed message from the hub: {e}")),
                }
            }
            tokio::select! {
                frame = stream.next() => {
                    last_received = Instant::now();
                    match frame {
                        None => return Ok("the hub closed the connection".into()),
                        Some(Err(e)) => return Ok(format!("WebSocket error: {e}")),
                        Some(Ok(Frame::Close(_))) => return Ok("the hub closed the WebSocket".into()),
                        Some(Ok(frame)) => if let Some(bytes) = payload(&frame) {
                            match framer.push(bytes) {
                                Ok(more) => records.extend(more),
                                Err(e) => return Ok(format!("from the hub: {e}")),
                            }
                        },
                    }
                }
                _ = tokio::time::sleep_until(last_received + server_timeout) => {
                    return Ok("Server timeout elapsed without receiving a message from the server.".into());
                }
                _ = tokio::time::sleep_until(last_sent + keep_alive) => {
                    if let Err(e) = sink.send(send(HubMessage::Ping.encode())).await {
                        return Ok(format!("WebSocket error: {e}"));
                    }
                    last_sent = Instant::now();
                }
            }
        }
    }

    /// The hub endpoint and bearer token: from the token endpoint, or as configured.
    async fn credentials(&self) -> Result<(Url, String), String> {
        match &self.source.spec.connect {
            HubConnect::TokenUrl { url, auth } => {
                let mut request = self.http.get(url.value()).timeout(Duration::from_secs(15));
                if let Some(auth) = auth {
                    request = auth.apply(request);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|e| format!("token endpoint: {}", e.without_url()))?;
                let status = response.status();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| format!("token endpoint: {}", e.without_url()))?;
                if !status.is_success() {
                    return Err(format!("token endpoint answered {status}"));
                }
                let token = RteToken::parse(&body)?;
                Ok((token.endpoint, token.token))
            }
            HubConnect::Direct { hub, token } => Ok((hub.clone(), token.value().to_string())),
        }
    }

    /// Negotiates (following redirects); `None` as the connection token means
    /// skip-negotiation (the server answered 404 or 405).
    async fn negotiate(
        &self,
        mut base: Url,
        mut token: String,
    ) -> Result<(Url, String, Option<String>), String> {
        for _ in 0..MAX_REDIRECTS {
            let response = self
                .http
                .post(negotiate_url(&base))
                .bearer_auth(&token)
                .timeout(Duration::from_secs(15))
                .send()
                .await
                .map_err(|e| format!("negotiate: {}", e.without_url()))?;
            let status = response.status();
            if status == reqwest::StatusCode::NOT_FOUND
                || status == reqwest::StatusCode::METHOD_NOT_ALLOWED
            {
                return Ok((base, token, None));
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| format!("negotiate: {}", e.without_url()))?;
            if !status.is_success() {
                return Err(format!("negotiate answered {status}"));
            }
            match Negotiated::parse(&body).map_err(|e| format!("negotiate: {e}"))? {
                Negotiated::Connection {
                    connection_token, ..
                } => return Ok((base, token, Some(connection_token))),
                Negotiated::Redirect { url, access_token } => {
                    base = hub_base(&url)?;
                    if let Some(access_token) = access_token {
                        token = access_token;
                    }
                }
                Negotiated::Error(error) => return Err(format!("the hub refused: {error}")),
            }
        }
        Err("Negotiate redirection limit exceeded.".into())
    }

    /// Handles one hub message.
    async fn on_message(&self, message: HubMessage) -> Step {
        match message {
            HubMessage::Invocation {
                invocation_id: None,
                target,
                arguments,
                ..
            } if target == "MessageReceived" => {
                for argument in arguments {
                    self.ingest(argument).await;
                }
                Step::Continue
            }
            // "Client results": this client offers no methods.
            HubMessage::Invocation {
                invocation_id: Some(invocation_id),
                target,
                ..
            } => Step::Reply(HubMessage::Completion {
                invocation_id,
                outcome: Err(format!("Client didn't provide a result for '{target}'.")),
            }),
            HubMessage::Completion {
                invocation_id,
                outcome,
            } if invocation_id == SUBSCRIBE_ID => {
                self.on_subscribed(outcome);
                Step::Continue
            }
            HubMessage::Close { error, .. } => Step::End(format!(
                "the hub sent Close: {}",
                error.as_deref().unwrap_or("no reason given")
            )),
            _ => Step::Continue,
        }
    }

    fn on_subscribed(&self, outcome: Result<Option<Value>, String>) {
        let name = &self.source.name;
        let results = match outcome {
            Ok(Some(Value::Array(results))) => results,
            Ok(other) => {
                tracing::warn!(source = %name, result = ?other, "Subscribe answered something other than SubscriptionResults");
                return;
            }
            Err(error) => {
                tracing::error!(source = %name, %error, "Subscribe failed");
                metrics::counter!(m::SOURCE_SUBSCRIPTION_FAILURES, "source" => name.clone())
                    .increment(self.source.spec.subscriptions.len() as u64);
                return;
            }
        };
        let mut ok = 0;
        for result in &results {
            if result["subscribed"] == Value::Bool(true) {
                ok += 1;
            } else {
                metrics::counter!(m::SOURCE_SUBSCRIPTION_FAILURES, "source" => name.clone())
                    .increment(1);
                tracing::error!(
                    source = %name,
                    entity = %result["entityId"], event = %result["eventName"],
                    message = %result["message"],
                    "subscription refused"
                );
            }
        }
        self.state.connected.store(true, Ordering::Relaxed);
        metrics::gauge!(m::SOURCE_CONNECTED, "source" => name.clone()).set(1.0);
        tracing::info!(source = %name, subscribed = ok, refused = results.len() - ok, "source subscribed");
    }

    /// Feeds one `MessageReceived` argument to the route, as a webhook would be.
    async fn ingest(&self, payload: Value) {
        self.intake
            .ingest_from_connection(
                self.snapshots,
                &self.source.name,
                &self.source.route,
                payload,
            )
            .await;
    }
}
