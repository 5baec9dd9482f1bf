//! The RingCentral WebSocket source (ringcentral-platform.md B.1–B.8), for sites with no
//! public HTTPS endpoint: a fresh `wstoken` for every connect, `ConnectionDetails` first,
//! one subscription per socket holding every filter (sent as a `ClientRequest`), each
//! `ServerNotification` into the route's pipeline exactly like a webhook payload. After a
//! drop it reconnects with the session's `wsc` token while within `recoveryTimeout`: on
//! `recoveryState: Successful` the subscription survived and the missed events are
//! replayed (deduplicated by `uuid`); otherwise it subscribes again and logs and counts the
//! possible gap. The read loop never waits on the pipeline for long, so pings are answered.

use super::platform::{Group, Platform, PlatformError};
use crate::config::valid::RingCentralWebSocketSource;
use crate::inbound::signalr::client::SourceState;
use crate::intake::Intake;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics as m;
use arc_swap::ArcSwap;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Frame;

/// The first frame must arrive within this.
const DETAILS_TIMEOUT: Duration = Duration::from_secs(30);
/// The subscription reply must arrive within this.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Notification `uuid`s remembered to drop replays.
const REMEMBERED: usize = 4096;
/// Largest frame accepted.
const MAX_FRAME: usize = 1024 * 1024;

/// What one source needs.
pub struct WebSocketSource {
    /// The source's name.
    pub name: String,
    /// The route its events go to.
    pub route: String,
    /// Every event filter (one subscription per socket).
    pub event_filters: Vec<String>,
    /// The platform client (its OAuth session is the socket's: recovery needs the same one).
    pub platform: Arc<Platform>,
    /// The snapshot being served.
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    /// Intake.
    pub intake: Intake,
    /// Connected or not (`/readyz`).
    pub state: SourceState,
    /// Send a `Heartbeat` after this long without a message from the server
    /// (`sources[].keep_alive`).
    pub keep_alive: Duration,
    /// The connection is dead after this long without a message from the server, Heartbeat
    /// replies included (`sources[].server_timeout`, above `keep_alive`).
    pub server_timeout: Duration,
}

/// The session context kept across connections.
#[derive(Default)]
struct Recovery {
    /// `wsc.token` and the highest `wsc.sequence` seen.
    wsc: Option<(String, u64)>,
    /// `recoveryTimeout` from the last `ConnectionDetails`.
    window: Option<Duration>,
    /// When the last connection dropped.
    dropped_at: Option<Instant>,
    /// Whether a subscription was ever made (a first connect is no gap).
    subscribed_once: bool,
}

/// How a connection ended.
enum Ended {
    /// Closed, dropped or timed out: reconnect (recovering if possible).
    Dropped(String),
    /// The platform refused: back off longer.
    Failed(PlatformError),
}

/// Runs a `sources[].kind: ringcentral-websocket` source until `stop` turns true, with its own
/// platform client (OAuth session) for this run.
pub async fn run_source(
    (name, route, source): (&str, &str, &RingCentralWebSocketSource),
    http: &reqwest::Client,
    snapshots: Arc<ArcSwap<Snapshot>>,
    intake: Intake,
    state: SourceState,
    stop: watch::Receiver<bool>,
) {
    let rc = &source.account;
    WebSocketSource {
        name: name.to_string(),
        route: route.to_string(),
        event_filters: source.event_filters.clone(),
        platform: super::platform::platform(
            http,
            &rc.server,
            [&rc.client_id, &rc.client_secret, &rc.jwt],
        ),
        snapshots,
        intake,
        state,
        keep_alive: source.keep_alive,
        server_timeout: source.server_timeout,
    }
    .run(stop)
    .await;
}

impl WebSocketSource {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut recovery = Recovery::default();
        let mut seen = Seen::default();
        let mut failures: u32 = 0;
        loop {
            let ended = tokio::select! {
                ended = self.connection(&mut recovery, &mut seen) => ended,
                _ = stop.wait_for(|s| *s) => break,
            };
            self.state.connected.store(false, Ordering::Relaxed);
            metrics::gauge!(m::SOURCE_CONNECTED, "source" => self.name.clone()).set(0.0);
            // A connection that got as far as reading resets the backoff.
            if recovery.dropped_at.is_none() {
                failures = 0;
            }
            recovery.dropped_at.get_or_insert_with(Instant::now);
            failures += 1;
            let wait = match &ended {
                Ended::Failed(PlatformError::RateLimited { after, .. }) => *after,
                _ => backoff(failures),
            };
            match ended {
                Ended::Dropped(why) => {
                    tracing::warn!(source = %self.name, %why, retry_in = ?wait, "RingCentral WebSocket dropped: reconnecting")
                }
                Ended::Failed(error) => {
                    tracing::warn!(source = %self.name, %error, retry_in = ?wait, "RingCentral WebSocket failed: reconnecting")
                }
            }
            metrics::counter!(m::SOURCE_RECONNECTS, "source" => self.name.clone()).increment(1);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.state.connected.store(false, Ordering::Relaxed);
    }

    /// One connection: token, connect, details, subscribe (unless recovered), read.
    async fn connection(&self, recovery: &mut Recovery, seen: &mut Seen) -> Ended {
        let token = match self
            .platform
            .call(
                Group::Auth,
                reqwest::Method::POST,
                "/restapi/oauth/wstoken",
                None,
            )
            .await
        {
            Ok(token) => token,
            Err(e) => return Ended::Failed(e),
        };
        let (Some(access), Some(uri)) = (token["ws_access_token"].as_str(), token["uri"].as_str())
        else {
            return Ended::Dropped(format!(
                "wstoken reply without ws_access_token or uri: {token}"
            ));
        };
        let recovering = match (&recovery.wsc, recovery.window, recovery.dropped_at) {
            (Some(_), Some(window), Some(at)) => at.elapsed() < window,
            _ => false,
        };
        let mut url = match reqwest::Url::parse(uri) {
            Ok(url) => url,
            Err(e) => return Ended::Dropped(format!("wstoken uri `{uri}`: {e}")),
        };
        url.query_pairs_mut().append_pair("access_token", access);
        if recovering && let Some((wsc, _)) = &recovery.wsc {
            url.query_pairs_mut().append_pair("wsc", wsc);
        }
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME))
            .max_frame_size(Some(MAX_FRAME));
        let socket = match tokio::time::timeout(
            DETAILS_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false),
        )
        .await
        {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(e)) => return Ended::Dropped(format!("connect: {e}")),
            Err(_) => return Ended::Dropped("connect timed out".into()),
        };
        let (mut sink, mut stream) = socket.split();

        // ConnectionDetails first (B.2).
        let details = match tokio::time::timeout(DETAILS_TIMEOUT, next_message(&mut stream)).await {
            Ok(Some((header, body))) if header["type"] == "ConnectionDetails" => {
                note_wsc(recovery, &header);
                body
            }
            Ok(Some((header, body))) => {
                return Ended::Dropped(format!(
                    "expected ConnectionDetails, got {} {}",
                    header["type"], body
                ));
            }
            Ok(None) => return Ended::Dropped("closed before ConnectionDetails".into()),
            Err(_) => return Ended::Dropped("no ConnectionDetails within 30 s".into()),
        };
        recovery.window = details["recoveryTimeout"]
            .as_u64()
            .map(Duration::from_secs)
            .or(recovery.window);
        let recovered = recovering && details["recoveryState"] == "Successful";
        if recovered {
            tracing::info!(source = %self.name, "RingCentral WebSocket session recovered: missed events follow");
        } else {
            if recovery.subscribed_once {
                let why = if recovering {
                    format!(
                        "recovery failed ({})",
                        details["recoveryErrorCode"].as_str().unwrap_or("no code")
                    )
                } else {
                    "the outage outlasted the recovery window".to_string()
                };
                metrics::counter!(m::SOURCE_GAPS, "source" => self.name.clone()).increment(1);
                tracing::warn!(source = %self.name, %why, "RingCentral WebSocket: events sent while disconnected may be lost (possible gap); subscribing again");
            }
            if let Err(ended) = self.subscribe(&mut sink, &mut stream, recovery).await {
                return ended;
            }
            recovery.subscribed_once = true;
        }
        recovery.dropped_at = None;
        self.state.connected.store(true, Ordering::Relaxed);
        metrics::gauge!(m::SOURCE_CONNECTED, "source" => self.name.clone()).set(1.0);

        // The read loop.
        let mut last = Instant::now();
        let mut heartbeat_sent: Option<Instant> = None;
        loop {
            // Only what the server sends re-arms these: our own Heartbeats do not.
            let deadline = match heartbeat_sent {
                Some(_) => last + self.server_timeout,
                None => last + self.keep_alive,
            };
            let message = tokio::select! {
                message = next_message(&mut stream) => message,
                _ = tokio::time::sleep_until(deadline) => {
                    if heartbeat_sent.is_some() {
                        return Ended::Dropped("no answer to a Heartbeat".into());
                    }
                    let beat = json!([{"type": "Heartbeat", "messageId": message_id()}]);
                    if let Err(e) = sink.send(Frame::text(beat.to_string())).await {
                        return Ended::Dropped(format!("send Heartbeat: {e}"));
                    }
                    heartbeat_sent = Some(Instant::now());
                    continue;
                }
            };
            let Some((header, body)) = message else {
                return Ended::Dropped("the server closed the connection".into());
            };
            last = Instant::now();
            heartbeat_sent = None;
            note_wsc(recovery, &header);
            match header["type"].as_str() {
                Some("ServerNotification") => {
                    let uuid = body["uuid"].as_str().unwrap_or_default().to_string();
                    if !uuid.is_empty() && !seen.insert(uuid) {
                        metrics::counter!(m::SOURCE_REPLAYS_DROPPED, "source" => self.name.clone())
                            .increment(1);
                        continue;
                    }
                    self.intake
                        .ingest_from_connection(&self.snapshots, &self.name, &self.route, body)
                        .await;
                }
                Some("Error") => {
                    let code = body["errorCode"].as_str().unwrap_or("").to_string();
                    tracing::warn!(source = %self.name, code, message = %body["message"], "RingCentral WebSocket error");
                    return Ended::Dropped(format!("Error {code}"));
                }
                // Heartbeat echoes, ConnectionDetails updates, replies to nothing we sent.
                _ => {}
            }
        }
    }

    /// Sends the one subscription (every filter) and waits for its reply.
    async fn subscribe<S, R>(
        &self,
        sink: &mut S,
        stream: &mut R,
        recovery: &mut Recovery,
    ) -> Result<(), Ended>
    where
        S: futures_util::Sink<Frame> + Unpin,
        S::Error: std::fmt::Display,
        R: futures_util::Stream<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        let id = message_id();
        let request = json!([
            {"type": "ClientRequest", "messageId": id, "method": "POST", "path": "/restapi/v1.0/subscription/"},
            {"eventFilters": self.event_filters, "deliveryMode": {"transportType": "WebSocket"}}
        ]);
        sink.send(Frame::text(request.to_string()))
            .await
            .map_err(|e| Ended::Dropped(format!("send the subscription: {e}")))?;
        let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
        loop {
            let message = tokio::time::timeout_at(deadline, next_message(stream))
                .await
                .map_err(|_| Ended::Dropped("no reply to the subscription within 60 s".into()))?;
            let Some((header, body)) = message else {
                return Err(Ended::Dropped("closed while subscribing".into()));
            };
            note_wsc(recovery, &header);
            if header["messageId"] != id.as_str() {
                continue;
            }
            let status = header["status"].as_u64().unwrap_or(0);
            if !(200..300).contains(&status) {
                return Err(Ended::Failed(PlatformError::Refused {
                    status: status as u16,
                    code: body["errorCode"].as_str().unwrap_or("").to_string(),
                    message: body["message"].as_str().unwrap_or("").to_string(),
                }));
            }
            for d in body["disabledFilters"].as_array().into_iter().flatten() {
                tracing::warn!(source = %self.name, filter = %d["filter"], reason = %d["reason"], "RingCentral refused an event filter");
            }
            tracing::info!(source = %self.name, subscription = %body["id"], "RingCentral WebSocket subscribed");
            return Ok(());
        }
    }
}

/// The next JSON frame as (header, body); `None` when the connection ended. Frames that are
/// not a JSON array (multipart REST replies, B.3) are skipped.
async fn next_message<R>(stream: &mut R) -> Option<(Value, Value)>
where
    R: futures_util::Stream<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let text = match stream.next().await? {
            Ok(Frame::Text(text)) => text.to_string(),
            Ok(Frame::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Frame::Close(_)) | Err(_) => return None,
            Ok(_) => continue, // pings are answered by tungstenite while we read
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(mut parts)) if !parts.is_empty() && parts[0].is_object() => {
                let body = if parts.len() > 1 {
                    parts.swap_remove(1)
                } else {
                    Value::Null
                };
                return Some((parts.swap_remove(0), body));
            }
            _ => {
                tracing::debug!("RingCentral WebSocket: a frame that is not [header, body] skipped")
            }
        }
    }
}

/// Keeps the `wsc` with the highest sequence (a `wsc` may ride on any frame, B.6).
fn note_wsc(recovery: &mut Recovery, header: &Value) {
    let (Some(token), Some(sequence)) = (
        header["wsc"]["token"].as_str(),
        header["wsc"]["sequence"].as_u64(),
    ) else {
        return;
    };
    if recovery
        .wsc
        .as_ref()
        .is_none_or(|(t, s)| t != token || sequence > *s)
    {
        recovery.wsc = Some((token.to_string(), sequence));
    }
}

fn message_id() -> String {
    crate::mapping::helpers::guid_for(&format!("{:?}{}", Instant::now(), rand::random::<u64>()))
}

/// 1 s, doubling, at most 30 s, with up to 20% jitter.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs((1u64 << failures.saturating_sub(1).min(5)).min(30));
    base.mul_f64(1.0 + rand::random::<f64>() * 0.2)
}

/// The last notification `uuid`s, to drop what a recovered session replays.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// `false` when `uuid` was seen already.
    fn insert(&mut self, uuid: String) -> bool {
        if self.set.contains(&uuid) {
            return false;
        }
        if self.order.len() == REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(uuid.clone());
        self.set.insert(uuid);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_wsc_sequence_is_kept() {
        let mut r = Recovery::default();
        note_wsc(&mut r, &json!({"wsc": {"token": "a", "sequence": 2}}));
        note_wsc(&mut r, &json!({"wsc": {"token": "a", "sequence": 1}}));
        assert_eq!(r.wsc, Some(("a".into(), 2)));
        note_wsc(&mut r, &json!({"type": "Heartbeat"}));
        assert_eq!(r.wsc, Some(("a".into(), 2)));
        note_wsc(&mut r, &json!({"wsc": {"token": "b", "sequence": 1}}));
        assert_eq!(r.wsc, Some(("b".into(), 1)), "a new session's token");
    }

    #[test]
    fn replays_are_remembered_within_the_window() {
        let mut seen = Seen::default();
        assert!(seen.insert("1".into()));
        assert!(!seen.insert("1".into()));
        for n in 0..REMEMBERED {
            seen.insert(format!("x{n}"));
        }
        assert!(
            seen.insert("1".into()),
            "forgotten after {REMEMBERED} others"
        );
    }
}
