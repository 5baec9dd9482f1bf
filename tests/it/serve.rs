//! `callgate serve` end to end: real HTTP in, real HTTP out, a real SQLite store.

use crate::harness::{Receiver, Reply, client, config_text, gateway, post};
use crate::support::{DATASTREAMS_IN_VIDYO, fixtures, mappings, pairs, root, vidyo_states};
use callgate::translate::Translator;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn flow(name: &str) -> Vec<String> {
    fixtures(&format!("ringcentral/flows/{name}"), ".json")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

fn rc_route(receiver: &Receiver, extra: &str) -> String {
    format!(
        "routes:\n  - name: rc\n    path: /hooks/rc\n    from: ringcentral\n{extra}    to:\n      - {{ name: vidyo, vendor: vidyo, url: '{}', types: ['call.*', 'presence.changed'] }}\n",
        receiver.url("/vidyo")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_ringcentral_flow_reaches_vidyo_in_order() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &rc_route(&receiver, ""))).await;
    for body in flow("PSTN-RingCentral-DataStreams") {
        let (status, reply) = post(&gw, "/hooks/rc", &body).await;
        assert_eq!(status, 200, "{reply}");
    }
    let got = receiver.wait_for(6, WAIT).await;
    assert_eq!(
        vidyo_states(&got.iter().map(|r| r.json()).collect::<Vec<_>>()),
        pairs(DATASTREAMS_IN_VIDYO)
    );
    let seqs: Vec<i64> = got
        .iter()
        .map(|r| r.json()["sequenceNum"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [6, 7, 8, 9, 10, 11]);
    assert_eq!(got[0].headers["content-type"], "application/json");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffled_flow_drops_stale_events_and_keeps_order() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &rc_route(&receiver, ""))).await;
    let flow = flow("PSTN-RingCentral-DataStreams");
    // 06 redelivered, 07 (seq 8) after 08 (seq 9), 09 (seq 10) after 10 (seq 11).
    let (mut dropped, mut drops) = (0, 0);
    for n in [5, 6, 6, 8, 7, 10, 9] {
        let (status, reply) = post(&gw, "/hooks/rc", &flow[n - 1]).await;
        assert_eq!(status, 200, "{reply}");
        let reply: Value = serde_json::from_str(&reply).unwrap();
        dropped += reply["dropped"].as_u64().unwrap();
        // Each drop says why.
        for drop in reply["drops"].as_array().unwrap() {
            let reason = drop["reason"].as_str().unwrap();
            assert!(
                reason.starts_with("duplicate") || reason.starts_with("stale"),
                "{reply}"
            );
            drops += 1;
        }
    }
    assert_eq!(dropped, 3, "one duplicate and two stale notifications");
    assert_eq!(drops, 3, "each drop in the replies names its reason");
    let got = receiver.wait_for(4, WAIT).await;
    crate::harness::drained(&gw).await;
    assert_eq!(receiver.accepted().len(), 4);
    assert_eq!(
        vidyo_states(&got.iter().map(|r| r.json()).collect::<Vec<_>>()),
        pairs(&[
            ("Alerting", "ALERTING"),
            ("Alerting", "ALERTING"),
            ("Busy", "IN PROGRESS"),
            ("Online", "COMPLETED")
        ])
    );
    let seqs: Vec<i64> = got
        .iter()
        .map(|r| r.json()["sequenceNum"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [6, 7, 9, 11], "delivered in sequence order");
    gw.shutdown().await;
}

/// Every vendor into every other, through `serve`: what the receiver gets equals what
/// `translate` prints for the same payloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vendor_into_every_other() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let sources = ["ringcentral", "vidyo", "enreach", "enablex", "oracle-isr"];
    let targets = [
        "ringcentral",
        "vidyo",
        "enreach",
        "enablex",
        "oracle-isr",
        "cloudevents",
    ];
    let mut routes = String::from("routes:\n");
    for s in sources {
        routes.push_str(&format!(
            "  - name: from-{s}\n    path: /in/{s}\n    from: {s}\n    to:\n"
        ));
        for t in targets {
            routes.push_str(&format!(
                "      - {{ name: {t}, vendor: {t}, url: '{}' }}\n",
                receiver.url(&format!("/{s}/{t}"))
            ));
        }
    }
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;

    let mut expected: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut total = 0;
    for s in sources {
        let translators: Vec<Translator> = targets
            .iter()
            .map(|t| {
                Translator::new(mappings(), s, t, &receiver.url(&format!("/{s}/{t}"))).unwrap()
            })
            .collect();
        let ext = if s == "oracle-isr" { ".txt" } else { ".json" };
        for file in fixtures(s, ext) {
            if file.to_string_lossy().contains("/partial/") {
                continue; // trimmed events without ids: two of them are identical on purpose
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let (status, reply) = if s == "oracle-isr" {
                let query = text.trim().split_once('?').unwrap().1.to_string();
                let r = client()
                    .get(format!("http://{}/in/{s}?{query}", gw.addr))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            } else {
                post(&gw, &format!("/in/{s}"), &text).await
            };
            assert_eq!(status, 200, "{}: {reply}", file.display());
            for (t, translator) in targets.iter().zip(&translators) {
                for payload in translator.read(&text).unwrap() {
                    for outcome in translator.translate(&payload).unwrap() {
                        if let Some(line) = outcome.output_line() {
                            expected.entry(format!("/{s}/{t}")).or_default().push(line);
                            total += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(total >= 180, "only {total} translations expected");
    let got = receiver.wait_for(total, Duration::from_secs(60)).await;
    assert_eq!(got.len(), total);
    let mut actual: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in got {
        let value = if r.path.ends_with("/oracle-isr") {
            assert_eq!(r.method, "GET");
            serde_json::json!({"method": "GET", "url": format!("http://{}{}?{}", receiver.addr, r.path, r.query.unwrap_or_default())})
        } else {
            r.json()
        };
        actual.entry(r.path).or_default().push(value);
    }
    for (path, mut want) in expected {
        let mut have = actual.remove(&path).unwrap_or_default();
        let key = |v: &Value| v.to_string();
        want.sort_by_key(key);
        have.sort_by_key(key);
        assert_eq!(have, want, "{path}");
    }
    assert!(
        actual.is_empty(),
        "unexpected deliveries: {:?}",
        actual.keys()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_delivered_exactly_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let receiver = Receiver::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < 3 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &rc_route(&receiver, ""))).await;
    let body = &flow("PSTN-RingCentral-DataStreams")[5];
    assert_eq!(post(&gw, "/hooks/rc", body).await.0, 200);
    assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1);
    crate::harness::drained(&gw).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "three 503s, then one 200, then nothing"
    );
    assert_eq!(receiver.accepted().len(), 1);
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(metrics.contains("callgate_deliveries_total"), "{metrics}");
    assert!(metrics.contains("outcome=\"retry_status\""), "{metrics}");
    assert!(
        metrics.contains("callgate_delivery_attempt_seconds_bucket"),
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_goes_to_the_dead_letters_and_replay_delivers_it() {
    let (receiver, refusal) = Receiver::refusing(400).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &rc_route(&receiver, ""))).await;
    assert_eq!(
        post(&gw, "/hooks/rc", &flow("PSTN-RingCentral-DataStreams")[5])
            .await
            .0,
        200
    );

    let admin = format!("http://{}", gw.admin_addr);
    let mut dead = Value::Null;
    for _ in 0..100 {
        dead = client()
            .get(format!("{admin}/admin/deliveries"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if dead["dead_letters"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["destination"], "vidyo");
    assert_eq!(letter["attempts"], 1, "a 400 is not retried");
    assert_eq!(letter["attempt_log"][0]["status"], 400);
    assert_eq!(letter["attempt_log"][0]["excerpt"], "status 400");
    assert_eq!(receiver.all().len(), 1);

    refusal.release();
    let id = letter["id"].as_i64().unwrap();
    let shown: Value = client()
        .get(format!("{admin}/admin/deliveries/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["id"], id);
    let replay = client()
        .post(format!("{admin}/admin/deliveries/{id}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json()["userStatusNotification"]["user"]["userState"],
        "Alerting"
    );
    let missing = client()
        .post(format!("{admin}/admin/deliveries/9999/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    gw.shutdown().await;
}

/// 50 calls, their events interleaved, a receiver failing at random: each call's events
/// still arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_calls_keep_their_order_under_failures() {
    let counter = Arc::new(AtomicUsize::new(0));
    let c = counter.clone();
    let receiver = Receiver::start(move |_| {
        // A fixed pseudo-random pattern: about one attempt in three fails.
        let n = c.fetch_add(1, Ordering::SeqCst);
        if (n * 7919).is_multiple_of(3) {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(
        &config_text(dir.path(), ", workers: 16", &rc_route(&receiver, "")).replace(
            "retry: [0s, 50ms, 50ms, 50ms, 50ms, 50ms]",
            "retry: [0s, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms]",
        ),
    )
    .await;
    let template: Value = serde_json::from_str(&flow("PSTN-RingCentral-DataStreams")[6]).unwrap();
    let codes = [
        "Setup",
        "Proceeding",
        "Answered",
        "Hold",
        "Answered",
        "Disconnected",
    ];
    let mut posts = Vec::new();
    for (step, code) in codes.iter().enumerate() {
        for call in 0..50 {
            let mut v = template.clone();
            v["uuid"] = format!("{call}-{step}").into();
            v["body"]["telephonySessionId"] = format!("call-{call}").into();
            v["body"]["sequence"] = (step as u64 + 1).into();
            v["body"]["parties"][0]["status"]["code"] = (*code).into();
            posts.push(v.to_string());
        }
    }
    for body in &posts {
        let (status, reply) = post(&gw, "/hooks/rc", body).await;
        assert_eq!(status, 200, "{reply}");
    }
    let got = receiver.wait_for(300, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 300);
    let mut per_call: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &got {
        let v = r.json();
        let call = v["userStatusNotification"]["conference"]["uniqueCallID"]
            .as_str()
            .unwrap()
            .to_string();
        per_call
            .entry(call)
            .or_default()
            .push(v["sequenceNum"].as_i64().unwrap());
    }
    assert_eq!(per_call.len(), 50);
    for (call, seqs) in per_call {
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "{call} out of order");
    }
    assert!(
        receiver.all().len() > 300,
        "the receiver did fail some attempts"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    // The receiver is down (nothing listens), so messages wait.
    let dir = tempfile::tempdir().unwrap();
    let routes = "routes:\n  - name: rc\n    path: /hooks/rc\n    from: ringcentral\n    to:\n      - { name: vidyo, vendor: vidyo, url: 'http://127.0.0.1:9/down' }\n";
    let gw = gateway(
        &config_text(dir.path(), ", max_queue_depth: 2", routes).replace(
            "retry: [0s, 50ms, 50ms, 50ms, 50ms, 50ms]",
            "retry: [0s, 1h]",
        ),
    )
    .await;
    let flow = flow("PSTN-RingCentral-DataStreams");
    assert_eq!(post(&gw, "/hooks/rc", &flow[4]).await.0, 200);
    assert_eq!(post(&gw, "/hooks/rc", &flow[5]).await.0, 200);
    let r = client()
        .post(format!("http://{}/hooks/rc", gw.addr))
        .body(flow[6].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:callgate:problem:queue-full");
    assert!(problem["detail"].as_str().unwrap().contains("vidyo"));
    // Refused, not recorded: the same notification is welcome once there is room.
    assert_eq!(gw.store.producer.depth("rc", "vidyo"), 2);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringcentral_handshake_is_echoed_without_an_event() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &rc_route(&receiver, "    auth: { verification_token: s3cret }\n"),
    ))
    .await;
    let url = format!("http://{}/hooks/rc", gw.addr);
    let r = client()
        .post(&url)
        .header("Validation-Token", "rc-handshake-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["validation-token"], "rc-handshake-4711");
    assert_eq!(r.headers()["content-type"], "application/json");
    let header_bytes: usize = r
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let body = r.text().await.unwrap();
    assert!(
        header_bytes + body.len() + 17 <= 1024,
        "reply must fit in 1024 bytes"
    );
    // A delivery that carries the shared secret in Validation-Token is an event.
    let delivery = flow("PSTN-RingCentral-DataStreams")[5].clone();
    let r = client()
        .post(&url)
        .header("Validation-Token", "s3cret")
        .body(delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1);
    crate::harness::drained(&gw).await;
    assert_eq!(
        receiver.accepted().len(),
        1,
        "the handshake produced no event"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_verifier_refuses_with_401_problem() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = format!(
        "[ {{ name: d, vendor: cloudevents, url: '{}' }} ]",
        receiver.url("/ce")
    );
    let routes = format!(
        "routes:\n\
         - {{ name: token, path: /token, from: ringcentral, auth: {{ verification_token: t }}, to: {dest} }}\n\
         - {{ name: basic, path: /basic, from: enablex, auth: {{ basic: {{ username: u, password: p }} }}, to: {dest} }}\n\
         - {{ name: bearer, path: /bearer, from: enablex, auth: {{ bearer: b }}, to: {dest} }}\n\
         - {{ name: header, path: /header, from: enablex, auth: {{ header: {{ name: X-Api-Key, value: k }} }}, to: {dest} }}\n"
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;
    let rc = flow("PSTN-RingCentral-DataStreams")[5].clone();
    let enablex =
        std::fs::read_to_string(root().join("tests/fixtures/enablex/seed-roomdrop.json")).unwrap();
    type Header<'a> = Option<(&'a str, &'a str)>;
    let cases: [(&str, &str, Header, Header); 4] = [
        (
            "/token",
            &rc,
            Some(("Verification-Token", "wrong")),
            Some(("Verification-Token", "t")),
        ),
        (
            "/basic",
            &enablex,
            Some(("Authorization", "Basic dTp4")),
            Some(("Authorization", "Basic dTpw")),
        ),
        (
            "/bearer",
            &enablex,
            Some(("Authorization", "Bearer x")),
            Some(("Authorization", "bearer  b")),
        ),
        ("/header", &enablex, None, Some(("X-Api-Key", "k"))),
    ];
    for (path, body, bad, good) in cases {
        let mut request = client()
            .post(format!("http://{}{path}", gw.addr))
            .body(body.to_string());
        if let Some((k, v)) = bad {
            request = request.header(k, v);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        match path {
            "/basic" => assert_eq!(challenge.as_deref(), Some("Basic realm=\"callgate\"")),
            "/bearer" => assert_eq!(challenge.as_deref(), Some("Bearer realm=\"callgate\"")),
            _ => assert_eq!(challenge, None),
        }
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["status"], 401);
        let (k, v) = good.unwrap();
        let r = client()
            .post(format!("http://{}{path}", gw.addr))
            .header(k, v)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the right credentials");
    }
    assert_eq!(receiver.wait_for(4, WAIT).await.len(), 4);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_passes_the_reply_through_and_queues_on_timeout() {
    // Mode 0: answer by content; 1: too slow; 2: accept everything.
    let mode = Arc::new(Mutex::new(0u8));
    let flag = mode.clone();
    let receiver = Receiver::start(move |r| {
        let mode = *flag.lock().unwrap();
        if mode == 1 {
            Reply {
                status: 200,
                body: "late".into(),
                delay: Duration::from_secs(4),
                headers: Vec::new(),
            }
        } else if mode == 2 {
            Reply::ok()
        } else if r.body.contains("ALERTING") {
            Reply {
                status: 201,
                body: "{\"legacy\":\"created\"}".into(),
                delay: Duration::ZERO,
                headers: Vec::new(),
            }
        } else {
            Reply::status(409)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "routes:\n  - {{ name: p, path: /p, from: ringcentral, ack: proxy, on_timeout: queue, to: [ {{ name: legacy, vendor: vidyo, url: '{}' }} ] }}\n",
        receiver.url("/legacy")
    );
    let gw =
        gateway(&config_text(dir.path(), "", &routes).replace("timeout: 2s", "timeout: 1500ms"))
            .await;
    let flow = flow("PSTN-RingCentral-DataStreams");
    let (status, body) = post(&gw, "/p", &flow[5]).await;
    assert_eq!((status, body.as_str()), (201, "{\"legacy\":\"created\"}"));
    let (status, body) = post(&gw, "/p", &flow[6]).await;
    assert_eq!(
        (status, body.as_str()),
        (409, "status 409"),
        "errors pass through too"
    );
    // The other legs of the call have no Vidyo template: nothing to forward.
    let (status, _) = post(&gw, "/p", &flow[0]).await;
    assert_eq!(status, 200);

    *mode.lock().unwrap() = 1;
    let (status, body) = post(&gw, "/p", &flow[7]).await;
    assert_eq!(status, 202, "{body}");
    // Queued: delivered with retries once the receiver answers in time.
    *mode.lock().unwrap() = 2;
    let queued = |r: &crate::harness::Received| r.body.contains("\"sequenceNum\":9");
    for _ in 0..300 {
        if receiver.accepted().iter().any(queued) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The forward that timed out was abandoned (the receiver saw it, but the gateway hung
    // up); the copy from the queue is the one that got through.
    assert_eq!(
        receiver.accepted().iter().filter(|r| queued(r)).count(),
        1,
        "the timed-out event was delivered from the queue"
    );
    assert!(receiver.all().iter().filter(|r| queued(r)).count() >= 2);
    gw.shutdown().await;
}

/// A proxy route from RingCentral with the default timeouts (delivery 15 s, longer than the
/// request's 5 s here) starts — it used to be refused — and forwards within RingCentral's 3 s
/// reply budget: a receiver that takes 4 s makes the sender get 202 (queued), which RingCentral
/// would still see, instead of a 408 after it gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_route_forwards_within_the_senders_reply_budget() {
    let slow = Arc::new(Mutex::new(true));
    let flag = slow.clone();
    let receiver = Receiver::start(move |_| Reply {
        status: 200,
        body: "ok".into(),
        delay: if *flag.lock().unwrap() {
            Duration::from_secs(4)
        } else {
            Duration::ZERO
        },
        headers: Vec::new(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "routes:\n  - {{ name: p, path: /p, from: ringcentral, ack: proxy, on_timeout: queue, to: [ {{ name: legacy, vendor: vidyo, url: '{}' }} ] }}\n",
        receiver.url("/legacy")
    );
    let gw =
        gateway(&config_text(dir.path(), "", &routes).replace("timeout: 2s", "timeout: 15s")).await;
    let flow = flow("PSTN-RingCentral-DataStreams");
    let (status, body) = post(&gw, "/p", &flow[5]).await;
    assert_eq!(status, 202, "{body}");
    *slow.lock().unwrap() = false;
    assert!(!receiver.wait_for(2, WAIT).await.is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_requests_are_reverse_proxied_unchanged() {
    let receiver = Receiver::start(|r| Reply {
        status: 207,
        body: format!("legacy saw {} {}", r.method, r.path),
        delay: Duration::ZERO,
        headers: Vec::new(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        "",
        &format!(
            "fallback: '{}'\n{}",
            receiver.url(""),
            rc_route(&receiver, "")
        ),
    );
    let gw = gateway(&text).await;
    let r = client()
        .put(format!("http://{}/legacy/api/x?y=1&z=%C3%BC", gw.addr))
        .header("X-Custom", "kept")
        .header("content-type", "text/plain")
        .body("raw body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 207);
    assert_eq!(r.headers()["x-receiver"], "yes");
    assert_eq!(r.text().await.unwrap(), "legacy saw PUT /legacy/api/x");
    let seen = &receiver.all()[0];
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.query.as_deref(), Some("y=1&z=%C3%BC"));
    assert_eq!(seen.headers["x-custom"], "kept");
    assert_eq!(seen.body, "raw body");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_problem_details() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "{}  - {{ name: v, path: /vidyo, from: vidyo, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
        rc_route(&receiver, ""),
        receiver.url("/ce")
    );
    let gw = gateway(&config_text(dir.path(), "", &routes).replace(
        "request_timeout: 5s",
        "request_timeout: 5s, max_body_bytes: 4096",
    ))
    .await;
    let problem = |status: u16, body: &str| (status, serde_json::from_str::<Value>(body).unwrap());

    let (status, body) = post(&gw, "/hooks/rc", "{\"uuid\": 1,").await;
    let (status, p) = problem(status, &body);
    assert_eq!(status, 400);
    assert!(
        p["detail"].as_str().unwrap().contains("line 1 column"),
        "{p}"
    );

    let (status, body) = post(&gw, "/hooks/rc", "{\"hello\": \"world\"}").await;
    let (status, p) = problem(status, &body);
    assert_eq!(status, 422);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("no decode rule matched"),
        "{p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("$.body.telephonySessionId"),
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap().contains("keys `hello`"),
        "{p}"
    );

    // A time that does not parse in its declared format: 422 naming field, value and format.
    let (status, body) = post(
        &gw,
        "/vidyo",
        r#"{"sequenceNum": 7, "creationTimestamp": "yesterday", "userStatusNotification": {"user": {"memberID": "1", "userState": "Online"}}}"#,
    )
    .await;
    let (status, p) = problem(status, &body);
    assert_eq!(status, 422, "{p}");
    assert!(p["type"].as_str().unwrap().ends_with("bad-value"), "{p}");
    let detail = p["detail"].as_str().unwrap();
    for word in ["time", "\"yesterday\"", "epoch_us"] {
        assert!(detail.contains(word), "{detail}");
    }

    let (status, body) = post(&gw, "/hooks/rc", &"x".repeat(5000)).await;
    assert_eq!(problem(status, &body).0, 413);

    let (status, body) = post(&gw, "/nowhere", "{}").await;
    assert_eq!(problem(status, &body).0, 404);

    // Vidyo's connection test: an empty request is accepted, no event.
    let r = client()
        .post(format!("http://{}/vidyo", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    for path in ["/healthz", "/readyz"] {
        let r = client()
            .get(format!("http://{}{path}", gw.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics.contains("callgate_requests_total{route=\"rc\",status=\"422\"}"),
        "{metrics}"
    );
    crate::harness::drained(&gw).await;
    assert!(receiver.all().is_empty());
    gw.shutdown().await;
}

/// `callgate dlq` on the store of a running gateway: list, show, replay (delivered by the
/// running gateway), purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_command_works_beside_a_running_gateway() {
    let (receiver, refusal) = Receiver::refusing(422).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", &rc_route(&receiver, ""));
    let config_file = dir.path().join("callgate.yaml");
    std::fs::write(&config_file, &text).unwrap();
    let gw = gateway(&text).await;
    let flow = flow("PSTN-RingCentral-DataStreams");
    for n in [5, 6] {
        assert_eq!(post(&gw, "/hooks/rc", &flow[n]).await.0, 200);
    }
    let dlq = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
            .arg("dlq")
            .arg("--config")
            .arg(&config_file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut listing = String::new();
    for _ in 0..100 {
        listing = dlq(&["list"]);
        if listing.contains("2 dead letter(s)") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listing.contains("2 dead letter(s)"), "{listing}");
    assert!(
        listing.contains("rc/vidyo\tcall.connected") && listing.contains("HTTP 422"),
        "{listing}"
    );
    let mut rows = listing.lines();
    assert!(
        rows.next().unwrap().starts_with("ID\tROUTE/DESTINATION"),
        "{listing}"
    );
    let first: i64 = rows
        .next()
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // When it died, as RFC 3339 UTC (not epoch milliseconds).
    let died = listing.lines().nth(1).unwrap().split('\t').nth(5).unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(died).is_ok(), "{died}");
    let json: Value = serde_json::from_str(&dlq(&["list", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");
    let shown: Value = serde_json::from_str(&dlq(&["show", &first.to_string()])).unwrap();
    assert_eq!(shown["attempt_log"][0]["status"], 422);
    assert!(
        shown["request"]["body"]
            .as_str()
            .unwrap()
            .contains("userStatusNotification")
    );

    refusal.release();
    assert!(dlq(&["replay", &first.to_string()]).contains("replayed 1"));
    assert_eq!(
        receiver.wait_for(1, WAIT).await.len(),
        1,
        "the running gateway delivered the replay"
    );
    // Not a terminal: purge refuses without --yes.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["dlq", "--config"])
        .arg(&config_file)
        .arg("purge")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert!(dlq(&["purge", "--yes"]).contains("purged 1"));
    assert!(dlq(&["list"]).contains("0 dead letter(s)"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_requires_its_token_and_translates() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", &rc_route(&receiver, "")).replace(
        "request_timeout: 5s",
        "request_timeout: 5s, admin_token: \"${CALLGATE_TEST_ADMIN_TOKEN}\"",
    );
    let config = callgate::config::load::parse(std::path::Path::new("t.yaml"), &text, &|name| {
        (name == "CALLGATE_TEST_ADMIN_TOKEN").then(|| "adm1n".to_string())
    })
    .unwrap();
    let gw = callgate::Gateway::start(config).await.unwrap();
    let admin = format!("http://{}", gw.admin_addr);
    let r = client()
        .get(format!("{admin}/admin/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{admin}/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{admin}/admin/deliveries"))
        .bearer_auth("adm1n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body =
        std::fs::read_to_string(root().join("tests/fixtures/enablex/seed-roomdrop.json")).unwrap();
    let r: Value = client()
        .post(format!(
            "{admin}/admin/translate?from=enablex&to=cloudevents"
        ))
        .bearer_auth("adm1n")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["outputs"][0]["type"], "conference.ended");
    // Health stays open on the public listener.
    let r = client()
        .get(format!("http://{}/healthz", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await;
}

/// Stopping (what SIGTERM triggers in `serve`) leaves undelivered messages in the store,
/// and the next start delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_keeps_the_queue_for_the_next_start() {
    let (receiver, refusal) = Receiver::refusing(503).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", &rc_route(&receiver, "")).replace(
        "retry: [0s, 50ms, 50ms, 50ms, 50ms, 50ms]",
        "retry: [0s, 300ms, 300ms, 300ms, 300ms, 300ms, 300ms]",
    );
    let gw = gateway(&text).await;
    let flow = flow("PSTN-RingCentral-DataStreams");
    for n in [4, 5, 6] {
        assert_eq!(post(&gw, "/hooks/rc", &flow[n]).await.0, 200);
    }
    gw.shutdown().await;
    assert!(receiver.accepted().is_empty());

    refusal.release();
    let gw = gateway(&text).await;
    assert_eq!(
        gw.store.producer.depth("rc", "vidyo"),
        3,
        "the queue survived the stop"
    );
    let got = receiver.wait_for(3, WAIT).await;
    let seqs: Vec<i64> = got
        .iter()
        .map(|r| r.json()["sequenceNum"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [6, 7, 8], "delivered after the restart, in order");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slower_than_request_timeout_gets_408() {
    let receiver = Receiver::start(|_| Reply {
        status: 200,
        body: "late".into(),
        delay: Duration::from_secs(3),
        headers: Vec::new(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        "",
        &format!("fallback: '{}'\n", receiver.url("")),
    )
    .replace("request_timeout: 5s", "request_timeout: 300ms");
    let gw = gateway(&text).await;
    let r = client()
        .get(format!("http://{}/slow", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 408);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("server.request_timeout"),
        "{problem}"
    );
    gw.shutdown().await;
}

/// A vendor written as data alone (Twilio): its form POST, behind basic auth, reaches a
/// CloudEvents receiver with the RFC 2822 `Timestamp` as `time`, and a Twilio destination gets
/// the events back as a form body (not as URL parameters of an empty POST).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_status_callbacks_as_data_deliver_their_time_and_form_bodies() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "routes:\n  - {{ name: tw, path: /twilio, from: twilio, auth: {{ basic: {{ username: tw, password: s3cret }} }}, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }}, {{ name: back, vendor: twilio, url: '{}' }} ] }}\n",
        receiver.url("/ce"),
        receiver.url("/twilio-receiver")
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;
    let body = "CallSid=CA5f&AccountSid=AC1&From=%2B14155550100&To=%2B14155550199&Direction=inbound&CallStatus=ringing&SequenceNumber=0&Timestamp=Fri%2C+04+Dec+2026+16%3A09%3A00+%2B0000&CallbackSource=call-progress-events";
    let send = |auth: Option<(&str, &str)>| {
        let request = client()
            .post(format!("http://{}/twilio", gw.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        match auth {
            Some((u, p)) => request.basic_auth(u, Some(p)),
            None => request,
        }
        .send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(send(Some(("tw", "wrong"))).await.unwrap().status(), 401);
    assert_eq!(send(Some(("tw", "s3cret"))).await.unwrap().status(), 200);
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let ce = got
        .iter()
        .find(|r| r.path == "/ce")
        .expect("cloudevents delivery");
    let event: Value = serde_json::from_str(&ce.body).unwrap();
    assert_eq!(event["time"], "2026-12-04T16:09:00Z");
    assert_eq!(event["type"], "call.alerting");
    assert_eq!(event["data"]["call"]["from"]["number"], "+14155550100");
    let form = got
        .iter()
        .find(|r| r.path == "/twilio-receiver")
        .expect("twilio delivery");
    assert_eq!(
        form.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(form.query, None, "the parameters travel in the body");
    let params = callgate::model::params::parse_urlencoded(&form.body).unwrap();
    assert_eq!(params["CallStatus"], "ringing");
    assert_eq!(params["From"], "+14155550100");
    assert_eq!(params["Timestamp"], "Fri, 04 Dec 2026 16:09:00 +0000");
    gw.shutdown().await;
}

/// `/metrics` after a real flow passes Prometheus's own linter (`promtool check metrics`, from
/// Debian's `prometheus`): every metric has its HELP and TYPE, names and units as Prometheus
/// expects them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_flow_pass_promtool() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &rc_route(&receiver, ""))).await;
    for body in flow("PSTN-RingCentral-DataStreams") {
        assert_eq!(post(&gw, "/hooks/rc", &body).await.0, 200);
    }
    assert_eq!(receiver.wait_for(6, WAIT).await.len(), 6);
    crate::harness::drained(&gw).await;
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    gw.shutdown().await;
    assert!(
        metrics.contains("callgate_store_commits_total"),
        "{metrics}"
    );
    // A missing promtool panics naming it: scripts/test installs it (apt-get install prometheus).
    let out = crate::harness::run_with_stdin("promtool", &["check", "metrics"], &metrics);
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
