//! Nothing lost, nothing doubled, nothing wrong (issue 7): each test here failed before its
//! fix. Redirects, proxy timeouts and ordering, concurrent events of one call, same-vendor
//! fan-out, refused inputs.

use crate::harness::{Receiver, Reply, client, config_text, gateway};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A gateway with one route `/isr` from Oracle ISR to a CloudEvents receiver.
async fn isr_gateway(dir: &std::path::Path, receiver: &Receiver) -> callgate::Gateway {
    gateway(&config_text(
        dir,
        "",
        &one_route(
            "isr",
            "oracle-isr",
            "ce",
            "cloudevents",
            &receiver.url("/events"),
        ),
    ))
    .await
}

/// `routes:` with one route `/<name>` from `from` to one destination.
fn one_route(name: &str, from: &str, dest: &str, vendor: &str, url: &str) -> String {
    format!(
        "routes:\n  - {{ name: {name}, path: /{name}, from: {from}, to: [ {{ name: {dest}, vendor: {vendor}, url: '{url}' }} ] }}\n"
    )
}

fn redirecting(location: &'static str) -> impl FnMut(&crate::harness::Received) -> Reply {
    move |r| {
        if r.path == "/events" {
            Reply {
                status: 302,
                body: "moved".into(),
                delay: Duration::ZERO,
                headers: vec![("location", location.to_string())],
            }
        } else {
            Reply::ok()
        }
    }
}

/// A receiver answering 302 does not get the POST re-sent as a body-less GET counted as
/// delivered: the 3xx is its answer, dead-lettered with the Location in the attempt log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_goes_to_the_dead_letters() {
    let receiver = Receiver::start(redirecting("/elsewhere")).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = isr_gateway(dir.path(), &receiver).await;
    let status = client()
        .get(format!(
            "http://{}/isr?event=RECORDING_STARTED_EVENT&ISR_UCID=c1&TMP_RECORDING_ID=1",
            gw.addr
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    let dead = loop {
        let dead = gw.store.dead_letters.list(10).await.unwrap();
        if !dead.is_empty() || tokio::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), 1, "the redirected message is a dead letter");
    let attempt = &dead[0].attempt_log[0];
    assert_eq!(attempt.status, Some(302));
    assert!(
        attempt
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("/elsewhere"),
        "{attempt:?}"
    );
    assert!(
        receiver.all().iter().all(|r| r.path == "/events"),
        "the redirect was not followed"
    );
    gw.shutdown().await;
}

/// The fallback proxy passes a 3xx back to its caller unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_passes_a_redirect_back_unchanged() {
    let legacy = Receiver::start(redirecting("/login")).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &format!("fallback: '{}'\n", legacy.url("")),
    ))
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let reply = no_redirects
        .post(format!("http://{}/events", gw.addr))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 302);
    assert_eq!(reply.headers()["location"], "/login");
    assert_eq!(
        legacy.all().len(),
        1,
        "one request reached the legacy receiver"
    );
    gw.shutdown().await;
}

async fn isr_event(gw: &callgate::Gateway, path: &str, call: &str, n: usize) -> (u16, String) {
    let r = client()
        .get(format!(
            "http://{}{path}?event=RECORDING_STARTED_EVENT&ISR_UCID={call}&TMP_RECORDING_ID={n}",
            gw.addr
        ))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Once a call has a message queued (its forward timed out), the call's next event on the
/// proxy route is queued behind it, not forwarded around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_route_queues_a_calls_next_event_behind_its_waiting_one() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let first = AtomicBool::new(true);
    let released = std::sync::Arc::new(AtomicBool::new(false));
    let open = released.clone();
    let receiver = Receiver::start(move |r| {
        if !r.body.contains("call-a") {
            Reply::ok()
        } else if first.swap(false, Ordering::SeqCst) {
            // Outlasts the 1 s forward timeout.
            Reply {
                delay: Duration::from_secs(3),
                ..Reply::ok()
            }
        } else if open.load(Ordering::SeqCst) {
            Reply::ok()
        } else {
            Reply::status(503)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(
        &config_text(
            dir.path(),
            ", retry: [0s, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms]",
            &format!(
                "routes:\n  - {{ name: p, path: /p, from: oracle-isr, ack: proxy, on_timeout: queue, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
                receiver.url("/events")
            ),
        )
        .replace("timeout: 2s", "timeout: 1s"),
    )
    .await;
    let (status, body) = isr_event(&gw, "/p", "call-a", 1).await;
    assert_eq!(status, 202, "timed out, queued: {body}");
    let (status, body) = isr_event(&gw, "/p", "call-a", 2).await;
    assert_eq!(status, 202, "queued behind event 1: {body}");
    let (status, _) = isr_event(&gw, "/p", "call-b", 3).await;
    assert_eq!(status, 200, "another call is forwarded as usual");
    released.store(true, Ordering::SeqCst);
    let got = receiver.wait_for(3, WAIT).await;
    let order: Vec<String> = got
        .iter()
        .filter(|r| r.json()["data"]["call"]["id"] == "call-a")
        .map(|r| {
            r.json()["data"]["recording"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(order, ["1", "2"], "call-a's events in order");
    gw.shutdown().await;
}

/// A template that fails to render is dead-lettered with its error on a proxy route too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_fails_on_a_proxy_route_is_dead_lettered() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    crate::support::copy_dir(&crate::support::root().join("mappings"), &mappings);
    // Vidyo gains a template for recordings that passes `check` but fails for this event: the
    // call id is not a time.
    let encode = mappings.join("vidyo/encode.yaml");
    let text = std::fs::read_to_string(&encode).unwrap();
    std::fs::write(
        &encode,
        format!(
            "{text}  - types: [\"recording.started\"]\n    body: templates/recording.json.hbs\n"
        ),
    )
    .unwrap();
    std::fs::write(
        mappings.join("vidyo/templates/recording.json.hbs"),
        "{ \"recording\": {{epoch_s data.call.id}} }\n",
    )
    .unwrap();
    let text = config_text(
        dir.path(),
        "",
        &format!(
            "routes:\n  - {{ name: p, path: /p, from: oracle-isr, ack: proxy, to: [ {{ name: v, vendor: vidyo, url: '{}' }} ] }}\n",
            receiver.url("/vidyo")
        ),
    )
    .replace(
        &crate::support::root().join("mappings").display().to_string(),
        &mappings.display().to_string(),
    );
    let gw = gateway(&text).await;
    let (status, body) = isr_event(&gw, "/p", "call-r", 1).await;
    assert_eq!(status, 200, "{body}");
    // The sender is told what happened, not that there was nothing to do.
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["status"], "dead-lettered", "{reply}");
    assert_eq!(reply["dead_letters"][0]["destination"], "v", "{reply}");
    assert!(
        reply["dead_letters"][0]["error"]
            .as_str()
            .unwrap()
            .contains("recording.json.hbs"),
        "{reply}"
    );
    let dead = gw.store.dead_letters.list(10).await.unwrap();
    assert_eq!(
        dead.len(),
        1,
        "the message that could not be rendered is kept"
    );
    let error = dead[0].attempt_log[0].error.clone().unwrap_or_default();
    assert!(error.contains("recording.json.hbs"), "{error}");
    assert!(receiver.all().is_empty());
    gw.shutdown().await;
}

/// Truly concurrent notifications of one call, in shuffled order: whatever the lifecycle
/// tracker lets through reaches the receiver in strictly rising vendor sequence (none passes
/// the stale check alongside a later one, and none overtakes another between check and
/// commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_events_of_one_call_keep_the_sequence() {
    use rand::seq::SliceRandom;
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &one_route("rc", "ringcentral", "v", "vidyo", &receiver.url("/vidyo")),
    ))
    .await;
    let template: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::root().join(
            "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json",
        ))
        .unwrap(),
    )
    .unwrap();
    const N: u64 = 60;
    let mut order: Vec<u64> = (1..=N).collect();
    order.shuffle(&mut rand::rng());
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(order.len()));
    let mut tasks = Vec::new();
    for seq in order {
        let mut body = template.clone();
        body["uuid"] = serde_json::Value::String(format!("concurrent-{seq}"));
        body["body"]["sequence"] = serde_json::Value::from(seq);
        let url = format!("http://{}/rc", gw.addr);
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    crate::harness::drained(&gw).await;
    let seqs: Vec<i64> = receiver
        .accepted()
        .iter()
        .map(|r| r.json()["sequenceNum"].as_i64().unwrap())
        .collect();
    assert!(!seqs.is_empty());
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequences at the receiver must rise strictly: {seqs:?}"
    );
    gw.shutdown().await;
}

/// A RingCentral notification with two parties, sent to a RingCentral destination, arrives
/// once, as the original; its two canonical events do not share `source` + `id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_reaches_a_same_vendor_destination_once() {
    let rc = Receiver::ok().await;
    let ce = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &format!(
            "routes:\n  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: same, vendor: ringcentral, url: '{}' }}, {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            rc.url("/rc"),
            ce.url("/ce")
        ),
    ))
    .await;
    let mut notification: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::root().join(
            "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json",
        ))
        .unwrap(),
    )
    .unwrap();
    // A second party: the PSTN caller's leg of the same session.
    let mut caller = notification["body"]["parties"][0].clone();
    caller["id"] = "p-caller-leg".into();
    caller["extensionId"] = serde_json::Value::Null;
    caller.as_object_mut().unwrap().remove("extensionId");
    notification["body"]["parties"]
        .as_array_mut()
        .unwrap()
        .push(caller);
    let (status, body) = crate::harness::post(&gw, "/rc", &notification.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let events = ce.wait_for(2, WAIT).await;
    assert_eq!(events.len(), 2, "two events in CloudEvents");
    let ids: std::collections::BTreeSet<(String, String)> = events
        .iter()
        .map(|r| {
            let e = r.json();
            (
                e["source"].as_str().unwrap().to_string(),
                e["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(ids.len(), 2, "source + id unique per event: {ids:?}");
    assert_eq!(rc.wait_for(1, WAIT).await.len(), 1);
    crate::harness::drained(&gw).await;
    let copies = rc.accepted();
    assert_eq!(copies.len(), 1, "one notification, one copy");
    assert_eq!(copies[0].json(), notification, "the original, exactly");
    gw.shutdown().await;
}

/// What Oracle ISR never sends is refused on its route: a JSON body (415), a form body that
/// is not UTF-8 (400); both as problem+json, nothing queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isr_route_refuses_json_bodies_and_bytes_that_are_not_utf8() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = isr_gateway(dir.path(), &receiver).await;
    let send = |content_type: &'static str, body: Vec<u8>| {
        let url = format!("http://{}/isr", gw.addr);
        async move {
            let r = client()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            (r.status().as_u16(), ct, r.text().await.unwrap())
        }
    };
    let (status, ct, body) = send(
        "application/json",
        br#"{"event":"RECORDING_STARTED_EVENT","ISR_UCID":"u"}"#.to_vec(),
    )
    .await;
    assert_eq!(
        (status, ct.as_str()),
        (415, "application/problem+json"),
        "{body}"
    );
    let (status, ct, body) = send(
        "application/x-www-form-urlencoded",
        b"event=RECORDING_STARTED_EVENT&ISR_UCID=u\xff1".to_vec(),
    )
    .await;
    assert_eq!(
        (status, ct.as_str()),
        (400, "application/problem+json"),
        "{body}"
    );
    assert!(body.contains("UTF-8"), "{body}");
    assert_eq!(gw.store.producer.total_depth(), 0);
    gw.shutdown().await;
}

/// Beyond `server.max_concurrent_requests` requests are shed at once with 503 and
/// `Retry-After`, not queued in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_limit_are_shed() {
    let receiver = Receiver::start(|_| Reply {
        delay: Duration::from_secs(1),
        ..Reply::ok()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(
        &config_text(
            dir.path(),
            "",
            &format!(
                "routes:\n  - {{ name: p, path: /p, from: oracle-isr, ack: proxy, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
                receiver.url("/events")
            ),
        )
        .replace("request_timeout: 5s", "request_timeout: 5s, max_concurrent_requests: 1"),
    )
    .await;
    let url = |n: usize| {
        format!(
            "http://{}/p?event=RECORDING_STARTED_EVENT&ISR_UCID=c{n}&TMP_RECORDING_ID={n}",
            gw.addr
        )
    };
    let slow = tokio::spawn(client().get(url(1)).send());
    // The first request is in progress once the receiver has it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while receiver.all().is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shed = client().get(url(2)).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    assert_eq!(shed.headers()["content-type"], "application/problem+json");
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    gw.shutdown().await;
}

/// A web page on the same host cannot drive the admin listener: state-changing requests with
/// a foreign `Host` (DNS rebinding) or `Origin` (CSRF) are refused; curl-like ones pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_refuses_foreign_hosts_and_origins() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", "")).await;
    let admin = gw.admin_addr;
    let send = |method: reqwest::Method,
                path: &'static str,
                headers: Vec<(&'static str, String)>| async move {
        let mut request = client().request(method, format!("http://{admin}{path}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    use reqwest::Method;
    let (status, body) = send(
        Method::POST,
        "/admin/deliveries/replay",
        vec![("host", "evil.example".into())],
    )
    .await;
    assert_eq!(status, 403, "DNS rebinding: {body}");
    let (status, body) = send(
        Method::DELETE,
        "/admin/deliveries",
        vec![("origin", "http://evil.example".into())],
    )
    .await;
    assert_eq!(status, 403, "cross-site request: {body}");
    assert!(body.contains("Origin"), "{body}");
    let (status, body) = send(
        Method::POST,
        "/admin/deliveries/replay",
        vec![("origin", format!("http://{admin}"))],
    )
    .await;
    assert_eq!(status, 200, "same origin: {body}");
    let (status, body) = send(Method::DELETE, "/admin/deliveries", vec![]).await;
    assert_eq!(status, 200, "no Origin (curl, callgate dlq): {body}");
    let (status, _) = send(
        Method::GET,
        "/metrics",
        vec![("host", format!("localhost:{}", admin.port()))],
    )
    .await;
    assert_eq!(status, 200);
    gw.shutdown().await;
}

/// Concurrent requests cannot overshoot `delivery.max_queue_depth`, and the refusal states
/// the real depth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_cannot_overshoot_the_queue_depth() {
    let (receiver, _release) = Receiver::refusing(503).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        ", max_queue_depth: 5, retry: [0s, 1h]",
        &format!(
            "routes:\n  - {{ name: isr, path: /isr, from: oracle-isr, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            receiver.url("/events")
        ),
    ))
    .await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for n in 0..40 {
        let url = format!(
            "http://{}/isr?event=RECORDING_STARTED_EVENT&ISR_UCID=c{n}&TMP_RECORDING_ID={n}",
            gw.addr
        );
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => accepted += 1,
            503 => assert!(body.contains("messages waiting"), "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(accepted, 5, "exactly max_queue_depth accepted");
    assert_eq!(gw.store.producer.depth("isr", "ce"), 5);
    gw.shutdown().await;
}

/// A request with a valid Verification-Token and a body is a delivery even when it also
/// carries a Validation-Token (which is echoed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_delivery_with_a_validation_token_is_a_delivery() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &format!(
            "routes:\n  - {{ name: rc, path: /rc, from: ringcentral, auth: {{ verification_token: s3cret }}, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            receiver.url("/events")
        ),
    ))
    .await;
    let delivery = std::fs::read_to_string(crate::support::root().join(
        "tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json",
    ))
    .unwrap();
    let r = client()
        .post(format!("http://{}/rc", gw.addr))
        .header("Verification-Token", "s3cret")
        .header("Validation-Token", "some-other-value")
        .body(delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["validation-token"], "some-other-value");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("\"accepted\""),
        "a delivery, not a handshake: {body}"
    );
    assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1);
    gw.shutdown().await;
}

/// Oracle ISR parameters, by the one `application/x-www-form-urlencoded` rule (WHATWG): `+` is
/// a space and `%2B` a plus, `?` inside a value is kept; `%XX` decodes as UTF-8 and bytes that
/// are not UTF-8 are refused, never replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isr_query_parameters_decode_by_one_rule() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = isr_gateway(dir.path(), &receiver).await;
    let get = |query: &'static str| {
        let url = format!("http://{}/isr?{query}", gw.addr);
        async move {
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) =
        get("event=RECORDING_STARTED_EVENT&ISR_UCID=%2B14085550100?x+y&TMP_RECORDING_ID=%C3%A9&START_TIME=2026-06-09+11%3a02%3a03.250").await;
    assert_eq!(status, 200, "{body}");
    let got = receiver.wait_for(1, WAIT).await;
    let event = got[0].json();
    assert_eq!(event["data"]["call"]["id"], "+14085550100?x y", "{event}");
    assert_eq!(event["time"], "2026-06-09T11:02:03.250Z", "{event}");
    assert_eq!(event["data"]["recording"]["id"], "é");
    let (status, body) = get("event=RECORDING_STARTED_EVENT&ISR_UCID=%FF").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("UTF-8"), "{body}");
    gw.shutdown().await;
}

/// A webhook route takes only the methods and content types its vendor sends, and every
/// refusal — admin 404s and malformed admin paths included — is problem+json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_types_and_paths_get_problem_details() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &one_route(
            "rc",
            "ringcentral",
            "ce",
            "cloudevents",
            &receiver.url("/events"),
        ),
    ))
    .await;
    let check = |r: reqwest::Response, status: u16| {
        assert_eq!(r.status(), status, "{}", r.url());
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{}",
            r.url()
        );
        r
    };
    let r = check(
        client()
            .get(format!("http://{}/rc", gw.addr))
            .send()
            .await
            .unwrap(),
        405,
    );
    assert_eq!(r.headers()["allow"], "POST");
    check(
        client()
            .post(format!("http://{}/rc", gw.addr))
            .header("content-type", "text/xml")
            .body("<x/>")
            .send()
            .await
            .unwrap(),
        415,
    );
    check(
        client()
            .get(format!("http://{}/admin/nothing", gw.admin_addr))
            .send()
            .await
            .unwrap(),
        404,
    );
    check(
        client()
            .get(format!(
                "http://{}/admin/deliveries/not-a-number",
                gw.admin_addr
            ))
            .send()
            .await
            .unwrap(),
        400,
    );
    gw.shutdown().await;
}

/// Secrets in a destination URL (`user:${PASS}@host`, `?api_key=${KEY}`) reach the receiver
/// but never the store, the dead letters or a problem body sent back to the webhook sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_destination_urls_stay_out_of_the_store_and_replies() {
    let receiver = Receiver::start(|_| Reply::status(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let unreachable = format!("127.0.0.1:{}", crate::harness::free_port());
    let text = config_text(
        dir.path(),
        "",
        &format!(
            "routes:\n  - {{ name: q, path: /q, from: oracle-isr, to: [ {{ name: ce, vendor: cloudevents, url: 'http://robot:${{PASS}}@{}/x?api_key=${{KEY}}' }} ] }}\n  - {{ name: p, path: /p, from: oracle-isr, ack: proxy, to: [ {{ name: ce, vendor: cloudevents, url: 'http://robot:${{PASS}}@{unreachable}/x?api_key=${{KEY}}' }} ] }}\n",
            receiver.addr
        ),
    );
    let config =
        callgate::config::load::parse(std::path::Path::new("t.yaml"), &text, &|name| match name {
            "PASS" => Some("pa55-s3cret".into()),
            "KEY" => Some("k3y-s3cret".into()),
            _ => None,
        })
        .unwrap();
    let gw = callgate::Gateway::start(config).await.unwrap();
    let query = "event=RECORDING_STARTED_EVENT&ISR_UCID=c1&TMP_RECORDING_ID=1";
    let r = client()
        .get(format!("http://{}/q?{query}", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    crate::harness::drained(&gw).await;
    let seen = receiver.all();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]
            .query
            .as_deref()
            .unwrap_or_default()
            .contains("api_key=k3y-s3cret")
    );
    assert!(
        seen[0].headers.contains_key("authorization"),
        "userinfo sent as Basic"
    );
    let dead = gw.store.dead_letters.list(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let shown = dead[0].to_json().to_string();
    assert!(
        !shown.contains("s3cret"),
        "dead letter shows a secret: {shown}"
    );
    // The database must exist (a scan of nothing passes anything); the WAL may not.
    let stored = std::fs::read(dir.path().join("callgate.db")).expect("the store's database");
    let wal = std::fs::read(dir.path().join("callgate.db-wal")).unwrap_or_default();
    let scanned = [stored, wal].concat();
    assert!(
        scanned
            .windows(b"api_key=${KEY}".len())
            .any(|w| w == b"api_key=${KEY}"),
        "the scan does not see the stored message (its URL as written)"
    );
    assert!(
        !scanned.windows(6).any(|w| w == b"s3cret"),
        "a secret reached the store"
    );
    let r = client()
        .get(format!("http://{}/p?{query}", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(!body.contains("s3cret"), "the sender sees a secret: {body}");
    gw.shutdown().await;
}
