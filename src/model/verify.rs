//! Inbound verification: a request becomes a [`VerifiedInbound`] only by passing its route's
//! verifier, so code after this point cannot see an unauthenticated payload. Secrets are
//! compared in constant time.

use super::inbound::{InboundError, PayloadError, VerifiedInbound};
use crate::model::standard_webhooks::{self, Secret, Signed};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde_json::Value;
use std::time::Duration;
use subtle::ConstantTimeEq;

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
    /// `Verification-Token`, and `Validation-Token` in newer documentation, protocols.md §3.3).
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
    /// Standard Webhooks signatures over the body (protocols.md §8).
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
    /// received.
    pub fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        match self {
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
        headers: &HeaderMap,
        body: &[u8],
        read: impl FnOnce() -> Result<(Value, bool), PayloadError>,
    ) -> Result<VerifiedInbound, InboundError> {
        self.check(headers, body).map_err(InboundError::Refused)?;
        let (payload, params) = read().map_err(InboundError::Payload)?;
        Ok(VerifiedInbound { payload, params })
    }
}
