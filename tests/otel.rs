//! The `otel` feature (`cargo test --features otel --test otel`, run by `.ci/run`): spans
//! reach an OTLP/HTTP collector — here a loopback receiver that keeps what it is sent — one
//! `request` span per inbound payload and one `delivery` span per attempt, both carrying the
//! event id.

// Its own test binary, so that building it with the feature does not rebuild the big `it`
// binary; it borrows that binary's harness.
#![allow(dead_code)]

#[path = "it/harness.rs"]
mod harness;
#[path = "it/support.rs"]
mod support;

use harness::{Receiver, free_port, wait_ready, write_serve_config};
use std::time::Duration;
use support::{fixtures, root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_linked_by_event_id() {
    let collector = Receiver::ok().await;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let routes = format!(
        "  - name: rc\n    path: /hooks/rc\n    from: ringcentral\n    to:\n      - {{ name: vidyo, vendor: vidyo, url: '{}', types: ['call.*'] }}\n",
        receiver.url("/vidyo")
    );
    let config = write_serve_config(
        dir.path(),
        (port, admin),
        "",
        &root().join("mappings"),
        "timeout: 2s",
        &routes,
    );
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url(""))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    wait_ready(port).await;
    let notification = std::fs::read_to_string(
        &fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json")[5],
    )
    .unwrap();
    let (status, reply) =
        harness::post_json(&format!("http://127.0.0.1:{port}/hooks/rc"), &notification).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(receiver.wait_for(1, Duration::from_secs(20)).await.len(), 1);
    // SIGTERM: the exporter flushes what is left on the way out.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(serve.wait().unwrap().success());

    let exports = collector.all();
    assert!(!exports.is_empty(), "nothing reached the collector");
    for export in &exports {
        assert_eq!(export.path, "/v1/traces");
        assert_eq!(export.headers["content-type"], "application/x-protobuf");
    }
    let bytes: Vec<u8> = exports
        .iter()
        .flat_map(|e| e.body.as_bytes().to_vec())
        .collect();
    let count = |needle: &[u8]| bytes.windows(needle.len()).filter(|w| *w == needle).count();
    let event_id = serde_json::from_str::<serde_json::Value>(&notification).unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(count(b"callgate") >= 1, "service name");
    assert!(count(b"request") >= 1, "a request span");
    assert!(count(b"delivery") >= 1, "a delivery span");
    assert!(
        count(event_id.as_bytes()) >= 2,
        "the event id on both the request and the delivery span"
    );
}
