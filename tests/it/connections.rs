//! Connection-level hostility against the real listener: slow headers, idle keep-alive
//! connections, more connections than the cap, and oversized request lines and headers.

use crate::harness::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; `None` if it is still open after `limit`
/// (the failure bound, not a synchronisation).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some(seen)
}

fn open_connections(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with("callgate_connections_open{listener=\"public\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no public connection gauge in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_connections_are_closed_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "").replace(
        "request_timeout: 5s",
        "request_timeout: 5s, header_read_timeout: 500ms, max_connections: 20",
    );
    let gw = gateway(&text).await;

    // 200 senders that start a request and never finish its headers.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"POST /hooks/ringcentral HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // While they hold their slots, the listener never holds more than its cap.
    for _ in 0..5 {
        let open = open_connections(&metrics(gw.admin_addr).await);
        assert!(open <= 20.0, "{open} connections open, cap is 20");
    }
    // Every one of them is closed by the header read timeout; the ones beyond the cap wait
    // in the backlog until slots free up, then get the same treatment.
    for (i, s) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(60)).await.is_some(),
            "slow-header connection {i} is still open"
        );
    }
    // A well-behaved client is served afterwards.
    let r = client()
        .get(format!("http://{}/healthz", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "").replace(
        "request_timeout: 5s",
        "request_timeout: 5s, header_read_timeout: 300ms",
    );
    let gw = gateway(&text).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let seen = closed_within(&mut s, Duration::from_secs(30))
        .await
        .expect("the idle keep-alive connection is closed");
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    gw.shutdown().await;
}

/// Sends raw bytes and returns the response head and body.
async fn raw(gw: &callgate::gateway::Gateway, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let seen = closed_within(&mut s, Duration::from_secs(30))
        .await
        .expect("answered and closed");
    let seen = String::from_utf8_lossy(&seen).to_string();
    let (head, body) = seen.split_once("\r\n\r\n").unwrap_or((&seen, ""));
    (head.to_string(), body.to_string())
}

fn assert_problem(head: &str, body: &str, status: u16) {
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status}")),
        "{head}\n\n{body}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    let problem: Value = serde_json::from_str(body).expect("problem+json body");
    assert_eq!(problem["status"], status, "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_uris_and_huge_headers_get_problem_details() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", "")).await;

    let uri = format!("/hooks/ringcentral?{}", "a".repeat(20_000));
    let (head, body) = raw(
        &gw,
        format!("GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_problem(&head, &body, 414);

    let big = "b".repeat(40_000);
    let (head, body) = raw(
        &gw,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_problem(&head, &body, 431);

    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (head, body) = raw(
        &gw,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_problem(&head, &body, 431);
    gw.shutdown().await;
}
