//! Every metric name callgate exports, and the Prometheus recorder behind `/metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Inbound requests, by `route` and HTTP `status`.
pub const REQUESTS: &str = "callgate_requests_total";
/// Decoded events, by source `vendor` and canonical `type`.
pub const EVENTS: &str = "callgate_events_total";
/// Events a destination had no template or type filter for, by `route`, `destination`, `type`.
pub const SKIPPED: &str = "callgate_events_skipped_total";
/// Events the lifecycle tracker dropped, by `route` and `reason` (`duplicate`, `stale`).
pub const DROPPED: &str = "callgate_events_dropped_total";
/// Events acknowledged without queueing because their id was seen within the dedupe window.
pub const DEDUPED: &str = "callgate_events_deduplicated_total";
/// Delivery attempts, by `destination` and `outcome` (the classifier's label).
pub const DELIVERIES: &str = "callgate_deliveries_total";
/// Attempt latency in seconds, by `destination`.
pub const ATTEMPT_SECONDS: &str = "callgate_delivery_attempt_seconds";
/// Messages waiting, over all destinations.
pub const QUEUE_DEPTH: &str = "callgate_queue_depth";
/// Transactions the SQLite store committed (each one fsync of the WAL, `synchronous=FULL`).
pub const STORE_COMMITS: &str = "callgate_store_commits_total";
/// Commands (enqueues, leases, settlements) those transactions carried: divided by
/// [`STORE_COMMITS`], the mean group-commit batch size.
pub const STORE_COMMIT_COMMANDS: &str = "callgate_store_commit_commands_total";
/// 1 while the store's disk is full (its last write failed with no space), else 0.
pub const STORE_FULL: &str = "callgate_store_full";
/// Messages moved to the dead letters, by `destination`.
pub const DEAD_LETTERS: &str = "callgate_dead_letters_total";
/// Archive records that could not be written (the payload or outcome itself was taken).
pub const ARCHIVE_FAILURES: &str = "callgate_archive_failures_total";
/// Messages queued by replays, by `route` and `destination`.
pub const REPLAYED: &str = "callgate_replayed_total";

/// Messages a lane deferred without an attempt, by `destination` and `reason`
/// (`breaker_open`, `max_in_flight`, `rate_limited`).
pub const DEFERRED: &str = "callgate_deliveries_deferred_total";
/// Circuit breaker state by `destination`: 0 closed, 1 open, 2 half-open.
pub const BREAKER_STATE: &str = "callgate_breaker_state";
/// Times a destination's breaker opened, by `destination`.
pub const BREAKER_OPENED: &str = "callgate_breaker_opened_total";
/// 1 while the RingCentral subscription keeper of `route` holds an active subscription.
pub const RC_SUBSCRIPTION_ACTIVE: &str = "callgate_ringcentral_subscription_active";
/// Seconds until the kept subscription of `route` expires, as of the keeper's last look.
pub const RC_SUBSCRIPTION_EXPIRES: &str = "callgate_ringcentral_subscription_expires_seconds";
/// Subscription renewals, by `route`.
pub const RC_SUBSCRIPTION_RENEWALS: &str = "callgate_ringcentral_subscription_renewals_total";
/// Keeper failures, by `route` and `reason` (`rate_limited`, `auth`, `refused`, `unavailable`).
pub const RC_SUBSCRIPTION_FAILURES: &str = "callgate_ringcentral_subscription_failures_total";
/// Reloads by `result` (`ok`, `rejected`, `unchanged`).
pub const RELOADS: &str = "callgate_reloads_total";
/// 1 when the last reload attempt was rejected (its error is in `/admin/mappings`), else 0.
pub const RELOAD_FAILING: &str = "callgate_reload_failing";
/// The version of the snapshot being served.
pub const SNAPSHOT_VERSION: &str = "callgate_snapshot_version";
/// 1 while a source is connected and subscribed, by `source`.
pub const SOURCE_CONNECTED: &str = "callgate_source_connected";
/// Reconnects of a source, by `source`.
pub const SOURCE_RECONNECTS: &str = "callgate_source_reconnects_total";
/// Subscriptions a hub refused, by `source`.
pub const SOURCE_SUBSCRIPTION_FAILURES: &str = "callgate_source_subscription_failures_total";
/// Times a source reconnected without recovering its session, so that events sent while it
/// was away may be lost, by `source` (RingCentral WebSocket).
pub const SOURCE_GAPS: &str = "callgate_source_possible_gaps_total";
/// Replayed notifications dropped because their `uuid` was already taken, by `source`.
pub const SOURCE_REPLAYS_DROPPED: &str = "callgate_source_replays_dropped_total";
/// Connections open on a listener, by `listener` (`public`, `admin`).
pub const CONNECTIONS_OPEN: &str = "callgate_connections_open";

/// The `type` label of an event: its canonical type, `vendor.<source vendor>` for vendor
/// events (whose names come from payload text, so they could be anything), else `other`.
/// Label values never carry raw payload text: the series count stays bounded.
pub fn type_label(event_type: &str, source_vendor: &str) -> std::borrow::Cow<'static, str> {
    use std::borrow::Cow;
    // A canonical type is labelled with the table's own `&'static str`: no allocation on
    // the hot path.
    match crate::model::event::CANONICAL_TYPES
        .iter()
        .find(|t| **t == event_type)
    {
        Some(canonical) => Cow::Borrowed(canonical),
        None if event_type.starts_with("vendor.") => Cow::Owned(format!("vendor.{source_vendor}")),
        None => Cow::Borrowed("other"),
    }
}

/// Latency buckets of `callgate_delivery_attempt_seconds`, seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
];

/// Runs the recorder's upkeep (draining histogram buckets) every `every`, forever.
pub async fn upkeep(every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        handle().run_upkeep();
    }
}

/// The process-wide recorder (installed on first use) and its renderer.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(ATTEMPT_SECONDS.to_string()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "Inbound requests by route and HTTP status");
    metrics::describe_counter!(EVENTS, "Decoded events by source vendor and canonical type");
    metrics::describe_counter!(
        SKIPPED,
        "Events a destination did not take, by reason (type filter, no template, same notification, no directory entry)"
    );
    metrics::describe_counter!(DROPPED, "Events dropped by the lifecycle tracker");
    metrics::describe_counter!(DEDUPED, "Events acknowledged as duplicates of stored ones");
    metrics::describe_counter!(DELIVERIES, "Delivery attempts by destination and outcome");
    metrics::describe_histogram!(
        ATTEMPT_SECONDS,
        metrics::Unit::Seconds,
        "Delivery attempt latency"
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Messages waiting for delivery");
    metrics::describe_counter!(STORE_COMMITS, "Commits of the SQLite store's writer");
    metrics::describe_gauge!(
        STORE_FULL,
        "1 while the store's disk is full (its last write failed for want of space)"
    );
    metrics::describe_counter!(
        STORE_COMMIT_COMMANDS,
        "Commands in the SQLite store's commits (divided by commits: the mean batch)"
    );
    metrics::describe_counter!(DEAD_LETTERS, "Messages moved to the dead letters");
    metrics::describe_counter!(
        ARCHIVE_FAILURES,
        "Archive records that could not be written"
    );
    metrics::describe_counter!(REPLAYED, "Messages queued by replays");
    metrics::describe_counter!(DEFERRED, "Messages deferred by a lane without an attempt");
    metrics::describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker: 0 closed, 1 open, 2 half-open"
    );
    metrics::describe_counter!(BREAKER_OPENED, "Times a circuit breaker opened");
    metrics::describe_counter!(RELOADS, "Reloads of mappings and routes by result");
    metrics::describe_gauge!(
        RELOAD_FAILING,
        "1 while the last reload attempt was rejected"
    );
    metrics::describe_gauge!(
        SNAPSHOT_VERSION,
        "Version of the mappings and routes served"
    );
    metrics::describe_gauge!(CONNECTIONS_OPEN, "Connections open on a listener");
    metrics::describe_gauge!(
        SOURCE_CONNECTED,
        "1 while a source is connected and subscribed"
    );
    metrics::describe_counter!(SOURCE_RECONNECTS, "Reconnects of a source");
    metrics::describe_counter!(SOURCE_SUBSCRIPTION_FAILURES, "Subscriptions a hub refused");
    metrics::describe_counter!(
        SOURCE_GAPS,
        "Reconnects without session recovery: events sent meanwhile may be lost"
    );
    metrics::describe_counter!(
        SOURCE_REPLAYS_DROPPED,
        "Replayed notifications dropped as already taken"
    );
    metrics::describe_counter!(
        RC_SUBSCRIPTION_RENEWALS,
        "RingCentral subscription renewals"
    );
    metrics::describe_counter!(
        RC_SUBSCRIPTION_FAILURES,
        "RingCentral subscription keeper failures"
    );
    metrics::describe_gauge!(
        RC_SUBSCRIPTION_ACTIVE,
        "1 while the RingCentral subscription keeper holds an active subscription"
    );
    metrics::describe_gauge!(
        RC_SUBSCRIPTION_EXPIRES,
        "Seconds until the kept RingCentral subscription expires"
    );
}
