//! `GET /admin/tail`: the live tail as Server-Sent Events. Each record is one event — `event:`
//! its kind (`event`, `dropped`, `delivery`, `reload`, `lagged`), `id:` its sequence number,
//! `data:` its JSON (`telemetry/tail.rs`). A subscriber first gets the kept records that pass
//! its filters (after `Last-Event-ID` when it reconnects), then one `live` event (no id; data
//! `{"kind": "live", "backlog": <records before it>}`) marking where history ends, then each
//! new record.

use crate::model::problem::Problem;
use crate::telemetry::tail::{Entry, Filter, Record, Tail};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

/// Query: `route`, `destination`, `type` (exact or `call.*`), `call`; unknown names are
/// refused (400), so a typo does not silently show everything.
pub async fn tail(
    State(tail): State<Tail>,
    filter: Result<Query<Filter>, QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, Problem> {
    let Query(filter) = filter.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-filter",
            "Invalid tail filter",
            format!(
                "{} (filters: route, destination, type, partitionkey)",
                e.body_text()
            ),
        )
    })?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let (backlog, receiver) = tail.subscribe(&filter, after);
    let last = backlog.last().map_or(after, |r| r.seq);
    let marker = Event::default()
        .event("live")
        .data(serde_json::json!({"kind": "live", "backlog": backlog.len()}).to_string());
    let live = stream::unfold(
        Live {
            receiver,
            filter,
            last,
            closed: tail.closed(),
        },
        |mut live| async move {
            let record = live.next().await?;
            Some((record, live))
        },
    );
    let events = stream::iter(backlog)
        .map(sse_event)
        .chain(stream::once(async { Ok(marker) }))
        .chain(live.map(sse_event));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A subscriber's live half: what comes after its backlog, until the gateway stops.
struct Live {
    receiver: broadcast::Receiver<Arc<Record>>,
    filter: Filter,
    /// The last record of the backlog: records up to it were sent already.
    last: u64,
    closed: watch::Receiver<bool>,
}

impl Live {
    async fn next(&mut self) -> Option<Arc<Record>> {
        loop {
            let next = tokio::select! {
                next = self.receiver.recv() => next,
                _ = self.closed.wait_for(|c| *c) => return None,
            };
            match next {
                Ok(record) if record.seq <= self.last || !self.filter.matches(&record) => {}
                Ok(record) => return Some(record),
                Err(RecvError::Lagged(missed)) => {
                    return Some(Arc::new(Record {
                        seq: self.last,
                        time: crate::telemetry::tail::rfc3339_now(),
                        entry: Entry::Lagged { missed },
                    }));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn sse_event(record: Arc<Record>) -> Result<Event, Infallible> {
    let data = serde_json::to_string(record.as_ref()).unwrap_or_else(|_| "{}".into());
    let event = Event::default().event(record.entry.kind()).data(data);
    Ok(match record.entry {
        // A lag notice repeats the last id the subscriber got: resuming there is right.
        Entry::Lagged { .. } => event,
        _ => event.id(record.seq.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::tail::RECENT_PER_ROUTE;

    fn reload(version: u64) -> Entry {
        Entry::Reload {
            outcome: "unchanged",
            version,
            detail: "test".into(),
        }
    }

    /// A subscriber that does not read while the gateway publishes more than the channel
    /// holds is told how many it missed, then follows again: memory stays bounded by the
    /// channel, whatever the subscriber does.
    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed_and_goes_on() {
        let tail = Tail::default();
        let (backlog, receiver) = tail.subscribe(&Filter::default(), 0);
        assert!(backlog.is_empty());
        let mut live = Live {
            receiver,
            filter: Filter::default(),
            last: 0,
            closed: tail.closed(),
        };
        let flood = 3000;
        for n in 0..flood {
            tail.publish(reload(n));
        }
        let first = live.next().await.unwrap();
        let Entry::Lagged { missed } = first.entry else {
            panic!("expected a lag notice, got {first:?}")
        };
        assert!(missed > 0 && missed < flood, "{missed}");
        let next = live.next().await.unwrap();
        assert_eq!(
            next.seq,
            missed + 1,
            "it resumes right after what it missed"
        );
        // The ring keeps only the last records for late subscribers.
        assert!(tail.subscribe(&Filter::default(), 0).0.len() <= RECENT_PER_ROUTE);
        tail.close();
        // Closed: the stream ends even with records waiting.
        let mut drained = 0;
        while live.next().await.is_some() {
            drained += 1;
            assert!(drained <= flood);
        }
    }
}
