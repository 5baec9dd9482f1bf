//! `auth: { oauth2_client_credentials }` against a real token endpoint and receiver on
//! loopback: one token fetched for many deliveries, the grant's form as RFC 6749 §4.4 has it,
//! and a 401 from the receiver (a revoked token) answered by one new token and one more try.

use crate::harness::{config_text, gateway, post};
use crate::support::fixtures;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_fetched_once_cached_and_renewed_once_on_401() {
    let (tokens, issued) = crate::harness::token_endpoint("tok").await;
    // The receiver takes only the token it was told is current.
    let current = Arc::new(Mutex::new("tok-1".to_string()));
    let receiver = crate::harness::bearer_receiver(current.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "routes:\n  - name: rc\n    path: /rc\n    from: ringcentral\n    to:\n      - {{ name: graph, vendor: cloudevents, url: '{}', auth: {{ oauth2_client_credentials: {{ token_url: '{}', client_id: app-id, client_secret: app-secret, scope: 'https://graph.microsoft.com/.default' }} }} }}\n",
        receiver.url("/events"),
        tokens.url("/tenant/oauth2/v2.0/token"),
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;
    let flow: Vec<String> = fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for body in &flow[5..7] {
        let (status, reply) = post(&gw, "/rc", body).await;
        assert_eq!(status, 200, "{reply}");
    }
    assert_eq!(receiver.wait_for(2, WAIT).await.len(), 2);
    assert_eq!(
        issued.load(Ordering::SeqCst),
        1,
        "one token for both deliveries"
    );
    let grant = form_urlencoded::parse(tokens.all()[0].body.as_bytes())
        .into_owned()
        .collect::<std::collections::HashMap<_, _>>();
    assert_eq!(grant["grant_type"], "client_credentials");
    assert_eq!(grant["client_id"], "app-id");
    assert_eq!(grant["client_secret"], "app-secret");
    assert_eq!(grant["scope"], "https://graph.microsoft.com/.default");

    // The token is revoked: the next delivery is refused once, a new token is fetched, and
    // the same attempt goes through with it.
    *current.lock().unwrap() = "tok-2".into();
    let (status, reply) = post(&gw, "/rc", &flow[7]).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(receiver.wait_for(3, WAIT).await.len(), 3);
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "one new token after the 401"
    );
    let refused = receiver
        .all()
        .iter()
        .filter(|r| {
            r.headers
                .get("authorization")
                .is_some_and(|v| v == "Bearer tok-1")
        })
        .count();
    assert_eq!(
        refused, 3,
        "two deliveries and the one refused try used the first token"
    );
    gw.shutdown().await;
}

/// A broken token endpoint loses nothing: an error status, then a huge body that is not a
/// token, then a token. The delivery waits in the queue, retried like a connect failure,
/// and goes through with the token once there is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_token_endpoint_delays_delivery_and_loses_nothing() {
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let tokens =
        crate::harness::Receiver::start(move |_| match count.fetch_add(1, Ordering::SeqCst) {
            0 => crate::harness::Reply::status(503),
            1 => crate::harness::Reply {
                status: 200,
                body: "x".repeat(4 << 20),
                delay: Duration::ZERO,
                headers: Vec::new(),
            },
            _ => crate::harness::Reply {
                status: 200,
                body: r#"{"access_token":"tok-good","expires_in":3600}"#.into(),
                delay: Duration::ZERO,
                headers: vec![("content-type", "application/json".into())],
            },
        })
        .await;
    let receiver = crate::harness::bearer_receiver(Arc::new(Mutex::new("tok-good".into()))).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "routes:\n  - name: rc\n    path: /rc\n    from: ringcentral\n    to:\n      - {{ name: graph, vendor: cloudevents, url: '{}', auth: {{ oauth2_client_credentials: {{ token_url: '{}', client_id: app-id, client_secret: app-secret }} }} }}\n",
        receiver.url("/events"),
        tokens.url("/token"),
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;
    let flow: Vec<String> = fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let (status, reply) = post(&gw, "/rc", &flow[5]).await;
    assert_eq!(status, 200, "{reply}");
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "delivered once the endpoint gave a token");
    assert_eq!(asked.load(Ordering::SeqCst), 3);
    assert!(
        receiver
            .all()
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer tok-good")
    );
    gw.shutdown().await;
}
