//! What a transport in hands the core: a payload read from a request (a JSON body, or URL/form
//! parameters for parameter vendors such as Oracle ISR) that became a [`VerifiedInbound`] by
//! passing its route's verifier (`verify.rs`) — the only input the pipeline accepts, so
//! skipping authentication is a type error.

use crate::model::params::parse_urlencoded;
use axum::http::{HeaderMap, Method, header::CONTENT_TYPE};
use serde_json::Value;

/// A payload that passed its route's verifier. Only [`Verifier::verify`](super::verify::Verifier::verify) makes one.
#[derive(Debug, Clone)]
pub struct VerifiedInbound {
    // Visible to `model::verify` alone: nothing else can make one.
    pub(super) payload: Value,
    pub(super) params: bool,
}

impl VerifiedInbound {
    /// The payload: the JSON document, or `{name: value}` for parameters.
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// Whether the payload is URL or form parameters.
    pub fn is_params(&self) -> bool {
        self.params
    }

    /// A payload that arrived on a connection the transport authenticated as a whole rather
    /// than message by message: the SignalR client source, whose hub accepted its token.
    pub(crate) fn from_connection(payload: Value) -> VerifiedInbound {
        VerifiedInbound {
            payload,
            params: false,
        }
    }

    /// Whether the payload is an empty object (no fields, no parameters).
    pub fn is_empty(&self) -> bool {
        self.payload.as_object().is_some_and(|m| m.is_empty())
    }
}

/// Vendor behaviour a route needs code for, registered by its adapter (RingCentral's
/// subscription renewal reminders): the handler asks it before the pipeline, so the handler,
/// the snapshot and the routes name no vendor.
pub trait RouteHook: Send + Sync {
    /// `Some(status)` when the hook takes this payload itself (it makes no event; the sender
    /// gets 200 `{"status": status}`), `None` to let it through.
    fn intercept(&self, inbound: &VerifiedInbound) -> Option<&'static str>;
}

/// Route hooks by route name; they outlive snapshots (each snapshot's routes look theirs up).
#[derive(Default)]
pub struct RouteHooks(std::sync::Mutex<Vec<(String, std::sync::Arc<dyn RouteHook>)>>);

impl RouteHooks {
    /// Registers `hook` for `route` (replacing an earlier one).
    pub fn register(&self, route: &str, hook: std::sync::Arc<dyn RouteHook>) {
        let mut hooks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        hooks.retain(|(name, _)| name != route);
        hooks.push((route.to_string(), hook));
    }

    /// `route`'s hook, if one is registered.
    pub fn get(&self, route: &str) -> Option<std::sync::Arc<dyn RouteHook>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(name, _)| name == route)
            .map(|(_, hook)| hook.clone())
    }
}

/// Why a request did not become a [`VerifiedInbound`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum InboundError {
    /// The credentials are missing or wrong (401).
    #[error(transparent)]
    Refused(super::verify::VerifyError),
    /// The payload could not be read (400).
    #[error(transparent)]
    Payload(PayloadError),
}

/// Why a request's payload could not be read (answered 400 or 415).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// No body and no parameters.
    #[error("empty request: expected a {0} payload")]
    Empty(&'static str),
    /// A JSON body on a route whose vendor sends URL or form parameters (answered 415).
    #[error("this vendor sends URL or form parameters, not a JSON body")]
    NotParams,
    /// Bytes that are not UTF-8 (never replaced: a changed correlation id is a wrong one).
    #[error("the body is not valid UTF-8 (at byte {0})")]
    NotUtf8(usize),
    /// A parameter whose `%XX` escapes do not decode to UTF-8.
    #[error(transparent)]
    Encoding(#[from] crate::model::params::BadEscape),
}

/// Reads a request's payload. `params_vendor`: the route's vendor sends parameters (query
/// or form); `auto`: detect (a JSON body is JSON, anything else parameters).
pub fn read_payload(
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    params_vendor: bool,
    auto: bool,
) -> Result<(Value, bool), PayloadError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    let trimmed = body.trim_ascii();
    let looks_json = trimmed.first().is_some_and(|b| *b == b'{' || *b == b'[');
    if params_vendor && looks_json {
        return Err(PayloadError::NotParams);
    }
    let wants_params = params_vendor || (auto && !looks_json);
    if wants_params && !(looks_json && content_type.contains("json")) {
        let mut params = match query {
            Some(q) if !q.is_empty() => parse_urlencoded(q)?,
            _ => Value::Object(Default::default()),
        };
        if (is_form || *method == Method::POST)
            && !trimmed.is_empty()
            && !looks_json
            && let (Value::Object(all), Value::Object(form)) = (
                &mut params,
                parse_urlencoded(
                    std::str::from_utf8(trimmed)
                        .map_err(|e| PayloadError::NotUtf8(e.valid_up_to()))?,
                )?,
            )
        {
            all.extend(form);
        }
        if params.as_object().is_some_and(|m| !m.is_empty()) {
            return Ok((params, true));
        }
        if !looks_json {
            return Err(PayloadError::Empty("parameter"));
        }
    }
    if trimmed.is_empty() {
        return Err(PayloadError::Empty("JSON"));
    }
    serde_json::from_slice(trimmed)
        .map(|v| (v, false))
        .map_err(|e| PayloadError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_query_and_form_payloads() {
        let h = HeaderMap::new();
        let (v, params) =
            read_payload(&Method::POST, &h, None, br#" {"a": 1} "#, false, false).unwrap();
        assert_eq!((v, params), (json!({"a": 1}), false));
        let (v, params) = read_payload(
            &Method::GET,
            &h,
            Some("event=X&ucid=1%402"),
            b"",
            true,
            false,
        )
        .unwrap();
        assert_eq!((v, params), (json!({"event": "X", "ucid": "1@2"}), true));
        let mut form = HeaderMap::new();
        form.insert(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let (v, _) =
            read_payload(&Method::POST, &form, None, b"event=Y&A=b+c", true, false).unwrap();
        assert_eq!(v, json!({"event": "Y", "A": "b c"}));
        let (_, params) =
            read_payload(&Method::GET, &h, Some("event=Z"), b"", false, true).unwrap();
        assert!(params, "auto reads parameters");
        let err = read_payload(&Method::POST, &h, None, b"{\"a\":", false, false).unwrap_err();
        assert!(err.to_string().contains("line 1 column 5"), "{err}");
        assert!(matches!(
            read_payload(&Method::POST, &h, None, b"", false, false),
            Err(PayloadError::Empty(_))
        ));
    }
}
