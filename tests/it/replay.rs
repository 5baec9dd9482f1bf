//! Archive and replay (README "Replay", "Call timeline") against real parts: a receiver added
//! after 200 events across 20 calls gets exactly the window it asks for, each event once, in
//! order per call (SQLite and a real nats-server); the same replay run again queues nothing;
//! calls that went on past the window are left out; a fixed mapping re-applied with
//! `--reroute` delivers the corrected shape with the original idempotency keys; a call's
//! timeline and search over the archive.

use crate::harness::{NatsServer, Receiver, client, drained, get_json};
use crate::support::root;
use callgate::Gateway;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CALLS: usize = 20;
const PER_CALL: usize = 10;

/// Event `k` of call `c`: a distinct RingCentral notification with sequence `k + 1`; its
/// uuid is the CloudEvents id the receivers see.
pub fn notification(call: usize, k: usize) -> (String, String) {
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(
            "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let id = format!("c{call}-{k}");
    v["uuid"] = id.clone().into();
    v["body"]["telephonySessionId"] = format!("replay-call-{call}").into();
    v["body"]["sequence"] = (k + 1).into();
    (id, v.to_string())
}

/// A config file with a RingCentral route whose destinations are `destinations` (YAML flow
/// items), on `store`.
fn write_config(dir: &Path, mappings: &Path, store: &str, destinations: &str) -> PathBuf {
    let path = dir.join("callgate.yaml");
    std::fs::write(
        &path,
        format!(
            "server: {{ listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0 }}\n\
             mappings: {}\n\
             store: {store}\n\
             delivery: {{ retry: [0s, 50ms, 100ms], timeout: 2s }}\n\
             routes:\n  - {{ name: rc, path: /rc, from: ringcentral, to: [ {destinations} ] }}\n",
            mappings.display()
        ),
    )
    .unwrap();
    path
}

/// Sends calls `calls`, each call's events in order (the calls side by side).
async fn send_calls(gw: &Gateway, calls: std::ops::Range<usize>) {
    let mut senders = tokio::task::JoinSet::new();
    for call in calls {
        let url = format!("http://{}/rc", gw.addr);
        senders.spawn(async move {
            for k in 0..PER_CALL {
                let (_, body) = notification(call, k);
                let status = client()
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 200);
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
}

/// Now, after the clock has moved on from `after` (so a window bound falls between two
/// sends).
async fn tick(after: i64) -> i64 {
    loop {
        let now = callgate::model::clock::now_ms();
        if now > after {
            return now;
        }
        tokio::task::yield_now().await;
    }
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
        .to_string()
}

/// The timeline of `id` once every message it queued or replayed has an outcome in the
/// archive (outcomes are written in the archiver's next batch, just after settlement).
async fn settled_timeline(
    admin: std::net::SocketAddr,
    id: &str,
    also: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let timeline = get_json(&format!("http://{admin}/admin/calls/{id}")).await;
        let pending = timeline["events"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["destinations"].as_array().cloned().unwrap_or_default())
            .any(|d| {
                d["status"] == "queued" && d["outcomes"].as_array().is_none_or(|o| o.is_empty())
            });
        if !pending && also(&timeline) {
            return timeline;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "outcomes never archived: {timeline}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reloads the gateway's config file through the admin API.
async fn reload(gw: &Gateway) {
    let reloaded = client()
        .post(format!("http://{}/admin/reload", gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);
}

/// POSTs a replay request to the admin listener: (status, body).
pub async fn replay(admin: std::net::SocketAddr, request: Value) -> (u16, Value) {
    let response = client()
        .post(format!("http://{admin}/admin/replay"))
        .json(&request)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Per call, the event numbers a receiver got, in arrival order (repeats kept).
pub fn arrivals(receiver: &Receiver) -> HashMap<usize, Vec<usize>> {
    let mut calls: HashMap<usize, Vec<usize>> = HashMap::new();
    for r in receiver.accepted() {
        let id = r.json()["id"].as_str().unwrap_or_default().to_string();
        let (call, k) = id
            .strip_prefix('c')
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(c, k)| Some((c.parse().ok()?, k.parse().ok()?)))
            .unwrap_or_else(|| panic!("unexpected event id {id}"));
        calls.entry(call).or_default().push(k);
    }
    calls
}

/// The whole story on one store: 100 events of calls 0–9, then 100 of calls 10–19; a
/// receiver added afterwards asks for the second half.
async fn a_receiver_added_later_gets_its_window(store: &str) {
    let live = Receiver::ok().await;
    let later = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let mappings = root().join("mappings");
    let live_dest = format!(
        "{{ name: live, vendor: cloudevents, url: '{}' }}",
        live.url("/events")
    );
    let config = write_config(dir.path(), &mappings, store, &live_dest);
    let gw = Gateway::start_from_file(&config).await.unwrap();

    send_calls(&gw, 0..CALLS / 2).await;
    let since = tick(callgate::model::clock::now_ms()).await;
    send_calls(&gw, CALLS / 2..CALLS).await;
    let until = tick(callgate::model::clock::now_ms()).await;
    live.wait_for(CALLS * PER_CALL, Duration::from_secs(30))
        .await;

    // The new receiver joins the route.
    write_config(
        dir.path(),
        &mappings,
        store,
        &format!(
            "{live_dest}, {{ name: later, vendor: cloudevents, url: '{}' }}",
            later.url("/events")
        ),
    );
    reload(&gw).await;

    let window = json!({"since": rfc3339(since), "until": rfc3339(until), "destination": "later"});
    let (status, report) = replay(gw.admin_addr, window.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["queued"], 100, "{report}");
    assert_eq!(report["payloads"], 100, "{report}");
    assert_eq!(report["superseded"], json!([]), "{report}");
    later.wait_for(100, Duration::from_secs(30)).await;
    drained(&gw).await;

    let got = arrivals(&later);
    assert_eq!(
        got.keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        (CALLS / 2..CALLS).collect(),
        "exactly the calls of the window"
    );
    for (call, order) in &got {
        assert_eq!(
            order,
            &(0..PER_CALL).collect::<Vec<_>>(),
            "call {call}: each event once, in order"
        );
    }
    // The live receiver got nothing more.
    assert_eq!(live.accepted().len(), CALLS * PER_CALL);

    // The same replay again (a run interrupted by a crash, say) queues nothing new.
    let (status, again) = replay(gw.admin_addr, window.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(again["queued"], 0, "{again}");
    assert_eq!(again["already_replayed"], 100, "{again}");

    // Call 15 goes on after the window: replaying the window would end it on an old state.
    let (_, body) = notification(15, PER_CALL);
    let (status, _) = crate::harness::post(&gw, "/rc", &body).await;
    assert_eq!(status, 200);
    let mut dry = window.clone();
    dry["dry_run"] = true.into();
    let (_, report) = replay(gw.admin_addr, dry.clone()).await;
    assert_eq!(report["queued"], 90, "{report}");
    assert_eq!(report["superseded"], json!(["replay-call-15"]), "{report}");
    assert_eq!(report["skipped"]["superseded"], 10, "{report}");
    assert_eq!(
        report["messages"].as_array().unwrap().len(),
        90,
        "a dry run lists what it would send"
    );
    dry["include_superseded"] = true.into();
    let (_, report) = replay(gw.admin_addr, dry.clone()).await;
    assert_eq!(report["queued"], 100, "{report}");
    // One call only.
    dry["call"] = "replay-call-12".into();
    let (_, report) = replay(gw.admin_addr, dry).await;
    assert_eq!(report["queued"], 10, "{report}");
    assert!(
        report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["partitionkey"] == "replay-call-12"),
        "{report}"
    );
    later.wait_for(101, Duration::from_secs(20)).await;
    drained(&gw).await;
    assert_eq!(
        later.accepted().len(),
        101,
        "the window and call 15's live event (later is on the route now): dry runs send nothing"
    );
    assert_eq!(
        arrivals(&later)[&15],
        (0..=PER_CALL).collect::<Vec<_>>(),
        "the live event after the replayed ones"
    );

    // The timeline of a call: every event in order, with both destinations' outcomes.
    // Every event has the replay's delivery too.
    let timeline = settled_timeline(gw.admin_addr, "replay-call-12", |t| {
        t["events"].as_array().is_some_and(|events| {
            events.iter().all(|e| {
                e["destinations"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["destination"] == "later"))
            })
        })
    })
    .await;
    let events = timeline["events"].as_array().unwrap();
    assert_eq!(events.len(), PER_CALL);
    for (k, event) in events.iter().enumerate() {
        assert_eq!(event["event"]["id"], format!("c12-{k}"));
        assert_eq!(event["vendor"], "ringcentral");
        assert_eq!(event["verdict"], "apply");
        assert_eq!(
            event["payload"]["uuid"],
            format!("c12-{k}"),
            "the vendor payload"
        );
        let destinations = event["destinations"].as_array().unwrap();
        let of = |name: &str| {
            destinations
                .iter()
                .find(|d| d["destination"] == name)
                .unwrap_or_else(|| panic!("{name} in {event}"))
                .clone()
        };
        assert_eq!(of("live")["status"], "queued");
        assert_eq!(of("live")["outcomes"][0]["outcome"], "delivered");
        assert_eq!(of("live")["outcomes"][0]["status"], 200);
        assert_eq!(of("later")["status"], "replayed");
        assert_eq!(of("later")["outcomes"][0]["outcome"], "delivered");
    }
    // Searching by a phone number of the call finds it.
    let number = events[0]["event"]["data"]["call"]["from"]["number"]
        .as_str()
        .expect("the event has a caller number")
        .to_string();
    let mut search = reqwest::Url::parse(&format!("http://{}/admin/calls", gw.admin_addr)).unwrap();
    search.query_pairs_mut().append_pair("q", &number);
    let found = get_json(search.as_str()).await;
    let calls: Vec<&str> = found["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["partitionkey"].as_str())
        .collect();
    assert!(calls.contains(&"replay-call-12"), "{found}");
    let missing = client()
        .get(format!("http://{}/admin/calls/nobody", gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_added_later_gets_exactly_its_window_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "{{ kind: sqlite, path: {} }}",
        dir.path().join("store.db").display()
    );
    a_receiver_added_later_gets_its_window(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_added_later_gets_exactly_its_window_nats() {
    let nats = NatsServer::start().await;
    let store = format!("{{ kind: nats, url: '{}', stream: REPLAY }}", nats.url());
    a_receiver_added_later_gets_its_window(&store).await;
}

/// A mapping bug sends the wrong Vidyo state; the fixed mapping re-applied with `--reroute`
/// delivers the right one, with each message's original `webhook-id`, although the live
/// lifecycle tracker has seen every event already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_mapping_rerouted_delivers_the_corrected_shape() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    crate::support::copy_dir(&root().join("mappings"), &mappings);
    // Without its cases (which would refuse the bug) and with the bug.
    std::fs::remove_dir_all(mappings.join("vidyo/cases")).unwrap();
    let tables = mappings.join("vidyo/tables.yaml");
    let fixed = std::fs::read_to_string(&tables).unwrap();
    let right = "\"call.connected/*/*\": Busy";
    assert!(fixed.contains(right));
    std::fs::write(
        &tables,
        fixed.replace(right, "\"call.connected/*/*\": Online"),
    )
    .unwrap();
    let store = format!(
        "{{ kind: sqlite, path: {} }}",
        dir.path().join("store.db").display()
    );
    let dest = format!(
        "{{ name: vidyo, vendor: vidyo, url: '{}', sign: {{ standard_webhooks: {{ secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' }} }} }}",
        receiver.url("/vidyo")
    );
    let config = write_config(dir.path(), &mappings, &store, &dest);
    let gw = Gateway::start_from_file(&config).await.unwrap();
    let since = callgate::model::clock::now_ms();
    for call in 0..5 {
        for k in 0..3 {
            let (_, body) = notification(call, k);
            assert_eq!(crate::harness::post(&gw, "/rc", &body).await.0, 200);
        }
    }
    let wrong = receiver.wait_for(15, Duration::from_secs(20)).await;
    let state = |r: &crate::harness::Received| {
        r.json()["userStatusNotification"]["user"]["userState"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        wrong.iter().all(|r| state(r) == "Online"),
        "the bug is live"
    );

    std::fs::write(&tables, &fixed).unwrap();
    reload(&gw).await;
    let (status, report) = replay(
        gw.admin_addr,
        json!({"since": rfc3339(since), "reroute": true, "destination": "vidyo"}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["queued"], 15, "nothing dropped as stale: {report}");
    let all = receiver.wait_for(30, Duration::from_secs(20)).await;
    drained(&gw).await;
    let corrected = &all[15..];
    assert!(
        corrected.iter().all(|r| state(r) == "Busy"),
        "the corrected shape"
    );
    let id = |r: &crate::harness::Received| r.headers["webhook-id"].to_str().unwrap().to_string();
    let mut before: Vec<String> = wrong.iter().map(id).collect();
    let mut after: Vec<String> = corrected.iter().map(id).collect();
    before.sort();
    after.sort();
    assert_eq!(before, after, "the same idempotency keys");
    // In order per call: each call's sequence numbers rise.
    let mut per_call: HashMap<String, Vec<u64>> = HashMap::new();
    for r in corrected {
        let v = r.json();
        per_call
            .entry(
                v["userStatusNotification"]["conference"]["uniqueCallID"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
            .or_default()
            .push(v["sequenceNum"].as_u64().unwrap());
    }
    assert_eq!(per_call.len(), 5);
    assert!(per_call.values().all(|s| s.windows(2).all(|w| w[0] < w[1])));
    gw.shutdown().await;
}

/// Bad replay requests get a problem naming what is wrong, and nothing is queued.
#[tokio::test]
async fn bad_replay_requests_are_refused_with_the_reason() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "{{ kind: sqlite, path: {} }}",
        dir.path().join("store.db").display()
    );
    let dest = format!(
        "{{ name: ce, vendor: cloudevents, url: '{}' }}",
        receiver.url("/e")
    );
    let config = write_config(dir.path(), &root().join("mappings"), &store, &dest);
    let gw = Gateway::start_from_file(&config).await.unwrap();
    for (request, says) in [
        (
            json!({"since": "yesterday", "destination": "ce"}),
            "not a time",
        ),
        (json!({"since": "1h"}), "name where to send"),
        (
            json!({"since": "1h", "destination": "nope"}),
            "no route has a destination `nope`",
        ),
        (
            json!({"since": "1h", "route": "nope", "destination": "ce"}),
            "no route `nope`",
        ),
        (
            json!({"since": "1h", "to_url": "http://x/"}),
            "needs --vendor",
        ),
        (
            json!({"since": "1h", "to_url": "file:///etc/passwd", "vendor": "vidyo"}),
            "only http",
        ),
        (
            json!({"since": "1h", "to_url": "http://x/", "vendor": "nope"}),
            "no templates",
        ),
        (
            json!({"since": "1h", "until": "2h", "destination": "ce"}),
            "window is empty",
        ),
        (
            json!({"since": "1h", "destination": "ce", "surprise": 1}),
            "unknown field",
        ),
        (
            json!({"since": "x".repeat(100_000), "destination": "ce"}),
            "not a time",
        ),
    ] {
        let (status, problem) = replay(gw.admin_addr, request.clone()).await;
        assert_eq!(status, 400, "{request}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{request}: {detail}");
    }
    // No id is no route; a control character, blanks only or an overlong id is refused.
    let long = "x".repeat(300);
    for (bad, expected) in [
        ("", 404),
        ("%00", 400),
        ("%20%20", 400),
        (long.as_str(), 400),
    ] {
        let response = client()
            .get(format!("http://{}/admin/calls/{bad}", gw.admin_addr))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert_eq!(status, expected, "{bad:?}");
        if expected == 400 {
            let problem: serde_json::Value = response.json().await.unwrap();
            assert!(
                problem["type"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with("invalid-term"),
                "{bad:?}: {problem}"
            );
        }
    }
    assert_eq!(gw.store.producer.total_depth(), 0);
    gw.shutdown().await;
}

/// With `archive.retention: 0s` nothing is archived and replay says so.
#[tokio::test]
async fn without_an_archive_replay_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let text = crate::harness::config_text(
        dir.path(),
        "",
        "archive: { retention: 0s }\nroutes:\n  - { name: rc, path: /rc, from: ringcentral, to: [ { name: ce, vendor: cloudevents, url: 'http://127.0.0.1:9/' } ] }\n",
    );
    let gw = crate::harness::gateway(&text).await;
    let (status, problem) =
        replay(gw.admin_addr, json!({"since": "1h", "destination": "ce"})).await;
    assert_eq!(status, 409, "{problem}");
    assert!(gw.store.archive.is_none());
    gw.shutdown().await;
}

/// Runs `callgate <args>` (the real binary); returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(args)
        .output()
        .expect("callgate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kill -9` while a replay to a slow receiver is being delivered: after a restart, running
/// the same `callgate replay` again queues nothing twice, every event arrives, each call's in
/// order, and only what was in flight at the kill arrives twice (at-least-once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_replay_loses_nothing() {
    let _heavy = crate::harness::HEAVY.lock().await;
    let live = Receiver::ok().await;
    let slow = Receiver::start(|_| crate::harness::Reply {
        delay: Duration::from_millis(20),
        ..crate::harness::Reply::ok()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (crate::harness::free_port(), crate::harness::free_port());
    let config = crate::harness::write_serve_config(
        dir.path(),
        (port, admin),
        "",
        &root().join("mappings"),
        "retry: [0s, 100ms, 200ms], timeout: 5s",
        &format!(
            "  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: live, vendor: cloudevents, url: '{}' }} ] }}\n",
            live.url("/events")
        ),
    );
    let config = config.to_str().unwrap().to_string();
    let server = crate::harness::Serve::start(Path::new(&config));
    crate::harness::wait_ready(port).await;
    let since = rfc3339(callgate::model::clock::now_ms() - 1);
    let mut senders = tokio::task::JoinSet::new();
    for call in 0..CALLS {
        senders.spawn(async move {
            for k in 0..PER_CALL {
                let (_, body) = notification(call, k);
                let (status, _) =
                    crate::harness::post_json(&format!("http://127.0.0.1:{port}/rc"), &body).await;
                assert_eq!(status, 200);
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    live.wait_for(CALLS * PER_CALL, Duration::from_secs(30))
        .await;

    let target = slow.url("/restored");
    let args = [
        "replay",
        "--config",
        &config,
        "--since",
        &since,
        "--to-url",
        &target,
        "--vendor",
        "cloudevents",
        "--json",
    ];
    let (ok, out, err) = cli(&args);
    assert!(ok, "{err}");
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(first["queued"], 200, "{first}");
    // Killed mid-delivery.
    slow.wait_for(20, Duration::from_secs(30)).await;
    server.signal("-9");
    drop(server);
    let delivered_before = slow.accepted().len();
    assert!(
        delivered_before < 200,
        "the kill came too late to test anything"
    );

    let _server = crate::harness::Serve::start(Path::new(&config));
    crate::harness::wait_ready(port).await;
    let (ok, out, err) = cli(&args);
    assert!(ok, "{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        again["queued"], 0,
        "the resumed replay queues nothing twice: {again}"
    );
    assert_eq!(again["already_replayed"], 200, "{again}");

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let calls = loop {
        let calls = arrivals(&slow);
        let mut distinct: Vec<(usize, usize)> = calls
            .iter()
            .flat_map(|(c, ks)| ks.iter().map(move |k| (*c, *k)))
            .collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() == CALLS * PER_CALL {
            break calls;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 200 arrived",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let total: usize = calls.values().map(Vec::len).sum();
    let duplicates = total - CALLS * PER_CALL;
    println!(
        "kill -9 during replay: {delivered_before} delivered before the kill, {duplicates} delivered twice"
    );
    // At most what the to-url lane had in flight (8) arrives again.
    assert!(duplicates <= 8, "{duplicates} duplicates");
    for (call, order) in &calls {
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "call {call} out of order: {order:?}"
        );
    }

    // The call's story in the terminal, once the replay's outcomes are archived (those
    // written in the instant before the kill may be missing: outcomes go in batches).
    settled_timeline(([127, 0, 0, 1], admin).into(), "replay-call-3", |t| {
        t.to_string().contains("\"destination\":\"to-url-")
    })
    .await;
    let (ok, out, err) = cli(&["calls", "show", "replay-call-3", "--config", &config]);
    assert!(ok, "{err}");
    assert!(out.starts_with("replay-call-3: 10 events"), "{out}");
    assert_eq!(out.matches("call.connected").count(), 10, "{out}");
    assert!(
        out.contains("→ live") && out.contains("delivered 200"),
        "{out}"
    );
    assert!(out.contains("→ to-url-"), "the replay's deliveries: {out}");
    let (ok, out, _) = cli(&["calls", "search", "replay-call-3", "--config", &config]);
    assert!(ok && out.starts_with("replay-call-3\t"), "{out}");
    let (ok, _, err) = cli(&["calls", "show", "no-such-call", "--config", &config]);
    assert!(!ok && err.contains("404"), "{err}");
}

/// The timeline page in a real browser: the real RingCentral flow (three legs), one
/// notification sent twice (dropped as a duplicate) and a receiver that refuses holds (a dead
/// letter); the page draws one lane per leg and each event with its fates, shows an event's
/// payload and canonical form, and loads nothing from elsewhere. Screenshot:
/// `target/timeline/timeline.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_timeline_in_a_real_browser() {
    let vidyo = Receiver::ok().await;
    let strict = Receiver::start(|r| {
        if r.body.contains("\"call.held\"") {
            crate::harness::Reply::status(400)
        } else {
            crate::harness::Reply::ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = crate::harness::config_text(
        dir.path(),
        "",
        &format!(
            "routes:\n  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: vidyo, vendor: vidyo, url: '{}' }}, {{ name: audit, vendor: cloudevents, url: '{}' }} ] }}\n",
            vidyo.url("/vidyo"),
            strict.url("/audit")
        ),
    );
    let gw = crate::harness::gateway(&text).await;
    let flow = crate::support::fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json");
    for (n, file) in flow.iter().enumerate() {
        let body = std::fs::read_to_string(file).unwrap();
        assert_eq!(crate::harness::post(&gw, "/rc", &body).await.0, 200);
        if n == 5 {
            // Sent again by the vendor: dropped as a duplicate.
            assert_eq!(crate::harness::post(&gw, "/rc", &body).await.0, 200);
        }
    }
    drained(&gw).await;

    settled_timeline(gw.admin_addr, "s-718107795d564867a6f635fd81e89940", |_| {
        true
    })
    .await;
    let shots = root().join("target/timeline");
    std::fs::create_dir_all(&shots).unwrap();
    let session = "s-718107795d564867a6f635fd81e89940";
    let leg = "p-718107795d564867a6f635fd81e89940-3";
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/timeline.js"))
        .arg(format!("http://{}", gw.admin_addr))
        .arg(session)
        .arg(leg)
        .arg(&shots)
        .output()
        .await
        .expect("node runs (scripts/test runs `npm ci` in tests/browser and installs chromium)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser run failed: {stderr}");
    let page: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");

    let api = get_json(&format!("http://{}/admin/calls/{session}", gw.admin_addr)).await;
    let events = api["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(page["types"], json!(types), "{page}");
    assert_eq!(page["calls"], 1, "{page}");
    assert_eq!(
        page["lanes"].as_array().unwrap().len(),
        3,
        "one lane per leg: {page}"
    );
    let dots: Vec<&str> = page["dots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(dots.len(), events.len());
    assert_eq!(
        dots.iter().filter(|d| d.contains("dropped")).count(),
        events.iter().filter(|e| e["verdict"] != "apply").count(),
        "{page}"
    );
    assert!(
        dots.iter().any(|d| d.contains("dropped")),
        "the duplicate: {page}"
    );
    assert!(
        page["fates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("dropped: duplicate")),
        "{page}"
    );
    assert!(
        dots.iter().any(|d| d.contains("failed")),
        "the refused hold: {page}"
    );
    let held = page["held_fates"].as_str().unwrap();
    assert!(
        held.contains("audit") && held.contains("dead 400"),
        "{held}"
    );
    assert!(
        held.contains("vidyo") && held.contains("delivered 200"),
        "{held}"
    );
    assert_eq!(page["held_event"]["type"], "call.held");
    assert_eq!(page["held_payload"]["body"]["telephonySessionId"], session);
    assert!(
        page["held_verdict"].as_str().unwrap().contains("apply"),
        "{page}"
    );
    // One leg alone, by its id: its own events only.
    let leg_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["data"]["call"]["leg_id"] == leg)
        .collect();
    assert!(leg_events.len() >= 3 && leg_events.len() < events.len());
    assert_eq!(
        page["leg_types"],
        json!(
            leg_events
                .iter()
                .map(|e| &e["event"]["type"])
                .collect::<Vec<_>>()
        ),
        "{page}"
    );
    assert!(
        page["missing"].as_str().unwrap().contains("no event of"),
        "{page}"
    );
    assert_eq!(page["console_errors"], json!([]), "{page}");
    assert_eq!(page["foreign_requests"], json!([]), "{page}");
    assert!(shots.join("timeline.png").exists());
    gw.shutdown().await;
}

/// A window larger than a replay's page (1,000 records): 2,100 payloads over 21 calls are
/// read a page at a time and all sent, each call in order across the page boundaries; a dry
/// run counts them all and lists the first 1,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_window_is_replayed_page_by_page() {
    const BIG_CALLS: usize = 21;
    const BIG_PER_CALL: usize = 100;
    let _heavy = crate::harness::HEAVY.lock().await;
    let live = Receiver::ok().await;
    let restored = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "{{ kind: sqlite, path: {} }}",
        dir.path().join("store.db").display()
    );
    let dest = format!(
        "{{ name: live, vendor: cloudevents, url: '{}' }}, {{ name: restored, vendor: cloudevents, url: '{}', types: ['none.*'] }}",
        live.url("/e"),
        restored.url("/r")
    );
    let config = write_config(dir.path(), &root().join("mappings"), &store, &dest);
    let gw = Gateway::start_from_file(&config).await.unwrap();
    let since = rfc3339(callgate::model::clock::now_ms() - 1);
    let mut senders = tokio::task::JoinSet::new();
    for call in 0..BIG_CALLS {
        let url = format!("http://{}/rc", gw.addr);
        senders.spawn(async move {
            for k in 0..BIG_PER_CALL {
                let (_, body) = notification(call, k);
                let (status, _) = crate::harness::post_json(&url, &body).await;
                assert_eq!(status, 200);
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let total = BIG_CALLS * BIG_PER_CALL;
    live.wait_for(total, Duration::from_secs(60)).await;
    // `restored` took no live event (its types filter): its store was "lost".
    assert!(restored.accepted().is_empty());

    // Today's config sends it everything: the filter is lifted.
    write_config(
        dir.path(),
        &root().join("mappings"),
        &store,
        &dest.replace(", types: ['none.*']", ""),
    );
    reload(&gw).await;
    let (_, dry) = replay(
        gw.admin_addr,
        json!({"since": since, "destination": "restored", "dry_run": true}),
    )
    .await;
    assert_eq!(dry["queued"], total, "{}", dry["payloads"]);
    assert_eq!(dry["payloads"], total);
    assert_eq!(dry["messages"].as_array().unwrap().len(), 1000);
    let (status, report) = replay(
        gw.admin_addr,
        json!({"since": since, "destination": "restored"}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["queued"], total, "{report}");
    restored.wait_for(total, Duration::from_secs(60)).await;
    drained(&gw).await;
    let got = arrivals(&restored);
    assert_eq!(got.len(), BIG_CALLS);
    for (call, order) in &got {
        assert_eq!(
            order,
            &(0..BIG_PER_CALL).collect::<Vec<_>>(),
            "call {call}: each once, in order"
        );
    }
    gw.shutdown().await;
}
