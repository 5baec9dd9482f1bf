//! Nothing lost, nothing doubled, nothing wrong (issue 7): each test here failed before its
//! fix. Redirects, proxy timeouts and ordering, concurrent events of one call, same-vendor
//! fan-out, refused inputs.

use crate::harness::{Receiver, Reply, client, config_text, gateway};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

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
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &format!(
            "routes:\n  - {{ name: isr, path: /isr, from: oracle-isr, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            receiver.url("/events")
        ),
    ))
    .await;
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
        attempt.error.as_deref().unwrap_or_default().contains("/elsewhere"),
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
    assert_eq!(legacy.all().len(), 1, "one request reached the legacy receiver");
    gw.shutdown().await;
}
