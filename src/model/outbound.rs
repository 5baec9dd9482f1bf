//! The contract of a transport out (README "How it fits together"): [`Outbound`] sends one [`Message`] and
//! classifies the result into one [`AttemptOutcome`], so the workers never see a status code
//! or a socket error. Implementations live in `outbound/`; delivery reaches them only through
//! this trait.

use super::message::Message;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future (the object-safe return of [`Outbound::send`] and the store traits).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one attempt to deliver a message came to, as the transport classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver has it.
    Delivered,
    /// Not sent, on purpose, and never will be (no subscriber of the hub wants this event):
    /// settled like a delivery, reported as skipped with the reason.
    Skipped {
        /// Why, as a metric label ([`label`]).
        reason: &'static str,
    },
    /// Worth trying again (connect error, timeout, 408, 429, 5xx). `after` is the receiver's
    /// own requested wait (`Retry-After`), which overrides a shorter scheduled one.
    Retry {
        /// The receiver's requested wait.
        after: Option<Duration>,
    },
    /// Retrying will not help (other 4xx, a 3xx, a request that cannot be built).
    Dead {
        /// Why, for the dead letter.
        reason: String,
    },
    /// Not attempted, and not the message's fault (e.g. no one to deliver to yet): offer it
    /// again after this long, without spending the retry budget.
    Defer {
        /// How long to wait.
        until: Duration,
    },
}

/// The one vocabulary of attempt outcomes, as metric labels (`callgate_deliveries_total
/// {outcome}`), tail reasons and dead-letter logs: every transport classifies into these.
pub mod label {
    /// The receiver has it.
    pub const DELIVERED: &str = "delivered";
    /// The receiver answered a status worth retrying (408, 429, 5xx).
    pub const RETRY_STATUS: &str = "retry_status";
    /// No reply within the timeout.
    pub const RETRY_TIMEOUT: &str = "retry_timeout";
    /// No connection (refused, reset, DNS, TLS; a hub connection lost mid-send).
    pub const RETRY_CONNECT: &str = "retry_connect";
    /// Another transport error.
    pub const RETRY_ERROR: &str = "retry_error";
    /// The receiver answered a status retrying will not change (other 4xx, a 3xx).
    pub const DEAD_STATUS: &str = "dead_status";
    /// The message cannot be sent at all (a request that cannot be built).
    pub const DEAD_UNSENDABLE: &str = "dead_unsendable";
    /// Hub clients follow the entity but none subscribed to this event.
    pub const SKIPPED_NOT_SUBSCRIBED: &str = "skipped_not_subscribed";
    /// Nobody to deliver to yet (no hub client for the entity): deferred.
    pub const DEFERRED_NO_SUBSCRIBER: &str = "deferred_no_subscriber";
}

/// One attempt's outcome with what the dead-letter log and the metrics keep of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The classification.
    pub outcome: AttemptOutcome,
    /// The metric label of the outcome: one of [`label`].
    pub label: &'static str,
    /// The receiver's status code, when it answered (HTTP).
    pub status: Option<u16>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// The start of the receiver's reply.
    pub excerpt: Option<String>,
}

/// An outbound transport for one destination, chosen when the snapshot is built.
pub trait Outbound: Send + Sync {
    /// Sends a message once and classifies the result.
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Attempt>;
}
