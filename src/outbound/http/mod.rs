//! Outbound HTTP: the [`Outbound`] adapter of `url:` destinations. Sends stored requests with
//! the destination's credentials and extra headers, which are added here at send time and
//! never written to the store, and classifies each result once (`classify.rs`).

pub mod classify;

use crate::config::valid::HttpTarget;
use crate::model::message::{Message, Request};
use crate::model::outbound::BoxFuture;
use crate::model::outbound::{Attempt, AttemptOutcome, Outbound};
use crate::model::standard_webhooks::{self, Secret};
use classify::{AttemptResult, classify};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use std::time::Duration;

/// Largest reply body read from a receiver (the rest is dropped).
const MAX_REPLY: usize = 64 * 1024;
/// How much of a receiver's reply a dead letter keeps, in characters.
const EXCERPT: usize = 512;

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
    /// The OAuth 2.0 token endpoint gave no token (retried like a connect failure).
    #[error("cannot get an access token: {0}")]
    Token(String),
}

impl SendError {
    /// The classifier's view of this error.
    pub fn as_attempt_result(&self) -> AttemptResult<'static> {
        match self {
            SendError::Timeout(_) => AttemptResult::Timeout,
            SendError::Connect(_) | SendError::Token(_) => AttemptResult::Connect,
            SendError::Other(_) => AttemptResult::Other,
        }
    }
}

/// The process-wide HTTP client: one connection pool shared by every destination and the
/// fallback proxy, kept across reloads. Redirects are never followed (README "Running the gateway"): a 3xx is
/// the receiver's answer (following one would re-send a POST as a body-less GET and count
/// that as delivered), and the fallback proxy passes it back to its caller unchanged.
pub fn shared_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("callgate/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| e.to_string())
}

/// One `url:` destination: the shared client, the attempt timeout, the destination's
/// credentials and extra headers, and its URL's secrets, which stored messages carry only as
/// `${NAME}` (and without userinfo) and which are put back here, at send time.
pub struct HttpOutbound {
    http: reqwest::Client,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// (the URL as stored, the URL as sent), both without userinfo.
    base: (String, String),
    /// `sign: standard_webhooks` key.
    signer: Option<Secret>,
    /// Bearer tokens from a client credentials grant.
    oauth2: Option<TokenSource>,
}

/// Access tokens from an OAuth 2.0 client credentials grant (RFC 6749 §4.4), cached until a
/// minute before they expire. Tokens are never logged or put in an error.
struct TokenSource {
    settings: crate::config::OAuth2ClientCredentials,
    /// The token and when to fetch the next one.
    cached: tokio::sync::Mutex<Option<(secrecy::SecretString, tokio::time::Instant)>>,
}

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds; some servers send it as a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenSource {
    /// The cached token, or a new one when there is none or it expires within a minute.
    async fn token(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<secrecy::SecretString, SendError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = &*cached
            && tokio::time::Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let s = &self.settings;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", s.client_id.value()),
            ("client_secret", s.client_secret.value()),
        ];
        if let Some(scope) = &s.scope {
            form.push(("scope", scope));
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let response = http
            .post(s.token_url.value())
            .timeout(timeout)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| error(e, timeout))?;
        let status = response.status();
        if !status.is_success() {
            return Err(SendError::Token(format!(
                "the token endpoint answered {status}"
            )));
        }
        // Bounded like a receiver's reply: a broken endpoint's huge body is cut, not buffered.
        let bytes = read_bounded(response, timeout).await?;
        let answer: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
            SendError::Token("the token endpoint's answer has no access_token".into())
        })?;
        let lifetime = answer
            .expires_in
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(3600);
        let token = secrecy::SecretString::from(answer.access_token);
        let until = tokio::time::Instant::now() + Duration::from_secs(lifetime.saturating_sub(60));
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// Drops `used` from the cache (the receiver refused it), unless a newer one is there.
    async fn forget(&self, used: &secrecy::SecretString) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|(token, _)| token.expose_secret() == used.expose_secret())
        {
            *cached = None;
        }
    }
}

impl HttpOutbound {
    /// The adapter of a validated HTTP destination (its headers and key parsed already).
    pub fn new(http: reqwest::Client, timeout: Duration, target: &HttpTarget) -> HttpOutbound {
        HttpOutbound {
            http,
            timeout,
            headers: target.headers.clone(),
            base: (
                target.stored_url.clone(),
                target.sent_url.expose_secret().to_string(),
            ),
            signer: target.signer.clone(),
            oauth2: target.oauth2.clone().map(|settings| TokenSource {
                settings,
                cached: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The configured attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a message's request once and returns the receiver's reply (proxy mode passes it
    /// through). A signing destination adds the Standard Webhooks headers: `webhook-id` from
    /// the message (the same on every retry), `webhook-timestamp` of this attempt.
    pub async fn forward(&self, message: &Message) -> Result<Reply, SendError> {
        self.forward_within(message, self.timeout).await
    }

    /// [`forward`](Self::forward) with its own timeout (a proxy route's `forward_timeout`).
    pub async fn forward_within(
        &self,
        message: &Message,
        timeout: Duration,
    ) -> Result<Reply, SendError> {
        let Some(tokens) = &self.oauth2 else {
            return self.send_once(message, timeout, None).await;
        };
        let token = tokens.token(&self.http, timeout).await?;
        let reply = self.send_once(message, timeout, Some(&token)).await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        // The token was revoked or expired early: one new token, one more try.
        tokens.forget(&token).await;
        let token = tokens.token(&self.http, timeout).await?;
        self.send_once(message, timeout, Some(&token)).await
    }

    /// One request, with `bearer` as its `Authorization` when given.
    async fn send_once(
        &self,
        message: &Message,
        timeout: Duration,
        bearer: Option<&secrecy::SecretString>,
    ) -> Result<Reply, SendError> {
        let Request::Http(request) = &message.request else {
            return Err(SendError::Other("not an HTTP message".into()));
        };
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|e| SendError::Other(e.to_string()))?;
        let url = match request.url.strip_prefix(self.base.0.as_str()) {
            Some(rest) if self.base.0 != self.base.1 => format!("{}{rest}", self.base.1),
            _ => request.url.clone(),
        };
        let mut builder = self.http.request(method, url).timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some(secret) = &self.signer {
            let id = standard_webhooks::message_id(
                &message.route,
                &message.destination,
                &message.event_id,
            );
            let timestamp = crate::model::clock::now_ms() / 1000;
            let body = request.body.as_deref().unwrap_or_default();
            builder = builder
                .header(
                    standard_webhooks::WEBHOOK_SIGNATURE,
                    secret.sign(&id, timestamp, body.as_bytes()),
                )
                .header(standard_webhooks::WEBHOOK_ID, id)
                .header(standard_webhooks::WEBHOOK_TIMESTAMP, timestamp.to_string());
        }
        if let Some(token) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| SendError::Token("the access token is not a header value".into()))?;
            value.set_sensitive(true);
            builder = builder.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await.map_err(|e| error(e, timeout))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_bounded(response, timeout).await?;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// At most MAX_REPLY bytes of a response body, whatever the other side sends: a huge body
/// is never buffered whole (the rest is dropped with the connection).
async fn read_bounded(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, SendError> {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_REPLY {
        match response.chunk().await.map_err(|e| error(e, timeout))? {
            Some(chunk) => {
                bytes.extend_from_slice(&chunk[..chunk.len().min(MAX_REPLY - bytes.len())])
            }
            None => break,
        }
    }
    Ok(bytes)
}

/// A request's error, classified: timeouts name the timeout that ran out.
fn error(e: reqwest::Error, timeout: Duration) -> SendError {
    // The URL may hold secrets (`?api_key=`): it never goes into an error, which reaches
    // logs, the dead letters and problem bodies sent back to webhook senders.
    let e = e.without_url();
    if e.is_timeout() {
        SendError::Timeout(timeout)
    } else if e.is_connect() {
        SendError::Connect(e.to_string())
    } else {
        SendError::Other(e.to_string())
    }
}

impl Outbound for HttpOutbound {
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Attempt> {
        Box::pin(async move { attempt_of(&self.forward(message).await) })
    }
}

/// What one HTTP request came to, classified once (the workers' attempts and the proxy's
/// forwards alike): the outcome and its metric label. Nothing is copied.
pub fn classify_forward(forwarded: &Result<Reply, SendError>) -> (AttemptOutcome, &'static str) {
    match forwarded {
        Ok(reply) => classify(&AttemptResult::Status(reply.status, &reply.headers)),
        Err(e) => classify(&e.as_attempt_result()),
    }
}

/// A worker's attempt: [`classify_forward`] plus what the dead-letter log keeps (status,
/// error, the start of the reply).
fn attempt_of(forwarded: &Result<Reply, SendError>) -> Attempt {
    let (outcome, label) = classify_forward(forwarded);
    match forwarded {
        Ok(reply) => Attempt {
            outcome,
            label,
            status: Some(reply.status.as_u16()),
            error: reply.status.is_redirection().then(|| {
                let location = reply
                    .headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or("(no Location)");
                format!("the receiver redirected to {location}; redirects are not followed")
            }),
            excerpt: Some(excerpt(&reply.body)),
        },
        Err(e) => Attempt {
            outcome,
            label,
            status: None,
            error: Some(e.to_string()),
            excerpt: None,
        },
    }
}

fn excerpt(body: &str) -> String {
    match body.char_indices().nth(EXCERPT) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_string(),
    }
}
