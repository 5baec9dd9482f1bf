//! Several callgate instances on one NATS JetStream stream (a real `nats-server` on
//! loopback): one instance `kill -9`ed mid-load loses no acknowledged event and breaks no
//! call's order; the same event sent to both instances is delivered once; a NATS restart
//! mid-load makes intake answer 503 while it is away and loses nothing acknowledged.

use crate::harness::{NatsServer, Receiver, Serve, client, free_port, wait_ready};
use crate::support::root;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CALLS: usize = 50;
const PER_CALL: usize = 100;

/// A `serve` config for one instance on the shared stream.
fn instance_config(dir: &Path, name: &str, nats: &str, receiver: &str) -> (PathBuf, u16) {
    let (port, admin) = (free_port(), free_port());
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "server: {{ listen: 127.0.0.1:{port}, admin_listen: 127.0.0.1:{admin} }}\n\
             mappings: {}\n\
             store: {{ kind: nats, url: '{nats}', stream: SCALE, partitions: 16 }}\n\
             delivery: {{ retry: [0s, 100ms, 200ms, 500ms, 1s], timeout: 2s }}\n\
             routes:\n  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: ce, vendor: cloudevents, url: '{receiver}' }} ] }}\n",
            root().join("mappings").display(),
        ),
    )
    .unwrap();
    (path, port)
}

/// Event `k` of call `c`: a distinct RingCentral notification, sequence `k + 1`.
fn notification(template: &Value, call: usize, k: usize) -> (String, String) {
    let mut v = template.clone();
    let id = format!("c{call}-{k}");
    v["uuid"] = id.clone().into();
    v["body"]["telephonySessionId"] = format!("scale-call-{call}").into();
    v["body"]["sequence"] = (k + 1).into();
    (id, v.to_string())
}

fn template() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(root().join(
            "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json",
        ))
        .unwrap(),
    )
    .unwrap()
}

/// Per call, the event numbers in arrival order, a repeat of an event already seen removed.
/// Returns (order per call, duplicates).
fn arrivals(receiver: &Receiver) -> (HashMap<usize, Vec<usize>>, usize) {
    let mut calls: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    for r in receiver.accepted() {
        let id = r.json()["id"].as_str().unwrap_or_default().to_string();
        let Some((call, k)) = id
            .strip_prefix('c')
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(c, k)| Some((c.parse().ok()?, k.parse().ok()?)))
        else {
            continue;
        };
        if !seen.insert(id) {
            duplicates += 1;
            continue;
        }
        calls.entry(call).or_default().push(k);
    }
    (calls, duplicates)
}

/// Waits (at most 120 s) until `acked` distinct events have arrived; returns the arrivals per
/// call, the duplicates, and how many acknowledged events are still missing.
async fn settle(receiver: &Receiver, acked: usize) -> (HashMap<usize, Vec<usize>>, usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (calls, duplicates) = arrivals(receiver);
        let delivered: usize = calls.values().map(Vec::len).sum();
        if delivered >= acked || Instant::now() > deadline {
            return (calls, duplicates, acked - delivered.min(acked));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every call's events arrived in the order they were sent.
fn assert_call_order(calls: &HashMap<usize, Vec<usize>>) {
    for (call, order) in calls {
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "call {call} arrived out of order: {order:?}"
        );
    }
}

/// The queue stream's consumers as the server sees them, for a failure message.
async fn consumer_states(url: &str, stream: &str) -> String {
    use futures_util::StreamExt;
    let Ok(client) = async_nats::connect(url).await else {
        return "NATS unreachable".into();
    };
    let js = async_nats::jetstream::new(client);
    let Ok(mut stream) = js.get_stream(stream).await else {
        return "no stream".into();
    };
    let state = stream
        .info()
        .await
        .map(|i| format!("{:?}", i.state))
        .unwrap_or_default();
    let mut out = vec![state];
    let mut consumers = stream.consumers();
    while let Some(Ok(info)) = consumers.next().await {
        out.push(format!(
            "{} pending={} ack_pending={} redelivered={} delivered={:?} ack_floor={:?}",
            info.name,
            info.num_pending,
            info.num_ack_pending,
            info.num_redelivered,
            info.delivered,
            info.ack_floor
        ));
    }
    out.join("\n")
}

/// Two instances share the load; one is killed with SIGKILL once a third of the events are
/// acknowledged, and the senders go on with the survivor (as a load balancer would). Every
/// acknowledged event reaches the receiver, each call's events in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_killed_lose_nothing_and_keep_call_order() {
    let _heavy = crate::harness::HEAVY.lock().await;
    let nats = NatsServer::start().await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let url = receiver.url("/events");
    let (config_a, port_a) = instance_config(dir.path(), "a", &nats.url(), &url);
    let (config_b, port_b) = instance_config(dir.path(), "b", &nats.url(), &url);
    let a = Serve::start(&config_a);
    wait_ready(port_a).await;
    let b = Serve::start(&config_b);
    wait_ready(port_b).await;
    let a = Arc::new(Mutex::new(Some(a)));

    let template = Arc::new(template());
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let a_dead = Arc::new(AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for call in 0..CALLS {
        let (template, acked, a_dead) = (template.clone(), acked.clone(), a_dead.clone());
        senders.spawn(async move {
            let http = client();
            for k in 0..PER_CALL {
                let (id, body) = notification(&template, call, k);
                // Alternate between the instances; once A is gone, everything goes to B.
                let mut port = if k % 2 == 0 { port_a } else { port_b };
                loop {
                    if a_dead.load(Ordering::SeqCst) {
                        port = port_b;
                    }
                    let sent = http
                        .post(format!("http://127.0.0.1:{port}/rc"))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().push(id.clone());
                            break;
                        }
                        // Not acknowledged (A died under it, or 503): send again, to B.
                        _ => port = port_b,
                    }
                }
            }
        });
    }
    while acked.lock().unwrap().len() < CALLS * PER_CALL / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.lock().unwrap().as_ref().unwrap().signal("-9");
    a_dead.store(true, Ordering::SeqCst);
    let killed_at = acked.lock().unwrap().len();
    while senders.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        CALLS * PER_CALL,
        "every event acknowledged once"
    );

    let (calls, duplicates, missing) = settle(&receiver, acked.len()).await;
    println!(
        "nats kill test: {} events over {CALLS} calls, A killed after {killed_at} acknowledged; {} distinct delivered, {duplicates} duplicates, {missing} lost",
        acked.len(),
        calls.values().map(Vec::len).sum::<usize>(),
    );
    assert_eq!(missing, 0, "acknowledged events were lost");
    assert_call_order(&calls);
    drop(b);
}

/// The same notification POSTed to both instances is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_sent_to_both_instances_is_delivered_once() {
    let nats = NatsServer::start().await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let url = receiver.url("/events");
    let (config_a, port_a) = instance_config(dir.path(), "a", &nats.url(), &url);
    let (config_b, port_b) = instance_config(dir.path(), "b", &nats.url(), &url);
    let _a = Serve::start(&config_a);
    let _b = Serve::start(&config_b);
    wait_ready(port_a).await;
    wait_ready(port_b).await;
    let (_, body) = notification(&template(), 7, 0);
    let http = client();
    for port in [port_a, port_b, port_a] {
        let reply = http
            .post(format!("http://127.0.0.1:{port}/rc"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
    // The call's next event: on the same line, so it arrives after anything sent before it.
    let (_, next) = notification(&template(), 7, 1);
    let reply = http
        .post(format!("http://127.0.0.1:{port_b}/rc"))
        .header("content-type", "application/json")
        .body(next)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let got = receiver.wait_for(2, Duration::from_secs(30)).await;
    let (calls, duplicates) = arrivals(&receiver);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(duplicates, 0);
    assert_eq!(calls[&7], [0, 1]);
}

/// nats-server is killed and restarted mid-load: while it is away intake answers 503 (the
/// sender keeps the event and sends it again), and once it is back every acknowledged event
/// is delivered, in call order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_load_loses_nothing_acknowledged() {
    const CALLS: usize = 20;
    let _heavy = crate::harness::HEAVY.lock().await;
    let mut nats = NatsServer::start().await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = instance_config(dir.path(), "a", &nats.url(), &receiver.url("/events"));
    let _a = Serve::start(&config);
    wait_ready(port).await;

    let template = Arc::new(template());
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(HashMap::<u16, usize>::new()));
    let mut senders = tokio::task::JoinSet::new();
    for call in 0..CALLS {
        let (template, acked, refused) = (template.clone(), acked.clone(), refused.clone());
        senders.spawn(async move {
            let http = client();
            for k in 0..PER_CALL {
                let (id, body) = notification(&template, call, k);
                loop {
                    let sent = http
                        .post(format!("http://127.0.0.1:{port}/rc"))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().push(id.clone());
                            break;
                        }
                        Ok(r) => {
                            *refused
                                .lock()
                                .unwrap()
                                .entry(r.status().as_u16())
                                .or_default() += 1;
                            // The sender's own back-off before sending the event again.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => panic!("callgate itself must stay up: {e}"),
                    }
                }
            }
        });
    }
    while acked.lock().unwrap().len() < CALLS * PER_CALL / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nats.kill();
    // Wait until intake notices, so the outage is seen from outside.
    while refused.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nats.restart().await;
    while senders.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    assert_eq!(acked.len(), CALLS * PER_CALL);
    assert!(
        refused.keys().all(|s| *s == 503),
        "only 503 while NATS is away: {refused:?}"
    );

    let (calls, duplicates, missing) = settle(&receiver, acked.len()).await;
    println!(
        "nats restart test: {} events, refused while away: {refused:?}; {duplicates} duplicates, {missing} lost",
        acked.len()
    );
    if missing > 0 {
        panic!(
            "{missing} acknowledged events were lost; the queue as NATS sees it:\n{}",
            consumer_states(&nats.url(), "SCALE").await
        );
    }
    assert_call_order(&calls);
}

/// The lifecycle trackers' leg states are shared: once instance A has applied sequence 5 of
/// a call leg, a stale sequence 3 of that leg sent to instance B is dropped there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_event_is_dropped_whichever_instance_receives_it() {
    let nats = NatsServer::start().await;
    let receiver = Receiver::ok().await;
    let config = |dir: &Path| {
        crate::harness::config_text(
            dir,
            "",
            &format!(
                "routes:\n  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
                receiver.url("/events")
            ),
        )
        .replace(
            &format!("store: {{ kind: sqlite, path: {} }}", dir.join("callgate.db").display()),
            &format!("store: {{ kind: nats, url: '{}', stream: LEGS }}", nats.url()),
        )
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let text_a = config(dir_a.path());
    assert!(text_a.contains("kind: nats"), "{text_a}");
    let a = crate::harness::gateway(&text_a).await;
    let b = crate::harness::gateway(&config(dir_b.path())).await;

    let template = template();
    let (_, fifth) = notification(&template, 9, 4);
    let (status, answer) = crate::harness::post(&a, "/rc", &fifth).await;
    assert_eq!(status, 200, "{answer}");
    // B learns the leg's state through NATS.
    let leg = format!(
        "ringcentral|scale-call-9|{}",
        template["body"]["parties"][0]["id"].as_str().unwrap()
    );
    let learnt = async {
        loop {
            let state = b
                .snapshots
                .load()
                .route("rc")
                .unwrap()
                .lifecycle
                .leg_state(&leg);
            if state.is_some_and(|s| s.last_sequence == Some(5)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), learnt)
        .await
        .expect("B learns A's leg state");
    let (_, third) = notification(&template, 9, 2);
    let (status, answer) = crate::harness::post(&b, "/rc", &third).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["dropped"], 1, "{answer}");
    assert_eq!(answer["stored"], 0, "{answer}");
    b.shutdown().await;
    a.shutdown().await;
}

/// Dead letters on the NATS store through `callgate dlq`, beside a running instance: a 400
/// from the receiver puts the event in `<stream>_DLQ`; `dlq list` shows it; `dlq replay`
/// puts it back and the instance delivers it once the receiver accepts; `dlq purge` empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_on_nats_through_the_dlq_command() {
    let nats = NatsServer::start().await;
    let (receiver, release) = Receiver::refusing(400).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = instance_config(dir.path(), "a", &nats.url(), &receiver.url("/events"));
    let _a = Serve::start(&config);
    wait_ready(port).await;
    let dlq = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
            .args(["dlq", "--config"])
            .arg(&config)
            .args(args)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (_, body) = notification(&template(), 3, 0);
    let reply = client()
        .post(format!("http://127.0.0.1:{port}/rc"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = dlq(&["list"]);
        if listed.contains("c3-0") || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        listed.contains("rc/ce") && listed.contains("HTTP 400"),
        "{listed}"
    );
    // The first row under the header.
    let id = listed
        .lines()
        .nth(1)
        .and_then(|row| row.split('\t').next())
        .unwrap()
        .trim()
        .to_string();
    assert!(dlq(&["show", &id]).contains("c3-0"));

    release.release();
    dlq(&["replay", &id]);
    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "the replayed event is delivered");
    assert_eq!(got[0].json()["id"], "c3-0");
    assert!(
        !dlq(&["list"]).contains("c3-0"),
        "replayed: gone from the dead letters"
    );
    dlq(&["purge", "--yes"]);
}
