//! A call's timeline (README "Call timeline"): every archived event of a call, user, leg or
//! phone number across vendors and legs, in the order received, each with its vendor
//! payload, canonical event, lifecycle verdict and, per destination, its fate at intake and
//! every delivery outcome since (status and the start of the reply). `GET /admin/calls/{id}`,
//! the admin UI's timeline page and `callgate calls show` all read it; `search` lists the
//! calls a term finds.

use crate::delivery::QueueError;
use crate::delivery::archive::{Archive, Archived, Outcome, Query, Record, event_keys};
use crate::model::event::CallEvent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most records one timeline or search reads.
pub const MAX_RECORDS: usize = 20_000;
/// Most calls a term that is not a partitionkey may name.
const MAX_PARTITIONS: usize = 50;

/// A call's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    /// What was looked up.
    pub id: String,
    /// The ordering keys (calls, users) its events belong to.
    pub partitionkeys: Vec<String>,
    /// Its events, in the order received.
    pub events: Vec<TimelineEvent>,
}

/// One event of a timeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TimelineEvent {
    /// When callgate accepted it, Unix ms.
    pub received_at: i64,
    /// The route.
    pub route: String,
    /// The source vendor.
    pub vendor: String,
    /// The vendor payload it came in (the whole payload, which may carry other events).
    pub payload: serde_json::Value,
    /// The canonical event.
    pub event: CallEvent,
    /// The lifecycle's verdict: `apply`, `duplicate` or `stale`.
    pub verdict: String,
    /// Why it was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Per destination: its fate at intake and its delivery outcomes.
    pub destinations: Vec<DestinationHistory>,
}

/// What happened to one event for one destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DestinationHistory {
    /// The destination's name.
    pub destination: String,
    /// Its fate at intake (`queued`, `forwarded`, `skipped`, `dead`, `duplicate`), or
    /// `replayed` for a replay's messages.
    pub status: String,
    /// Why it was skipped or dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Delivery outcomes, in order (attempts, with status and the start of the reply).
    pub outcomes: Vec<Outcome>,
}

/// A call a search found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallSummary {
    /// Its ordering key (the call or user id): what `GET /admin/calls/{id}` takes.
    pub partitionkey: String,
    /// First and last receive time, Unix ms.
    pub first: i64,
    /// Last receive time, Unix ms.
    pub last: i64,
    /// Events archived.
    pub events: usize,
    /// Vendors it came from.
    pub vendors: Vec<String>,
    /// Its event types, in order of first appearance.
    pub types: Vec<String>,
}

/// Every record of the calls `id` names: the call itself when `id` is a partitionkey (the
/// index), else the calls whose events have `id` as a search term (found by a scan of the
/// archive, then read through the index), oldest first.
async fn find(archive: &dyn Archive, id: &str) -> Result<Vec<Archived>, QueueError> {
    let indexed = archive
        .read(Query {
            key: Some(id.to_string()),
            limit: MAX_RECORDS,
            ..Query::default()
        })
        .await?;
    if !indexed.is_empty() {
        return Ok(indexed);
    }
    let hits = archive
        .read(Query {
            term: Some(id.to_string()),
            limit: MAX_RECORDS,
            ..Query::default()
        })
        .await?;
    let mut calls: Vec<String> = Vec::new();
    for archived in &hits {
        if let Record::Received(received) = &archived.record {
            for e in &received.events {
                let key = e.event.effective_partitionkey().to_string();
                if !calls.contains(&key) && calls.len() < MAX_PARTITIONS {
                    calls.push(key);
                }
            }
        }
    }
    let mut records: Vec<Archived> = Vec::new();
    for call in calls {
        records.extend(
            archive
                .read(Query {
                    key: Some(call),
                    limit: MAX_RECORDS,
                    ..Query::default()
                })
                .await?,
        );
    }
    records.sort_by_key(|a| a.seq);
    records.dedup_by_key(|a| a.seq);
    records.truncate(MAX_RECORDS);
    Ok(records)
}

/// The timeline of `id` (a call, leg, user, partitionkey or phone number), from the whole
/// archive. An id nothing matches gives an empty timeline.
pub async fn timeline(archive: &dyn Archive, id: &str) -> Result<Timeline, QueueError> {
    let records = find(archive, id).await?;
    let mut events = Vec::new();
    let mut partitionkeys: Vec<String> = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for archived in &records {
        match &archived.record {
            Record::Received(received) => {
                for archived_event in &received.events {
                    let mut keys = Vec::new();
                    event_keys(&archived_event.event, &mut keys);
                    if !keys.iter().any(|k| k == id) {
                        continue;
                    }
                    let key = archived_event.event.effective_partitionkey().to_string();
                    if !partitionkeys.contains(&key) {
                        partitionkeys.push(key);
                    }
                    events.push(TimelineEvent {
                        received_at: received.at,
                        route: received.route.clone(),
                        vendor: received.vendor.clone(),
                        payload: received.payload.clone(),
                        event: archived_event.event.clone(),
                        verdict: archived_event.verdict.clone(),
                        reason: archived_event.reason.clone(),
                        destinations: archived_event
                            .fates
                            .iter()
                            .map(|f| DestinationHistory {
                                destination: f.destination.clone(),
                                status: f.status.clone(),
                                reason: f.reason.clone(),
                                outcomes: Vec::new(),
                            })
                            .collect(),
                    });
                }
            }
            Record::Outcome(outcome) => outcomes.push(outcome.clone()),
        }
    }
    for outcome in outcomes {
        // The latest applied event with this id and route carries it (a replay's outcomes
        // follow the original's; a duplicate dropped by the lifecycle sent nothing).
        let Some(event) = events.iter_mut().rev().find(|e| {
            e.verdict == "apply" && e.event.id == outcome.event_id && e.route == outcome.route
        }) else {
            continue;
        };
        match event
            .destinations
            .iter_mut()
            .find(|d| d.destination == outcome.destination)
        {
            Some(history) => history.outcomes.push(outcome),
            None => event.destinations.push(DestinationHistory {
                destination: outcome.destination.clone(),
                status: "replayed".into(),
                reason: None,
                outcomes: vec![outcome],
            }),
        }
    }
    Ok(Timeline {
        id: id.to_string(),
        partitionkeys,
        events,
    })
}

/// The calls `term` finds (any search key), most recent first, at most `limit`.
pub async fn search(
    archive: &dyn Archive,
    term: &str,
    limit: usize,
) -> Result<Vec<CallSummary>, QueueError> {
    let records = find(archive, term).await?;
    let mut calls: BTreeMap<String, CallSummary> = BTreeMap::new();
    for archived in &records {
        let Record::Received(received) = &archived.record else {
            continue;
        };
        for archived_event in &received.events {
            let event = &archived_event.event;
            let mut keys = Vec::new();
            event_keys(event, &mut keys);
            if !keys.iter().any(|k| k == term) {
                continue;
            }
            let key = event.effective_partitionkey().to_string();
            let call = calls.entry(key.clone()).or_insert_with(|| CallSummary {
                partitionkey: key,
                first: received.at,
                last: received.at,
                events: 0,
                vendors: Vec::new(),
                types: Vec::new(),
            });
            call.last = call.last.max(received.at);
            call.first = call.first.min(received.at);
            call.events += 1;
            if !call.vendors.contains(&received.vendor) {
                call.vendors.push(received.vendor.clone());
            }
            if !call.types.contains(&event.event_type) {
                call.types.push(event.event_type.clone());
            }
        }
    }
    let mut found: Vec<CallSummary> = calls.into_values().collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.last));
    found.truncate(limit);
    Ok(found)
}
