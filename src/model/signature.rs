//! Signature schemes declared as data (`vendor.yaml` `signature:`): an HMAC over a signed
//! string built from named parts of the request, encoded and compared in constant time.
//! Twilio (`X-Twilio-Signature`: base64 HMAC-SHA1 over the URL the sender requested and the
//! sorted form parameters; twilio.com/docs/usage/webhooks/webhooks-security) and Zoom
//! (`x-zm-signature`: `v0=` + hex HMAC-SHA256 over `v0:{x-zm-request-timestamp}:{body}`;
//! developers.zoom.us/docs/api/webhooks) are declared this way.

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The HMAC's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1 (Twilio).
    HmacSha1,
    /// HMAC-SHA256 (Zoom, Standard Webhooks).
    HmacSha256,
}

/// How the MAC is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lower-case hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// One part of the signed string, concatenated in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    /// This text as it is (`v0:`).
    Literal(String),
    /// The request method (`POST`).
    Method,
    /// The full URL the sender requested: the route's public base URL (or `http://` + the
    /// `Host` header when none is set) + path + query.
    Url,
    /// A form body's parameters, sorted by name, each name then value, concatenated (Twilio).
    SortedFormParams,
    /// The raw body bytes, as received.
    Body,
    /// A header's value (empty when absent).
    Header(String),
}

/// A vendor's signature scheme.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureScheme {
    /// The header carrying the signature (lower case).
    pub header: String,
    /// The MAC.
    pub algorithm: Algorithm,
    /// Its encoding.
    pub encoding: Encoding,
    /// Text before the encoded MAC in the header (`v0=`).
    pub prefix: String,
    /// The signed string's parts.
    pub signed: Vec<SignedPart>,
    /// A header with the signing time (Unix seconds) and how far it may be from now.
    pub timestamp: Option<(String, Duration)>,
    /// A query parameter that, when the URL carries it, holds the hex SHA-256 of the body:
    /// the body is then covered by it, not by `sorted_form_params` (Twilio's `bodySHA256`
    /// for JSON bodies).
    pub body_digest: Option<String>,
}

/// A vendor's endpoint challenge (`vendor.yaml` `challenge:`, Zoom's
/// `endpoint.url_validation`): a JSON request whose `event` path holds `equals` is answered
/// `{reply_token: <token>, reply_signed: hex HMAC-SHA256(route secret, token)}`, no event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Members leading to the event name (`$.event` → `["event"]`).
    pub event: Vec<String>,
    /// The event name that makes a challenge.
    pub equals: String,
    /// Members leading to the token.
    pub token: Vec<String>,
    /// The reply's member holding the token.
    pub reply_token: String,
    /// The reply's member holding the signed token.
    pub reply_signed: String,
}

impl Challenge {
    /// The reply to `payload` when it is this challenge, keyed with `key`.
    pub fn answer(&self, payload: &serde_json::Value, key: &[u8]) -> Option<serde_json::Value> {
        let at = |path: &[String]| path.iter().try_fold(payload, |v, k| v.get(k));
        if at(&self.event)?.as_str()? != self.equals {
            return None;
        }
        let token = at(&self.token)?.as_str()?;
        let signed = SignatureScheme {
            header: String::new(),
            algorithm: Algorithm::HmacSha256,
            encoding: Encoding::Hex,
            prefix: String::new(),
            signed: Vec::new(),
            timestamp: None,
            body_digest: None,
        }
        .sign(key, token.as_bytes());
        let mut reply = serde_json::Map::new();
        reply.insert(self.reply_token.clone(), token.into());
        reply.insert(self.reply_signed.clone(), signed.into());
        Some(reply.into())
    }
}

/// `$.a.b` → `["a", "b"]`: the simple member paths challenges use.
pub fn member_path(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix("$.")?;
    let parts: Vec<String> = rest.split('.').map(str::to_string).collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then_some(parts)
}

/// The request as it was presented, for a scheme to sign.
pub struct Presented<'a> {
    /// The method.
    pub method: &'a str,
    /// Path and query, as received (`/hooks/twilio?x=1`).
    pub target: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
}

impl Presented<'static> {
    /// No request at all: what local input (`translate`, the playground) presents to the open
    /// verifier.
    pub fn local() -> Presented<'static> {
        static EMPTY: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(HeaderMap::new);
        Presented {
            method: "",
            target: "",
            headers: &EMPTY,
            body: b"",
        }
    }
}

/// Why a signature was refused: a header that is missing, or a value that does not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header the scheme needs is absent.
    #[error("{0} is missing")]
    Missing(String),
    /// The signature does not match, or the timestamp is out of tolerance.
    #[error("{0}")]
    Invalid(String),
}

impl SignatureScheme {
    /// The MAC of `data` with `key`, encoded, with the prefix.
    pub fn sign(&self, key: &[u8], data: &[u8]) -> String {
        let mac = match self.algorithm {
            Algorithm::HmacSha1 => {
                let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key)
                    .expect("HMAC takes a key of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Algorithm::HmacSha256 => {
                let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
                    .expect("HMAC takes a key of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        };
        let encoded = match self.encoding {
            Encoding::Hex => mac.iter().map(|b| format!("{b:02x}")).collect(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(mac),
        };
        format!("{}{encoded}", self.prefix)
    }

    /// The signed string of a request; `public_url` is the route's public base URL;
    /// `body_covered`: the URL carries the body's digest, so the body has no form parameters.
    fn signed_string(
        &self,
        request: &Presented<'_>,
        public_url: Option<&str>,
        body_covered: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.signed {
            match part {
                SignedPart::Literal(text) => out.extend_from_slice(text.as_bytes()),
                SignedPart::Method => out.extend_from_slice(request.method.as_bytes()),
                SignedPart::Url => {
                    let base = match public_url {
                        Some(base) => base.trim_end_matches('/').to_string(),
                        None => format!(
                            "http://{}",
                            request
                                .headers
                                .get("host")
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or_default()
                        ),
                    };
                    out.extend_from_slice(base.as_bytes());
                    out.extend_from_slice(request.target.as_bytes());
                }
                // A body covered by its digest (checked in `verify`) has no form parameters.
                SignedPart::SortedFormParams if body_covered => {}
                SignedPart::SortedFormParams => {
                    let mut pairs: Vec<(String, String)> =
                        form_urlencoded::parse(request.body).into_owned().collect();
                    pairs.sort();
                    for (name, value) in pairs {
                        out.extend_from_slice(name.as_bytes());
                        out.extend_from_slice(value.as_bytes());
                    }
                }
                SignedPart::Body => out.extend_from_slice(request.body),
                SignedPart::Header(name) => out.extend_from_slice(
                    request
                        .headers
                        .get(name.as_str())
                        .map(|v| v.as_bytes())
                        .unwrap_or_default(),
                ),
            }
        }
        out
    }

    /// The body digest the URL carries, if the scheme declares one and the URL has it.
    fn digest_of(&self, request: &Presented<'_>) -> Option<String> {
        let name = self.body_digest.as_ref()?;
        let query = request.target.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name.as_str())
            .map(|(_, v)| v.into_owned())
    }

    /// Checks a request's signature with `key`, in constant time; `now` in Unix seconds.
    pub fn verify(
        &self,
        key: &[u8],
        request: &Presented<'_>,
        public_url: Option<&str>,
        now: i64,
    ) -> Result<(), SignatureError> {
        let given = request
            .headers
            .get(self.header.as_str())
            .ok_or_else(|| SignatureError::Missing(self.header.clone()))?;
        if let Some((name, tolerance)) = &self.timestamp {
            let at = request
                .headers
                .get(name.as_str())
                .ok_or_else(|| SignatureError::Missing(name.clone()))?
                .to_str()
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .ok_or_else(|| SignatureError::Invalid(format!("{name} is not Unix seconds")))?;
            if now.abs_diff(at) > tolerance.as_secs() {
                return Err(SignatureError::Invalid(format!(
                    "{name} is more than {}s from now",
                    tolerance.as_secs()
                )));
            }
        }
        let digest = self.digest_of(request);
        if let Some(digest) = &digest {
            use sha2::Digest as _;
            let actual: String = sha2::Sha256::digest(request.body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if !bool::from(
                digest
                    .to_ascii_lowercase()
                    .as_bytes()
                    .ct_eq(actual.as_bytes()),
            ) {
                return Err(SignatureError::Invalid(format!(
                    "the body does not match its {} digest",
                    self.body_digest.as_deref().unwrap_or_default()
                )));
            }
        }
        let expected = self.sign(
            key,
            &self.signed_string(request, public_url, digest.is_some()),
        );
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(SignatureError::Invalid(format!(
                "{} does not match",
                self.header
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    /// Zoom's documented construction, computed independently here with the hmac crate.
    #[test]
    fn a_zoom_signature_verifies_and_an_altered_body_does_not() {
        let scheme = SignatureScheme {
            header: "x-zm-signature".into(),
            algorithm: Algorithm::HmacSha256,
            encoding: Encoding::Hex,
            prefix: "v0=".into(),
            signed: vec![
                SignedPart::Literal("v0:".into()),
                SignedPart::Header("x-zm-request-timestamp".into()),
                SignedPart::Literal(":".into()),
                SignedPart::Body,
            ],
            timestamp: Some(("x-zm-request-timestamp".into(), Duration::from_secs(300))),
            body_digest: None,
        };
        let body = br#"{"event":"phone.callee_ringing"}"#;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"secret").unwrap();
        mac.update(b"v0:1700000000:");
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let h = headers(&[
            ("x-zm-signature", &format!("v0={hex}")),
            ("x-zm-request-timestamp", "1700000000"),
        ]);
        let request = |body: &'static [u8]| Presented {
            method: "POST",
            target: "/z",
            headers: &h,
            body,
        };
        assert_eq!(
            scheme.verify(b"secret", &request(body), None, 1_700_000_010),
            Ok(())
        );
        assert!(matches!(
            scheme.verify(b"secret", &request(b"{}"), None, 1_700_000_010),
            Err(SignatureError::Invalid(_))
        ));
        assert!(matches!(
            scheme.verify(b"secret", &request(body), None, 1_700_009_000),
            Err(SignatureError::Invalid(_))
        ));
        let refused = |headers: &HeaderMap| {
            let r = Presented {
                method: "POST",
                target: "/z",
                headers,
                body,
            };
            scheme.verify(b"secret", &r, None, 1_700_000_010).is_err()
        };
        // Hostile headers: a timestamp that is not a number, a missing one, a signature of
        // another length.
        for (timestamp, signature) in [
            (Some("soon"), format!("v0={hex}")),
            (None, format!("v0={hex}")),
            (Some("1700000000"), "v0=".to_string()),
            (Some("1700000000"), format!("v0={hex}{hex}")),
        ] {
            let mut h = headers(&[("x-zm-signature", &signature)]);
            if let Some(t) = timestamp {
                h.insert("x-zm-request-timestamp", t.parse().unwrap());
            }
            assert!(refused(&h));
        }
        // A signature header whose bytes are not text.
        let mut h = headers(&[("x-zm-request-timestamp", "1700000000")]);
        h.insert(
            "x-zm-signature",
            axum::http::HeaderValue::from_bytes(&[0xff, 0xfe]).unwrap(),
        );
        assert!(refused(&h));
    }

    /// A challenge is answered only when its event and token are where declared and the
    /// token is text; anything else is not a challenge (it goes on as an event).
    #[test]
    fn a_challenge_answers_only_its_own_shape() {
        let challenge = Challenge {
            event: vec!["event".into()],
            equals: "endpoint.url_validation".into(),
            token: vec!["payload".into(), "plainToken".into()],
            reply_token: "plainToken".into(),
            reply_signed: "encryptedToken".into(),
        };
        let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        let answer = challenge
            .answer(
                &json(r#"{"event":"endpoint.url_validation","payload":{"plainToken":"t"}}"#),
                b"k",
            )
            .unwrap();
        assert_eq!(answer["plainToken"], "t");
        assert_eq!(answer["encryptedToken"].as_str().unwrap().len(), 64);
        for other in [
            r#"{"event":"phone.callee_ringing","payload":{"plainToken":"t"}}"#,
            r#"{"event":"endpoint.url_validation","payload":{"plainToken":5}}"#,
            r#"{"event":"endpoint.url_validation","payload":[]}"#,
            r#"{"event":["endpoint.url_validation"]}"#,
            r#"[]"#,
        ] {
            assert_eq!(challenge.answer(&json(other), b"k"), None, "{other}");
        }
    }
}
