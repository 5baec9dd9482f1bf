//! Microsoft Teams presence end to end against a fake Graph on loopback (its token endpoint
//! and `setPresence`): RingCentral presence and call events for two mapped users and one
//! unmapped user become the right `setPresence` calls — user from the `teams_users` directory
//! in the URL path, the documented availability/activity pair in the body — with one bearer
//! token fetched for all of them; the unmapped user is skipped with its reason; a 401 from
//! Graph gets one new token.

use crate::harness::{config_text, gateway, post};
use crate::support::root;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn input(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(
            root()
                .join("mappings/msteams-presence/cases/inputs/from-ringcentral")
                .join(name),
        )
        .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringcentral_presence_and_calls_set_teams_presence_for_mapped_users_only() {
    let (tokens, issued) = crate::harness::token_endpoint("graph").await;
    // The receiver takes only the token it was told is current.
    let current = Arc::new(Mutex::new("graph-1".to_string()));
    let graph = crate::harness::bearer_receiver(current.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("teams-users.csv"),
        "# RingCentral extension id, Entra user object id\n6610372004,aad-alice\n809646016,aad-bob\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("teams-app.yaml"),
        "session_id: 22553876-f5ab-4529-bffb-cfe50aa89f87\n",
    )
    .unwrap();
    let routes = format!(
        "directories: {{ teams_users: {}, teams_app: {} }}\nroutes:\n  - name: rc\n    path: /rc\n    from: ringcentral\n    to:\n      - {{ name: teams, vendor: msteams-presence, url: '{}', auth: {{ oauth2_client_credentials: {{ token_url: '{}', client_id: app, client_secret: s3cret, scope: 'https://graph.microsoft.com/.default' }} }} }}\n",
        dir.path().join("teams-users.csv").display(),
        dir.path().join("teams-app.yaml").display(),
        graph.url("/v1.0"),
        tokens.url("/tenant/oauth2/v2.0/token"),
    );
    let gw = gateway(&config_text(dir.path(), "", &routes)).await;

    // Alice's presence, Bob's answered call, and Carol (unmapped): her presence is skipped.
    let alice = input("detailed-extension-presence.json");
    let bob = input("call-answered.json");
    let mut carol = alice.clone();
    carol["uuid"] = "carol-1".into();
    carol["ownerId"] = "4242".into();
    carol["body"]["extensionId"] = "4242".into();
    carol["event"] =
        "/restapi/v1.0/account/~/extension/4242/presence?detailedTelephonyState=true".into();
    for body in [&alice, &bob, &carol] {
        let (status, reply) = post(&gw, "/rc", &body.to_string()).await;
        assert_eq!(status, 200, "{reply}");
    }
    let got = graph.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    let mut calls: Vec<(String, Value)> = got.iter().map(|r| (r.path.clone(), r.json())).collect();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        calls,
        [
            (
                "/v1.0/users/aad-alice/presence/setPresence".to_string(),
                json!({"sessionId": "22553876-f5ab-4529-bffb-cfe50aa89f87", "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"})
            ),
            (
                "/v1.0/users/aad-bob/presence/setPresence".to_string(),
                json!({"sessionId": "22553876-f5ab-4529-bffb-cfe50aa89f87", "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"})
            ),
        ]
    );
    assert_eq!(issued.load(Ordering::SeqCst), 1, "one token for both calls");
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("callgate_events_skipped_total")
                && l.contains("destination=\"teams\"")
                && l.contains("reason=\"no directory entry\"")),
        "{metrics}"
    );

    // Graph revokes the token: one 401, one new token, the presence goes through.
    *current.lock().unwrap() = "graph-2".into();
    let mut again = alice.clone();
    again["uuid"] = "alice-2".into();
    again["body"]["sequence"] = 1_000_000.into();
    let (status, _) = post(&gw, "/rc", &again.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(graph.wait_for(3, WAIT).await.len(), 3);
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    gw.shutdown().await;
}
