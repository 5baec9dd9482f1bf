//! A full disk, for real: the SQLite store on a small tmpfs (mounted in a private mount
//! namespace, `unshare -m`, so it vanishes with the gateway) fills up while the receiver
//! refuses. Intake answers 503 `store-full` and acknowledges nothing it did not store,
//! `/readyz` and `callgate_store_full` say so, and once space is freed every acknowledged
//! event is delivered promptly — a settlement the full disk refused is asked again, not left
//! to its 5-minute lease.

use crate::harness::{Receiver, client, free_port, wait_ready};
use crate::support::root;
use serde_json::Value;
use std::collections::HashSet;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// `callgate serve` in its own mount namespace, its store folder a tmpfs of `size` with
/// `filler` bytes taken; SIGUSR1 to the returned process deletes the filler (frees space),
/// SIGTERM stops the gateway.
fn serve_on_small_disk(store: &std::path::Path, config: &std::path::Path) -> Child {
    let script = r#"
        mount -t tmpfs -o size=8m tmpfs "$0" || exit 90
        head -c 5000000 /dev/zero > "$0/filler"
        "$1" serve --config "$2" &
        gateway=$!
        trap 'rm -f "$0/filler"' USR1
        trap 'kill -TERM $gateway' TERM
        while kill -0 $gateway 2>/dev/null; do wait $gateway; done
    "#;
    Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .arg(store)
        .arg(env!("CARGO_BIN_EXE_callgate"))
        .arg(config)
        .env("CALLGATE_LOG", "error")
        .spawn()
        .expect(
            "unshare runs (util-linux; the test needs root or user namespaces to mount a tmpfs)",
        )
}

/// Stops the gateway (SIGTERM to the wrapper, which passes it on) if the test ends early, so
/// no gateway outlives a failed test.
struct Stop(Option<Child>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, name: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_intake_and_recovers_at_once_when_space_returns() {
    let _heavy = crate::harness::HEAVY.lock().await;
    // Refuses, slowly, until released: attempts are in flight while the disk fills, so their
    // settlements are refused for want of space.
    let accepting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let open = accepting.clone();
    let receiver = Receiver::start(move |_| {
        if open.load(std::sync::atomic::Ordering::SeqCst) {
            crate::harness::Reply::ok()
        } else {
            crate::harness::Reply {
                status: 503,
                body: "not yet".into(),
                delay: Duration::from_millis(1500),
                headers: Vec::new(),
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let (port, admin) = (free_port(), free_port());
    let retry = std::iter::once("0s")
        .chain(std::iter::repeat_n("300ms", 400))
        .collect::<Vec<_>>()
        .join(", ");
    let config = dir.path().join("callgate.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{ listen: 127.0.0.1:{port}, admin_listen: 127.0.0.1:{admin} }}\n\
             mappings: {}\n\
             store: {{ kind: sqlite, path: {} }}\n\
             delivery: {{ retry: [{retry}], timeout: 5s }}\n\
             routes:\n  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: ce, vendor: cloudevents, url: '{}' }} ] }}\n",
            root().join("mappings").display(),
            store.join("callgate.db").display(),
            receiver.url("/events"),
        ),
    )
    .unwrap();
    let mut guard = Stop(Some(serve_on_small_disk(&store, &config)));
    wait_ready(port).await;

    // Send distinct notifications until the store refuses for want of space.
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json")).unwrap(),
    )
    .unwrap();
    let http = client();
    let post = |i: usize| {
        let mut v = template.clone();
        v["uuid"] = format!("full-{i}").into();
        v["body"]["telephonySessionId"] = format!("call-{i}").into();
        // Padding: each message takes a few KiB, so the disk fills in hundreds, not millions.
        v["body"]["padding"] = "x".repeat(4000).into();
        http.post(format!("http://127.0.0.1:{port}/rc"))
            .header("content-type", "application/json")
            .body(v.to_string())
            .send()
    };
    let mut acked = HashSet::new();
    let mut refusal = None;
    for i in 0..20_000 {
        let r = post(i).await.unwrap();
        let status = r.status().as_u16();
        if status == 200 {
            acked.insert(format!("full-{i}"));
            continue;
        }
        let body: Value = r.json().await.unwrap_or_default();
        refusal = Some((status, body));
        break;
    }
    let (status, body) = refusal.expect("the disk never filled");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:callgate:problem:store-full", "{body}");
    assert!(
        !acked.is_empty(),
        "nothing was stored before the disk filled"
    );
    let ready = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let metrics = crate::harness::metrics(([127, 0, 0, 1], admin).into()).await;
    assert!(metrics.contains("callgate_store_full 1"), "{metrics}");

    // Space returns and the receiver accepts: every acknowledged event arrives well within
    // the 5-minute lease a refused settlement used to wait out.
    accepting.store(true, std::sync::atomic::Ordering::SeqCst);
    signal(guard.0.as_ref().unwrap(), "USR1");
    let deadline = Instant::now() + Duration::from_secs(90);
    let missing = loop {
        let delivered: HashSet<String> = receiver
            .accepted()
            .iter()
            .filter_map(|r| r.json()["id"].as_str().map(str::to_string))
            .collect();
        let missing = acked.difference(&delivered).count();
        if missing == 0 || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        missing, 0,
        "acknowledged events not delivered after space returned"
    );
    // Intake takes events again, and readiness and the metric say the store writes.
    assert_eq!(post(1_000_000).await.unwrap().status(), 200);
    let ready = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = crate::harness::metrics(([127, 0, 0, 1], admin).into()).await;
    assert!(metrics.contains("callgate_store_full 0"), "{metrics}");
    let mut child = guard.0.take().unwrap();
    signal(&child, "TERM");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}
