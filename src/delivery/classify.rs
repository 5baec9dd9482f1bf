//! The one place an attempt's result becomes a decision: delivered, retry (when), or dead
//! letter, with the metric label that says why (DESIGN.md §7, linkerd2-proxy style).

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

/// What an attempt's result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// 2xx: done.
    Delivered,
    /// Worth retrying: connect errors, timeouts, 408, 429, 5xx. `after` is the receiver's
    /// `Retry-After`, if it gave one.
    Retry {
        /// The receiver's requested wait.
        after: Option<Duration>,
    },
    /// Retrying will not help: other 4xx, 3xx, an invalid request.
    Dead,
}

/// The result of one HTTP attempt as the classifier sees it.
pub enum AttemptResult<'a> {
    /// The receiver answered.
    Status(StatusCode, &'a HeaderMap),
    /// No answer within the timeout.
    Timeout,
    /// Could not connect (refused, DNS, TLS).
    Connect,
    /// The request could not be built or sent for another reason.
    Other,
}

/// Classifies an attempt; the label is the metric label of the outcome.
pub fn classify(result: &AttemptResult<'_>) -> (Decision, &'static str) {
    match result {
        AttemptResult::Status(status, _) if status.is_success() => {
            (Decision::Delivered, "delivered")
        }
        AttemptResult::Status(status, headers)
            if *status == StatusCode::REQUEST_TIMEOUT
                || *status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error() =>
        {
            (
                Decision::Retry {
                    after: retry_after(headers),
                },
                "retry_status",
            )
        }
        AttemptResult::Status(..) => (Decision::Dead, "dead_status"),
        AttemptResult::Timeout => (Decision::Retry { after: None }, "retry_timeout"),
        AttemptResult::Connect => (Decision::Retry { after: None }, "retry_connect"),
        AttemptResult::Other => (Decision::Retry { after: None }, "retry_error"),
    }
}

/// `Retry-After` as seconds or an HTTP date; capped at one hour.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
            Duration::from_secs(secs as u64)
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_once() {
        let empty = HeaderMap::new();
        let mut later = HeaderMap::new();
        later.insert(RETRY_AFTER, "7".parse().unwrap());
        let cases = [
            (
                AttemptResult::Status(StatusCode::OK, &empty),
                Decision::Delivered,
            ),
            (
                AttemptResult::Status(StatusCode::NO_CONTENT, &empty),
                Decision::Delivered,
            ),
            (
                AttemptResult::Status(StatusCode::SERVICE_UNAVAILABLE, &later),
                Decision::Retry {
                    after: Some(Duration::from_secs(7)),
                },
            ),
            (
                AttemptResult::Status(StatusCode::TOO_MANY_REQUESTS, &empty),
                Decision::Retry { after: None },
            ),
            (
                AttemptResult::Status(StatusCode::REQUEST_TIMEOUT, &empty),
                Decision::Retry { after: None },
            ),
            (
                AttemptResult::Status(StatusCode::BAD_REQUEST, &empty),
                Decision::Dead,
            ),
            (
                AttemptResult::Status(StatusCode::NOT_FOUND, &empty),
                Decision::Dead,
            ),
            (AttemptResult::Timeout, Decision::Retry { after: None }),
            (AttemptResult::Connect, Decision::Retry { after: None }),
        ];
        for (result, expected) in cases {
            assert_eq!(classify(&result).0, expected);
        }
    }

    #[test]
    fn retry_after_dates_are_read() {
        let mut h = HeaderMap::new();
        let at = chrono::Utc::now() + chrono::Duration::seconds(30);
        h.insert(RETRY_AFTER, at.to_rfc2822().parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(
            wait <= Duration::from_secs(30) && wait >= Duration::from_secs(28),
            "{wait:?}"
        );
    }
}
