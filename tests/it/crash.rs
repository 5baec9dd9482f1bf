//! Crash safety with the real binary: 5,000 events at concurrency 32, `kill -9` mid-load,
//! restart on the same store, and every acknowledged event must reach the receiver; a call's
//! order across `kill -9`; a duplicate after a restart not delivered again; SIGTERM with
//! attempts in flight to a slow receiver (finished, not lost, not doubled).

use crate::harness::{Receiver, client, free_port, spawn_serve as spawn, wait_ready};
use crate::support::root;
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EVENTS: usize = 5000;
const CONCURRENCY: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_acknowledged_event() {
    let _heavy = crate::harness::HEAVY.lock().await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(dir.path(), port, &receiver, UNDER_LOAD);
    let template = answered();
    let bodies: Arc<Vec<(String, String)>> = Arc::new(
        (0..EVENTS)
            .map(|i| {
                let mut v = template.clone();
                let id = format!("crash-{i}");
                v["uuid"] = id.clone().into();
                v["body"]["telephonySessionId"] = format!("call-{i}").into();
                (id, v.to_string())
            })
            .collect(),
    );

    let mut child = spawn(&config);
    wait_ready(port).await;

    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (next, acked, killed, bodies) =
            (next.clone(), acked.clone(), killed.clone(), bodies.clone());
        senders.spawn(async move {
            let http = client();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= EVENTS || killed.load(Ordering::SeqCst) {
                    break;
                }
                let (id, body) = &bodies[i];
                let sent = http
                    .post(format!("http://127.0.0.1:{port}/rc"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                if let Ok(r) = sent
                    && r.status() == 200
                {
                    acked.lock().unwrap().push(id.clone());
                }
            }
        });
    }
    // Kill mid-load: once a third of the events have been acknowledged.
    while acked.lock().unwrap().len() < EVENTS / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("kill -9");
    killed.store(true, Ordering::SeqCst);
    let _ = child.wait();
    while senders.join_next().await.is_some() {}
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let delivered_before_restart = receiver.accepted().len();
    assert!(
        acked.len() < EVENTS,
        "the kill came too late to test anything"
    );

    let mut child = spawn(&config);
    wait_ready(port).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let (missing, counts) = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in receiver.accepted() {
            *counts
                .entry(r.json()["id"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
        let missing: Vec<&String> = acked
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (missing.len(), counts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "crash test: {} acknowledged before kill -9, {} delivered before the restart, {} distinct delivered, {} duplicates, {} lost",
        acked.len(),
        delivered_before_restart,
        counts.len(),
        duplicates,
        missing
    );
    assert_eq!(missing, 0, "acknowledged events were lost");

    // The archive was written in the same transaction as the messages: every acknowledged
    // payload is in it, across the kill.
    let archived = archived_event_ids(&dir.path().join("store.db"));
    let unarchived = acked.iter().filter(|id| !archived.contains(*id)).count();
    assert_eq!(
        unarchived, 0,
        "acknowledged payloads missing from the archive"
    );

    // SIGTERM: stop intake, finish in flight, exit 0 with the queue intact.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "SIGTERM should stop callgate cleanly, got {exit:?}"
    );
}

/// A call's order survives `kill -9` on SQLite: 24 calls of 25 events each, each call sent in
/// order (the next event once the previous was acknowledged), the gateway killed mid-load and
/// restarted on the same store. Every acknowledged event arrives, and within each call the
/// receiver never sees an earlier event after a later one (redelivery after the crash may
/// repeat an event, never reorder the call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_each_calls_order() {
    const CALLS: usize = 24;
    const PER_CALL: usize = 25;
    let _heavy = crate::harness::HEAVY.lock().await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(dir.path(), port, &receiver, UNDER_LOAD);
    let template = answered();
    // Event `k` of call `c`: its own uuid, the call's session and party, a rising sequence.
    let body = |c: usize, k: usize| {
        let mut v = template.clone();
        v["uuid"] = format!("order-{c}-{k}").into();
        v["body"]["telephonySessionId"] = format!("call-{c}").into();
        v["body"]["sequence"] = (k + 1).into();
        v["body"]["parties"][0]["id"] = format!("party-{c}").into();
        v.to_string()
    };

    let mut child = spawn(&config);
    wait_ready(port).await;
    let acked = Arc::new(Mutex::new(Vec::<(usize, usize)>::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for c in 0..CALLS {
        let (acked, killed, bodies) = (
            acked.clone(),
            killed.clone(),
            (0..PER_CALL).map(|k| body(c, k)).collect::<Vec<_>>(),
        );
        senders.spawn(async move {
            let http = client();
            for (k, body) in bodies.into_iter().enumerate() {
                if killed.load(Ordering::SeqCst) {
                    break;
                }
                let sent = http
                    .post(format!("http://127.0.0.1:{port}/rc"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push((c, k)),
                    // Not acknowledged: the call stops here (its next event would be
                    // out of order for the sender too).
                    _ => break,
                }
            }
        });
    }
    while acked.lock().unwrap().len() < CALLS * PER_CALL / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("kill -9");
    killed.store(true, Ordering::SeqCst);
    let _ = child.wait();
    while senders.join_next().await.is_some() {}
    let acked: Vec<(usize, usize)> = acked.lock().unwrap().clone();
    assert!(
        acked.len() < CALLS * PER_CALL,
        "the kill came too late to test anything"
    );

    let mut child = spawn(&config);
    wait_ready(port).await;
    let id_of = |(c, k): (usize, usize)| format!("order-{c}-{k}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let delivered = loop {
        let delivered: Vec<String> = receiver
            .accepted()
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap_or_default().to_string())
            .collect();
        let all_there = acked.iter().all(|a| delivered.contains(&id_of(*a)));
        if all_there || Instant::now() > deadline {
            break delivered;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let missing = acked
        .iter()
        .filter(|a| !delivered.contains(&id_of(**a)))
        .count();
    assert_eq!(missing, 0, "acknowledged events were lost");
    let mut highest: HashMap<usize, usize> = HashMap::new();
    for id in &delivered {
        let mut parts = id.trim_start_matches("order-").split('-');
        let (Some(c), Some(k)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (c, k): (usize, usize) = (c.parse().unwrap(), k.parse().unwrap());
        let seen = highest.entry(c).or_insert(k);
        assert!(
            k >= *seen,
            "call {c}: event {k} arrived after event {seen}: {delivered:?}"
        );
        *seen = k;
    }
    println!(
        "ordered crash test: {} acknowledged before kill -9, {} deliveries in all",
        acked.len(),
        delivered.len()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Delivery settings of the kill -9 tests: retries that outlast a restart.
const UNDER_LOAD: &str = "retry: [0s, 100ms, 200ms, 500ms, 1s], timeout: 5s";

/// Delivery settings of the restart tests: quick retries, a timeout above the slow receiver.
const SETTLED: &str = "retry: [0s, 100ms, 200ms], timeout: 10s";

/// The real flow's answered notification, the template the load tests vary.
fn answered() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json")).unwrap(),
    )
    .unwrap()
}

/// Sends SIGTERM and returns the exit status.
fn sigterm(mut child: std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap()
}

/// A route from RingCentral to a CloudEvents receiver, for the real binary, with these
/// delivery settings.
fn serve_config(
    dir: &std::path::Path,
    port: u16,
    receiver: &Receiver,
    delivery: &str,
) -> std::path::PathBuf {
    crate::harness::write_serve_config(
        dir,
        (port, free_port()),
        "",
        &root().join("mappings"),
        delivery,
        &format!(
            "  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            receiver.url("/events")
        ),
    )
}

/// The real flow's notifications (their uuids are the CloudEvents ids the receiver sees).
fn flow_bodies() -> Vec<(String, String)> {
    let dir = root().join("tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            (v["uuid"].as_str().unwrap().to_string(), text)
        })
        .collect()
}

async fn post(port: u16, body: &str) -> u16 {
    client()
        .post(format!("http://127.0.0.1:{port}/rc"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A notification the sender delivers again after the gateway restarted (RingCentral retries,
/// a replayed WebSocket) is not queued again: the store remembers its id across the restart,
/// so the receiver gets it once; the call's next notification still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_again_after_a_restart_is_not_delivered_again() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(dir.path(), port, &receiver, SETTLED);
    let bodies = flow_bodies();
    let (first, next) = (&bodies[5], &bodies[6]);
    let child = spawn(&config);
    wait_ready(port).await;
    assert_eq!(post(port, &first.1).await, 200);
    let count = |id: &str| {
        receiver
            .accepted()
            .iter()
            .filter(|r| r.json()["id"] == id)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&first.0) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&first.0), 1);
    assert!(sigterm(child).success());

    let child = spawn(&config);
    wait_ready(port).await;
    assert_eq!(
        post(port, &first.1).await,
        200,
        "a duplicate is acknowledged"
    );
    assert_eq!(post(port, &next.1).await, 200);
    // The call's next notification is behind the duplicate's place in line: once it is
    // here, a queued duplicate would be too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&next.0) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&next.0), 1);
    assert_eq!(count(&first.0), 1, "the duplicate was delivered again");
    assert!(sigterm(child).success());
}

/// SIGTERM while attempts are in flight to a slow receiver: they finish (the receiver answers
/// each), the process exits 0, and a restart on the same store delivers none of them again
/// (they were not lost, and not doubled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_attempts_in_flight_to_a_slow_receiver() {
    let receiver = Receiver::start(|_| crate::harness::Reply {
        status: 200,
        body: "ok".into(),
        delay: Duration::from_millis(1500),
        headers: Vec::new(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = serve_config(dir.path(), port, &receiver, SETTLED);
    let bodies = flow_bodies();
    let child = spawn(&config);
    wait_ready(port).await;
    // Three notifications of three different calls: three attempts at once.
    let mut sent = Vec::new();
    for (n, (id, text)) in bodies.iter().take(6).skip(3).enumerate() {
        let mut v: Value = serde_json::from_str(text).unwrap();
        v["body"]["telephonySessionId"] = format!("slow-{n}").into();
        assert_eq!(post(port, &v.to_string()).await, 200);
        sent.push(id.clone());
    }
    // Wait until every attempt has reached the receiver (it is still answering them).
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.all().len() < sent.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.all().len(), sent.len(), "attempts in flight");
    assert!(
        receiver.accepted().len() < sent.len(),
        "the receiver was meant to be slower than the SIGTERM"
    );
    let exit = sigterm(child);
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        receiver.accepted().len(),
        sent.len(),
        "every attempt in flight was finished before the exit"
    );

    // Restart: a sentinel goes through; nothing of before comes again.
    let child = spawn(&config);
    wait_ready(port).await;
    let (sentinel, text) = &bodies[7];
    assert_eq!(post(port, text).await, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !receiver
        .accepted()
        .iter()
        .any(|r| r.json()["id"] == *sentinel)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        receiver
            .accepted()
            .iter()
            .any(|r| r.json()["id"] == *sentinel),
        "the sentinel after the restart"
    );
    for id in &sent {
        let n = receiver
            .all()
            .iter()
            .filter(|r| r.json()["id"] == *id)
            .count();
        assert_eq!(n, 1, "{id} was sent {n} times");
    }
    assert!(sigterm(child).success());
}

/// The event ids of every payload in a SQLite store's archive.
fn archived_event_ids(store: &std::path::Path) -> std::collections::HashSet<String> {
    let db =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the store opens");
    let mut statement = db.prepare("SELECT record FROM archive").unwrap();
    let records: Vec<String> = statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    records
        .iter()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .filter(|record| record["kind"] == "received")
        .flat_map(|record| {
            record["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["event"]["id"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}
