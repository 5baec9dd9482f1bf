//! Directory tables against a running gateway: a template looks up a user in a directory
//! file the config names (`directories:`); a mapped user's event is delivered with the mapped
//! id, an unmapped one skips that destination with its reason (reply, tail, metric), and an
//! edit of the file is picked up by the file watch without a restart.

use crate::harness::{Receiver, config_text, post};
use crate::support::{copy_dir, fixtures, root};
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// A vendor `dirtest` whose one template reads the callee's id through the `users` directory.
fn vendor_with_directory(mappings: &std::path::Path) {
    let folder = mappings.join("dirtest");
    std::fs::create_dir_all(folder.join("templates")).unwrap();
    std::fs::write(
        folder.join("vendor.yaml"),
        "vendor: dirtest\npayload: json\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("tables.yaml"),
        "# RingCentral extension id → the receiver's user id, from ops' file.\nusers: { directory: users }\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("encode.yaml"),
        "vendor: dirtest\ncontent_type: application/json\ntemplates:\n  - types: [\"call.*\"]\n    body: templates/call.json.hbs\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("templates/call.json.hbs"),
        "{\"user\": {{json (table \"users\" data.call.to.user_id)}}, \"type\": {{json type}}}\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_maps_users_skips_the_unmapped_and_follows_edits() {
    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    copy_dir(&root().join("mappings"), &mappings);
    vendor_with_directory(&mappings);
    let users = dir.path().join("users.csv");
    std::fs::write(&users, "# extension id, user id\n809646016,aad-user-1\n").unwrap();
    let routes = format!(
        "directories: {{ users: {} }}\nroutes:\n  - {{ name: rc, path: /rc, from: ringcentral, to: [ {{ name: d, vendor: dirtest, url: '{}', types: ['call.alerting'] }} ] }}\n",
        users.display(),
        receiver.url("/users")
    );
    let text = config_text(dir.path(), "", &routes).replace(
        &format!("mappings: {}", root().join("mappings").display()),
        &format!("mappings: {}", mappings.display()),
    );
    let config_file = dir.path().join("callgate.yaml");
    std::fs::write(&config_file, &text).unwrap();
    let gw = callgate::Gateway::start_from_file(&config_file)
        .await
        .unwrap();
    let alerting: Value = serde_json::from_str(
        &std::fs::read_to_string(
            &fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json")[5],
        )
        .unwrap(),
    )
    .unwrap();
    // The same notification for another call, to an extension the directory lacks (the
    // subscription's owner, so it is the monitored party).
    let mut unmapped = alerting.clone();
    unmapped["ownerId"] = "555".into();
    unmapped["event"] = "/restapi/v1.0/account/809646016/extension/555/telephony/sessions".into();
    unmapped["uuid"] = "unmapped-1".into();
    unmapped["body"]["telephonySessionId"] = "s-unmapped".into();
    unmapped["body"]["parties"][0]["id"] = "p-unmapped".into();
    unmapped["body"]["parties"][0]["to"]["extensionId"] = "555".into();
    unmapped["body"]["parties"][0]["extensionId"] = "555".into();

    let (status, _) = post(&gw, "/rc", &alerting.to_string()).await;
    assert_eq!(status, 200);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["user"], "aad-user-1");
    let (status, reply) = post(&gw, "/rc", &unmapped.to_string()).await;
    assert_eq!(status, 200, "{reply}");
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("callgate_events_skipped_total")
                && l.contains("no directory entry")),
        "{metrics}"
    );
    assert_eq!(
        receiver.accepted().len(),
        1,
        "the unmapped user got nothing"
    );

    // Ops add the user: the watch reloads, and the next event for them is delivered.
    std::fs::write(&users, "809646016,aad-user-1\n555,aad-user-555\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value =
            crate::harness::get_json(&format!("http://{}/admin/mappings", gw.admin_addr)).await;
        if status["version"].as_u64() > Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reload after the directory edit: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unmapped["uuid"] = "unmapped-2".into();
    unmapped["body"]["sequence"] = 99.into();
    let (status, _) = post(&gw, "/rc", &unmapped.to_string()).await;
    assert_eq!(status, 200);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].json()["user"], "aad-user-555");
    gw.shutdown().await;
}
