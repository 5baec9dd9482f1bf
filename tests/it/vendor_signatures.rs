//! Vendor signature schemes and handshakes declared as data (`vendor.yaml` `signature:`,
//! `challenge:`, `validation_query:`), checked against implementations that are not
//! callgate's: Twilio requests signed by the official `twilio` library's `RequestValidator`
//! (PyPI, installed by scripts/test), Zoom requests and its `endpoint.url_validation` answer
//! computed in Python from Zoom's documented construction.

use crate::harness::{Receiver, client, config_text, gateway};
use crate::support::{copy_dir, root};
use serde_json::{Value, json};

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);
const TWILIO_TOKEN: &str = "twilio-auth-token-for-tests";
const ZOOM_SECRET: &str = "zoom-secret-token-for-tests";

/// Runs a Python script with `input` on stdin; returns its stdout as JSON.
fn python(script: &str, input: &Value) -> Value {
    let out = crate::harness::run_with_stdin("python3", &["-c", script], &input.to_string());
    assert!(
        out.status.success(),
        "python failed (scripts/test installs twilio==9.3.0): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const TWILIO_SIGN: &str = r#"
import json, sys
from twilio.request_validator import RequestValidator
r = json.load(sys.stdin)
v = RequestValidator(r["token"])
print(json.dumps({"signature": v.compute_signature(r["url"], r["params"])}))
"#;

/// The form body of a documented Twilio status callback.
fn twilio_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CA5ff3a6d4d0a9a0e47b2b5e7e2c4c1a11"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+14155550100"),
        ("To", "+14155550199"),
        ("SequenceNumber", "0"),
        ("Timestamp", "Fri, 04 Dec 2026 16:09:00 +0000"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_requests_signed_by_the_official_library_are_accepted_and_altered_ones_refused() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    // Behind a proxy: Twilio called the public URL, callgate sees its own address.
    let public = "https://hooks.example.com";
    let routes = format!(
        "routes:\n  - name: tw\n    path: /hooks/twilio\n    from: twilio\n    public_url: '{public}'\n    auth: {{ signature: {{ secret: '{TWILIO_TOKEN}' }} }}\n    to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ]\n",
        receiver.url("/events")
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;
    let target = "/hooks/twilio?tenant=acme";
    let params = twilio_params();
    let signed = python(
        TWILIO_SIGN,
        &json!({"token": TWILIO_TOKEN, "url": format!("{public}{target}"),
                "params": params.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}),
    );
    let signature = signed["signature"].as_str().unwrap().to_string();
    let form = |params: &[(&str, &str)]| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
    };
    let send = |target: &str, body: String, signature: Option<&str>| {
        let mut request = client()
            .post(format!("http://{}{target}", gw.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(s) = signature {
            request = request.header("X-Twilio-Signature", s);
        }
        request.send()
    };
    let r = send(target, form(&params), Some(&signature)).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1);

    // One altered parameter, a different URL, no header: 401 problem+json naming the scheme.
    let mut altered = params.clone();
    altered[3] = ("CallStatus", "completed");
    for (why, target, body, signature) in [
        ("altered", target, form(&altered), Some(signature.as_str())),
        (
            "wrong URL",
            "/hooks/twilio?tenant=other",
            form(&params),
            Some(signature.as_str()),
        ),
        ("unsigned", target, form(&params), None),
    ] {
        let r = send(target, body, signature).await.unwrap();
        assert_eq!(r.status(), 401, "{why}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{why}"
        );
        let problem: Value = r.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("x-twilio-signature"),
            "{why}: {problem}"
        );
    }
    gw.shutdown().await;
}

const ZOOM_SIGN: &str = r#"
import hashlib, hmac, json, sys
r = json.load(sys.stdin)
out = {}
for name, body in r["bodies"].items():
    message = "v0:" + r["timestamp"] + ":" + body
    out[name] = "v0=" + hmac.new(r["secret"].encode(), message.encode(), hashlib.sha256).hexdigest()
out["encryptedToken"] = hmac.new(r["secret"].encode(), r["plainToken"].encode(), hashlib.sha256).hexdigest()
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_signatures_and_the_url_validation_answer_match_zooms_construction() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "routes:\n  - name: zoom\n    path: /hooks/zoom\n    from: zoom-phone\n    auth: {{ signature: {{ secret: '{ZOOM_SECRET}' }} }}\n    to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ]\n",
        receiver.url("/events")
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;
    let event = std::fs::read_to_string(
        root().join("mappings/zoom-phone/cases/inputs/callee-ringing.json"),
    )
    .unwrap();
    let challenge = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let now = (callgate::model::clock::now_ms() / 1000).to_string();
    let signed = python(
        ZOOM_SIGN,
        &json!({"secret": ZOOM_SECRET, "timestamp": now, "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
                "bodies": {"event": event, "challenge": challenge}}),
    );
    let send = |body: &str, signature: Option<&str>, timestamp: &str| {
        let mut request = client()
            .post(format!("http://{}/hooks/zoom", gw.addr))
            .header("content-type", "application/json")
            .header("x-zm-request-timestamp", timestamp)
            .body(body.to_string());
        if let Some(s) = signature {
            request = request.header("x-zm-signature", s);
        }
        request.send()
    };

    // The challenge, signed: answered with Zoom's expected reply and no event.
    let r = send(challenge, signed["challenge"].as_str(), &now)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(
        reply,
        json!({"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": signed["encryptedToken"]})
    );
    // Unsigned, it is refused: the route's HMAC is never computed for a stranger.
    let r = send(challenge, None, &now).await.unwrap();
    assert_eq!(r.status(), 401);

    // A signed event is accepted and delivered; a wrong signature and a stale timestamp get 401.
    let r = send(&event, signed["event"].as_str(), &now).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "only the event reached the receiver");
    assert_eq!(got[0].json()["type"], "call.alerting");
    let r = send(&event, signed["challenge"].as_str(), &now)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let stale = (callgate::model::clock::now_ms() / 1000 - 3600).to_string();
    let r = send(&event, signed["event"].as_str(), &stale)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    gw.shutdown().await;
}

/// Microsoft Graph's subscription validation (`?validationToken=`), declared as data: the token
/// comes back as `text/plain`, no event; a hostile token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_query_is_echoed_as_plain_text() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    copy_dir(&root().join("mappings"), &mappings);
    let vendor = mappings.join("enablex/vendor.yaml");
    let text = std::fs::read_to_string(&vendor).unwrap() + "validation_query: validationToken\n";
    std::fs::write(&vendor, text).unwrap();
    let routes = format!(
        "routes:\n  - name: gx\n    path: /hooks/gx\n    from: enablex\n    to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ]\n",
        receiver.url("/events")
    );
    let config = config_text(dir.path(), "", &routes).replace(
        &format!("mappings: {}", root().join("mappings").display()),
        &format!("mappings: {}", mappings.display()),
    );
    let gw = gateway(&config).await;
    let r = client()
        .post(format!(
            "http://{}/hooks/gx?validationToken=Validation%3A%20Testing%20client%20application",
            gw.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        r.text().await.unwrap(),
        "Validation: Testing client application"
    );
    for hostile in ["a%0Ab", &"x".repeat(2000)] {
        let r = client()
            .post(format!(
                "http://{}/hooks/gx?validationToken={hostile}",
                gw.addr
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    assert!(
        receiver.accepted().is_empty(),
        "a validation makes no event"
    );
    gw.shutdown().await;
}

const TWILIO_JSON: &str = r#"
import json, sys
from twilio.request_validator import RequestValidator
r = json.load(sys.stdin)
v = RequestValidator(r["token"])
url = r["url"] + "?bodySHA256=" + v.compute_hash(r["body"])
print(json.dumps({"url": url, "signature": v.compute_signature(url, {}),
                  "valid": v.validate(url, r["body"], v.compute_signature(url, {}))}))
"#;

/// Twilio's JSON bodies are signed over the URL alone, which carries `bodySHA256`: the
/// declared scheme (`body_digest: bodySHA256`) accepts what the official library signs and
/// refuses a body that no longer matches its digest.
#[test]
fn a_twilio_json_body_is_covered_by_its_body_sha256() {
    let set = callgate::MappingSet::load(&root().join("mappings")).unwrap();
    let scheme = set.vendor("twilio").unwrap().signature.clone().unwrap();
    let body = r#"{"CallSid":"CA1","CallStatus":"ringing"}"#;
    let signed = python(
        TWILIO_JSON,
        &json!({"token": TWILIO_TOKEN, "url": "https://hooks.example.com/hooks/twilio", "body": body}),
    );
    assert_eq!(
        signed["valid"], true,
        "the library checks its own signature"
    );
    let url = signed["url"].as_str().unwrap();
    let target = &url["https://hooks.example.com".len()..];
    let headers: axum::http::HeaderMap = [(
        "x-twilio-signature".parse().unwrap(),
        signed["signature"].as_str().unwrap().parse().unwrap(),
    )]
    .into_iter()
    .collect();
    let request = |body: &'static str| callgate::model::signature::Presented {
        method: "POST",
        target,
        headers: &headers,
        body: body.as_bytes(),
    };
    let now = callgate::model::clock::now_ms() / 1000;
    let public = Some("https://hooks.example.com");
    assert_eq!(
        scheme.verify(TWILIO_TOKEN.as_bytes(), &request(body), public, now),
        Ok(())
    );
    let tampered = r#"{"CallSid":"CA1","CallStatus":"completed"}"#;
    assert!(
        scheme
            .verify(TWILIO_TOKEN.as_bytes(), &request(tampered), public, now)
            .unwrap_err()
            .to_string()
            .contains("bodySHA256")
    );
}
