//! What a transport in hands the core: a payload read from a request (a JSON body, or URL/form
//! parameters for parameter vendors such as Oracle ISR) that became a [`VerifiedInbound`] by
//! passing its route's [`Verifier`] — the only input the pipeline accepts, so skipping
//! authentication is a type error. Secrets are compared in constant time.

use crate::model::params::parse_urlencoded;
use crate::model::signature::{Presented, SignatureError, SignatureScheme};
use crate::model::standard_webhooks::{self, Secret, Signed};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method, header::CONTENT_TYPE};
use serde_json::Value;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// A payload that passed its route's verifier. Only [`Verifier::verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedInbound {
    // Private to this module: only `Verifier::verify` can make one.
    payload: Value,
    params: bool,
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

    /// A payload read back from the archive (`replay --reroute`): it passed its route's
    /// verifier when it was accepted, and only accepted payloads are archived.
    pub(crate) fn from_archive(payload: Value, params: bool) -> VerifiedInbound {
        VerifiedInbound { payload, params }
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

    /// Removes `route`'s hook.
    pub fn remove(&self, route: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(name, _)| name != route);
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
    Refused(VerifyError),
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

/// Why a request was refused (answered 401); names the header that was missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The credential the route requires is absent.
    #[error("missing credentials: {0}")]
    Missing(String),
    /// The credential does not match.
    #[error("invalid credentials: {0}")]
    Invalid(String),
}

/// A route's verifier.
#[derive(Clone)]
pub enum Verifier {
    /// The route accepts anyone.
    Open,
    /// A shared token in any of these headers (lower-case names): the source vendor's
    /// `verification_header` and `handshake_header` from its `vendor.yaml` (RingCentral:
    /// `Verification-Token`, and `Validation-Token` in newer documentation, docs/protocols.md §3.3).
    VerificationToken {
        /// Header names, as the vendor's mapping declares them.
        headers: Vec<String>,
        /// The shared secret.
        secret: Vec<u8>,
    },
    /// `Authorization: Basic` with these base64 `user:password` credentials.
    Basic(Vec<u8>),
    /// `Authorization: Bearer` with this token.
    Bearer(Vec<u8>),
    /// A token in a named header.
    Header(String, Vec<u8>),
    /// The source vendor's declared signature scheme (`vendor.yaml` `signature:`), keyed with
    /// the route's secret.
    Signature {
        /// The scheme.
        scheme: std::sync::Arc<SignatureScheme>,
        /// The key.
        key: Vec<u8>,
        /// The route's public base URL, for schemes that sign the URL.
        public_url: Option<String>,
    },
    /// Standard Webhooks signatures over the body (docs/protocols.md §8).
    StandardWebhooks {
        /// Any of these may have signed (rotation).
        secrets: Vec<Secret>,
        /// How far `webhook-timestamp` may be from now, either way.
        tolerance: Duration,
    },
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn header_value(headers: &HeaderMap, name: &str, expected: &[u8]) -> Result<(), VerifyError> {
    match headers.get(name) {
        Some(v) if same(v.as_bytes(), expected) => Ok(()),
        Some(_) => Err(VerifyError::Invalid(name.to_string())),
        None => Err(VerifyError::Missing(name.to_string())),
    }
}

/// Checks `Authorization: <scheme> <credentials>`: the scheme in any case, whitespace around
/// the credentials ignored (RFC 9110 §11.1), the credentials compared exactly, in constant
/// time.
fn authorization(headers: &HeaderMap, scheme: &str, expected: &[u8]) -> Result<(), VerifyError> {
    let name = AUTHORIZATION.as_str();
    let Some(value) = headers.get(name) else {
        return Err(VerifyError::Missing(name.to_string()));
    };
    let value = value.as_bytes().trim_ascii();
    let split = value.iter().position(u8::is_ascii_whitespace);
    match split.map(|at| value.split_at(at)) {
        Some((given, credentials))
            if given.eq_ignore_ascii_case(scheme.as_bytes())
                && same(credentials.trim_ascii(), expected) =>
        {
            Ok(())
        }
        _ => Err(VerifyError::Invalid(name.to_string())),
    }
}

impl Verifier {
    /// The `WWW-Authenticate` challenge a 401 carries, for the `Authorization` schemes.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            Verifier::Basic(_) => Some("Basic realm=\"callgate\""),
            Verifier::Bearer(_) => Some("Bearer realm=\"callgate\""),
            _ => None,
        }
    }

    /// The key of a vendor signature scheme (`auth: { signature }`), which also answers the
    /// vendor's endpoint challenge.
    pub fn signing_key(&self) -> Option<&[u8]> {
        match self {
            Verifier::Signature { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Whether this is a shared-token verifier (`verification_token`).
    pub fn is_token_verifier(&self) -> bool {
        matches!(self, Verifier::VerificationToken { .. })
    }

    /// Whether `value` is this route's shared token (used to tell a RingCentral delivery
    /// carrying `Validation-Token` from a subscription handshake).
    pub fn is_shared_token(&self, value: &[u8]) -> bool {
        matches!(self, Verifier::VerificationToken { secret, .. } if same(value, secret))
    }

    /// Checks the request's credentials; signature schemes cover `body`, the exact bytes
    /// received. (A vendor scheme that signs the method or URL needs [`Self::check_request`].)
    pub fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        self.check_request(&Presented {
            method: "",
            target: "",
            headers,
            body,
        })
    }

    /// Checks the credentials of a request as it was presented.
    pub fn check_request(&self, request: &Presented<'_>) -> Result<(), VerifyError> {
        let (headers, body) = (request.headers, request.body);
        match self {
            Verifier::Signature {
                scheme,
                key,
                public_url,
            } => {
                let now = crate::model::clock::now_ms() / 1000;
                scheme
                    .verify(key, request, public_url.as_deref(), now)
                    .map_err(|e| match e {
                        SignatureError::Missing(name) => VerifyError::Missing(name),
                        SignatureError::Invalid(why) => VerifyError::Invalid(why),
                    })
            }
            Verifier::Open => Ok(()),
            Verifier::VerificationToken {
                headers: names,
                secret,
            } => {
                let mut refusal = VerifyError::Missing(names.join(" or "));
                for name in names {
                    match header_value(headers, name, secret) {
                        Ok(()) => return Ok(()),
                        Err(e @ VerifyError::Invalid(_)) => refusal = e,
                        Err(VerifyError::Missing(_)) => {}
                    }
                }
                Err(refusal)
            }
            Verifier::Basic(expected) => authorization(headers, "Basic", expected),
            Verifier::Bearer(expected) => authorization(headers, "Bearer", expected),
            Verifier::Header(name, expected) => header_value(headers, name, expected),
            Verifier::StandardWebhooks { secrets, tolerance } => {
                let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
                let signed = Signed {
                    id: text(standard_webhooks::WEBHOOK_ID),
                    timestamp: text(standard_webhooks::WEBHOOK_TIMESTAMP),
                    signature: text(standard_webhooks::WEBHOOK_SIGNATURE),
                };
                let now = crate::model::clock::now_ms() / 1000;
                standard_webhooks::verify(secrets, signed, body, now, *tolerance).map_err(|e| {
                    match e {
                        standard_webhooks::SignatureError::Missing(name) => {
                            VerifyError::Missing(name.to_string())
                        }
                        other => VerifyError::Invalid(other.to_string()),
                    }
                })
            }
        }
    }

    /// Checks the credentials and only then reads the payload with `read`, wrapping it as
    /// verified: an unauthenticated body is never parsed.
    pub fn verify(
        &self,
        request: &Presented<'_>,
        read: impl FnOnce() -> Result<(Value, bool), PayloadError>,
    ) -> Result<VerifiedInbound, InboundError> {
        self.check_request(request).map_err(InboundError::Refused)?;
        let (payload, params) = read().map_err(InboundError::Payload)?;
        Ok(VerifiedInbound { payload, params })
    }
}
