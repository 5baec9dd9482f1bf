//! `callgate replay` and `callgate calls`: clients of a running gateway's archive endpoints
//! (`POST /admin/replay`, `GET /admin/calls`, `GET /admin/calls/{id}`), so that a replay
//! queues through the gateway's own store, lanes and per-call turns.

use super::admin_call as call;
use anyhow::Context as _;
use callgate::replay::{ReplayReport, ReplayRequest};
use callgate::timeline::{CallSummary, Timeline};
use std::process::ExitCode;

/// Prints a line to stdout; a closed pipe (`| head`) ends the output quietly instead of
/// panicking as `println!` would.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }};
}

fn base(admin: &str) -> &str {
    admin.trim_end_matches('/')
}

/// `callgate replay`: prints the report (every message with `--dry-run`, as JSON lines).
pub async fn replay(
    admin: &str,
    authorization: Option<String>,
    request: &ReplayRequest,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::new();
    let body = call(
        admin,
        authorization,
        client
            .post(format!("{}/admin/replay", base(admin)))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(request)?),
    )
    .await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let report: ReplayReport = serde_json::from_value(body).context("unreadable replay report")?;
    for message in &report.messages {
        out!("{}", serde_json::to_string(message)?);
    }
    let verb = if request.dry_run {
        "would queue"
    } else {
        "queued"
    };
    let mut line = format!(
        "replay {}: {} payloads read, {verb} {} messages",
        report.replay, report.payloads, report.queued
    );
    if report.already_replayed > 0 {
        line.push_str(&format!(
            ", {} already queued by an earlier run of this replay",
            report.already_replayed
        ));
    }
    for (why, n) in &report.skipped {
        line.push_str(&format!(", {n} skipped ({why})"));
    }
    if !report.superseded.is_empty() {
        line.push_str(&format!(
            "; left out, as they went on after --until (--include-superseded sends them): {}",
            report.superseded.join(" ")
        ));
    }
    eprintln!("{line}");
    Ok(ExitCode::SUCCESS)
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}

/// `callgate calls search TERM`: one line per call found.
pub async fn search(
    admin: &str,
    authorization: Option<String>,
    term: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::new();
    let mut url = reqwest::Url::parse(&format!("{}/admin/calls", base(admin)))
        .with_context(|| format!("--admin `{admin}` is not a URL"))?;
    url.query_pairs_mut().append_pair("q", term);
    let body = call(admin, authorization, client.get(url)).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&body["calls"])?);
        return Ok(ExitCode::SUCCESS);
    }
    let calls: Vec<CallSummary> =
        serde_json::from_value(body["calls"].clone()).context("unreadable search answer")?;
    if calls.is_empty() {
        eprintln!("no archived call matches `{term}`");
        return Ok(ExitCode::from(1));
    }
    for c in calls {
        out!(
            "{}\t{} … {}\t{} events\t{}\t{}",
            c.partitionkey,
            rfc3339(c.first),
            rfc3339(c.last),
            c.events,
            c.vendors.join(","),
            c.types.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `callgate calls show ID`: the call's events in order, each with its destinations' fates
/// and outcomes.
pub async fn show(
    admin: &str,
    authorization: Option<String>,
    id: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::new();
    let mut url = reqwest::Url::parse(&format!("{}/admin/calls/", base(admin)))
        .with_context(|| format!("--admin `{admin}` is not a URL"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--admin `{admin}` cannot take a path"))?
        .pop_if_empty()
        .push(id);
    let body = call(admin, authorization, client.get(url)).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let timeline: Timeline = serde_json::from_value(body).context("unreadable timeline")?;
    out!(
        "{}: {} events ({})",
        timeline.id,
        timeline.events.len(),
        timeline.partitionkeys.join(", ")
    );
    for e in &timeline.events {
        let leg = e
            .event
            .data
            .call
            .as_ref()
            .and_then(|c| c.leg_id.as_deref())
            .unwrap_or("-");
        let verdict = match &e.reason {
            Some(reason) => format!("dropped: {reason}"),
            None => e.verdict.clone(),
        };
        out!(
            "{}  {:<18} {:<10} leg {:<12} {}  [{}]",
            rfc3339(e.received_at),
            e.event.event_type,
            e.vendor,
            leg,
            e.event.id,
            verdict
        );
        for d in &e.destinations {
            let mut line = format!("      → {:<16} {}", d.destination, d.status);
            if let Some(reason) = &d.reason {
                line.push_str(&format!(" ({reason})"));
            }
            for o in &d.outcomes {
                line.push_str(&format!(
                    "; attempt {} {}{}",
                    o.attempt,
                    o.outcome,
                    o.status.map(|s| format!(" {s}")).unwrap_or_default()
                ));
            }
            out!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
