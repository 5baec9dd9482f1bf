//! The mapping playground: Debian's chromium, driven by `playwright-core` from npm
//! (`tests/browser/`, installed by `.ci/run`), loads the page from a running gateway,
//! translates a RingCentral notification into Vidyo, breaks a template and reads the error,
//! and follows the live tail; `POST /admin/translate` refuses hostile requests cleanly.

use crate::harness::{Receiver, client, config_text, gateway, post};
use crate::support::{fixtures, root};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn flow() -> Vec<String> {
    fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

fn rc_to_vidyo(receiver: &Receiver) -> String {
    format!(
        "routes:\n  - name: rc\n    path: /hooks/rc\n    from: ringcentral\n    to:\n      - {{ name: vidyo, vendor: vidyo, url: '{}', types: ['call.*'] }}\n",
        receiver.url("/vidyo")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_in_a_real_browser() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &rc_to_vidyo(&receiver))).await;
    for body in flow() {
        let (status, reply) = post(&gw, "/hooks/rc", &body).await;
        assert_eq!(status, 200, "{reply}");
    }
    assert_eq!(receiver.wait_for(6, WAIT).await.len(), 6);

    let notification = root()
        .join("tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-06.json");
    let shots = root().join("target/playground");
    std::fs::create_dir_all(&shots).unwrap();
    let admin = format!("http://{}", gw.admin_addr);
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/playground.js"))
        .arg(&admin)
        .arg(&notification)
        .arg(&shots)
        .output()
        .await
        .expect("node runs (install Node.js; scripts/test runs `npm ci` in tests/browser and installs Debian's chromium)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser run failed: {stderr}");
    let page: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");

    // What the page showed for the RingCentral notification in Vidyo's shape.
    assert!(
        page["status"].as_str().unwrap().starts_with("snapshot v1"),
        "{page}"
    );
    // The cases offered are the chosen source's (ringcentral at first), grouped by target;
    // `auto` offers every one.
    let (first, all) = (
        page["fixtures"].as_u64().unwrap(),
        page["fixtures_auto"].as_u64().unwrap(),
    );
    assert!(all > 200 && first > 20 && first < all, "{first} of {all}");
    for (from, groups) in [
        ("ringcentral", &page["fixture_groups_ringcentral"]),
        ("vidyo", &page["fixture_groups_vidyo"]),
    ] {
        let groups = groups.as_array().unwrap();
        assert!(groups.len() > 1, "{from}: {groups:?}");
        assert!(
            groups
                .iter()
                .all(|g| g.as_str().unwrap().starts_with(&format!("{from} → "))),
            "{from}: {groups:?}"
        );
    }
    // Fields the Vidyo template reads that this notification lacks are flagged.
    let absent = page["absent"][0].as_str().unwrap_or_default();
    assert!(absent.contains("data.conference.room"), "{page}");
    // "Save as case" downloads a case that passes as it is, in a copy of the mappings.
    assert_eq!(page["case_name"], "playground-ringcentral-to-vidyo.yaml");
    let copy = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&root().join("mappings"), copy.path());
    let case = copy
        .path()
        .join("vidyo/cases/playground-ringcentral-to-vidyo.yaml");
    std::fs::write(&case, page["case_yaml"].as_str().unwrap()).unwrap();
    let set = std::sync::Arc::new(callgate::MappingSet::load(copy.path()).unwrap());
    let saved = callgate::cases::run_all(&set)
        .into_iter()
        .find(|r| r.file == case)
        .expect("the saved case runs");
    assert!(
        saved.passed(),
        "{:?}\n{}",
        saved.failures,
        page["case_yaml"]
    );
    assert_eq!(page["types"], json!(["call.alerting"]), "{page}");
    assert_eq!(page["verdicts"], json!(["apply"]), "{page}");
    assert_eq!(page["errors_before"], 0, "{page}");
    let vidyo = &page["outputs"][0]["userStatusNotification"];
    assert_eq!(vidyo["user"]["userState"], "Alerting", "{page}");
    assert_eq!(vidyo["conference"]["callState"], "ALERTING", "{page}");

    // The broken template: the page names the file and the line.
    let template = root().join("mappings/vidyo/templates/user-status.json.hbs");
    assert_eq!(
        page["error_where"],
        json!([format!("{}:5", template.display())]),
        "{page}"
    );
    let error = page["error_text"][0].as_str().unwrap();
    assert!(error.contains("data.no_such_field"), "{error}");
    assert!(
        error.contains("not a field of the canonical model"),
        "{error}"
    );
    // Refused when the edited set is compiled, before any event is rendered with it.
    assert_eq!(page["outcomes_after"], json!([]), "{page}");
    assert!(
        page["edited"].as_str().unwrap().contains("not saved"),
        "{page}"
    );
    // The edit never reached the disk.
    assert!(
        !std::fs::read_to_string(&template)
            .unwrap()
            .contains("no_such_field")
    );

    // The tail panel shows the flow that went through the gateway.
    let tail: Vec<&str> = page["tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        tail.iter()
            .filter(|l| l.contains("rc/vidyo → ") && l.contains("delivered 200"))
            .count(),
        6,
        "{tail:#?}"
    );
    assert_eq!(page["console_errors"], json!([]), "{page}");

    for shot in [
        "playground.png",
        "playground-error.png",
        "playground-tail.png",
    ] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
            "{shot}"
        );
    }
    gw.shutdown().await;
}

/// The report `POST /admin/translate` gives, and what it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translate_reports_every_stage_and_refuses_hostile_requests() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &rc_to_vidyo(&receiver))).await;
    let url = format!("http://{}/admin/translate", gw.admin_addr);
    let ask = |body: Value| {
        let url = url.clone();
        async move {
            let r = client().post(&url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
            (status, content_type, r.json::<Value>().await.unwrap())
        }
    };
    let flow = flow();

    // `payload` may be the JSON value itself, not only its text.
    let (status, _, report) = ask(json!({"from": "ringcentral", "to": "vidyo",
        "payload": serde_json::from_str::<Value>(&flow[5]).unwrap()}))
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["events"][0]["lifecycle"]["verdict"], "apply",
        "{report}"
    );

    // The whole flow in one input: the tracker drops the redelivery and derives nothing
    // wrong; a presence notification of the same flow is skipped by Vidyo's templates.
    let (status, _, report) = ask(json!({"from": "auto", "to": "vidyo",
        "payload": format!("{}\n{}\n{}", flow[5], flow[5], flow[6])}))
    .await;
    assert_eq!(status, 200);
    assert_eq!(report["vendor"], "ringcentral");
    let verdicts: Vec<&str> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lifecycle"]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["apply", "duplicate", "apply"], "{report}");
    assert_eq!(report["events"][1]["output"]["status"], "dropped");
    assert!(
        report["events"][1]["lifecycle"]["detail"]
            .as_str()
            .unwrap()
            .contains("already seen")
    );
    assert_eq!(report["errors"], json!([]));

    // A payload no rule matches: the decode error names decode.yaml.
    let (status, _, report) = ask(json!({"from": "vidyo", "to": "ringcentral",
        "payload": "{\"userStatusNotification\": {}}"}))
    .await;
    assert_eq!(status, 200);
    let error = &report["errors"][0];
    assert_eq!(error["stage"], "decode", "{report}");
    assert!(
        error["file"]
            .as_str()
            .unwrap()
            .ends_with("mappings/vidyo/decode.yaml"),
        "{report}"
    );

    // An edited template that does not compile: the load error names file and line.
    let template = "vidyo/templates/user-status.json.hbs";
    let text = std::fs::read_to_string(root().join("mappings").join(template)).unwrap();
    let broken = text.replacen("{{json", "{{#json", 1);
    let (status, _, report) = ask(json!({"from": "ringcentral", "to": "vidyo",
        "payload": flow[5], "edits": {template: broken}}))
    .await;
    assert_eq!(status, 200);
    assert_eq!(report["errors"][0]["stage"], "load", "{report}");
    assert!(report["errors"][0]["line"].as_u64().is_some(), "{report}");

    // Hostile edits: outside the folder, absolute, new files. Refused, nothing read.
    for path in [
        "../config/callgate.yaml",
        "/etc/passwd",
        "vidyo/templates/new.hbs",
        "vidyo/../../Cargo.toml",
    ] {
        let (status, _, report) = ask(json!({"from": "ringcentral", "to": "vidyo",
            "payload": flow[5], "edits": {path: "x"}}))
        .await;
        assert_eq!(status, 200, "{path}");
        let message = report["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("not a file of the mappings folder"),
            "{path}: {report}"
        );
        assert!(report["events"].as_array().unwrap().is_empty());
    }

    // Broken requests: problem+json, never a panic.
    for (body, want) in [
        ("{", 400),
        ("[]", 400),
        ("{\"from\": \"vidyo\"}", 400),
        ("{\"from\": 1, \"to\": \"vidyo\", \"payload\": \"\"}", 400),
        (
            "{\"from\": \"vidyo\", \"to\": \"vidyo\", \"payload\": \"{}\", \"evil\": 1}",
            400,
        ),
    ] {
        let r = client()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    // Unknown vendors and empty or non-JSON payloads are report errors, not failures.
    for (from, to, payload) in [
        ("nobody", "vidyo", "{}"),
        ("vidyo", "nobody", "{}"),
        ("vidyo", "ringcentral", "   "),
        ("vidyo", "ringcentral", "{\"a\": [1, 2"),
        ("ringcentral", "vidyo", &"[".repeat(100_000)),
    ] {
        let (status, _, report) = ask(json!({"from": from, "to": to, "payload": payload})).await;
        assert_eq!(status, 200, "{from} {to}");
        assert_eq!(report["errors"][0]["stage"], "input", "{report}");
    }
    // More than the admin listener takes in one body.
    let huge = json!({"from": "ringcentral", "to": "vidyo", "payload": "x".repeat(3 << 20)});
    let r = client().post(&url).json(&huge).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // The files endpoint serves only vendors of the mappings.
    for vendor in ["../config", "nobody", ""] {
        let r = client()
            .get(format!(
                "http://{}/admin/playground/files?vendor={vendor}",
                gw.admin_addr
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{vendor}");
    }
    // The page itself: no inline script, a strict content security policy.
    let r = client()
        .get(format!("http://{}/admin/playground", gw.admin_addr))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!r.text().await.unwrap().contains("<script>"));
    gw.shutdown().await;
}

/// The admin listener's extractor refusals answer problem+json like every other refusal: a
/// `limit` that is not a number, a translate body over the body limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refusals_are_problem_details() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &rc_to_vidyo(&receiver))).await;
    let problem = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        (status, content_type, r.json::<Value>().await.unwrap())
    };
    let (status, content_type, body) = problem(
        client()
            .get(format!(
                "http://{}/admin/deliveries?limit=abc",
                gw.admin_addr
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(content_type, "application/problem+json");
    assert!(body["detail"].as_str().unwrap().contains("limit"), "{body}");

    let huge = "x".repeat(3 * 1024 * 1024);
    let (status, content_type, body) = problem(
        client()
            .post(format!(
                "http://{}/admin/translate?from=vidyo&to=cloudevents",
                gw.admin_addr
            ))
            .body(huge)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(content_type, "application/problem+json");
    gw.shutdown().await;
}
