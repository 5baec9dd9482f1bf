//! Standard Webhooks v1 (docs/protocols.md §8; spec `standard-webhooks.md`): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the base64 after `whsec_`, sent as
//! `webhook-signature: v1,<base64>` (space-separated for several). Outbound destinations
//! sign with it; inbound routes verify with it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// `webhook-id`: the message id, the same on every retry.
pub const WEBHOOK_ID: &str = "webhook-id";
/// `webhook-timestamp`: integer Unix seconds of this attempt.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` entries.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// The reference libraries' tolerance for `webhook-timestamp`, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// A symmetric signing key: the bytes the base64 after `whsec_` decodes to.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why a secret or a signed request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The configured secret is not `whsec_` + base64 of at least one byte.
    #[error("a Standard Webhooks secret is `whsec_` followed by base64 (e.g. 24 random bytes)")]
    BadSecret,
    /// A `webhook-*` header is absent or not text.
    #[error("missing {0}")]
    Missing(&'static str),
    /// `webhook-timestamp` is not integer seconds, or `webhook-id` holds a `.`.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// `webhook-timestamp` is further from now than the tolerance.
    #[error("webhook-timestamp is {0} s away from now, beyond the tolerance")]
    Stale(u64),
    /// No `v1` signature matches under any configured secret.
    #[error("no webhook-signature matches")]
    NoMatch,
}

impl Secret {
    /// Parses `whsec_<base64>`. The prefix is required: a bare string would be ambiguous
    /// (raw key or base64?), and an empty key signs nothing.
    pub fn parse(text: &str) -> Result<Secret, SignatureError> {
        let encoded = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or(SignatureError::BadSecret)?;
        match STANDARD.decode(encoded) {
            Ok(key) if !key.is_empty() => Ok(Secret(key)),
            _ => Err(SignatureError::BadSecret),
        }
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

/// The three headers of a signed request, as text.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// Verifies a signed request: the timestamp within `tolerance` of `now` (Unix seconds),
/// then any `v1` entry matching under any of `secrets` (key rotation), compared in constant
/// time through `Mac::verify_slice`. Other versions (`v1a`) are skipped.
pub fn verify(
    secrets: &[Secret],
    signed: Signed<'_>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let id = signed.id.ok_or(SignatureError::Missing(WEBHOOK_ID))?;
    let timestamp = signed
        .timestamp
        .ok_or(SignatureError::Missing(WEBHOOK_TIMESTAMP))?;
    let signature = signed
        .signature
        .ok_or(SignatureError::Missing(WEBHOOK_SIGNATURE))?;
    if id.is_empty() || id.contains('.') {
        return Err(SignatureError::Malformed(WEBHOOK_ID));
    }
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::Malformed(WEBHOOK_TIMESTAMP))?;
    let away = now.abs_diff(seconds);
    if away > tolerance.as_secs() {
        return Err(SignatureError::Stale(away));
    }
    let candidates: Vec<Vec<u8>> = signature
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    for secret in secrets {
        for candidate in &candidates {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            if mac.verify_slice(candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::NoMatch)
}

/// A stable `webhook-id` for a message: `msg_` and 32 hex digits of SHA-256 over the route,
/// destination and canonical event id. The same on every retry and every replay, free of
/// `.` whatever the event id holds.
pub fn message_id(route: &str, destination: &str, event_id: &str) -> String {
    use sha2::Digest;
    let digest = Sha256::new()
        .chain_update(route.as_bytes())
        .chain_update([0])
        .chain_update(destination.as_bytes())
        .chain_update([0])
        .chain_update(event_id.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's test vector (docs/protocols.md §8.2).
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1649367553;
    const BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn signed(signature: &str) -> Signed<'_> {
        Signed {
            id: Some(ID),
            timestamp: Some("1649367553"),
            signature: Some(signature),
        }
    }

    #[test]
    fn the_spec_vector_signs_and_verifies() {
        let secret = Secret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        let secrets = [secret];
        verify(
            &secrets,
            signed(SIGNATURE),
            BODY.as_bytes(),
            TIMESTAMP,
            DEFAULT_TOLERANCE,
        )
        .unwrap();
        // Rotation: an unknown v1a entry and a stale key before the match.
        let rotated = format!("v1a,AAAA v1,{} {SIGNATURE}", STANDARD.encode([0u8; 32]));
        let old = Secret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let both = [old, Secret::parse(SECRET).unwrap()];
        verify(
            &both,
            signed(&rotated),
            BODY.as_bytes(),
            TIMESTAMP + 299,
            DEFAULT_TOLERANCE,
        )
        .unwrap();
    }

    #[test]
    fn tampering_staleness_and_bad_secrets_are_refused() {
        let secrets = [Secret::parse(SECRET).unwrap()];
        let check = |signed: Signed<'_>, body: &str, now: i64| {
            verify(&secrets, signed, body.as_bytes(), now, DEFAULT_TOLERANCE)
        };
        let tampered = BODY.replace("test_user", "admin");
        assert_eq!(
            check(signed(SIGNATURE), &tampered, TIMESTAMP),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(signed(SIGNATURE), BODY, TIMESTAMP + 301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            check(signed(SIGNATURE), BODY, TIMESTAMP - 301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            check(signed("v1,not base64!"), BODY, TIMESTAMP),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(signed(""), BODY, TIMESTAMP),
            Err(SignatureError::NoMatch)
        );
        let mut no_ts = signed(SIGNATURE);
        no_ts.timestamp = Some("1649367553.0");
        assert_eq!(
            check(no_ts, BODY, TIMESTAMP),
            Err(SignatureError::Malformed(WEBHOOK_TIMESTAMP))
        );
        no_ts.timestamp = None;
        assert_eq!(
            check(no_ts, BODY, TIMESTAMP),
            Err(SignatureError::Missing(WEBHOOK_TIMESTAMP))
        );
        for bad in [
            "",
            "whsec_",
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_%%%",
        ] {
            assert_eq!(
                Secret::parse(bad).unwrap_err(),
                SignatureError::BadSecret,
                "{bad}"
            );
        }
    }

    #[test]
    fn message_ids_are_stable_and_dot_free() {
        let a = message_id("r", "d", "e.1");
        assert_eq!(a, message_id("r", "d", "e.1"));
        assert_ne!(a, message_id("r", "d2", "e.1"));
        assert!(a.starts_with("msg_") && !a.contains('.') && a.len() == 36);
    }
}
