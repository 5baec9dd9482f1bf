//! The RingCentral subscription keeper against the fake platform (`rc_platform.rs`): it
//! creates one subscription once the route serves, renews before expiry on one OAuth
//! session kept alive by refresh tokens, adopts its subscription after a restart instead of
//! creating a second, recreates a blacklisted one when a renewal reminder pokes it, and
//! sends nothing while a 429's penalty runs.

use crate::harness::{Receiver, client, free_port, gateway};
use crate::rc_platform::{ACCOUNT, CLIENT_ID, CLIENT_SECRET, FakePlatform, JWT};
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// Config for one RingCentral route with a keeper, listening on `port`.
fn config(
    dir: &std::path::Path,
    route: &str,
    port: u16,
    platform: &FakePlatform,
    receiver: &Receiver,
) -> String {
    format!(
        "server: {{ listen: 127.0.0.1:{port}, admin_listen: 127.0.0.1:0 }}\n\
         mappings: {mappings}\n\
         store: {{ kind: sqlite, path: {db} }}\n\
         delivery: {{ timeout: 2s, retry: [0s, 50ms] }}\n\
         routes:\n  - name: {route}\n    path: /hooks/rc\n    from: ringcentral\n\
         \x20   auth: {{ verification_token: vt-1 }}\n\
         \x20   ringcentral:\n      server: '{server}'\n      client_id: {CLIENT_ID}\n      client_secret: {CLIENT_SECRET}\n      jwt: {JWT}\n\
         \x20     address: 'http://127.0.0.1:{port}/hooks/rc'\n\
         \x20     event_filters: ['/restapi/v1.0/account/~/telephony/sessions', '/restapi/v1.0/account/~/extension/~/forbidden']\n\
         \x20     expires_in: 1h\n      renew_before: 3s\n      check_every: 1m\n\
         \x20   to:\n      - {{ name: vidyo, vendor: vidyo, url: '{url}', types: ['call.*'] }}\n",
        mappings = crate::support::root().join("mappings").display(),
        db = dir.join("callgate.db").display(),
        server = platform.url(),
        url = receiver.url("/vidyo"),
    )
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(admin: std::net::SocketAddr) -> Value {
    crate::harness::get_json(&format!("http://{admin}/admin/ringcentral")).await["subscriptions"][0]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keeper_creates_once_renews_on_time_and_adopts_after_a_restart() {
    let platform = FakePlatform::start(Duration::from_secs(6)).await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = config(dir.path(), "rc-kept", port, &platform, &receiver);
    let gw = gateway(&text).await;

    // Created once, with the configured filters, token and an explicit expiresIn; the
    // address passed RingCentral's Validation-Token check, so the route was serving.
    wait_until("a renewal", || platform.with(|s| s.renewals >= 2)).await;
    let (subs, creations, jwt_grants, refreshes) = platform.with(|s| {
        (
            s.subscriptions.clone(),
            s.creations,
            s.jwt_grants,
            s.refreshes,
        )
    });
    assert_eq!(creations, 1);
    assert_eq!(subs.len(), 1);
    let sub = &subs[0];
    assert_eq!(sub["deliveryMode"]["verificationToken"], "vt-1");
    assert_eq!(
        sub["eventFilters"][0],
        format!("/restapi/v1.0/account/{ACCOUNT}/telephony/sessions")
    );
    // Renewed before it expired, every time, on one session kept alive by refreshes.
    assert_eq!(platform.with(|s| s.late_renewals), 0);
    assert_eq!(jwt_grants, 1, "one login");
    assert!(
        refreshes >= 1,
        "then refresh tokens (access tokens live 2 s here)"
    );
    // The refused filter is reported.
    let state = status(gw.admin_addr).await;
    assert_eq!(state["state"], "active", "{state}");
    assert_eq!(state["subscription_id"], sub["id"]);
    assert_eq!(
        state["disabled_filters"][0]["filter"],
        format!("/restapi/v1.0/account/{ACCOUNT}/extension/{ACCOUNT}/forbidden"),
        "{state}"
    );
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics.contains("callgate_ringcentral_subscription_active{route=\"rc-kept\"} 1"),
        "{metrics}"
    );
    let ready = crate::harness::get_json(&format!("http://127.0.0.1:{port}/readyz")).await;
    assert_eq!(
        ready["ringcentral_subscriptions"]["rc-kept"], "active",
        "{ready}"
    );
    // `callgate ringcentral status` shows the same.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args([
            "ringcentral",
            "status",
            "--config",
            "/nonexistent.yaml",
            "--admin",
        ])
        .arg(format!("http://{}", gw.admin_addr))
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.starts_with(&format!(
            "rc-kept\tactive\tsubscription {}",
            sub["id"].as_str().unwrap()
        )),
        "{printed}"
    );
    assert!(
        printed.contains("refused filter /restapi/v1.0/account/"),
        "{printed}"
    );
    gw.shutdown().await;

    // A restart adopts the live subscription: no second one.
    let gw = gateway(&text).await;
    let renewals = platform.with(|s| s.renewals);
    wait_until("a renewal after the restart", || {
        platform.with(|s| s.renewals > renewals)
    })
    .await;
    assert_eq!(
        platform.with(|s| (s.creations, s.subscriptions.len())),
        (1, 1)
    );
    assert_eq!(platform.with(|s| s.late_renewals), 0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blacklisted_subscription_is_recreated_when_a_reminder_arrives() {
    let platform = FakePlatform::start(Duration::from_secs(3600)).await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gw = gateway(&config(
        dir.path(),
        "rc-blacklisted",
        port,
        &platform,
        &receiver,
    ))
    .await;
    wait_until("the subscription", || platform.with(|s| s.creations == 1)).await;
    let first = platform.with(|s| s.subscriptions[0]["id"].as_str().unwrap().to_string());
    platform.blacklist(&first);

    // RingCentral's renewal reminder: taken by the keeper, answered 200, not translated.
    let reminder = serde_json::json!({
        "uuid": "r-1", "event": "/restapi/v1.0/subscription/~?threshold=86400&interval=3600",
        "timestamp": "2026-12-02T10:00:00.000Z", "subscriptionId": first, "ownerId": ACCOUNT,
        "body": {"expiresIn": 80000}
    });
    let r = client()
        .post(format!("http://127.0.0.1:{port}/hooks/rc"))
        .header("verification-token", "vt-1")
        .json(&reminder)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("the recreation", || platform.with(|s| s.creations == 2)).await;
    let subs = platform.with(|s| s.subscriptions.clone());
    assert_eq!(subs.len(), 1, "the blacklisted one was deleted: {subs:#?}");
    assert_ne!(subs[0]["id"], first.as_str());
    assert_eq!(subs[0]["status"], "Active");
    let deadline = Instant::now() + WAIT;
    loop {
        let state = status(gw.admin_addr).await;
        if state["subscription_id"] == subs[0]["id"] && state["state"] == "active" {
            assert_eq!(state["recreated"], 1, "{state}");
            assert_eq!(state["created"], 2, "{state}");
            break;
        }
        assert!(Instant::now() < deadline, "{state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        receiver.all().is_empty(),
        "the reminder reached no destination"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_while_a_rate_limit_penalty_runs() {
    let platform = FakePlatform::start(Duration::from_secs(3600)).await;
    // The first two requests (the login, then its retry) get 429 with Retry-After: 2.
    platform.with(|s| s.rate_limit_next = 2);
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gw = gateway(&config(
        dir.path(),
        "rc-limited",
        port,
        &platform,
        &receiver,
    ))
    .await;
    wait_until("the subscription", || platform.with(|s| s.creations == 1)).await;
    let seen = platform.with(|s| s.seen.clone());
    let limited: Vec<_> = seen.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 2, "{seen:#?}");
    assert!(
        limited
            .iter()
            .all(|r| r.method == "POST" && r.path == "/restapi/oauth/token"),
        "the login was what got limited: {seen:#?}"
    );
    // After each 429, the next request waited out the 2 s penalty.
    for pair in seen.windows(2) {
        if pair[0].status == 429 {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= Duration::from_secs(2),
                "{gap:?} after a 429: {seen:#?}"
            );
        }
    }
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics.contains(
            "callgate_ringcentral_subscription_failures_total{route=\"rc-limited\",reason=\"rate_limited\"}"
        ),
        "{metrics}"
    );
    gw.shutdown().await;
}

/// A gateway whose RingCentral route is fed by a `ringcentral-websocket` source.
async fn websocket_gateway(
    dir: &std::path::Path,
    (source, timers): (&str, &str),
    platform: &FakePlatform,
    receiver: &Receiver,
) -> callgate::Gateway {
    let text = format!(
        "server: {{ listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0 }}\n\
         mappings: {mappings}\n\
         store: {{ kind: sqlite, path: {db} }}\n\
         delivery: {{ timeout: 2s, retry: [0s, 50ms] }}\n\
         routes:\n  - name: rc\n    path: /hooks/rc\n    from: ringcentral\n\
         \x20   to:\n      - {{ name: vidyo, vendor: vidyo, url: '{url}', types: ['call.*'] }}\n\
         sources:\n  - name: {source}\n    kind: ringcentral-websocket\n    route: rc\n\
         \x20   ringcentral: {{ server: '{server}', client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, jwt: {JWT} }}\n\
         \x20   event_filters: ['/restapi/v1.0/account/~/extension/~/telephony/sessions']\n{timers}",
        mappings = crate::support::root().join("mappings").display(),
        db = dir.join("callgate.db").display(),
        server = platform.url(),
        url = receiver.url("/vidyo"),
    );
    gateway(&text).await
}

/// A fake platform, a receiver and a gateway whose WebSocket source `source` has subscribed.
struct Subscribed {
    platform: FakePlatform,
    receiver: Receiver,
    gw: callgate::Gateway,
    /// Holds the store until the test ends.
    dir: tempfile::TempDir,
}

async fn subscribed_websocket_gateway(source: &str) -> Subscribed {
    subscribed_with_timers(source, "").await
}

/// [`subscribed_websocket_gateway`] with extra source lines (`keep_alive`, `server_timeout`).
async fn subscribed_with_timers(source: &str, timers: &str) -> Subscribed {
    let platform = FakePlatform::start(Duration::from_secs(3600)).await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = websocket_gateway(dir.path(), (source, timers), &platform, &receiver).await;
    wait_until("the socket subscription", || {
        platform.with(|s| s.ws.live.is_some())
    })
    .await;
    Subscribed {
        platform,
        receiver,
        gw,
        dir,
    }
}

fn flow() -> Vec<Value> {
    crate::support::fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json")
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

/// The Vidyo `sequenceNum`s the receiver got, in arrival order.
fn sequences(receiver: &Receiver) -> Vec<u64> {
    receiver
        .accepted()
        .iter()
        .map(|r| r.json()["sequenceNum"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_events_arrive_exactly_once_across_a_recovered_drop() {
    let Subscribed {
        platform,
        receiver,
        gw,
        dir: _dir,
    } = subscribed_websocket_gateway("ws-recovered").await;
    let flow = flow();
    for n in flow.iter().take(5) {
        platform.publish(n.clone());
    }
    // The network drops; three notifications happen meanwhile; the session recovers.
    platform.drop_socket();
    for n in &flow[5..8] {
        platform.publish(n.clone());
    }
    wait_until("the recovery", || platform.with(|s| s.ws.recovered == 1)).await;
    for n in &flow[8..] {
        platform.publish(n.clone());
    }
    // The whole call, in order, once: what the webhook path delivers for the same flow.
    let got = receiver.wait_for(6, WAIT).await;
    assert_eq!(got.len(), 6);
    crate::harness::drained(&gw).await;
    assert_eq!(sequences(&receiver), [6, 7, 8, 9, 10, 11]);
    let (subscriptions, jwt_grants) = platform.with(|s| (s.ws.subscriptions, s.jwt_grants));
    assert_eq!(
        subscriptions, 1,
        "a recovered session keeps its subscription"
    );
    assert_eq!(jwt_grants, 1, "recovery needs the same OAuth session");
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics.contains("callgate_source_replays_dropped_total{source=\"ws-recovered\"} 1"),
        "the replayed duplicate was dropped by uuid: {metrics}"
    );
    assert!(
        !metrics.contains("callgate_source_possible_gaps_total{source=\"ws-recovered\"}"),
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecovered_drop_resubscribes_and_reports_the_gap() {
    let Subscribed {
        platform,
        receiver,
        gw,
        dir: _dir,
    } = subscribed_websocket_gateway("ws-gap").await;
    let flow = flow();
    for n in flow.iter().take(6) {
        platform.publish(n.clone());
    }
    receiver.wait_for(1, WAIT).await;
    // The session cannot be recovered: what happened meanwhile is lost.
    platform.with(|s| s.ws.fail_recovery = true);
    platform.drop_socket();
    platform.publish(flow[6].clone());
    wait_until("the new subscription", || {
        platform.with(|s| s.ws.subscriptions == 2 && s.ws.live.is_some())
    })
    .await;
    for n in &flow[7..] {
        platform.publish(n.clone());
    }
    // Everything but the lost notification's delivery, in order.
    let lost = flow[6]["body"]["sequence"].as_u64().unwrap();
    let expected: Vec<u64> = [6, 7, 8, 9, 10, 11]
        .into_iter()
        .filter(|s| *s != lost)
        .collect();
    receiver.wait_for(expected.len(), WAIT).await;
    crate::harness::drained(&gw).await;
    assert_eq!(sequences(&receiver), expected);
    assert_eq!(platform.with(|s| s.ws.recovery_failed), 1);
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics.contains("callgate_source_possible_gaps_total{source=\"ws-gap\"} 1"),
        "{metrics}"
    );
    gw.shutdown().await;
}

/// The route moved (a new public address): the subscription at the old address, remembered
/// in the store, is deleted, so RingCentral does not go on posting there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_route_leaves_no_subscription_at_its_old_address() {
    let platform = FakePlatform::start(Duration::from_secs(3600)).await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let old_port = free_port();
    let gw = gateway(&config(
        dir.path(),
        "rc-moved",
        old_port,
        &platform,
        &receiver,
    ))
    .await;
    wait_until("the first subscription", || {
        platform.with(|s| s.creations == 1)
    })
    .await;
    gw.shutdown().await;

    let new_port = free_port();
    let gw = gateway(&config(
        dir.path(),
        "rc-moved",
        new_port,
        &platform,
        &receiver,
    ))
    .await;
    wait_until("the subscription at the new address", || {
        platform.with(|s| s.creations == 2 && s.subscriptions.len() == 1)
    })
    .await;
    let subs = platform.with(|s| s.subscriptions.clone());
    assert_eq!(
        subs[0]["deliveryMode"]["address"],
        format!("http://127.0.0.1:{new_port}/hooks/rc"),
        "{subs:#?}"
    );
    gw.shutdown().await;
}

/// Frames a broken or hostile server could send: not JSON, not `[header, body]`, a
/// notification without a body, one over the 1 MiB frame limit. None is ingested or stops
/// the source; the oversized one drops the connection, which recovers, and the call
/// arrives whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_websocket_frames_neither_stop_the_source_nor_lose_the_call() {
    let Subscribed {
        platform,
        receiver,
        gw,
        dir: _dir,
    } = subscribed_websocket_gateway("ws-hostile").await;
    let flow = flow();
    for n in flow.iter().take(5) {
        platform.publish(n.clone());
    }
    for garbage in [
        "not json".to_string(),
        "[]".into(),
        "[1, 2]".into(),
        "{\"type\": \"ServerNotification\"}".into(),
        "[{\"type\": \"ServerNotification\", \"messageId\": \"x\"}]".into(),
        "[{\"type\": \"ServerNotification\"}, {\"uuid\": 7, \"body\": []}]".into(),
        "[{\"type\": \"Error\"".into(),
        "\u{0}\u{1}--Boundary".into(),
    ] {
        platform.send_raw(garbage);
    }
    // Over the frame limit: the connection drops and recovers.
    platform.send_raw(format!(
        "[{{\"type\": \"Heartbeat\", \"pad\": \"{}\"}}]",
        "x".repeat(2 << 20)
    ));
    wait_until("the recovery", || platform.with(|s| s.ws.recovered == 1)).await;
    for n in &flow[5..] {
        platform.publish(n.clone());
    }
    let got = receiver.wait_for(6, WAIT).await;
    assert_eq!(got.len(), 6);
    crate::harness::drained(&gw).await;
    assert_eq!(sequences(&receiver), [6, 7, 8, 9, 10, 11]);
    assert!(
        receiver.all().iter().all(|r| r.path == "/vidyo"),
        "nothing but the call reached the receiver"
    );
    gw.shutdown().await;
}

/// A reload applies a changed keeper: the route's `event_filters` are edited in the config
/// file and `POST /admin/reload` is called; the keeper is restarted with them and the
/// subscription on the platform comes to carry the new filter, without a gateway restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_changed_keeper_filters() {
    let platform = FakePlatform::start(Duration::from_secs(3600)).await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = config(dir.path(), "rc-edited", port, &platform, &receiver);
    let file = dir.path().join("callgate.yaml");
    std::fs::write(&file, &text).unwrap();
    let gw = callgate::Gateway::start_from_file(&file).await.unwrap();
    wait_until("the first subscription", || {
        platform.with(|s| s.creations == 1)
    })
    .await;
    let presence = "/restapi/v1.0/account/~/extension/~/presence";
    let has_presence = |s: &crate::rc_platform::PlatformState| {
        s.subscriptions.iter().any(|sub| {
            sub["eventFilters"].as_array().is_some_and(|f| {
                f.iter()
                    .any(|x| x.as_str().unwrap_or("").ends_with("/presence"))
            })
        })
    };
    assert!(!platform.with(|s| has_presence(s)));
    std::fs::write(
        &file,
        text.replace("/restapi/v1.0/account/~/extension/~/forbidden", presence),
    )
    .unwrap();
    let reply = crate::harness::client()
        .post(format!("http://{}/admin/reload", gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
    wait_until("the subscription with the new filter", || {
        platform.with(|s| has_presence(s))
    })
    .await;
    assert_eq!(status(gw.admin_addr).await["route"], "rc-edited");
    gw.shutdown().await;
}

/// A refresh that fails for a passing reason (503 here; a 429 or a timeout alike) keeps the
/// refresh token: the next look refreshes with it, and no new JWT login (a new OAuth session)
/// is made. Only `invalid_grant` ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_the_session_and_only_invalid_grant_ends_it() {
    use callgate::inbound::ringcentral::platform::{Credentials, Group, Platform};
    let platform = FakePlatform::start(Duration::from_secs(3600)).await;
    let client = Platform::new(
        reqwest::Client::new(),
        Credentials {
            server: platform.url(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            jwt: JWT.into(),
        },
    );
    let list = || {
        client.call(
            Group::Light,
            reqwest::Method::GET,
            "/restapi/v1.0/subscription",
            None,
        )
    };
    list().await.expect("first call: one JWT grant");
    assert_eq!(platform.with(|s| (s.jwt_grants, s.refreshes)), (1, 0));

    // The platform revokes the access token (a 401 makes the client refresh) and its token
    // endpoint is down for one request.
    platform.with(|s| {
        s.access_tokens.push("revoked-elsewhere".into());
        s.token_unavailable_next = 1;
    });
    let failed = list().await;
    assert!(failed.is_err(), "the refresh failed: {failed:?}");
    assert_eq!(platform.with(|s| s.jwt_grants), 1, "no new login on a 503");
    list().await.expect("the kept refresh token works");
    assert_eq!(
        platform.with(|s| (s.jwt_grants, s.refreshes)),
        (1, 1),
        "refreshed with the kept token, still one session"
    );

    // A refresh token the platform no longer knows: invalid_grant, then one JWT grant.
    platform.with(|s| {
        s.refresh_tokens.push("issued-elsewhere".into());
        s.access_tokens.push("revoked-again".into());
    });
    list().await.expect("a new session after invalid_grant");
    assert_eq!(platform.with(|s| s.jwt_grants), 2);
}

/// A RingCentral WebSocket server that keeps the connection open but stops answering (no
/// Heartbeat reply, no notification) is noticed: after `keep_alive` of silence the source
/// sends a Heartbeat, after `server_timeout` of silence it drops the socket and connects again
/// (it used to wait a fixed 60 s + 30 s whatever the config said).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_server_that_stops_answering_is_dropped_and_reconnected() {
    let Subscribed {
        platform, gw, dir, ..
    } = subscribed_with_timers("ws-hung", "    keep_alive: 300ms\n    server_timeout: 1s\n").await;
    let before = platform.with(|s| s.ws.connections);
    platform.with(|s| s.ws.mute = true);
    // A new socket is not muted until the test says so: let it through.
    wait_until("a reconnect after the server went silent", || {
        platform.with(|s| {
            if s.ws.connections > before {
                s.ws.mute = false;
                true
            } else {
                false
            }
        })
    })
    .await;
    gw.shutdown().await;
    drop(dir);
}
