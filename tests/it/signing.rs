//! Standard Webhooks both ways, checked against the official verifier and signer (PyPI
//! `standardwebhooks`, installed by `.ci/run`): what callgate signs passes it, keeping one
//! `webhook-id` across retries; what it signs, callgate's route verifier accepts, and
//! tampered, stale or unsigned requests get 401.

use crate::harness::{Receiver, Reply, client, config_text, gateway};
use crate::support::fixtures;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// base64 of the 24 bytes "callgate-signing-key-v1!".
const SECRET: &str = "whsec_Y2FsbGdhdGUtc2lnbmluZy1rZXktdjEh";
/// base64 of the 24 bytes "callgate-old-rotated-key".
const OLD_SECRET: &str = "whsec_Y2FsbGdhdGUtb2xkLXJvdGF0ZWQta2V5";

/// Runs a Python script with `input` on stdin; returns its stdout, panicking with its
/// stderr on failure.
fn python(script: &str, input: &str) -> String {
    let out = crate::harness::run_with_stdin("python3", &["-c", script], input);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
requests = json.load(sys.stdin)
wh = Webhook(requests["secret"])
for r in requests["requests"]:
    wh.verify(r["body"], r["headers"])
    try:
        wh.verify(r["body"] + " ", r["headers"])
    except Exception:
        pass
    else:
        raise SystemExit("a tampered body verified")
print("verified", len(requests["requests"]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_pass_the_official_verifier_with_one_id_across_retries() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let receiver = Receiver::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "routes:\n  - name: isr\n    path: /isr\n    from: oracle-isr\n    to:\n      - {{ name: ce, vendor: cloudevents, url: '{}', sign: {{ standard_webhooks: {{ secret: '{SECRET}' }} }} }}\n",
        receiver.url("/ce")
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;
    let r = client()
        .get(format!(
            "http://{}/isr?event=CALL_ANSWERED&ISR_UCID=u-1&CALLING_PARTY=1001&CALLED_PARTY=2002",
            gw.addr
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert_eq!(receiver.wait_for(1, Duration::from_secs(15)).await.len(), 1);
    let all = receiver.all();
    assert_eq!(all.len(), 3, "two refusals, then the delivery");
    let ids: Vec<&str> = all
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let requests: Vec<Value> = all
        .iter()
        .map(|r| {
            json!({
                "body": r.body,
                "headers": {
                    "webhook-id": r.headers["webhook-id"].to_str().unwrap(),
                    "webhook-timestamp": r.headers["webhook-timestamp"].to_str().unwrap(),
                    "webhook-signature": r.headers["webhook-signature"].to_str().unwrap(),
                }
            })
        })
        .collect();
    let out = python(
        VERIFY,
        &json!({"secret": SECRET, "requests": requests}).to_string(),
    );
    assert_eq!(out.trim(), "verified 3");
    gw.shutdown().await;
}

const SIGN: &str = r#"
import json, sys, datetime
from standardwebhooks.webhooks import Webhook
job = json.load(sys.stdin)
now = datetime.datetime.now(tz=datetime.timezone.utc)
out = []
for secret, age in job["signers"]:
    when = now - datetime.timedelta(seconds=age)
    out.append({
        "webhook-id": "msg_from_python",
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_from_python", when, job["body"]),
    })
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_verifier_accepts_official_signatures_only() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "routes:\n  - name: rc\n    path: /hooks/rc\n    from: ringcentral\n    auth: {{ standard_webhooks: {{ secrets: ['{OLD_SECRET}', '{SECRET}'] }} }}\n    to:\n      - {{ name: vidyo, vendor: vidyo, url: '{}' }}\n",
        receiver.url("/vidyo")
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;
    let body = std::fs::read_to_string(
        &fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json")[5],
    )
    .unwrap();
    let signed: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&python(
        SIGN,
        &json!({
            "body": body,
            "signers": [[SECRET, 0], [OLD_SECRET, 0], [SECRET, 600], [SECRET, -600],
                        ["whsec_c29tZW9uZS1lbHNlcy1rZXktMDEyMzQ1Njc4", 0]],
        })
        .to_string(),
    ))
    .unwrap();
    let send = |headers: &serde_json::Map<String, Value>, body: &str| {
        let mut request = client()
            .post(format!("http://{}/hooks/rc", gw.addr))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str().unwrap());
        }
        request.send()
    };
    let expect = [
        (200, "current key"),
        (200, "rotated-out key still listed"),
        (401, "ten minutes old"),
        (401, "ten minutes ahead"),
        (401, "someone else's key"),
    ];
    for (headers, (status, why)) in signed.iter().zip(expect) {
        let r = send(headers, &body).await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            status,
            "{why}: {}",
            r.text().await.unwrap()
        );
    }
    let tampered = body.replacen("Proceeding", "Disconnected", 1);
    assert_ne!(tampered, body);
    let r = send(&signed[0], &tampered).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = send(&serde_json::Map::new(), &body).await.unwrap();
    assert_eq!(r.status(), 401);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("webhook-id"),
        "{problem}"
    );
    gw.shutdown().await;
}
