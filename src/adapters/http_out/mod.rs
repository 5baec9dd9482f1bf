//! Outbound HTTP: sends stored messages to receivers with the destination's credentials and
//! extra headers, which are added here at send time and never written to the store.

use crate::config::{Config, DestinationConfig};
use crate::delivery::NewTask;
use crate::delivery::classify::AttemptResult;
use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::time::Duration;

/// Largest reply body read from a receiver (the rest is dropped).
const MAX_REPLY: usize = 64 * 1024;

/// A receiver's reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body as text (lossy UTF-8, at most 64 KiB).
    pub body: String,
}

/// Why a request got no reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// No reply within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connection refused, DNS or TLS failure.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Anything else (invalid URL or method, body error).
    #[error("request failed: {0}")]
    Other(String),
}

impl SendError {
    /// The classifier's view of this error.
    pub fn as_attempt_result(&self) -> AttemptResult<'static> {
        match self {
            SendError::Timeout(_) => AttemptResult::Timeout,
            SendError::Connect(_) => AttemptResult::Connect,
            SendError::Other(_) => AttemptResult::Other,
        }
    }
}

/// Credentials and extra headers of one destination.
#[derive(Debug, Clone, Default)]
struct DestinationHeaders(Vec<(HeaderName, HeaderValue)>);

/// The shared outbound client.
pub struct OutboundClient {
    http: reqwest::Client,
    timeout: Duration,
    destinations: HashMap<String, DestinationHeaders>,
}

impl OutboundClient {
    /// A client for every destination of `config`, with `config.delivery.timeout`.
    pub fn new(config: &Config) -> Result<OutboundClient, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("callgate/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| e.to_string())?;
        let mut destinations = HashMap::new();
        for route in &config.routes {
            for dest in &route.to {
                destinations.insert(format!("{}/{}", route.name, dest.name), headers_for(dest)?);
            }
        }
        Ok(OutboundClient {
            http,
            timeout: config.delivery.timeout,
            destinations,
        })
    }

    /// The configured attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a stored message once.
    pub async fn send(&self, task: &NewTask) -> Result<Reply, SendError> {
        let key = format!("{}/{}", task.route, task.destination);
        let method = Method::from_bytes(task.record.method.as_bytes())
            .map_err(|e| SendError::Other(e.to_string()))?;
        let mut request = self
            .http
            .request(method, &task.record.url)
            .timeout(self.timeout);
        for (name, value) in &task.record.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(extra) = self.destinations.get(&key) {
            for (name, value) in &extra.0 {
                request = request.header(name, value);
            }
        }
        if let Some(body) = &task.record.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.map_err(|e| self.error(e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| self.error(e))?;
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_REPLY)]).into_owned();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// The underlying client, for the fallback reverse proxy.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn error(&self, e: reqwest::Error) -> SendError {
        if e.is_timeout() {
            SendError::Timeout(self.timeout)
        } else if e.is_connect() {
            SendError::Connect(e.to_string())
        } else {
            SendError::Other(e.to_string())
        }
    }
}

fn headers_for(dest: &DestinationConfig) -> Result<DestinationHeaders, String> {
    let mut out = Vec::new();
    let bad = |what: &str| format!("destination `{}`: invalid {what}", dest.name);
    for (name, value) in &dest.headers {
        out.push((
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("header name"))?,
            HeaderValue::from_str(value.value())
                .map_err(|_| bad(&format!("value of header {name}")))?,
        ));
    }
    if let Some(auth) = &dest.auth {
        let value = match (&auth.basic, &auth.bearer) {
            (Some(basic), _) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    basic.username.value(),
                    basic.password.value()
                ))
            ),
            (None, Some(token)) => format!("Bearer {}", token.value()),
            (None, None) => String::new(),
        };
        if !value.is_empty() {
            let mut value = HeaderValue::from_str(&value).map_err(|_| bad("credentials"))?;
            value.set_sensitive(true);
            out.push((AUTHORIZATION, value));
        }
    }
    Ok(DestinationHeaders(out))
}
