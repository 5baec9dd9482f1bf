//! The RTE-compatible hub destination against the official SignalR client
//! (`@microsoft/signalr` 10.0.11 from npm, installed by `.ci/run` under `tests/signalr/`):
//! a RingCentral webhook POSTed to callgate reaches a subscribed RTE client as
//! `MessageReceived`; the hub methods answer as the seed describes; bad tokens get 401; a
//! message nobody is subscribed to waits, then is dead-lettered.

use crate::harness::{client, config_text, gateway, get_json, post};
use crate::support::{fixtures, root};
use callgate::outbound::signalr::hub::{Claims, issue_token};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const SECRET: &str = "hub-secret-for-tests-0123456789";
const WAIT: Duration = Duration::from_secs(20);

/// `tests/signalr/rte-client.js` under Node, read line by line.
struct RteClient {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl RteClient {
    fn start(url: &str, token: &str, subscriptions: &Value, expected: usize) -> RteClient {
        let mut child = Command::new("node")
            .arg(root().join("tests/signalr/rte-client.js"))
            .args([
                url,
                token,
                &subscriptions.to_string(),
                &expected.to_string(),
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (install Node.js; scripts/test runs `npm ci` in tests/signalr)");
        let stdout = child.stdout.take().unwrap();
        RteClient {
            _child: child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next output line of `kind` (others are skipped); panics after `WAIT`.
    async fn next(&mut self, kind: &str) -> Value {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("client printed non-JSON: {line}"));
                if value["kind"] == kind {
                    return value;
                }
                assert_ne!(value["kind"], "start-failed", "{value}");
            }
            panic!("the client ended before printing {kind}");
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("no {kind} from the client within {WAIT:?}"))
    }
}

/// `tests/signalr/rte_hub.py` (aiosignalr playing RTE) on `port`, read line by line;
/// `keep`: it drops no connection.
struct RteStandIn {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl RteStandIn {
    async fn start(port: u16, keep: bool) -> RteStandIn {
        let mut command = Command::new("python3");
        command
            .arg(root().join("tests/signalr/rte_hub.py"))
            .arg(port.to_string())
            .arg(root().join("tests/fixtures/enreach/UserCallInComing.json"));
        if keep {
            command.arg("keep");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (pip install aiosignalr)");
        let stdout = child.stdout.take().unwrap();
        let mut hub = RteStandIn {
            _child: child,
            lines: BufReader::new(stdout).lines(),
        };
        hub.next("listening").await;
        hub
    }

    /// The next output line of `kind` (others are skipped); panics after `WAIT`.
    async fn next(&mut self, kind: &str) -> Value {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                let value: Value = serde_json::from_str(&line).unwrap();
                if value["kind"] == kind {
                    return value;
                }
            }
            panic!("the hub ended before {kind}");
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("no {kind} from the hub"))
    }
}

fn hub_routes(extra: &str) -> String {
    format!(
        "routes:\n  - name: rc\n    path: /hooks/rc\n    from: ringcentral\n    to:\n      - {{ name: rte-clients, vendor: enreach, hub: /rte, auth: {{ jwt_secret: '{SECRET}' }}, types: ['call.*']{extra} }}\n"
    )
}

fn flow() -> Vec<String> {
    fixtures("ringcentral/flows/PSTN-RingCentral-DataStreams", ".json")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_receives_ringcentral_events_through_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &hub_routes(", undeliverable_after: 1s"),
    ))
    .await;
    // RTE's token endpoint, on the admin listener: the RingCentral extension's entity.
    let issued = get_json(&format!("http://{}/token/809646016/rte/", gw.admin_addr)).await;
    let entity = issued["EntityIds"][0].as_str().unwrap().to_string();
    let endpoint = issued["WssEndpoint"].as_str().unwrap();
    assert_eq!(endpoint, format!("ws://{}/rte", gw.addr));
    // Node's official client refuses ws:// URLs (docs/protocols.md §1.7): it negotiates on http.
    let url = endpoint.replacen("ws://", "http://", 1);
    let subscriptions = json!([
        {"EntityId": entity, "EventName": "UserCallInComing"},
        {"EntityId": "not-a-guid", "EventName": "UserStatus"},
        {"EntityId": entity, "EventName": "NoSuchEvent"},
        {"EntityId": "a1eeb030-ff4b-ea11-ac9c-00155d4fdcf3", "EventName": "UserStatus"},
    ]);
    let mut rte = RteClient::start(&url, issued["Token"].as_str().unwrap(), &subscriptions, 1);
    rte.next("connected").await;
    let available = rte.next("available").await;
    assert!(
        available["result"]
            .as_array()
            .unwrap()
            .contains(&json!("UserCallInComing")),
        "{available}"
    );
    let subscribed = rte.next("subscribed").await["result"].clone();
    let outcome: Vec<(bool, Value)> = subscribed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["subscribed"].as_bool().unwrap(), r["message"].clone()))
        .collect();
    assert_eq!(
        outcome,
        vec![
            (true, Value::Null),
            (false, json!("Invalid EntityId")),
            (false, json!("Invalid event name")),
            (false, json!("Unauthorized")),
        ],
        "{subscribed}"
    );
    assert_eq!(subscribed[0]["eventName"], "usercallincoming");

    let flow = flow();
    assert_eq!(post(&gw, "/hooks/rc", &flow[4]).await.0, 200);
    let message = rte.next("message").await["message"].clone();
    assert_eq!(message["subscription"]["entityId"], entity, "{message}");
    assert_eq!(message["subscription"]["eventType"], "usercallincoming");
    assert_eq!(
        message["data"]["EventType"], "UserCallInComing",
        "{message}"
    );
    assert_eq!(message["data"]["EntityId"], entity);

    let active = rte.next("active").await["result"].clone();
    assert_eq!(active.as_array().unwrap().len(), 1, "{active}");
    assert_eq!(active[0]["entityId"], entity);
    let unsubscribed = rte.next("unsubscribed").await["result"].clone();
    assert_eq!(unsubscribed[0]["subscribed"], false, "{unsubscribed}");
    assert_eq!(unsubscribed[0]["message"], Value::Null);
    assert_eq!(rte.next("active-after").await["result"], json!([]));
    assert_eq!(rte.next("unsubscribed-all").await["result"], json!(true));
    rte.next("stopped").await;

    // Nobody subscribed: the next event waits, then is dead-lettered, never dropped.
    assert_eq!(post(&gw, "/hooks/rc", &flow[5]).await.0, 200);
    let dead = async {
        loop {
            let list = get_json(&format!("http://{}/admin/deliveries", gw.admin_addr)).await;
            if list.to_string().contains("undeliverable") {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let list = tokio::time::timeout(WAIT, dead)
        .await
        .expect("the unsubscribed event reaches the dead letters");
    assert!(
        list.to_string().contains("no connection subscribed"),
        "{list}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_expired_or_missing_tokens_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &hub_routes(""))).await;
    let url = format!("http://{}/rte", gw.addr);
    let now = callgate::model::clock::now_ms() as u64 / 1000;
    let claims = |exp| Claims {
        sub: "u".into(),
        exp,
        entities: vec!["*".into()],
    };
    let expired = issue_token(SECRET.as_bytes(), &claims(now - 60));
    let foreign = issue_token(b"someone-else's-secret-0123", &claims(now + 600));
    for (token, why) in [
        (expired, "expired"),
        (foreign, "wrong key"),
        ("x.y.z".to_string(), "garbage"),
    ] {
        let mut rte = RteClient::start(&url, &token, &json!([]), 1);
        let read = async {
            while let Some(line) = rte.lines.next_line().await.unwrap() {
                let value: Value = serde_json::from_str(&line).unwrap();
                if value["kind"] == "start-failed" || value["kind"] == "connected" {
                    return value;
                }
            }
            panic!("the client ended silently");
        };
        let outcome = tokio::time::timeout(WAIT, read).await.unwrap();
        assert_eq!(outcome["kind"], "start-failed", "{why}: {outcome}");
        // The official client wraps the negotiate failure; its text carries the status.
        assert!(
            outcome["error"]
                .as_str()
                .unwrap()
                .contains("Status code '401'"),
            "{why}: {outcome}"
        );
    }
    // Without any token, negotiate and the upgrade both answer 401 problem+json.
    for request in [
        client().post(format!("{url}/negotiate?negotiateVersion=1")),
        client().get(&url),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    gw.shutdown().await;
}

/// A raw WebSocket to the hub (skip-negotiation, token in the query), for what the official
/// client never sends: split records, garbage, oversized records.
async fn raw_socket(
    gw: &callgate::gateway::Gateway,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let now = callgate::model::clock::now_ms() as u64 / 1000;
    let token = issue_token(
        SECRET.as_bytes(),
        &Claims {
            sub: "raw".into(),
            exp: now + 600,
            entities: vec!["*".into()],
        },
    );
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/rte?access_token={token}", gw.addr))
            .await
            .expect("the hub upgrades");
    socket
}

/// A raw socket whose JSON handshake the hub has answered (`{}`).
async fn handshaken_socket(
    gw: &callgate::gateway::Gateway,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::SinkExt;
    let mut socket = raw_socket(gw).await;
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
        ))
        .await
        .unwrap();
    read_until(&mut socket, "{}").await.unwrap();
    socket
}

/// Reads text frames until one contains `needle`, or the socket closes (`None`).
async fn read_until(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    needle: &str,
) -> Option<String> {
    use futures_util::StreamExt;
    let read = async {
        while let Some(Ok(frame)) = socket.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame
                && text.contains(needle)
            {
                return Some(text.to_string());
            }
        }
        None
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the hub answers or closes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_survives_split_garbage_and_oversized_records() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &hub_routes(""))).await;

    // Records split across frames and shared within frames.
    let mut socket = raw_socket(&gw).await;
    for part in ["{\"protocol\":", "\"json\",\"vers", "ion\":1}\u{1e}"] {
        socket.send(Frame::Text(part.into())).await.unwrap();
    }
    assert_eq!(
        read_until(&mut socket, "{}").await.as_deref(),
        Some("{}\u{1e}")
    );
    let subscribe = "{\"type\":6}\u{1e}{\"type\":1,\"invocationId\":\"0\",\"target\":\"Subscribe\",\"arguments\":[[{\"EntityId\":\"a1eeb030-ff4b-ea11-ac9c-00155d4fdcf3\",\"EventName\":\"UserStatus\"}]]}\u{1e}{\"type\":1,\"invocationId\":\"1\",\"target\":\"ActiveSubscriptions\",\"arguments\":[]}\u{1e}";
    for chunk in subscribe.as_bytes().chunks(7) {
        let text = String::from_utf8_lossy(chunk).to_string();
        // Chunks never split the separator or a multi-byte character here (ASCII only).
        socket.send(Frame::Text(text.into())).await.unwrap();
    }
    let completion = read_until(&mut socket, "\"invocationId\":\"0\"")
        .await
        .unwrap();
    assert!(completion.contains("\"subscribed\":true"), "{completion}");
    let active = read_until(&mut socket, "\"invocationId\":\"1\"")
        .await
        .unwrap();
    assert!(active.contains("userstatus"), "{active}");
    // An unknown method is an error Completion, and the connection stays.
    socket
        .send(Frame::Text(
            "{\"type\":1,\"invocationId\":\"2\",\"target\":\"DropTables\",\"arguments\":[]}\u{1e}"
                .into(),
        ))
        .await
        .unwrap();
    let error = read_until(&mut socket, "\"invocationId\":\"2\"")
        .await
        .unwrap();
    assert!(error.contains("Unknown hub method"), "{error}");
    // A malformed record closes the connection with the reason.
    socket
        .send(Frame::Text("{\"type\":1,\"target\":5}\u{1e}".into()))
        .await
        .unwrap();
    let close = read_until(&mut socket, "\"type\":7").await.unwrap();
    assert!(close.contains("target"), "{close}");
    assert_eq!(
        read_until(&mut socket, "never").await,
        None,
        "then it closes"
    );

    // An oversized record (no separator within 32 KiB) is refused the same way.
    let mut socket = handshaken_socket(&gw).await;
    socket
        .send(Frame::Text("x".repeat(40 * 1024).into()))
        .await
        .unwrap();
    let close = read_until(&mut socket, "\"type\":7").await.unwrap();
    assert!(close.contains("exceeds"), "{close}");

    // A handshake that is not the JSON protocol gets its error, then the socket closes.
    let mut socket = raw_socket(&gw).await;
    socket
        .send(Frame::Text(
            "{\"protocol\":\"messagepack\",\"version\":1}\u{1e}".into(),
        ))
        .await
        .unwrap();
    let refused = read_until(&mut socket, "error").await.unwrap();
    assert!(refused.contains("messagepack"), "{refused}");
    assert_eq!(read_until(&mut socket, "never").await, None);

    // The hub still serves a well-behaved client afterwards.
    let mut socket = raw_socket(&gw).await;
    socket
        .send(Frame::Text(
            "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
        ))
        .await
        .unwrap();
    assert!(read_until(&mut socket, "{}").await.is_some());
    gw.shutdown().await;
}

/// Config text for a gateway on fixed ports (so it can be restarted where it was).
fn fixed_config(dir: &std::path::Path, port: u16, admin: u16, rest: &str) -> String {
    config_text(dir, "", rest)
        .replace(
            "{ listen: 127.0.0.1:0,",
            &format!("{{ listen: 127.0.0.1:{port},"),
        )
        .replace(
            "admin_listen: 127.0.0.1:0",
            &format!("admin_listen: 127.0.0.1:{admin}"),
        )
}

/// callgate's client source against callgate's hub: instance A serves the hub, instance B
/// subscribes as an RTE client and delivers to a loopback receiver in Vidyo's shape. A is
/// restarted mid-stream: B reconnects with a fresh token, resubscribes, and events flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_source_follows_a_hub_through_a_restart() {
    use crate::harness::{Receiver, free_port};
    let receiver = Receiver::ok().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port, admin) = (free_port(), free_port());
    let text_a = fixed_config(dir_a.path(), port, admin, &hub_routes(""));
    let entity = callgate::mapping::helpers::guid_for("809646016");
    let text_b = config_text(
        dir_b.path(),
        "",
        &format!(
            "routes:\n  - name: rte-in\n    path: /hooks/rte-relay\n    from: enreach\n    to:\n      - {{ name: vidyo, vendor: vidyo, url: '{}' }}\n\
             sources:\n  - name: rte\n    kind: signalr\n    route: rte-in\n    token_url: 'http://127.0.0.1:{admin}/token/809646016/rte/'\n    subscriptions:\n      - {{ entity_id: '{entity}', event: UserCallInComing }}\n      - {{ entity_id: '{entity}', event: UserCallInUserAllocated }}\n",
            receiver.url("/vidyo")
        ),
    );
    let a = gateway(&text_a).await;
    let b = gateway(&text_b).await;
    let subscribed = |gw: &callgate::gateway::Gateway| {
        let url = format!("http://{}/readyz", gw.addr);
        async move {
            loop {
                let ready = get_json(&url).await;
                if ready["sources"]["rte"] == "connected" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::time::timeout(WAIT, subscribed(&b))
        .await
        .expect("B connects and subscribes");
    let flow = flow();
    assert_eq!(post(&a, "/hooks/rc", &flow[4]).await.0, 200);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        got.len(),
        1,
        "the first event crossed A's hub and B's source"
    );

    // A restarts on the same ports and store; B must notice, reconnect and resubscribe.
    a.shutdown().await;
    let a = gateway(&text_a).await;
    assert_eq!(post(&a, "/hooks/rc", &flow[5]).await.0, 200);
    let got = receiver.wait_for(2, Duration::from_secs(45)).await;
    assert_eq!(got.len(), 2, "the event after the restart arrived too");
    assert_ne!(got[0].body, got[1].body);
    let metrics = crate::harness::metrics(b.admin_addr).await;
    assert!(
        metrics.contains("callgate_source_reconnects_total{source=\"rte\"}"),
        "{metrics}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

/// callgate's client source against a SignalR server it did not write: aiosignalr's aiohttp
/// server playing RTE (`tests/signalr/rte_hub.py`): token endpoint with Basic auth, bearer
/// negotiate and upgrade, Subscribe validated as RTE does, MessageReceived pushed, then the
/// connection dropped — callgate reconnects with a fresh token, resubscribes, and the next
/// event arrives too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_source_against_an_independent_signalr_server() {
    use crate::harness::{Receiver, free_port};
    let port = free_port();
    let mut hub = RteStandIn::start(port, false).await;

    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &format!(
            "routes:\n  - name: rte-in\n    path: /hooks/rte-relay\n    from: enreach\n    to:\n      - {{ name: vidyo, vendor: vidyo, url: '{}' }}\n\
             sources:\n  - name: rte\n    kind: signalr\n    route: rte-in\n    token_url: 'http://127.0.0.1:{port}/token/me/rte/'\n    rest_auth: {{ basic: {{ username: u, password: p }} }}\n    subscriptions:\n      - {{ entity_id: '00000000-0000-0000-0000-000000000000', event: UserCallInComing }}\n      - {{ entity_id: '00000000-0000-0000-0000-000000000000', event: NoSuchEvent }}\n",
            receiver.url("/vidyo")
        ),
    ))
    .await;

    let token = hub.next("token").await;
    assert_eq!(token["authorization"], "Basic dTpw", "{token}");
    let connected = hub.next("connected").await;
    assert_eq!(connected["authorization"], "Bearer jwt-1", "{connected}");
    let subscribed = hub.next("subscribe").await;
    assert_eq!(subscribed["results"][0]["subscribed"], true, "{subscribed}");
    assert_eq!(subscribed["results"][1]["message"], "Invalid event name");
    hub.next("dropped").await;
    // Reconnect: a fresh token, a new connection, the subscriptions sent again.
    assert_eq!(hub.next("token").await["n"], 2);
    assert_eq!(hub.next("connected").await["authorization"], "Bearer jwt-2");
    hub.next("subscribe").await;
    hub.next("pushed").await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        got.len(),
        2,
        "one event per connection reached the receiver"
    );
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics.contains("callgate_source_subscription_failures_total{source=\"rte\"} 2"),
        "one refused subscription per connection: {metrics}"
    );
    gw.shutdown().await;
}

/// The admin token endpoint refuses what it cannot honour with problem+json: a ttl that is
/// not a duration, a hub that does not exist, a gateway without hubs, and several hubs
/// without `?hub=`. Hostile path and entity text only ends up inside the signed claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_refuses_what_it_cannot_honour() {
    let dir = tempfile::tempdir().unwrap();
    let two_hubs = hub_routes("").replace(
        "types: ['call.*'] }\n",
        &format!(
            "types: ['call.*'] }}\n      - {{ name: second, vendor: enreach, hub: /rte2, auth: {{ jwt_secret: '{SECRET}' }} }}\n"
        ),
    );
    let gw = gateway(&config_text(dir.path(), "", &two_hubs)).await;
    let admin = gw.admin_addr;
    for (query, status, why) in [
        ("", 400, "several hub destinations"),
        ("?hub=/nowhere", 404, "no hub destination"),
        ("?hub=/rte&ttl=forever", 400, "ttl"),
        ("?hub=/rte&ttl=99999999999999999999y", 400, "ttl"),
    ] {
        let r = client()
            .get(format!("http://{admin}/token/809646016/rte/{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let problem: Value = r.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{query}: {problem}"
        );
    }
    // Junk in the user and entities is hashed into GUIDs inside the claims, never trusted.
    let issued = get_json(&format!(
        "http://{admin}/token/%22%3E%3Cscript%3E/rte/?hub=/rte2&entities=,,%20,x%00y"
    ))
    .await;
    let entities = issued["EntityIds"].as_array().unwrap();
    assert_eq!(entities.len(), 1, "{issued}");
    assert!(
        callgate::mapping::helpers::is_guid(entities[0].as_str().unwrap()),
        "{issued}"
    );
    assert_eq!(issued["WssEndpoint"], format!("ws://{}/rte2", gw.addr));
    gw.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", "")).await;
    let r = client()
        .get(format!("http://{}/token/me/rte/", gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    gw.shutdown().await;
}

/// A whole call through A's hub and B's source: every event B subscribed to (incoming,
/// allocated, connected, hold, disconnected) reaches B's receiver, in order. The resume
/// (`UserCallInHoldEnd`), which B did not subscribe to, is skipped, not held in front of
/// the hang-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_call_crosses_a_hub_and_a_source_in_order() {
    use crate::harness::{Receiver, free_port};
    let receiver = Receiver::ok().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port, admin) = (free_port(), free_port());
    let a = gateway(&fixed_config(dir_a.path(), port, admin, &hub_routes(""))).await;
    let entity = callgate::mapping::helpers::guid_for("809646016");
    let events = [
        "UserCallInComing",
        "UserCallInUserAllocated",
        "UserCallInUserConnected",
        "UserCallInHoldStart",
        "UserCallInDisconnected",
    ];
    let subscriptions: String = events
        .iter()
        .map(|e| format!("      - {{ entity_id: '{entity}', event: {e} }}\n"))
        .collect();
    let b = gateway(&config_text(
        dir_b.path(),
        "",
        &format!(
            "routes:\n  - name: rte-in\n    path: /hooks/rte-relay\n    from: enreach\n    to:\n      - {{ name: rte-copy, vendor: enreach, url: '{}' }}\n\
             sources:\n  - name: rte\n    kind: signalr\n    route: rte-in\n    token_url: 'http://127.0.0.1:{admin}/token/809646016/rte/'\n    subscriptions:\n{subscriptions}",
            receiver.url("/rte")
        ),
    ))
    .await;
    let url = format!("http://{}/readyz", b.addr);
    tokio::time::timeout(WAIT, async {
        while get_json(&url).await["sources"]["rte"] != "connected" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("B connects and subscribes");
    for notification in flow() {
        assert_eq!(post(&a, "/hooks/rc", &notification).await.0, 200);
    }
    let got = receiver.wait_for(5, WAIT).await;
    let types: Vec<String> = got
        .iter()
        // Same vendor out as in: B passes RTE's `{subscription, data}` envelope through.
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["data"]["EventType"].to_string())
        .collect();
    assert_eq!(
        types,
        [
            "\"UserCallInComing\"",
            "\"UserCallInUserAllocated\"",
            "\"UserCallInUserConnected\"",
            "\"UserCallInHoldStart\"",
            "\"UserCallInDisconnected\"",
        ],
        "{got:?}"
    );
    let metrics = crate::harness::metrics(a.admin_addr).await;
    assert!(
        metrics.contains("outcome=\"skipped_not_subscribed\"} 1"),
        "{metrics}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

/// A reload applies a changed source: the client source's subscriptions are edited in the
/// config file and `POST /admin/reload` is called; the independent RTE stand-in sees the
/// source reconnect and subscribe to the new event, without a restart of the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_changed_source() {
    use crate::harness::{Receiver, free_port};
    let port = free_port();
    let mut hub = RteStandIn::start(port, true).await;

    let receiver = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let config = |event: &str| {
        config_text(
            dir.path(),
            "",
            &format!(
                "routes:\n  - name: rte-in\n    path: /hooks/rte-relay\n    from: enreach\n    to:\n      - {{ name: vidyo, vendor: vidyo, url: '{}' }}\n\
                 sources:\n  - name: rte\n    kind: signalr\n    route: rte-in\n    token_url: 'http://127.0.0.1:{port}/token/me/rte/'\n    rest_auth: {{ basic: {{ username: u, password: p }} }}\n    subscriptions:\n      - {{ entity_id: '00000000-0000-0000-0000-000000000000', event: {event} }}\n",
                receiver.url("/vidyo")
            ),
        )
    };
    let file = dir.path().join("callgate.yaml");
    std::fs::write(&file, config("UserCallInComing")).unwrap();
    let gw = callgate::Gateway::start_from_file(&file).await.unwrap();
    let first = hub.next("subscribe").await;
    assert_eq!(
        first["results"][0]["eventName"], "usercallincoming",
        "{first}"
    );
    hub.next("pushed").await;

    std::fs::write(&file, config("UserStatus")).unwrap();
    let reply = client()
        .post(format!("http://{}/admin/reload", gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
    // The source was restarted with its new configuration: a fresh connection and the new
    // subscription.
    assert_eq!(hub.next("connected").await["n"], 2);
    let second = hub.next("subscribe").await;
    assert_eq!(second["results"][0]["eventName"], "userstatus", "{second}");
    assert_eq!(second["results"].as_array().unwrap().len(), 1, "{second}");
    gw.shutdown().await;
}

/// A hub that keeps the TCP connection open but stops sending (no Pings, no messages) is
/// dead: the source drops it after `server_timeout` although its own Pings keep going out,
/// reports `down` in `/readyz`, and connects anew. The stand-in hub here answers the token
/// endpoint, refuses negotiation (skip-negotiation), completes the handshake and the
/// Subscribe, and then says nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_stops_talking_is_dropped_and_reconnected() {
    use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (connections, mut connected) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let app = axum::Router::new()
        .route(
            "/token/me/rte/",
            get(move || async move {
                axum::Json(json!({"WssEndpoint": format!("ws://127.0.0.1:{port}/rte"), "Token": "t"}))
            }),
        )
        .route(
            "/rte/negotiate",
            post(|| async { axum::http::StatusCode::NOT_FOUND }),
        )
        .route(
            "/rte",
            get(move |ws: WebSocketUpgrade| {
                let (connections, count) = (connections.clone(), count.clone());
                async move {
                    ws.on_upgrade(move |mut socket| async move {
                        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        // Handshake request → empty handshake response.
                        let _ = socket.recv().await;
                        let _ = socket.send(WsMessage::Text("{}\u{1e}".into())).await;
                        // Ping and Subscribe → the Subscribe completion, then silence.
                        let mut answered = false;
                        while let Some(Ok(frame)) = socket.recv().await {
                            if !answered
                                && let WsMessage::Text(text) = &frame
                                && text.contains("Subscribe")
                            {
                                let _ = socket
                                    .send(WsMessage::Text(
                                        "{\"type\":3,\"invocationId\":\"0\",\"result\":[{\"subscribed\":true}]}\u{1e}".into(),
                                    ))
                                    .await;
                                answered = true;
                                let _ = connections.send(n);
                            }
                            // Everything else (the client's Pings) is read and not answered.
                        }
                    })
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(
        dir.path(),
        "",
        &format!(
            "routes:\n  - {{ name: rte-in, path: /hooks/rte-relay, from: enreach, to: [ {{ name: ce, vendor: cloudevents, url: 'http://127.0.0.1:9/' }} ] }}\n\
             sources:\n  - name: rte\n    kind: signalr\n    route: rte-in\n    token_url: 'http://127.0.0.1:{port}/token/me/rte/'\n    keep_alive: 100ms\n    server_timeout: 1s\n    subscriptions:\n      - {{ entity_id: '00000000-0000-0000-0000-000000000000', event: UserCallInComing }}\n"
        ),
    ))
    .await;
    let readyz = format!("http://{}/readyz", gw.addr);
    let source_is = |want: &'static str| {
        let readyz = readyz.clone();
        async move {
            loop {
                if get_json(&readyz).await["sources"]["rte"] == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let first = tokio::time::timeout(WAIT, connected.recv())
        .await
        .expect("subscribed");
    assert_eq!(first, Some(1));
    tokio::time::timeout(WAIT, source_is("connected"))
        .await
        .expect("connected after the Subscribe completion");
    // Its own Pings go out every 100 ms; the hub's silence still ends the connection.
    tokio::time::timeout(WAIT, source_is("down"))
        .await
        .expect("a silent hub is reported down");
    let second = tokio::time::timeout(WAIT, connected.recv())
        .await
        .expect("the source connected anew");
    assert_eq!(second, Some(2));
    let metrics = crate::harness::metrics(gw.admin_addr).await;
    assert!(
        metrics.contains("callgate_source_reconnects_total{source=\"rte\"}"),
        "{metrics}"
    );
    gw.shutdown().await;
}

/// The hub's view of its clients: a client that completes the handshake and then sends
/// nothing (not even Pings) while its TCP connection stays open is closed after the client
/// timeout (30 s, ASP.NET Core's `ClientTimeoutInterval`), with a Close record saying why;
/// the hub's own Pings to it do not count as hearing from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_talking_is_closed_by_the_hub() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as Frame;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&config_text(dir.path(), "", &hub_routes(""))).await;
    let mut socket = handshaken_socket(&gw).await;
    // Silent from here: read what the hub sends until it closes.
    let mut pings = 0;
    let read = async {
        while let Some(Ok(frame)) = socket.next().await {
            if let Frame::Text(text) = frame {
                if text.contains("\"type\":6") {
                    pings += 1;
                }
                if text.contains("\"type\":7") {
                    return Some(text.to_string());
                }
            }
        }
        None
    };
    let close = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the hub closes a silent client within a minute")
        .expect("a Close record before the socket ends");
    assert!(close.contains("Client timeout"), "{close}");
    assert!(pings >= 1, "the hub kept pinging the client: {pings}");
    gw.shutdown().await;
}
