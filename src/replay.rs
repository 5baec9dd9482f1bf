//! Replay (README "Replay"): sends a time window of the archive again, through the queue
//! (lanes, retries and dead letters apply), with the original idempotency keys.
//!
//! - Default: the archived canonical events the lifecycle applied are rendered through
//!   today's mapping of the named destination (or of `--vendor` for `--to-url`).
//! - `--reroute`: the archived payloads run through today's routes and mappings as if they
//!   arrived now, judged by a lifecycle tracker of the replay's own (the live one is neither
//!   consulted nor changed, so nothing is dropped as stale for having been seen live).
//!
//! Order: the window is sent in archive order, each event under its call's intake turn, so a
//! call's replayed messages queue in their original order and a live payload of the call
//! waits for them. The rule for calls that went on (README "Replay"): with `--until`, a call
//! or user with archived events after the window is left out (`superseded`): replaying it
//! would end its receiver on an old state; `--include-superseded` sends it anyway. Without
//! `--until`, events archived while the replay ran are sent after it too, so each call ends
//! on its latest state.
//!
//! Idempotency: each message keeps its event id (and so its `webhook-id`); its dedupe key is
//! the replay's key (the mode, the target and today's snapshot hash) with the event's, so
//! running the same replay again after a crash queues only what the first run did not.

use crate::delivery::archive::{Archive, Archived, Query, Record};
use crate::delivery::{EventBatch, NewMessage, QueueError, hex16};
use crate::intake::Intake;
use crate::lifecycle::{Lifecycle, LifecycleLimits};
use crate::mapping::encode::type_matches;
use crate::model::event::CallEvent;
use crate::model::inbound::VerifiedInbound;
use crate::pipeline::{self, Routing};
use crate::route::{Destination, Route};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics as m;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// Archive records read at a time: what a replay holds in memory.
const PAGE: usize = 1000;
/// Messages a dry run lists at most (it counts them all).
const MAX_LISTED: usize = 1000;
/// Catch-up rounds of an open-ended replay (events archived while it ran).
const CATCH_UP_ROUNDS: usize = 5;

/// What to replay: the admin API's `POST /admin/replay` body and `callgate replay`'s flags.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Start of the window: RFC 3339 (`2026-12-04T09:00Z`, seconds optional) or a duration
    /// ago (`2h`).
    pub since: String,
    /// End of the window (exclusive), same forms; none: up to now, and what arrives while
    /// the replay runs.
    #[serde(default)]
    pub until: Option<String>,
    /// Only payloads of this route (default: every route; `--destination` then picks the
    /// routes that have it).
    #[serde(default)]
    pub route: Option<String>,
    /// The destination to send to, by name (a destination of the route).
    #[serde(default)]
    pub destination: Option<String>,
    /// A URL no route names, with `vendor` to render for.
    #[serde(default)]
    pub to_url: Option<String>,
    /// The vendor whose mapping renders for `to_url`.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Only this call, leg, user or phone number (any archive search key).
    #[serde(default)]
    pub call: Option<String>,
    /// Only these event types (`call.*`, `presence.changed`).
    #[serde(default, rename = "type")]
    pub types: Option<String>,
    /// Run the archived payloads through today's routes and mappings.
    #[serde(default)]
    pub reroute: bool,
    /// Send nothing: report what would be sent.
    #[serde(default)]
    pub dry_run: bool,
    /// Also send calls that went on after `until`.
    #[serde(default)]
    pub include_superseded: bool,
}

/// What a replay did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplayReport {
    /// The replay's key (16 hex digits): the same replay run again has the same key.
    pub replay: String,
    /// The window, Unix ms.
    pub since: i64,
    /// The window's end, Unix ms (none: open-ended).
    pub until: Option<i64>,
    /// Archived payloads read.
    pub payloads: usize,
    /// Messages queued (dry run: that would be).
    pub queued: usize,
    /// Messages an earlier run of the same replay queued already.
    pub already_replayed: usize,
    /// Events not sent, by reason (`type filter`, `no template`, `superseded`, ...).
    pub skipped: BTreeMap<String, usize>,
    /// Calls or users left out because they went on after `until`.
    pub superseded: Vec<String>,
    /// Dry run: the first 1,000 messages, in order (`route`, `destination`, `partitionkey`,
    /// `event_id`, `event_type`, `request`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<serde_json::Value>,
}

/// Why a replay did not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The request is wrong (a flag, a name, a time); answered 400.
    #[error("{0}")]
    Invalid(String),
    /// The store has no archive (`archive.retention: 0s`); answered 409.
    #[error("the store keeps no archive (archive.retention is 0s): nothing to replay")]
    NoArchive,
    /// The store failed; answered 503.
    #[error(transparent)]
    Store(#[from] QueueError),
}

/// Reads a time: RFC 3339 (seconds optional) or a duration before `now_ms`. Unix ms.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now_ms.saturating_sub(crate::delivery::ms(ago)));
    }
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    // `2026-12-04T09:00Z`: RFC 3339 wants seconds; add them.
    let with_seconds = text
        .char_indices()
        .filter(|(_, c)| *c == 'T')
        .map(|(i, _)| i)
        .next()
        .and_then(|t| {
            let rest = &text[t + 1..];
            let end = rest.find(['Z', 'z', '+', '-'])?;
            (rest[..end].len() == 5).then(|| format!("{}:00{}", &text[..t + 1 + end], &rest[end..]))
        });
    parse(text)
        .or_else(|| with_seconds.as_deref().and_then(parse))
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .ok_or_else(|| {
            format!(
                "`{text}` is not a time: give RFC 3339 (2026-12-04T09:00Z) or a duration ago (2h)"
            )
        })
}

/// Where a replay sends: per route, the destination its events are rendered for.
struct Plan {
    /// (route, destination or all of the route's destinations when `None`).
    routes: Vec<(Arc<Route>, Option<Arc<Destination>>)>,
}

/// Checks the request against today's snapshot.
fn plan(snapshot: &Snapshot, request: &ReplayRequest) -> Result<Plan, ReplayError> {
    let invalid = |s: String| Err(ReplayError::Invalid(s));
    let routes: Vec<Arc<Route>> = match &request.route {
        Some(name) => match snapshot.route(name) {
            Some(route) => vec![route.clone()],
            None => return invalid(format!("no route `{name}` in today's configuration")),
        },
        None => snapshot.routes().to_vec(),
    };
    match (&request.destination, &request.to_url, &request.vendor) {
        (Some(_), Some(_), _) => invalid("give --destination or --to-url, not both".into()),
        (Some(_), None, Some(_)) => invalid("--vendor goes with --to-url".into()),
        (None, Some(_), None) => invalid("--to-url needs --vendor (whose mapping renders)".into()),
        (None, None, Some(_)) => invalid("--vendor goes with --to-url".into()),
        (Some(name), None, None) => {
            let routes: Vec<_> = routes
                .into_iter()
                .filter_map(|r| {
                    let dest = r.destinations.iter().find(|d| &d.name == name)?.clone();
                    Some((r, Some(dest)))
                })
                .collect();
            if routes.is_empty() {
                return invalid(match &request.route {
                    Some(route) => format!("route `{route}` has no destination `{name}`"),
                    None => format!("no route has a destination `{name}`"),
                });
            }
            Ok(Plan { routes })
        }
        (None, Some(url), Some(vendor)) => {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| ReplayError::Invalid(format!("--to-url `{url}`: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return invalid(format!("--to-url `{url}`: only http and https"));
            }
            if snapshot
                .mappings
                .vendor(vendor)
                .and_then(|v| v.encoder())
                .is_none()
            {
                return invalid(format!("vendor `{vendor}` has no templates to render with"));
            }
            Ok(Plan {
                routes: routes
                    .into_iter()
                    .map(|r| {
                        let dest = Arc::new(snapshot.to_url_destination(&r.name, url, vendor));
                        (r, Some(dest))
                    })
                    .collect(),
            })
        }
        (None, None, None) if request.reroute => Ok(Plan {
            routes: routes.into_iter().map(|r| (r, None)).collect(),
        }),
        (None, None, None) => invalid(
            "name where to send: --destination NAME, or --to-url URL --vendor V (or --reroute \
             for every destination of the route)"
                .into(),
        ),
    }
}

/// Runs a replay on today's `snapshot`: reads the window from `archive`, renders and queues
/// through `intake`'s store, taking each call's intake turn.
pub async fn replay(
    snapshot: &Snapshot,
    intake: &Intake,
    archive: Option<&dyn Archive>,
    request: &ReplayRequest,
) -> Result<ReplayReport, ReplayError> {
    let archive = archive.ok_or(ReplayError::NoArchive)?;
    let now = crate::model::clock::now_ms();
    let since = parse_time(&request.since, now).map_err(ReplayError::Invalid)?;
    let until = match &request.until {
        Some(text) => Some(parse_time(text, now).map_err(ReplayError::Invalid)?),
        None => None,
    };
    if until.is_some_and(|until| until <= since) {
        return Err(ReplayError::Invalid(
            "--until is not after --since: the window is empty".into(),
        ));
    }
    let plan = plan(snapshot, request)?;
    let target = match (&request.destination, &request.to_url, &request.vendor) {
        (Some(d), _, _) => format!("destination {d}"),
        (_, Some(url), Some(vendor)) => format!("url {vendor} {url}"),
        _ => "every destination".into(),
    };
    let key = hex16(&format!(
        "{} {target} {}",
        if request.reroute { "reroute" } else { "events" },
        snapshot.content_hash
    ));
    let mut run = Run {
        snapshot,
        intake,
        request,
        plan,
        key,
        report: ReplayReport::default(),
        lifecycles: BTreeMap::new(),
        replayed: HashSet::new(),
        left_out: BTreeSet::new(),
    };
    run.report.replay = run.key.clone();
    run.report.since = since;
    run.report.until = until;

    // Calls that went on after the window: their keys only, read a page at a time.
    let mut superseded: HashSet<(String, String)> = HashSet::new();
    if let Some(until) = until.filter(|_| !request.include_superseded) {
        let mut after = None;
        loop {
            let page = archive
                .read(Query {
                    since: until,
                    term: request.call.clone(),
                    after,
                    limit: PAGE,
                    ..Query::default()
                })
                .await?;
            for (route, events) in page.iter().filter_map(received) {
                for event in events {
                    superseded.insert((
                        route.to_string(),
                        event.effective_partitionkey().to_string(),
                    ));
                }
            }
            after = page.last().map(|a| a.seq);
            if page.len() < PAGE {
                break;
            }
        }
    }
    // The window, a page at a time (memory holds one page); an open window ends now.
    let end = until.unwrap_or(now + 1);
    let mut last = None;
    loop {
        let page = archive
            .read(Query {
                since,
                until: Some(end),
                key: None,
                term: request.call.clone(),
                after: last,
                limit: PAGE,
            })
            .await?;
        last = page.last().map(|a| a.seq).or(last);
        run.replay_records(&page, &superseded, false).await?;
        if page.len() < PAGE {
            break;
        }
    }
    // Open window: what the live gateway archived meanwhile for the calls replayed goes
    // after, so that each call ends on its latest state.
    if until.is_none() {
        for _ in 0..CATCH_UP_ROUNDS {
            let page = archive
                .read(Query {
                    since,
                    term: request.call.clone(),
                    after: last,
                    limit: PAGE,
                    ..Query::default()
                })
                .await?;
            if page.is_empty() {
                break;
            }
            last = page.last().map(|a| a.seq);
            run.replay_records(&page, &superseded, true).await?;
        }
    }
    run.report.superseded = std::mem::take(&mut run.left_out).into_iter().collect();
    tracing::info!(replay = %run.key, since, until, queued = run.report.queued, dry_run = request.dry_run, "replay done");
    Ok(run.report)
}

/// A received record's route and applied events.
fn received(archived: &Archived) -> Option<(&str, impl Iterator<Item = &CallEvent>)> {
    match &archived.record {
        Record::Received(r) => Some((
            r.route.as_str(),
            r.events
                .iter()
                .filter(|e| e.verdict == "apply")
                .map(|e| &e.event),
        )),
        _ => None,
    }
}

/// What a batch of records is replayed under: the calls left out as superseded and, when
/// catching up, only the calls already replayed.
#[derive(Clone, Copy)]
struct Scope<'a> {
    superseded: &'a HashSet<(String, String)>,
    catch_up: bool,
}

struct Run<'a> {
    snapshot: &'a Snapshot,
    intake: &'a Intake,
    request: &'a ReplayRequest,
    plan: Plan,
    key: String,
    report: ReplayReport,
    /// `--reroute`: the replay's own lifecycle tracker per route.
    lifecycles: BTreeMap<String, Lifecycle>,
    /// (route, partitionkey) of the calls replayed.
    replayed: HashSet<(String, String)>,
    /// Partitionkeys left out as superseded.
    left_out: BTreeSet<String>,
}

impl Run<'_> {
    fn skip(&mut self, why: &str) {
        *self.report.skipped.entry(why.to_string()).or_default() += 1;
    }

    fn wanted(&self, event: &CallEvent) -> bool {
        self.request
            .types
            .as_deref()
            .is_none_or(|pattern| type_matches(pattern, &event.event_type))
    }

    /// Replays `records`; `catch_up`: only events of calls already replayed.
    async fn replay_records(
        &mut self,
        records: &[Archived],
        superseded: &HashSet<(String, String)>,
        catch_up: bool,
    ) -> Result<(), ReplayError> {
        let scope = Scope {
            superseded,
            catch_up,
        };
        for archived in records {
            let Record::Received(received) = &archived.record else {
                continue;
            };
            let Some((route, dest)) = self
                .plan
                .routes
                .iter()
                .find(|(r, _)| r.name == received.route)
                .cloned()
            else {
                continue;
            };
            self.report.payloads += 1;
            if self.request.reroute {
                self.reroute(&route, dest.as_deref(), received, scope)
                    .await?;
            } else if let Some(dest) = dest {
                for archived_event in received.events.iter().filter(|e| e.verdict == "apply") {
                    self.resend(&route, &dest, &archived_event.event, scope)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Whether the event may go: its type is wanted and its call did not go on past the
    /// window (counted otherwise).
    fn admit(&mut self, route: &str, event: &CallEvent, scope: Scope<'_>) -> bool {
        if !self.wanted(event) {
            self.skip("type filter");
            return false;
        }
        // A payload found by `--call` may carry other calls' events too.
        if let Some(call) = &self.request.call {
            let mut keys = Vec::new();
            crate::delivery::archive::event_keys(event, &mut keys);
            if !keys.contains(call) {
                self.skip("another call");
                return false;
            }
        }
        let partition = (
            route.to_string(),
            event.effective_partitionkey().to_string(),
        );
        if scope.catch_up && !self.replayed.contains(&partition) {
            return false;
        }
        if scope.superseded.contains(&partition) {
            self.skip("superseded");
            self.left_out.insert(partition.1);
            return false;
        }
        self.replayed.insert(partition);
        true
    }

    /// Default mode: one archived event, rendered for `dest` by today's mapping.
    async fn resend(
        &mut self,
        route: &Route,
        dest: &Destination,
        event: &CallEvent,
        scope: Scope<'_>,
    ) -> Result<(), ReplayError> {
        if !self.admit(&route.name, event, scope) {
            return Ok(());
        }
        let routing = pipeline::encode_event(&self.snapshot.mappings, route, dest, event);
        let messages = self.messages(vec![(dest.name.clone(), routing)]);
        let keys = [event.effective_partitionkey()];
        self.queue(route, keys.into_iter(), &event.id, messages)
            .await
    }

    /// `--reroute`: an archived payload through today's route, mappings and the replay's
    /// own lifecycle tracker.
    async fn reroute(
        &mut self,
        route: &Route,
        dest: Option<&Destination>,
        received: &crate::delivery::archive::Received,
        scope: Scope<'_>,
    ) -> Result<(), ReplayError> {
        let inbound = VerifiedInbound::from_archive(received.payload.clone(), received.params);
        let lifecycle = self
            .lifecycles
            .entry(route.name.clone())
            .or_insert_with(|| Lifecycle::new(LifecycleLimits::default()))
            .clone();
        let mut today = route.clone();
        today.lifecycle = lifecycle;
        let decoded = match pipeline::decode(&self.snapshot.mappings, &today, &inbound) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::info!(replay = %self.key, route = %route.name, error = %e, "archived payload not understood today: skipped");
                self.skip("not understood today");
                return Ok(());
            }
        };
        let accepted = pipeline::route_events(&self.snapshot.mappings, &today, decoded);
        // The replay's tracker keeps what it applied: its verdicts stand for the next payload.
        accepted.commit();
        for fate in &accepted.fates {
            let pipeline::Fate::Applied(applied) = fate else {
                self.skip("dropped by the lifecycle");
                continue;
            };
            if !self.admit(&route.name, &applied.event, scope) {
                continue;
            }
            let routed: Vec<(String, Routing)> = applied
                .routed
                .iter()
                .filter(|(name, _)| dest.is_none_or(|d| &d.name == name))
                .cloned()
                .collect();
            let messages = self.messages(routed);
            let keys = [applied.event.effective_partitionkey()];
            self.queue(route, keys.into_iter(), &applied.event.id, messages)
                .await?;
        }
        Ok(())
    }

    /// The messages of routed results (skips counted).
    fn messages(&mut self, routed: Vec<(String, Routing)>) -> Vec<NewMessage> {
        let mut out = Vec::new();
        for (_, routing) in routed {
            match routing {
                Routing::Message(message) => out.push(NewMessage {
                    message,
                    failure: None,
                }),
                Routing::Skipped(why) => self.skip(why.label()),
                Routing::Failed { message, error, .. } => out.push(NewMessage {
                    message,
                    failure: Some(error),
                }),
            }
        }
        out
    }

    /// Queues one event's messages under its call's turn (or, dry, reports them).
    async fn queue<'k>(
        &mut self,
        route: &Route,
        keys: impl Iterator<Item = &'k str>,
        event_id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<(), ReplayError> {
        if messages.is_empty() {
            return Ok(());
        }
        if self.request.dry_run {
            let room = MAX_LISTED.saturating_sub(self.report.messages.len());
            for new in messages.iter().take(room) {
                let m = &new.message;
                self.report.messages.push(serde_json::json!({
                    "route": m.route,
                    "destination": m.destination,
                    "partitionkey": m.partitionkey,
                    "event_id": m.event_id,
                    "event_type": m.event_type,
                    "request": m.request,
                    "failure": new.failure,
                }));
            }
            self.report.queued += messages.len();
            return Ok(());
        }
        let count = messages.len();
        let destinations: Vec<String> = messages
            .iter()
            .map(|n| n.message.destination.clone())
            .collect();
        let batch = EventBatch {
            dedupe_key: format!(
                "replay|{}|{}|{}|{}",
                self.key,
                route.name,
                destinations.join(","),
                event_id
            ),
            messages,
        };
        let _turn = self.intake.turns.take(&route.name, keys).await;
        let stored = self.intake.producer.enqueue(vec![batch]).await?;
        if stored.duplicates > 0 {
            self.report.already_replayed += count;
            return Ok(());
        }
        self.report.queued += stored.stored;
        for destination in destinations {
            metrics::counter!(m::REPLAYED, "route" => route.name.clone(), "destination" => destination)
                .increment(1);
        }
        self.intake.wake.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_or_a_duration_ago() {
        let now = 1_800_000_000_000;
        assert_eq!(
            parse_time("2026-12-04T09:00Z", now).unwrap(),
            parse_time("2026-12-04T09:00:00Z", now).unwrap()
        );
        assert_eq!(
            parse_time("2026-12-04T10:00+01:00", now).unwrap(),
            parse_time("2026-12-04T09:00:00Z", now).unwrap()
        );
        assert_eq!(parse_time("2h", now).unwrap(), now - 7_200_000);
        for bad in [
            "",
            "yesterday",
            "2026-12-04",
            "2026-13-04T09:00Z",
            "9:00",
            "\u{0}",
        ] {
            let e = parse_time(bad, now).unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }
}
