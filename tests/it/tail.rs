//! The live tail: `/admin/tail` (Server-Sent Events) and `callgate tail`, against a gateway
//! receiving the real RingCentral flow and delivering to real loopback receivers.

use crate::harness::{Receiver, SseReader, client, config_text, gateway, post};
use crate::support::fixtures;
use serde_json::Value;
use std::io::BufRead;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn flow() -> Vec<String> {
    fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

/// A RingCentral route to Vidyo, plus an Oracle ISR destination that takes only recording
/// events (so every call event is skipped there, with its reason).
fn routes(receiver: &Receiver, extra_server: &str) -> String {
    format!(
        "{extra_server}routes:\n  - name: rc\n    path: /hooks/rc\n    from: ringcentral\n    to:\n      - {{ name: vidyo, vendor: vidyo, url: '{}', types: ['call.*'] }}\n      - {{ name: isr, vendor: oracle-isr, url: '{}', types: ['recording.*'] }}\n",
        receiver.url("/vidyo"),
        receiver.url("/isr")
    )
}

fn delivered(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["kind"] == "delivery" && r["outcome"] == "delivered")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_follows_the_real_flow_with_each_destinations_outcome() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &routes(&receiver, ""))).await;
    let admin = format!("http://{}", gw.admin_addr);
    let mut live = SseReader::open(&format!("{admin}/admin/tail?route=rc"), None).await;
    for body in flow() {
        let (status, reply) = post(&gw, "/hooks/rc", &body).await;
        assert_eq!(status, 200, "{reply}");
    }
    let got = receiver.wait_for(6, WAIT).await;
    assert_eq!(got.len(), 6);
    let records = live.until(WAIT, |r| delivered(r).len() == 6).await;

    // Every record in order, each delivery after the event it delivers.
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let events: Vec<&Value> = records.iter().filter(|r| r["kind"] == "event").collect();
    assert!(events.len() >= 6, "{records:#?}");
    for event in &events {
        assert_eq!(event["route"], "rc");
        assert_eq!(event["vendor"], "ringcentral");
        let fates = event["destinations"].as_array().unwrap();
        assert_eq!(fates[1]["destination"], "isr");
        assert_eq!(fates[1]["status"], "skipped");
        assert_eq!(fates[1]["reason"], "type filter");
        assert!(
            fates[0].get("body").is_none(),
            "bodies are off by default: {event}"
        );
    }
    for (n, delivery) in delivered(&records).iter().enumerate() {
        assert_eq!(delivery["destination"], "vidyo");
        assert_eq!(delivery["status"], 200);
        assert_eq!(delivery["attempt"], 1);
        assert!(delivery["delivery_id"].as_i64().unwrap() > 0);
        let event = events
            .iter()
            .find(|e| e["event_id"] == delivery["event_id"])
            .unwrap_or_else(|| panic!("delivery {n} has no event record: {delivery}"));
        assert!(event["seq"].as_u64() < delivery["seq"].as_u64());
        assert_eq!(event["destinations"][0]["status"], "queued");
        assert_eq!(event["type"], delivery["type"]);
        assert_eq!(event["partitionkey"], delivery["partitionkey"]);
    }

    // A late subscriber gets the kept records, filtered: one call, one type.
    let first = delivered(&records)[0].clone();
    let call = first["partitionkey"].as_str().unwrap();
    let mut late = SseReader::open(
        &format!("{admin}/admin/tail?partitionkey={call}&type=call.alerting&destination=vidyo"),
        None,
    )
    .await;
    let backlog = late.until(WAIT, |r| !delivered(r).is_empty()).await;
    assert!(
        backlog
            .iter()
            .all(|r| r["partitionkey"] == call && r["type"] == "call.alerting"),
        "{backlog:#?}"
    );
    // Where history ends is marked: every kept record, then `live` with their count (it used
    // to run on into live records unmarked).
    let mut marked = SseReader::open(&format!("{admin}/admin/tail?route=rc"), None).await;
    let mut history = Vec::new();
    let marker = loop {
        let record = marked
            .next(WAIT)
            .await
            .expect("the backlog, then the marker");
        if record["kind"] == "live" {
            break record;
        }
        history.push(record);
    };
    assert_eq!(marker["backlog"], history.len() as u64);
    assert!(
        history.len() >= records.len(),
        "every kept record of route rc comes first"
    );
    // The first subscriber, there before anything happened, got the marker at once.
    assert_eq!(live.live_after(), Some((0, serde_json::json!(0))));
    // `call` is the filter's older name, still accepted.
    let mut by_call = SseReader::open(
        &format!("{admin}/admin/tail?call={call}&type=call.alerting&destination=vidyo"),
        None,
    )
    .await;
    let same = by_call.until(WAIT, |r| !delivered(r).is_empty()).await;
    assert!(same.iter().all(|r| r["partitionkey"] == call), "{same:#?}");
    // Resuming after an id seen (Last-Event-ID) gives what followed it, in order, nothing
    // before it.
    let mid = records[records.len() / 2]["seq"].as_u64().unwrap();
    let last = records.last().unwrap()["seq"].as_u64().unwrap();
    let mut resumed = SseReader::open(&format!("{admin}/admin/tail"), Some(mid)).await;
    let again = resumed
        .until(WAIT, |r| r.last().is_some_and(|r| r["seq"] == last))
        .await;
    let seqs: Vec<u64> = again.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, ((mid + 1)..=last).collect::<Vec<_>>());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_show_their_next_attempt_and_the_dead_letter_its_reason() {
    let (receiver, _release) = Receiver::refusing(503).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        ", retry: [0s, 100ms, 100ms]",
        &routes(&receiver, ""),
    );
    let gw = gateway(&text).await;
    let admin = format!("http://{}", gw.admin_addr);
    let mut live = SseReader::open(&format!("{admin}/admin/tail?destination=vidyo"), None).await;
    let (status, reply) = post(&gw, "/hooks/rc", &flow()[5]).await;
    assert_eq!(status, 200, "{reply}");
    let records = live
        .until(WAIT, |r| r.iter().any(|r| r["outcome"] == "dead"))
        .await;
    let attempts: Vec<&Value> = records.iter().filter(|r| r["kind"] == "delivery").collect();
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    for (n, attempt) in attempts[..2].iter().enumerate() {
        assert_eq!(attempt["outcome"], "retrying");
        assert_eq!(attempt["attempt"], n as u64 + 1);
        assert_eq!(attempt["status"], 503);
        let next = attempt["next_attempt"].as_str().expect("next attempt time");
        assert!(next > attempt["time"].as_str().unwrap(), "{attempt}");
    }
    assert_eq!(attempts[2]["outcome"], "dead");
    assert_eq!(attempts[2]["attempt"], 3);
    assert!(attempts[2].get("next_attempt").is_none());
    // The dead letter's id is the delivery id the tail showed.
    let id = attempts[2]["delivery_id"].as_i64().unwrap();
    let r = client()
        .get(format!("{admin}/admin/deliveries/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Stopping ends the stream: a subscriber does not hold the gateway open.
    tokio::time::timeout(WAIT, gw.shutdown())
        .await
        .expect("the gateway stops with a tail subscriber attached");
    assert!(live.next(WAIT).await.is_none(), "the stream ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_only_when_configured_and_bad_filters_are_refused() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    // `config_text` writes the server line; turn bodies on there.
    let text = config_text(dir.path(), "", &routes(&receiver, "")).replacen(
        "request_timeout: 5s }",
        "request_timeout: 5s, tail_bodies: true }",
        1,
    );
    let gw = gateway(&text).await;
    let admin = format!("http://{}", gw.admin_addr);
    let mut live = SseReader::open(&format!("{admin}/admin/tail"), None).await;
    let (status, _) = post(&gw, "/hooks/rc", &flow()[5]).await;
    assert_eq!(status, 200);
    let records = live
        .until(WAIT, |r| r.iter().any(|r| r["kind"] == "event"))
        .await;
    let event = records.iter().find(|r| r["kind"] == "event").unwrap();
    let body = &event["destinations"][0]["body"];
    assert_eq!(
        body["userStatusNotification"]["user"]["userState"], "Alerting",
        "{event}"
    );

    for query in ["rout=rc", "route=rc&route=x", "call=a&nonsense=1"] {
        let r = client()
            .get(format!("{admin}/admin/tail?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
    }
    // A garbage Last-Event-ID is read as none: the whole backlog again.
    let mut r = client()
        .get(format!("{admin}/admin/tail"))
        .header("last-event-id", "not a number")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("id: 1\n"),
        "{first:?}"
    );
    gw.shutdown().await;
}

/// `callgate tail` prints one line per record of the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callgate_tail_prints_the_flow() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", &routes(&receiver, ""));
    let gw = gateway(&text).await;
    let config = dir.path().join("callgate.yaml");
    std::fs::write(&config, &text).unwrap();
    for body in flow() {
        let (status, reply) = post(&gw, "/hooks/rc", &body).await;
        assert_eq!(status, 200, "{reply}");
    }
    receiver.wait_for(6, WAIT).await;

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["tail", "--config"])
        .arg(&config)
        .args(["--admin", &format!("http://{}", gw.admin_addr)])
        .args(["--route", "rc", "--destination", "vidyo"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("callgate runs");
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    while printed
        .iter()
        .filter(|l: &&String| l.contains(" · delivered 200"))
        .count()
        < 6
    {
        match lines.recv_timeout(WAIT) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("callgate tail printed only: {printed:#?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let deliveries: Vec<&String> = printed
        .iter()
        .filter(|l| l.contains("rc/vidyo →"))
        .collect();
    assert_eq!(deliveries.len(), 6, "{printed:#?}");
    assert!(
        printed.iter().all(|l| !l.contains('\x1b')),
        "no colour into a pipe"
    );
    assert!(
        printed
            .iter()
            .any(|l| l.contains("rc ← ringcentral call.") && l.contains("vidyo: queued")),
        "{printed:#?}"
    );
    // The deliveries come in the order the events were queued for Vidyo.
    let type_of = |line: &str, after: &str| {
        line.split(after)
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .map(str::to_string)
    };
    let queued: Vec<_> = printed
        .iter()
        .filter(|l| l.contains("vidyo: queued"))
        .filter_map(|l| type_of(l, "ringcentral "))
        .collect();
    let sent: Vec<_> = deliveries.iter().filter_map(|l| type_of(l, "→ ")).collect();
    assert_eq!(queued, sent, "{printed:#?}");

    // An unreachable admin listener is a clear error, not a hang.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["tail", "--admin", "http://127.0.0.1:1", "--token", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the admin listener at http://127.0.0.1:1"),
        "{stderr}"
    );
    gw.shutdown().await;
}

/// Logs of `serve` into a pipe are JSON lines, and the lines of an event's path carry its
/// route, vendor, event id, call id and (for attempts) delivery id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_into_a_pipe_are_json_lines_naming_the_event_path() {
    let (receiver, _release) = Receiver::refusing(503).await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (crate::harness::free_port(), crate::harness::free_port());
    let routes = format!(
        "  - name: rc\n    path: /hooks/rc\n    from: auto\n    to:\n      - {{ name: vidyo, vendor: vidyo, url: '{}', types: ['call.*'] }}\n",
        receiver.url("/vidyo")
    );
    let config = crate::harness::write_serve_config(
        dir.path(),
        (port, admin),
        "",
        &crate::support::root().join("mappings"),
        "timeout: 2s, retry: [0s, 50ms]",
        &routes,
    );
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("CALLGATE_LOG", "info")
        .env_remove("CALLGATE_LOG_FORMAT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = serve.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    crate::harness::wait_ready(port).await;
    let notification = &flow()[5];
    for _ in 0..2 {
        let (status, reply) =
            crate::harness::post_json(&format!("http://127.0.0.1:{port}/hooks/rc"), notification)
                .await;
        assert_eq!(status, 200, "{reply}");
    }
    // Two attempts (503, then dead), and the redelivery dropped or deduplicated.
    let mut logged: Vec<Value> = Vec::new();
    while !logged
        .iter()
        .any(|l| l["fields"]["message"] == "delivery failed for good: dead letter")
    {
        let line = lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("serve logged only: {logged:#?}"));
        logged.push(
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")),
        );
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let event_id = serde_json::from_str::<Value>(notification).unwrap()["uuid"].clone();
    for message in [
        "delivery failed, will retry",
        "delivery failed for good: dead letter",
    ] {
        let line = logged
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no `{message}` in {logged:#?}"));
        let span = &line["span"];
        assert_eq!(span["name"], "delivery", "{line}");
        assert_eq!(span["route"], "rc", "{line}");
        assert_eq!(span["destination"], "vidyo", "{line}");
        assert_eq!(span["event_id"], event_id, "{line}");
        assert!(
            span["partitionkey"].as_str().unwrap().starts_with("s-"),
            "{line}"
        );
        assert!(span["delivery_id"].as_u64().unwrap() > 0, "{line}");
        assert_eq!(line["fields"]["status"], 503, "{line}");
    }
    // The redelivery, dropped inside the request span (vendor detected from `auto`).
    let dropped = logged
        .iter()
        .find(|l| l["fields"]["message"] == "event dropped")
        .unwrap_or_else(|| panic!("no dropped line in {logged:#?}"));
    assert_eq!(dropped["span"]["name"], "request", "{dropped}");
    assert_eq!(dropped["span"]["route"], "rc", "{dropped}");
    assert_eq!(dropped["span"]["vendor"], "ringcentral", "{dropped}");
    assert_eq!(dropped["span"]["event_ids"], event_id, "{dropped}");
    assert_eq!(dropped["fields"]["event_id"], event_id, "{dropped}");
    assert!(
        dropped["fields"]["partitionkey"]
            .as_str()
            .unwrap()
            .starts_with("s-")
    );
    assert!(
        logged
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string())
    );
}
