//! The one place an HTTP attempt's result becomes an [`AttemptOutcome`]: delivered, retry
//! (when), or dead letter, with the metric label that says why (README "Running the gateway",
//! linkerd2-proxy style).

use crate::model::outbound::{AttemptOutcome, label};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

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
pub fn classify(result: &AttemptResult<'_>) -> (AttemptOutcome, &'static str) {
    match result {
        AttemptResult::Status(status, _) if status.is_success() => {
            (AttemptOutcome::Delivered, label::DELIVERED)
        }
        AttemptResult::Status(status, headers)
            if *status == StatusCode::REQUEST_TIMEOUT
                || *status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error() =>
        {
            (
                AttemptOutcome::Retry {
                    after: retry_after(headers),
                },
                label::RETRY_STATUS,
            )
        }
        AttemptResult::Status(status, _) => (
            AttemptOutcome::Dead {
                reason: format!("the receiver answered {status}"),
            },
            label::DEAD_STATUS,
        ),
        AttemptResult::Timeout => (AttemptOutcome::Retry { after: None }, label::RETRY_TIMEOUT),
        AttemptResult::Connect => (AttemptOutcome::Retry { after: None }, label::RETRY_CONNECT),
        AttemptResult::Other => (AttemptOutcome::Retry { after: None }, label::RETRY_ERROR),
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
                AttemptOutcome::Delivered,
            ),
            (
                AttemptResult::Status(StatusCode::NO_CONTENT, &empty),
                AttemptOutcome::Delivered,
            ),
            (
                AttemptResult::Status(StatusCode::SERVICE_UNAVAILABLE, &later),
                AttemptOutcome::Retry {
                    after: Some(Duration::from_secs(7)),
                },
            ),
            (
                AttemptResult::Status(StatusCode::TOO_MANY_REQUESTS, &empty),
                AttemptOutcome::Retry { after: None },
            ),
            (
                AttemptResult::Status(StatusCode::REQUEST_TIMEOUT, &empty),
                AttemptOutcome::Retry { after: None },
            ),
            (
                AttemptResult::Status(StatusCode::BAD_REQUEST, &empty),
                AttemptOutcome::Dead {
                    reason: "the receiver answered 400 Bad Request".into(),
                },
            ),
            (
                AttemptResult::Status(StatusCode::NOT_FOUND, &empty),
                AttemptOutcome::Dead {
                    reason: "the receiver answered 404 Not Found".into(),
                },
            ),
            (
                AttemptResult::Timeout,
                AttemptOutcome::Retry { after: None },
            ),
            (
                AttemptResult::Connect,
                AttemptOutcome::Retry { after: None },
            ),
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
