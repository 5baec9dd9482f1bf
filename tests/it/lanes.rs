//! Lanes against real loopback receivers: a rate limit measured at the receiver, a circuit
//! breaker that opens, pauses, probes once and closes without spending the retry budget, and
//! a slow destination that does not hold up another.

use crate::harness::{Received, Receiver, Reply, client, config_text, gateway};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// GETs one Oracle ISR notification (a recording event of call `call`, recording `n`).
async fn isr(gw: &callgate::Gateway, call: &str, n: usize) -> u16 {
    client()
        .get(format!(
            "http://{}/isr?event=RECORDING_STARTED_EVENT&ISR_UCID={call}&TMP_RECORDING_ID={n}",
            gw.addr
        ))
        .send()
        .await
        .expect("gateway reachable")
        .status()
        .as_u16()
}

fn recording_id(r: &Received) -> String {
    r.json()["data"]["recording"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn isr_route(receivers: &[(&str, &Receiver, &str)]) -> String {
    let to: Vec<String> = receivers
        .iter()
        .map(|(name, r, extra)| {
            format!(
                "{{ name: {name}, vendor: cloudevents, url: '{}'{extra} }}",
                r.url("/events")
            )
        })
        .collect();
    format!(
        "routes:\n  - {{ name: isr, path: /isr, from: oracle-isr, to: [ {} ] }}\n",
        to.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_deliveries_back_to_its_rate() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &isr_route(&[(
            "limited",
            &receiver,
            ", rate_limit: { per_second: 10, burst: 1 }",
        )]),
    ))
    .await;
    const N: usize = 40;
    for i in 0..N {
        assert_eq!(isr(&gw, &format!("call-{i}"), i).await, 200);
    }
    let got = receiver.wait_for(N, Duration::from_secs(20)).await;
    assert_eq!(got.len(), N, "every message is delivered, only later");
    // The lane held messages back itself (its deferral count), rather than the receiver
    // happening to be slow; and 40 requests at 10/s with a burst of 1 cannot take less than
    // 3.9 s. Both hold however busy the machine is (a busy machine only spreads arrivals
    // out); an upper bound per one-second window would measure the receiver's scheduling.
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    let deferred: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("callgate_deliveries_deferred_total") && l.contains("isr/limited")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(deferred >= 1.0, "no deferral by the rate limit: {metrics}");
    let times: Vec<_> = got.iter().map(|r| r.at).collect();
    let span = times[N - 1].duration_since(times[0]);
    assert!(
        span >= Duration::from_millis(3800),
        "40 requests at 10/s take about 4 s, took {span:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_opens_the_breaker_which_probes_once_and_closes() {
    const FAILURES: usize = 10;
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    let receiver = Receiver::start(move |_| {
        if count.fetch_add(1, Ordering::SeqCst) < FAILURES {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Twelve attempts in the schedule: the 10 failures and the probe fit only if the
    // deferrals while the breaker is open spend none of them.
    let gw = gateway(&config_text(
        dir.path(),
        ", retry: [0s, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms]",
        &isr_route(&[(
            "flaky",
            &receiver,
            ", circuit_breaker: { failures: 10, open_for: 2s }",
        )]),
    ))
    .await;
    for n in 0..5 {
        assert_eq!(isr(&gw, "one-call", n).await, 200);
    }
    let got = receiver.wait_for(5, Duration::from_secs(30)).await;
    let ids: Vec<String> = got.iter().map(recording_id).collect();
    assert_eq!(ids, ["0", "1", "2", "3", "4"], "every message, in order");

    let all = receiver.all();
    assert_eq!(
        all.len(),
        FAILURES + 5,
        "10 failures, then one probe and the rest"
    );
    assert!(
        all[..FAILURES].iter().all(|r| recording_id(r) == "0"),
        "the call's head is retried, nothing jumps it"
    );
    let paused = all[FAILURES].at.duration_since(all[FAILURES - 1].at);
    assert!(
        paused >= Duration::from_millis(1900),
        "no attempt while the breaker is open (2 s): the probe came after {paused:?}"
    );
    let dead = gw.store.dead_letters.list(10).await.unwrap();
    assert!(dead.is_empty(), "the retry budget was untouched: {dead:?}");

    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics.contains("callgate_breaker_opened_total{destination=\"isr/flaky\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("callgate_breaker_state{destination=\"isr/flaky\"} 0"));
    assert!(metrics.contains("reason=\"breaker_open\""));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_does_not_hold_up_another() {
    let slow = Receiver::start(|_| Reply {
        status: 200,
        body: "slow".into(),
        delay: Duration::from_secs(2),
        headers: Vec::new(),
    })
    .await;
    let fast = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    // Eight workers in all; without the slow lane's cap its attempts would take them all.
    let gw = gateway(
        &config_text(
            dir.path(),
            ", workers: 8",
            &isr_route(&[("slow", &slow, ", max_in_flight: 2"), ("fast", &fast, "")]),
        )
        .replace("timeout: 2s", "timeout: 10s"),
    )
    .await;
    const N: usize = 40;
    for i in 0..N {
        assert_eq!(isr(&gw, &format!("call-{i}"), i).await, 200);
    }
    let got = fast.wait_for(N, Duration::from_secs(10)).await;
    assert_eq!(got.len(), N, "the fast receiver got everything");
    let slow_so_far = slow.all().len();
    assert!(
        slow_so_far < N / 2,
        "meanwhile the slow one got {slow_so_far}, two at a time"
    );
    gw.shutdown().await;
}

/// Proxy forwards go through the destination's lane and the classifier like any attempt: two
/// 503 replies (passed back to the sender) open the breaker, and the third request is not
/// forwarded to the failing receiver at all — the sender gets 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_route_respects_its_lane_breaker() {
    let (receiver, _release) = Receiver::refusing(503).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "routes:\n  - {{ name: isr-breaker, path: /isr, from: oracle-isr, ack: proxy, to: [ {{ name: ce, vendor: cloudevents, url: '{}', circuit_breaker: {{ failures: 2, open_for: 1m }} }} ] }}\n",
        receiver.url("/events")
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;
    assert_eq!(
        isr(&gw, "c1", 1).await,
        503,
        "the receiver's own 503, passed back"
    );
    assert_eq!(isr(&gw, "c2", 2).await, 503);
    assert_eq!(receiver.all().len(), 2);
    let refused = client()
        .get(format!(
            "http://{}/isr?event=RECORDING_STARTED_EVENT&ISR_UCID=c3&TMP_RECORDING_ID=3",
            gw.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("breaker_open"),
        "{body}"
    );
    assert_eq!(
        receiver.all().len(),
        2,
        "the open breaker kept the third away"
    );
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    // Metrics are process-wide: the route name is this test's own.
    assert!(
        metrics.contains(
            "callgate_deliveries_total{destination=\"isr-breaker/ce\",outcome=\"retry_status\"} 2"
        ),
        "{metrics}"
    );
    gw.shutdown().await;
}
