//! The stored message: what one destination receives for one event, tagged by transport and
//! versioned, so rows written by an older callgate still deliver after an upgrade.
//!
//! Version 2 (this one) is `{"v":2,"kind":"http","method",...}`; version 1 rows (callgate
//! 0.1: `{"v":1,"method","url","headers","body"}`, HTTP only) are read as `kind: http`.

use serde::{Deserialize, Serialize};

/// The current record version.
pub const RECORD_VERSION: u32 = 2;

/// One HTTP request to a receiver, as rendered by the destination vendor's mapping.
/// Credentials are not part of it: the HTTP adapter adds them at send time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Full URL, query included.
    pub url: String,
    /// Headers rendered by the mapping (`content-type` when there is a body).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    #[serde(default)]
    pub body: Option<String>,
}

/// What a message asks its transport to do, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// An HTTP request (`outbound::http`).
    Http(HttpRequest),
    /// A push to a SignalR hub's subscribers (`outbound::signalr::hub`).
    Hub(HubPush),
}

/// An event for a hub: sent as `MessageReceived {subscription, data}` to every connection
/// subscribed to its `EntityId` and `EventType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubPush {
    /// The hub's path (`/rte`).
    pub hub: String,
    /// The rendered event (the `data`), JSON text.
    pub body: String,
}

impl Request {
    /// The body text, whatever the transport.
    pub fn body(&self) -> Option<&str> {
        match self {
            Request::Http(h) => h.body.as_deref(),
            Request::Hub(push) => Some(&push.body),
        }
    }

    /// The stored form: JSON text `{"v":2,"kind":...}`, written in one pass.
    pub fn to_record(&self) -> String {
        #[derive(Serialize)]
        struct Record<'a> {
            v: u32,
            #[serde(flatten)]
            request: &'a Request,
        }
        serde_json::to_string(&Record {
            v: RECORD_VERSION,
            request: self,
        })
        .unwrap_or_default()
    }

    /// Reads a stored record of any version: its `v` first (the rest of the text skipped),
    /// then the request it holds, without an intermediate JSON tree.
    pub fn from_record(text: &str) -> Result<Request, String> {
        #[derive(Deserialize)]
        struct Version {
            v: Option<u64>,
        }
        let version = serde_json::from_str::<Version>(text)
            .map_err(|e| e.to_string())?
            .v;
        match version {
            Some(1) => serde_json::from_str::<HttpRequest>(text)
                .map(Request::Http)
                .map_err(|e| format!("record v1: {e}")),
            Some(2) => serde_json::from_str::<Request>(text).map_err(|e| format!("record v2: {e}")),
            other => Err(format!("unknown record version {other:?}")),
        }
    }
}

/// One message: an event rendered for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The route it came in on.
    pub route: String,
    /// The destination name within the route.
    pub destination: String,
    /// The event's CloudEvents `partitionkey`, the ordering key (a call or a user): messages
    /// of one destination and partitionkey are delivered in order.
    pub partitionkey: String,
    /// The canonical event id (CloudEvents `id`).
    pub event_id: String,
    /// The canonical event type.
    pub event_type: String,
    /// What the transport sends.
    pub request: Request,
}

impl Message {
    /// `route/destination`: the destination's key in lanes, metrics and depth counters.
    pub fn destination_key(&self) -> String {
        format!("{}/{}", self.route, self.destination)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_records_read_back() {
        let v1 = r#"{"v":1,"method":"POST","url":"http://x/","headers":[["content-type","application/json"]],"body":"{}"}"#;
        let expected = Request::Http(HttpRequest {
            method: "POST".into(),
            url: "http://x/".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some("{}".into()),
        });
        assert_eq!(Request::from_record(v1).unwrap(), expected);
        let v2 = expected.to_record();
        assert!(
            v2.contains(r#""kind":"http""#) && v2.contains(r#""v":2"#),
            "{v2}"
        );
        assert_eq!(Request::from_record(&v2).unwrap(), expected);
        assert!(Request::from_record(r#"{"v":9}"#).is_err());
        assert!(Request::from_record("not json").is_err());
    }
}
