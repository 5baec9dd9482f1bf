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
    let config = crate::harness::write_serve_config(
        dir.path(),
        (port, admin),
        "",
        &root().join("mappings"),
        "retry: [0s, 100ms, 1s], timeout: 10s",
        &format!(
            "  - {{ name: rte, path: /rte, from: enreach, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            receiver.url("/events")
        ),
    );
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

/// One request's work is bounded: a RingCentral notification with 5,000 parties is refused
/// cleanly (beyond `server.max_events_per_request`) without the memory growing, and one with
/// 500 parties is accepted within the same memory bound and reaches its own vendor once (the
/// notification, not one copy per party). The times of 50 and 500 parties are printed, not
/// asserted: how the cost grows is a benchmark's question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parties_stay_within_memory_and_reach_their_vendor_once() {
    let _heavy = crate::harness::HEAVY.lock().await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = crate::harness::write_serve_config(
        dir.path(),
        (port, admin),
        ", request_timeout: 60s",
        &root().join("mappings"),
        "retry: [0s, 100ms], timeout: 10s",
        &format!(
            "  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: same, vendor: ringcentral, url: '{}' }}, {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            receiver.url("/rc"),
            receiver.url("/ce")
        ),
    );
    let serve = Serve::start(&config);
    wait_ready(port).await;
    let template: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(
            "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let with_parties = |n: usize, tag: &str| {
        let mut v = template.clone();
        v["uuid"] = format!("parties-{tag}").into();
        let party = v["body"]["parties"][0].clone();
        v["body"]["parties"] = (0..n)
            .map(|i| {
                if i == 0 {
                    party.clone()
                } else {
                    // Another party of the session, as small as RingCentral sends them.
                    serde_json::json!({"id": format!("p-{i}"), "direction": "Outbound", "status": {"code": "Answered"}})
                }
            })
            .collect();
        v.to_string()
    };
    let post = |body: String| async move {
        let started = Instant::now();
        let r = client()
            .post(format!("http://127.0.0.1:{port}/rc"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        (status, ct, r.text().await.unwrap(), started.elapsed())
    };
    let before = peak_rss_kib(serve.0.id());
    let huge = with_parties(5000, "huge");
    let (status, ct, body, _) = post(huge.clone()).await;
    assert_eq!(
        (status, ct.as_str()),
        (413, "application/problem+json"),
        "{body}"
    );
    assert!(body.contains("max_events_per_request"), "{body}");
    let grown = (peak_rss_kib(serve.0.id()) - before) / 1024;
    assert!(
        grown < 50,
        "refusing {} bytes grew RSS by {grown} MiB",
        huge.len()
    );

    let (status, _, body, small) = post(with_parties(50, "fifty")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body, large) = post(with_parties(500, "five-hundred")).await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["events"], 500);
    let grown = (peak_rss_kib(serve.0.id()) - before) / 1024;
    eprintln!(
        "parties: 5,000 refused; 50 parties {small:?}, 500 parties {large:?}; RSS growth {grown} MiB"
    );
    assert!(grown < 50, "500 parties grew RSS by {grown} MiB");
    // The same-vendor copy is the original notification, sent once.
    let copies = receiver.wait_for(501, Duration::from_secs(60)).await;
    assert_eq!(
        copies.iter().filter(|r| r.path == "/rc").count(),
        2,
        "one RingCentral copy per notification"
    );
}
