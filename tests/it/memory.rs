//! Bounded memory under hostile load, against the real binary: 50,000 Enreach events that
//! each invent their own event type, a receiver whose replies are 50 MB, and a gateway whose
//! peak RSS and `/metrics` stay small.

use crate::harness::{Receiver, Reply, Serve, client, free_port, wait_ready};
use crate::support::root;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const EVENTS: usize = 50_000;
const CONCURRENCY: usize = 32;
/// The bound README states for this load: peak RSS of the gateway.
const RSS_BOUND_MIB: u64 = 128;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_types_and_huge_replies_keep_memory_and_metrics_bounded() {
    let _heavy = crate::harness::HEAVY.lock().await;
    let huge = Arc::new(AtomicUsize::new(0));
    let counter = huge.clone();
    let receiver = Receiver::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 3 {
            Reply {
                body: "x".repeat(50 << 20),
                ..Reply::ok()
            }
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("callgate.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{ listen: 127.0.0.1:{port}, admin_listen: 127.0.0.1:{admin} }}\n\
             mappings: {}\n\
             store: {{ kind: sqlite, path: {} }}\n\
             delivery: {{ retry: [0s, 100ms, 1s], timeout: 10s }}\n\
             routes:\n  - {{ name: rte, path: /rte, from: enreach, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            root().join("mappings").display(),
            dir.path().join("store.db").display(),
            receiver.url("/events")
        ),
    )
    .unwrap();
    let serve = Serve::start(&config);
    wait_ready(port).await;
    let started_kib = peak_rss_kib(serve.0.id());

    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut refused = 0;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= EVENTS {
                    return refused;
                }
                let body = format!(
                    r#"{{"EventType":"Invented{i}","Id":"id-{i}","UserId":"user-{}","Timestamp":"2020-01-01T12:00:00Z"}}"#,
                    i % 500
                );
                loop {
                    let r = http
                        .post(format!("http://127.0.0.1:{port}/rte"))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        200 => break,
                        // Shed or busy: the sender retries, as vendors do.
                        503 => refused += 1,
                        other => panic!("event {i}: {other} {}", r.text().await.unwrap()),
                    }
                }
            }
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready: serde_json::Value = client()
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["waiting"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.accepted().len(), EVENTS, "every event delivered");
    let metrics = crate::harness::metrics(([127, 0, 0, 1], admin).into()).await;
    let peak_kib = peak_rss_kib(serve.0.id());
    eprintln!(
        "memory: {EVENTS} events with invented types, 3 replies of 50 MB: RSS {} MiB at start, peak {} MiB; /metrics {} bytes; {refused} requests answered 503 and re-sent",
        started_kib / 1024,
        peak_kib / 1024,
        metrics.len()
    );
    assert!(
        metrics.len() < 1 << 20,
        "/metrics is {} bytes",
        metrics.len()
    );
    assert!(
        !metrics.contains("Invented"),
        "no label carries payload text"
    );
    assert!(
        peak_kib / 1024 < RSS_BOUND_MIB,
        "peak RSS {} MiB over the stated bound {RSS_BOUND_MIB} MiB",
        peak_kib / 1024
    );
}
