//! Inbound verification: a request becomes a [`VerifiedInbound`] only by passing its route's
//! verifier, so code after this point cannot see an unauthenticated payload. Secrets are
//! compared in constant time.

use super::VerifiedInbound;
use crate::config::InboundAuth;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use subtle::ConstantTimeEq;

/// RingCentral sends the subscription's shared token in `Verification-Token` (and, in newer
/// documentation, in `Validation-Token`): protocols.md §3.3.
const TOKEN_HEADERS: [&str; 2] = ["verification-token", "validation-token"];

/// Why a request was refused (answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The credential the route requires is absent.
    #[error("missing credentials: {0}")]
    Missing(&'static str),
    /// The credential does not match.
    #[error("invalid credentials: {0}")]
    Invalid(&'static str),
}

/// A route's verifier.
#[derive(Clone)]
pub enum Verifier {
    /// The route accepts anyone.
    Open,
    /// A shared token in `Verification-Token` or `Validation-Token`.
    VerificationToken(Vec<u8>),
    /// `Authorization: Basic` with these credentials (the whole header value expected).
    Basic(Vec<u8>),
    /// `Authorization: Bearer <token>`.
    Bearer(Vec<u8>),
    /// A token in a named header.
    Header(String, Vec<u8>),
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

impl Verifier {
    /// The verifier a route's `auth` configures.
    pub fn new(auth: Option<&InboundAuth>) -> Verifier {
        let Some(auth) = auth else {
            return Verifier::Open;
        };
        if let Some(token) = &auth.verification_token {
            Verifier::VerificationToken(token.value().as_bytes().to_vec())
        } else if let Some(basic) = &auth.basic {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                basic.username.value(),
                basic.password.value()
            ));
            Verifier::Basic(format!("Basic {encoded}").into_bytes())
        } else if let Some(token) = &auth.bearer {
            Verifier::Bearer(format!("Bearer {}", token.value()).into_bytes())
        } else if let Some(header) = &auth.header {
            Verifier::Header(
                header.name.to_ascii_lowercase(),
                header.value.value().as_bytes().to_vec(),
            )
        } else {
            Verifier::Open
        }
    }

    /// Whether `value` is this route's shared token (used to tell a RingCentral delivery
    /// carrying `Validation-Token` from a subscription handshake).
    pub fn is_shared_token(&self, value: &[u8]) -> bool {
        matches!(self, Verifier::VerificationToken(secret) if same(value, secret))
    }

    /// Checks the request's credentials.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), VerifyError> {
        match self {
            Verifier::Open => Ok(()),
            Verifier::VerificationToken(secret) => {
                let mut seen = false;
                for name in TOKEN_HEADERS {
                    if let Some(v) = headers.get(name) {
                        seen = true;
                        if same(v.as_bytes(), secret) {
                            return Ok(());
                        }
                    }
                }
                Err(if seen {
                    VerifyError::Invalid("Verification-Token")
                } else {
                    VerifyError::Missing("Verification-Token")
                })
            }
            Verifier::Basic(expected) => match headers.get(AUTHORIZATION) {
                Some(v) if same(v.as_bytes(), expected) => Ok(()),
                Some(_) => Err(VerifyError::Invalid("Authorization: Basic")),
                None => Err(VerifyError::Missing("Authorization: Basic")),
            },
            Verifier::Bearer(expected) => match headers.get(AUTHORIZATION) {
                Some(v) if same(v.as_bytes(), expected) => Ok(()),
                Some(_) => Err(VerifyError::Invalid("Authorization: Bearer")),
                None => Err(VerifyError::Missing("Authorization: Bearer")),
            },
            Verifier::Header(name, expected) => match headers.get(name.as_str()) {
                Some(v) if same(v.as_bytes(), expected) => Ok(()),
                Some(_) => Err(VerifyError::Invalid("token header")),
                None => Err(VerifyError::Missing("token header")),
            },
        }
    }

    /// Checks the credentials and, only if they pass, wraps the payload as verified.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        payload: serde_json::Value,
        params: bool,
    ) -> Result<VerifiedInbound, VerifyError> {
        self.check(headers)?;
        Ok(VerifiedInbound { payload, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BasicAuth, EnvString, HeaderToken};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn each_verifier_accepts_its_credential_and_refuses_others() {
        let token = Verifier::new(Some(&InboundAuth {
            verification_token: Some(EnvString::literal("t0k")),
            ..Default::default()
        }));
        assert!(
            token
                .check(&headers(&[("Verification-Token", "t0k")]))
                .is_ok()
        );
        assert!(
            token
                .check(&headers(&[("Validation-Token", "t0k")]))
                .is_ok()
        );
        assert_eq!(
            token.check(&headers(&[("Verification-Token", "nope")])),
            Err(VerifyError::Invalid("Verification-Token"))
        );
        assert_eq!(
            token.check(&headers(&[])),
            Err(VerifyError::Missing("Verification-Token"))
        );

        let basic = Verifier::new(Some(&InboundAuth {
            basic: Some(BasicAuth {
                username: EnvString::literal("u"),
                password: EnvString::literal("p"),
            }),
            ..Default::default()
        }));
        assert!(
            basic
                .check(&headers(&[("Authorization", "Basic dTpw")]))
                .is_ok()
        );
        assert!(
            basic
                .check(&headers(&[("Authorization", "Basic dTpx")]))
                .is_err()
        );

        let bearer = Verifier::new(Some(&InboundAuth {
            bearer: Some(EnvString::literal("b")),
            ..Default::default()
        }));
        assert!(
            bearer
                .check(&headers(&[("Authorization", "Bearer b")]))
                .is_ok()
        );
        assert!(
            bearer
                .check(&headers(&[("Authorization", "Bearer c")]))
                .is_err()
        );

        let header = Verifier::new(Some(&InboundAuth {
            header: Some(HeaderToken {
                name: "X-Api-Key".into(),
                value: EnvString::literal("k"),
            }),
            ..Default::default()
        }));
        assert!(header.check(&headers(&[("x-api-key", "k")])).is_ok());
        assert!(header.check(&headers(&[("x-api-key", "K")])).is_err());
        assert!(Verifier::Open.check(&headers(&[])).is_ok());
    }
}
