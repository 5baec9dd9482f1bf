//! Where a SignalR client connects (docs/protocols.md §1.1, §1.2, §1.5, §2.1–§2.2): the RTE token
//! response, endpoint normalisation, the negotiate and WebSocket URLs the official JS client
//! builds, and the reconnect schedule. Pure.

use crate::config::hub_base;
use crate::outbound::signalr::protocol::member;
use reqwest::Url;
use serde_json::Value;
use std::time::Duration;

/// What `GET {api}/token/{userid}/rte/` answers: `{"WssEndpoint": …, "Token": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RteToken {
    /// The hub endpoint, normalised to `https://…` (see [`hub_base`]).
    pub endpoint: Url,
    /// The JWT, sent as the bearer token.
    pub token: String,
}

impl RteToken {
    /// Parses the token response. Keys are matched in any case (the seed's own sample reads
    /// `WSSEndpoint`); the endpoint may be `wss://…`, `https://…` or a bare `host/path`.
    pub fn parse(body: &[u8]) -> Result<RteToken, String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the RTE token response is not JSON: {e}"))?;
        if !value.is_object() {
            return Err("the RTE token response is not a JSON object".into());
        }
        let field = |name: &str| {
            member(&value, name)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
        };
        let endpoint = field("WssEndpoint").ok_or("the RTE token response has no WssEndpoint")?;
        let token = field("Token").ok_or("the RTE token response has no Token")?;
        Ok(RteToken {
            endpoint: hub_base(endpoint)?,
            token: token.to_string(),
        })
    }
}

/// `{base}/negotiate?…&negotiateVersion=1`: `/negotiate` appended to the path, the base's
/// query kept, `negotiateVersion=1` added unless present (`HttpConnection.ts`).
pub fn negotiate_url(base: &Url) -> Url {
    let mut url = base.clone();
    let path = format!("{}/negotiate", base.path().trim_end_matches('/'));
    url.set_path(&path);
    if !url.query_pairs().any(|(k, _)| k == "negotiateVersion") {
        url.query_pairs_mut().append_pair("negotiateVersion", "1");
    }
    url
}

/// The WebSocket URL: the base with `http` → `ws` (`https` → `wss`), plus `id=<connection
/// token>` after negotiate, and `access_token=<token>` for servers that read it there
/// (browsers cannot set headers on a WebSocket).
pub fn websocket_url(
    base: &Url,
    connection_token: Option<&str>,
    access_token: Option<&str>,
) -> Url {
    let mut url = base.clone();
    let scheme = if base.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    // `Url::set_scheme` refuses special-to-special changes like http → ws; rebuild instead.
    let text = format!("{scheme}{}", &url.as_str()[base.scheme().len()..]);
    url = Url::parse(&text).expect("the same URL with a ws scheme parses");
    {
        let mut query = url.query_pairs_mut();
        if let Some(id) = connection_token {
            query.append_pair("id", id);
        }
        if let Some(token) = access_token {
            query.append_pair("access_token", token);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

/// The reconnect delays: 0, 2, 10 and 30 s (the official clients' schedule), then every
/// 30 s forever (callgate never gives up), each stretched by up to `jitter` (0.0–1.0) of
/// itself so that many clients do not reconnect in step.
pub fn reconnect_delay(attempt: u32, jitter: f64) -> Duration {
    const SCHEDULE: [u64; 4] = [0, 2, 10, 30];
    let base = Duration::from_secs(SCHEDULE[(attempt as usize).min(SCHEDULE.len() - 1)]);
    base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_in_every_spelling_seen() {
        let documented =
            br#"{"WssEndpoint":"wss://rte-silox.enreachvoice.com/rte","Token":"eyJ.a.b"}"#;
        let t = RteToken::parse(documented).unwrap();
        assert_eq!(
            t.endpoint.as_str(),
            "https://rte-silox.enreachvoice.com/rte"
        );
        assert_eq!(t.token, "eyJ.a.b");
        let sample = br#"{"WSSEndpoint":"rte-silox.enreachvoice.com/rte","token":"x"}"#;
        assert_eq!(
            RteToken::parse(sample).unwrap().endpoint.as_str(),
            "https://rte-silox.enreachvoice.com/rte"
        );
        let https = br#"{"wssendpoint":"https://h/rte","TOKEN":"x"}"#;
        assert_eq!(
            RteToken::parse(https).unwrap().endpoint.as_str(),
            "https://h/rte"
        );
        for (bad, why) in [
            (&b"[]"[..], "not a JSON object"),
            (b"nope", "not JSON"),
            (br#"{"Token":"x"}"#, "no WssEndpoint"),
            (br#"{"WssEndpoint":"wss://h/rte","Token":""}"#, "no Token"),
            (br#"{"WssEndpoint":"ftp://h/rte","Token":"x"}"#, "scheme"),
        ] {
            let e = RteToken::parse(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn urls_as_the_official_client_builds_them() {
        let base = hub_base("wss://rte.example/rte").unwrap();
        assert_eq!(
            negotiate_url(&base).as_str(),
            "https://rte.example/rte/negotiate?negotiateVersion=1"
        );
        let with_query = hub_base("https://h/hub/?tenant=a&negotiateVersion=1").unwrap();
        assert_eq!(
            negotiate_url(&with_query).as_str(),
            "https://h/hub/negotiate?tenant=a&negotiateVersion=1"
        );
        assert_eq!(
            websocket_url(&base, Some("ctok-1"), None).as_str(),
            "wss://rte.example/rte?id=ctok-1"
        );
        let local = hub_base("http://127.0.0.1:8080/rte").unwrap();
        assert_eq!(
            websocket_url(&local, None, Some("a b")).as_str(),
            "ws://127.0.0.1:8080/rte?access_token=a+b"
        );
        assert_eq!(
            websocket_url(&local, None, None).as_str(),
            "ws://127.0.0.1:8080/rte"
        );
    }

    #[test]
    fn reconnects_follow_the_schedule_then_every_30_s() {
        let secs = |a, j| reconnect_delay(a, j).as_secs_f64();
        assert_eq!(secs(0, 0.5), 0.0);
        assert_eq!(secs(1, 0.0), 2.0);
        assert_eq!(secs(2, 0.0), 10.0);
        assert_eq!(secs(3, 0.0), 30.0);
        assert_eq!(secs(1000, 0.0), 30.0);
        assert!((secs(1000, 1.0) - 36.0).abs() < 1e-9);
        assert!((secs(2, 7.0) - 12.0).abs() < 1e-9, "jitter is clamped");
    }
}
