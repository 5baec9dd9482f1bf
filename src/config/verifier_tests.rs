//! The verifiers a route's `auth` builds, against real requests' headers and bodies.

use super::{BasicAuth, EnvString, HeaderToken, InboundAuth};
use crate::model::inbound::*;
use axum::http::HeaderMap;

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

/// `basic: {username: u, password: p}`.
fn basic_u_p() -> Verifier {
    crate::config::verifier(
        Some(&InboundAuth::Basic(BasicAuth {
            username: EnvString::literal("u"),
            password: EnvString::literal("p"),
        })),
        &[],
        None,
    )
    .unwrap()
}

/// `bearer: <token>`.
fn bearer(token: &str) -> Verifier {
    crate::config::verifier(
        Some(&InboundAuth::Bearer(EnvString::literal(token))),
        &[],
        None,
    )
    .unwrap()
}

#[test]
fn each_verifier_accepts_its_credential_and_refuses_others() {
    let rc_headers = [
        "Verification-Token".to_string(),
        "Validation-Token".to_string(),
    ];
    let token = crate::config::verifier(
        Some(&InboundAuth::VerificationToken(EnvString::literal("t0k"))),
        &rc_headers,
        None,
    )
    .unwrap();
    assert!(
        token
            .check(&headers(&[("Verification-Token", "t0k")]), b"")
            .is_ok()
    );
    assert!(
        token
            .check(&headers(&[("Validation-Token", "t0k")]), b"")
            .is_ok()
    );
    assert_eq!(
        token.check(&headers(&[("Verification-Token", "nope")]), b""),
        Err(VerifyError::Invalid("verification-token".into()))
    );
    assert_eq!(
        token.check(&headers(&[]), b""),
        Err(VerifyError::Missing(
            "verification-token or validation-token".into()
        ))
    );

    let basic = basic_u_p();
    assert!(
        basic
            .check(&headers(&[("Authorization", "Basic dTpw")]), b"")
            .is_ok()
    );
    assert!(
        basic
            .check(&headers(&[("Authorization", "Basic dTpx")]), b"")
            .is_err()
    );

    let bearer = bearer("b");
    assert!(
        bearer
            .check(&headers(&[("Authorization", "Bearer b")]), b"")
            .is_ok()
    );
    assert!(
        bearer
            .check(&headers(&[("Authorization", "Bearer c")]), b"")
            .is_err()
    );

    let header = crate::config::verifier(
        Some(&InboundAuth::Header(HeaderToken {
            name: "X-Api-Key".into(),
            value: EnvString::literal("k"),
        })),
        &[],
        None,
    )
    .unwrap();
    assert!(header.check(&headers(&[("x-api-key", "k")]), b"").is_ok());
    assert!(header.check(&headers(&[("x-api-key", "K")]), b"").is_err());
    assert!(Verifier::Open.check(&headers(&[]), b"").is_ok());
}

/// Auth schemes are case-insensitive and whitespace around the credentials is not
/// part of them (RFC 9110 §11.1); the credentials themselves stay exact.
#[test]
fn auth_schemes_are_case_insensitive() {
    let bearer = bearer("b0b");
    for value in ["bearer b0b", "BEARER b0b", "Bearer   b0b", " Bearer b0b "] {
        assert!(
            bearer
                .check(&headers(&[("Authorization", value)]), b"")
                .is_ok(),
            "{value:?}"
        );
    }
    assert!(
        bearer
            .check(&headers(&[("Authorization", "Bearer B0B")]), b"")
            .is_err()
    );
    assert!(
        bearer
            .check(&headers(&[("Authorization", "Basic b0b")]), b"")
            .is_err()
    );
    assert!(
        bearer
            .check(&headers(&[("Authorization", "Bearerb0b")]), b"")
            .is_err()
    );
    let basic = basic_u_p();
    assert!(
        basic
            .check(&headers(&[("Authorization", "BASIC dTpw")]), b"")
            .is_ok()
    );
    assert_eq!(basic.challenge(), Some("Basic realm=\"callgate\""));
    assert_eq!(bearer.challenge(), Some("Bearer realm=\"callgate\""));
}

#[test]
fn a_standard_webhooks_secret_that_does_not_parse_is_an_error_not_dropped() {
    let auth = InboundAuth::StandardWebhooks(super::StandardWebhooksVerify {
        secrets: vec![EnvString::literal("whsec_plain-not-base64!")],
        tolerance: std::time::Duration::from_secs(300),
    });
    let Err(err) = crate::config::verifier(Some(&auth), &[], None) else {
        panic!("a secret that does not parse must fail the verifier");
    };
    assert!(err.contains("standard_webhooks secret"), "{err}");
}
