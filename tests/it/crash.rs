//! Crash safety with the real binary: 5,000 events at concurrency 32, `kill -9` mid-load,
//! restart on the same store, and every acknowledged event must reach the receiver.
//! Then SIGTERM: the process stops cleanly with exit status 0.

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
    let (port, admin) = (free_port(), free_port());
    let config = crate::harness::write_serve_config(
        dir.path(),
        (port, admin),
        "",
        &root().join("mappings"),
        "retry: [0s, 100ms, 200ms, 500ms, 1s], timeout: 5s",
        &format!(
            "  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            receiver.url("/events")
        ),
    );
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json")).unwrap(),
    )
    .unwrap();
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
