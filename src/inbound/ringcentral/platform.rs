//! The RingCentral platform client (ringcentral-platform.md A.2–A.4): one OAuth session per
//! client — a JWT bearer grant once, then single-use refresh tokens, refreshed ahead of
//! expiry and one at a time — and rate limits honoured: after a 429 nothing of that group is
//! sent until its `Retry-After` (30 s when absent) has passed, since a request inside the
//! penalty restarts it. Errors are classified once, here. Credentials never reach a log.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// RingCentral's rate-limit groups (A.3). Requests of one group share a penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// `/restapi/oauth/*`: 5 requests a minute by default.
    Auth,
    /// Reads (`GET` subscription, renew).
    Light,
    /// Writes (create, update, delete subscription).
    Medium,
}

/// Why a platform call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlatformError {
    /// 429: nothing of `group` is sent before `until`.
    #[error("rate limited ({group:?} group): retry after {after:?}")]
    RateLimited {
        /// The group penalised.
        group: Group,
        /// How long the penalty lasts from when it was received.
        after: Duration,
    },
    /// The credentials were refused (400/401 on the token endpoint); the message names the
    /// error code (`OAU-…`), never the credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The token endpoint answered `invalid_grant` (RFC 6749 §5.2): the refresh token is dead
    /// (revoked, expired, or used already); only a new JWT grant helps.
    #[error("invalid grant: {0}")]
    InvalidGrant(String),
    /// 404 (`CMN-102`, `SUB-507`): the subscription is gone.
    #[error("not found: {0}")]
    NotFound(String),
    /// Another 4xx, with RingCentral's `errorCode` and message (`SUB-505`, `SUB-525`…).
    #[error("refused ({status}): {code} {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// `errorCode`.
        code: String,
        /// `message`.
        message: String,
    },
    /// 5xx, a timeout or no connection: retry with backoff.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl PlatformError {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            PlatformError::RateLimited { .. } => "rate_limited",
            PlatformError::Auth(_) | PlatformError::InvalidGrant(_) => "auth",
            PlatformError::NotFound(_) => "not_found",
            PlatformError::Refused { .. } => "refused",
            PlatformError::Unavailable(_) => "unavailable",
        }
    }
}

/// App credentials for the JWT flow.
#[derive(Clone)]
pub struct Credentials {
    /// `https://platform.ringcentral.com` (or the sandbox, or a test server).
    pub server: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The user's JWT credential.
    pub jwt: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Session {
    access_token: Option<String>,
    refresh_token: Option<String>,
    /// When the access token should be refreshed (half its lifetime).
    refresh_at: Option<Instant>,
}

/// A platform client: cheap to share behind an `Arc`.
pub struct Platform {
    http: reqwest::Client,
    credentials: Credentials,
    session: tokio::sync::Mutex<Session>,
    penalties: Mutex<HashMap<Group, Instant>>,
}

/// Token endpoint answer (A.2).
#[derive(serde::Deserialize)]
struct TokenReply {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

impl Platform {
    /// A client for `credentials`, sending with `http`.
    pub fn new(http: reqwest::Client, credentials: Credentials) -> Platform {
        Platform {
            http,
            credentials,
            session: tokio::sync::Mutex::default(),
            penalties: Mutex::default(),
        }
    }

    /// Sends `method path` with a JSON `body`, authenticated, in `group`; the JSON reply
    /// (`Value::Null` for an empty one). A 401 refreshes the session once and retries.
    pub async fn call(
        &self,
        group: Group,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PlatformError> {
        for attempt in 0..2 {
            let token = self.access_token().await?;
            self.wait_penalty(group).await;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.server()))
                .bearer_auth(&token)
                .timeout(Duration::from_secs(30));
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.to_string());
            }
            let response = request
                .send()
                .await
                .map_err(|e| PlatformError::Unavailable(e.without_url().to_string()))?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                // The session was revoked or the token expired early: one refresh, once.
                let mut session = self.session.lock().await;
                session.access_token = None;
                session.refresh_at = None;
                continue;
            }
            return self.reply(group, response).await;
        }
        Err(PlatformError::Auth("401 after a fresh token".into()))
    }

    fn server(&self) -> &str {
        self.credentials.server.trim_end_matches('/')
    }

    /// The current access token: a JWT grant the first time, then a refresh when half its
    /// lifetime has passed (single-flight: callers wait on the session lock). Only an
    /// `invalid_grant` answer ends the session (one new JWT grant); on any other failure — a
    /// 429, a 5xx, a timeout — the refresh token is kept for the next try, since a new JWT
    /// grant is a new OAuth session and RingCentral caps sessions per user and app (the oldest
    /// is revoked, and a WebSocket recovery of this app then fails).
    pub async fn access_token(&self) -> Result<String, PlatformError> {
        let mut session = self.session.lock().await;
        let fresh = session.refresh_at.is_some_and(|at| Instant::now() < at);
        if let (Some(token), true) = (&session.access_token, fresh) {
            return Ok(token.clone());
        }
        let reply = match session.refresh_token.clone() {
            Some(refresh) => match self
                .token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
                .await
            {
                Err(PlatformError::InvalidGrant(why)) => {
                    tracing::warn!(%why, "refresh token refused (invalid_grant): a new JWT grant");
                    session.refresh_token = None;
                    self.jwt_grant().await?
                }
                other => other?,
            },
            None => self.jwt_grant().await?,
        };
        let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(3600).max(2));
        session.access_token = Some(reply.access_token.clone());
        session.refresh_token = reply.refresh_token;
        session.refresh_at = Some(Instant::now() + lifetime / 2);
        Ok(reply.access_token)
    }

    async fn jwt_grant(&self) -> Result<TokenReply, PlatformError> {
        let jwt = self.credentials.jwt.clone();
        self.token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &jwt),
        ])
        .await
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenReply, PlatformError> {
        self.wait_penalty(Group::Auth).await;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(format!("{}/restapi/oauth/token", self.server()))
            .basic_auth(
                &self.credentials.client_id,
                Some(&self.credentials.client_secret),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| PlatformError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        let value = match self.reply(Group::Auth, response).await {
            Ok(value) => value,
            Err(PlatformError::Refused { code, message, .. }) if code == "invalid_grant" => {
                return Err(PlatformError::InvalidGrant(message));
            }
            Err(PlatformError::Refused { code, message, .. })
                if status == reqwest::StatusCode::BAD_REQUEST
                    || status == reqwest::StatusCode::UNAUTHORIZED =>
            {
                return Err(PlatformError::Auth(format!("{code} {message}")));
            }
            Err(other) => return Err(other),
        };
        serde_json::from_value(value)
            .map_err(|e| PlatformError::Unavailable(format!("unexpected token reply: {e}")))
    }

    /// Waits out a penalty of `group`, if one is running.
    async fn wait_penalty(&self, group: Group) {
        let until = self
            .penalties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&group)
            .copied();
        if let Some(until) = until
            && until > Instant::now()
        {
            tracing::info!(?group, wait = ?until - Instant::now(), "rate-limit penalty: waiting");
            tokio::time::sleep_until(until).await;
        }
    }

    /// Classifies a response, recording a 429's penalty.
    async fn reply(
        &self,
        group: Group,
        response: reqwest::Response,
    ) -> Result<Value, PlatformError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| PlatformError::Unavailable(e.without_url().to_string()))?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(value);
        }
        // RFC 6749 §5.2's `error` names an OAuth failure (`invalid_grant`); RingCentral's
        // `errorCode` (`OAU-211`) comes beside it.
        let code = (value["error"] == "invalid_grant")
            .then_some("invalid_grant")
            .or_else(|| value["errorCode"].as_str())
            .or_else(|| value["errors"][0]["errorCode"].as_str())
            .or_else(|| value["error"].as_str())
            .unwrap_or("")
            .to_string();
        let message = value["message"]
            .as_str()
            .or_else(|| value["errors"][0]["message"].as_str())
            .or_else(|| value["error_description"].as_str())
            .unwrap_or("")
            .to_string();
        Err(match status.as_u16() {
            429 => {
                let after = retry_after.unwrap_or(Duration::from_secs(30));
                self.penalties
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(group, Instant::now() + after);
                PlatformError::RateLimited { group, after }
            }
            404 => PlatformError::NotFound(format!("{code} {message}")),
            400..=499 => PlatformError::Refused {
                status: status.as_u16(),
                code,
                message,
            },
            _ => PlatformError::Unavailable(format!("HTTP {status} {code} {message}")),
        })
    }
}
/// A RingCentral platform client (its own OAuth session) for `server` with the app's
/// client id, client secret and JWT.
pub fn platform(
    http: &reqwest::Client,
    server: &str,
    [client_id, client_secret, jwt]: [&crate::config::EnvString; 3],
) -> std::sync::Arc<Platform> {
    std::sync::Arc::new(Platform::new(
        http.clone(),
        Credentials {
            server: server.to_string(),
            client_id: client_id.value().to_string(),
            client_secret: client_secret.value().to_string(),
            jwt: jwt.value().to_string(),
        },
    ))
}
