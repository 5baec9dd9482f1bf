//! `callgate tail`: the live tail (`GET /admin/tail`, Server-Sent Events) on a terminal, one
//! line per record, coloured when stdout is a terminal. Reconnects after a drop, resuming
//! after the last record it printed (`Last-Event-ID`).

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Where to connect and what to show.
pub struct TailArgs {
    /// The admin listener's base URL (`http://127.0.0.1:9090`).
    pub admin: String,
    /// `Bearer <token>`, when the listener has one.
    pub authorization: Option<String>,
    /// Query filters: (`route` | `destination` | `type` | `call`, value).
    pub filters: Vec<(&'static str, String)>,
    /// Print the records' JSON instead of lines.
    pub json: bool,
}

/// Runs until interrupted. Fails at once when the first connection is refused (wrong
/// address, token or filter); later drops reconnect every second.
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let colour = std::io::stdout().is_terminal();
    let mut last_id: Option<String> = None;
    let mut connected_once = false;
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&args.filters)
        .finish();
    let url = format!("{}/admin/tail?{query}", args.admin.trim_end_matches('/'));
    loop {
        let mut request = client.get(&url).header("accept", "text/event-stream");
        if let Some(auth) = &args.authorization {
            request = request.header("authorization", auth);
        }
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        let response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                let body: Value = serde_json::from_slice(&r.bytes().await.unwrap_or_default())
                    .unwrap_or(Value::Null);
                let detail = body["detail"].as_str().unwrap_or("").to_string();
                bail!("{}: HTTP {status}: {detail}", args.admin);
            }
            Err(e) if !connected_once => {
                return Err(e)
                    .with_context(|| format!("cannot reach the admin listener at {}", args.admin));
            }
            Err(e) => {
                eprintln!("callgate tail: {e}; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if !connected_once {
            eprintln!("callgate tail: following {} (Ctrl-C to stop)", args.admin);
        }
        connected_once = true;
        let mut parser = SseParser::default();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            for event in parser.push(&chunk) {
                if let Some(id) = event.id {
                    last_id = Some(id);
                }
                let Ok(record) = serde_json::from_str::<Value>(&event.data) else {
                    continue;
                };
                let mut out = std::io::stdout().lock();
                if args.json {
                    writeln!(out, "{record}")?;
                } else {
                    writeln!(out, "{}", line(&record, colour))?;
                }
                out.flush()?;
            }
        }
        eprintln!("callgate tail: the stream ended; reconnecting");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
pub struct SseEvent {
    /// `event:` (empty: `message`).
    pub event: String,
    /// `id:`, when given.
    pub id: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// Splits a byte stream into events (WHATWG HTML, "Server-sent events", event stream
/// interpretation): lines end with LF, CR LF or CR; a blank line ends an event; lines
/// starting with `:` are comments.
#[derive(Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n' || *b == b'\r') {
            // A CR at the very end may be the first half of CR LF: wait for the next byte.
            if self.buffer[end] == b'\r' && end + 1 == self.buffer.len() {
                break;
            }
            let skip = if self.buffer[end] == b'\r' && self.buffer.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let line: Vec<u8> = self.buffer.drain(..end + skip).take(end).collect();
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if self.has_data {
                    events.push(std::mem::take(&mut self.current));
                } else {
                    self.current = SseEvent::default();
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.current.event = value.to_string(),
                "id" => self.current.id = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        events
    }
}

/// A record as one terminal line: time, what, where, outcome.
pub fn line(r: &Value, colour: bool) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or("");
    let time = s("time").get(11..23).unwrap_or("");
    let (text, tone) = match s("kind") {
        "event" => {
            let fates: Vec<String> = r["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let reason = d["reason"]
                        .as_str()
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default();
                    format!(
                        "{}: {}{reason}",
                        d["destination"].as_str().unwrap_or(""),
                        d["status"].as_str().unwrap_or("")
                    )
                })
                .collect();
            (
                format!(
                    "{} ← {} {} call {} · {}",
                    s("route"),
                    s("vendor"),
                    s("type"),
                    s("partitionkey"),
                    fates.join(", ")
                ),
                Tone::Plain,
            )
        }
        "dropped" => (
            format!(
                "{} ← {} {} call {} · dropped: {}",
                s("route"),
                s("vendor"),
                s("type"),
                s("partitionkey"),
                s("reason")
            ),
            Tone::Warn,
        ),
        "delivery" => {
            let status = r["status"]
                .as_u64()
                .map(|c| format!(" {c}"))
                .unwrap_or_default();
            let next = r["next_attempt"]
                .as_str()
                .map(|n| format!(" · next attempt {n}"))
                .unwrap_or_default();
            let reason = r["reason"]
                .as_str()
                .map(|w| format!(" · {w}"))
                .unwrap_or_default();
            let outcome = s("outcome");
            let tone = match outcome {
                "delivered" => Tone::Good,
                "retrying" | "refused" | "skipped" => Tone::Warn,
                _ => Tone::Bad,
            };
            (
                format!(
                    "{}/{} → {} call {} · {outcome}{status} (attempt {}, delivery {}){next}{reason}",
                    s("route"),
                    s("destination"),
                    s("type"),
                    s("partitionkey"),
                    r["attempt"].as_u64().unwrap_or(0),
                    r["delivery_id"].as_i64().unwrap_or(0),
                ),
                tone,
            )
        }
        "reload" => (
            format!(
                "reload {} · serving v{} · {}",
                s("outcome"),
                r["version"].as_u64().unwrap_or(0),
                s("detail")
            ),
            if s("outcome") == "rejected" {
                Tone::Bad
            } else {
                Tone::Info
            },
        ),
        "lagged" => (
            format!(
                "missed {} records (this terminal fell behind)",
                r["missed"].as_u64().unwrap_or(0)
            ),
            Tone::Bad,
        ),
        // History ends here: what follows happens now.
        "live" => (
            match r["backlog"].as_u64().unwrap_or(0) {
                0 => "── live: nothing kept from before; new records follow ──".to_string(),
                n => format!(
                    "── live: the {n} records above happened before you connected; new records follow ──"
                ),
            },
            Tone::Info,
        ),
        other => (format!("{other}: {r}"), Tone::Plain),
    };
    let code = match (colour, tone) {
        (false, _) | (_, Tone::Plain) => return format!("{time} {text}"),
        (_, Tone::Good) => "32",
        (_, Tone::Warn) => "33",
        (_, Tone::Bad) => "31",
        (_, Tone::Info) => "36",
    };
    format!("\x1b[2m{time}\x1b[0m \x1b[{code}m{text}\x1b[0m")
}

#[derive(Clone, Copy)]
enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
    Info,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_endings() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nevent: delivery\r").is_empty());
        assert!(p.push(b"\nid: 7\ndata: {\"a\":").is_empty());
        // A CR at the end of a chunk waits for the next byte (it may begin a CR LF).
        assert!(p.push(b"1}\ndata: x\r\r").is_empty());
        let events = p.push(b"\n");
        assert_eq!(
            events,
            [SseEvent {
                event: "delivery".into(),
                id: Some("7".into()),
                data: "{\"a\":1}\nx".into()
            }]
        );
        // An event with no data is no event.
        assert!(p.push(b"event: nothing\n\n").is_empty());
    }

    #[test]
    fn the_live_marker_says_where_history_ends() {
        let r = serde_json::json!({"kind": "live", "backlog": 3});
        assert_eq!(
            line(&r, false),
            " ── live: the 3 records above happened before you connected; new records follow ──",
            "(no time: the marker is not a record)"
        );
    }

    #[test]
    fn a_delivery_line_says_where_what_and_when_next() {
        let r = serde_json::json!({"kind": "delivery", "time": "2026-12-02T10:00:00.123Z",
            "route": "rc", "destination": "vidyo", "type": "call.ended", "partitionkey": "c1",
            "outcome": "retrying", "status": 503, "attempt": 2, "delivery_id": 9,
            "next_attempt": "2026-12-02T10:00:01.000Z", "reason": "HTTP 503"});
        assert_eq!(
            line(&r, false),
            "10:00:00.123 rc/vidyo → call.ended call c1 · retrying 503 (attempt 2, delivery 9) · next attempt 2026-12-02T10:00:01.000Z · HTTP 503"
        );
        assert!(line(&r, true).contains("\x1b[33m"));
    }
}
