//! `callgate demo`: the main job in one command. Starts the gateway on the shipped config
//! with its listeners on free loopback ports, a scratch store and a built-in receiver in
//! place of every destination, sends a real RingCentral call flow through the RingCentral →
//! Vidyo route, prints what the receiver gets, and exits. The same route also serves the
//! flow on an Enreach RTE hub (SignalR): a second gateway in the process plays an RTE client
//! app, subscribes to the monitored user's call events and prints every `MessageReceived`.

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use callgate::config::{self, EnvString, OutboundAuth, StoreConfig};
use callgate::gateway::Gateway;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A real captured call flow: a PSTN caller reaches an IVR, then the monitored user, who
/// answers, holds, resumes and hangs up (tests/fixtures, from the public csn-data captures).
const FLOW: &[(&str, &str)] = &[
    (
        "PSTN-RingCentral-DataStreams-01.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-01.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-02.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-02.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-03.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-03.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-04.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-04.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-05.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-05.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-06.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-06.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-07.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-08.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-08.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-09.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-09.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-10.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-10.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-11.json",
        include_str!(
            "../../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-11.json"
        ),
    ),
];

/// The RingCentral extension the flow's monitored user has; the RTE client subscribes to
/// its entity (`guid_for`, as the hub's token endpoint derives it).
const MONITORED_EXTENSION: &str = "809646016";
/// The RTE call events the client app subscribes to.
const RTE_EVENTS: &[&str] = &[
    "UserCallInComing",
    "UserCallInUserAllocated",
    "UserCallInUserConnected",
    "UserCallInHoldStart",
    "UserCallInHoldEnd",
    "UserCallInDisconnected",
];
/// The hub path the demo adds to the RingCentral route.
const HUB_PATH: &str = "/rte";

struct Delivery {
    destination: String,
    body: String,
}

pub async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let mut config = config::load(config_path)?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.listen = loopback;
    config.server.admin_listen = loopback;
    let scratch = std::env::temp_dir().join(format!("callgate-demo-{}", std::process::id()));
    config.store = StoreConfig::Sqlite {
        path: scratch.join("callgate.db"),
    };
    config.delivery.retry = vec![
        Duration::ZERO,
        Duration::from_millis(200),
        Duration::from_secs(1),
    ];

    let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
    let receiver = Router::new()
        .route(
            "/{route}/{destination}",
            post(
                |State(tx): State<mpsc::UnboundedSender<Delivery>>,
                 UrlPath((route, destination)): UrlPath<(String, String)>,
                 body: String| async move {
                    let _ = tx.send(Delivery {
                        destination: format!("{route}/{destination}"),
                        body,
                    });
                    "ok"
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind(loopback)
        .await
        .context("cannot start the demo receiver")?;
    let receiver_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let route = config
        .routes
        .iter()
        .find(|r| r.from == "ringcentral" && r.to.iter().any(|d| d.vendor == "vidyo"))
        .with_context(|| {
            format!(
                "{}: no route from ringcentral to a vidyo destination",
                config_path.display()
            )
        })?
        .clone();
    // The demo shows the Vidyo sequence and the RTE hub: that route keeps only its Vidyo
    // destinations and gains a hub.
    let jwt_secret = format!("demo-{:032x}", rand::random::<u128>());
    for r in config.routes.iter_mut().filter(|r| r.name == route.name) {
        r.to.retain(|d| d.vendor == "vidyo");
        let mut hub = r.to[0].clone();
        hub.name = "rte-clients".into();
        hub.vendor = "enreach".into();
        hub.url = None;
        hub.hub = Some(HUB_PATH.into());
        hub.types = vec!["call.*".into()];
        hub.headers.clear();
        hub.sign = None;
        hub.auth = Some(OutboundAuth {
            jwt_secret: Some(EnvString::literal(&jwt_secret)),
            ..OutboundAuth::default()
        });
        r.to.push(hub);
    }
    for r in &mut config.routes {
        for d in r.to.iter_mut().filter(|d| d.hub.is_none()) {
            d.url = Some(EnvString::literal(&format!(
                "http://{receiver_addr}/{}/{}",
                r.name, d.name
            )));
        }
    }
    let admin_token = config
        .server
        .admin_token
        .as_ref()
        .map(|t| t.value().to_string());
    let mappings = config.mappings.clone();
    let gateway = Gateway::start(config).await?;
    let rte_app = Gateway::start(rte_client_config(
        &mappings,
        &scratch,
        gateway.admin_addr,
        admin_token.as_deref(),
        receiver_addr,
    )?)
    .await
    .context("cannot start the demo's RTE client")?;
    wait_until_subscribed(rte_app.addr).await?;
    println!(
        "callgate demo: route `{}` {} → vidyo, with a loopback receiver in place of the Vidyo server,",
        route.name, route.from
    );
    println!(
        "and → an Enreach RTE hub at ws://{}{HUB_PATH}, where an RTE client app (a SignalR client) is subscribed to
the monitored user's call events",
        gateway.addr
    );
    println!(
        "sending the {} notifications of a real RingCentral call flow to http://{}{}\n",
        FLOW.len(),
        gateway.addr,
        route.path
    );

    let client = reqwest::Client::new();
    let url = format!("http://{}{}", gateway.addr, route.path);
    let mut expected = 0;
    for (name, body) in FLOW {
        let reply = client
            .post(&url)
            .header("content-type", "application/json")
            .body(*body)
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {url}"))?;
        let status = reply.status();
        let text = reply.text().await.unwrap_or_default();
        println!("→ {name}  {status}  {text}");
        // Each stored message reaches the receiver once: a Vidyo body, or an RTE event
        // through the hub and the app's source.
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        expected += answer["stored"].as_u64().unwrap_or(0);
    }

    println!(
        "\nthe receivers got, in order (← the Vidyo receiver, ⇐ the RTE app's MessageReceived):"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut to_vidyo, mut to_rte) = (0, 0);
    loop {
        match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(Some(d)) if d.destination.starts_with(RTE_APP_ROUTE) => {
                to_rte += 1;
                let event: serde_json::Value = serde_json::from_str(&d.body).unwrap_or_default();
                let name = event["data"]["EventType"].as_str().unwrap_or("?");
                println!("⇐ {name}  {}", d.body);
            }
            Ok(Some(d)) => {
                to_vidyo += 1;
                println!("← {}  {}", d.destination, d.body);
            }
            Ok(None) => break,
            Err(_) if Instant::now() > deadline => break,
            Err(_) => {}
        }
        if to_vidyo + to_rte >= expected {
            break;
        }
    }
    rte_app.shutdown().await;
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "\n{} notifications in; {to_vidyo} deliveries to Vidyo, {to_rte} RTE events over SignalR (the PSTN caller's and the IVR's legs are not the user's call, so neither is told about them).",
        FLOW.len(),
    );
    Ok(if to_vidyo > 0 && to_rte > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The route of the RTE client app: what its SignalR source receives goes, unchanged (RTE
/// in, RTE out), to the demo receiver.
const RTE_APP_ROUTE: &str = "rte-app";

/// A second gateway playing an RTE client app: a SignalR source that fetches its token from
/// the demo gateway's token endpoint and subscribes to the monitored user's call events.
fn rte_client_config(
    mappings: &Path,
    scratch: &Path,
    hub_admin: SocketAddr,
    admin_token: Option<&str>,
    receiver: SocketAddr,
) -> anyhow::Result<config::Config> {
    let entity = callgate::mapping::helpers::guid_for(MONITORED_EXTENSION);
    let subscriptions: String = RTE_EVENTS
        .iter()
        .map(|event| format!("      - {{ entity_id: '{entity}', event: {event} }}\n"))
        .collect();
    let rest_auth = admin_token
        .map(|_| "    rest_auth: { bearer: '${DEMO_ADMIN_TOKEN}' }\n")
        .unwrap_or_default();
    let text = format!(
        "server: {{ listen: '127.0.0.1:0', admin_listen: '127.0.0.1:0' }}\n\
         mappings: '{mappings}'\n\
         store: {{ kind: sqlite, path: '{store}' }}\n\
         delivery: {{ retry: [0s, 200ms, 1s] }}\n\
         routes:\n  - name: {RTE_APP_ROUTE}\n    path: /{RTE_APP_ROUTE}\n    from: enreach\n    to:\n      - {{ name: app, vendor: enreach, url: 'http://{receiver}/{RTE_APP_ROUTE}/app' }}\n\
         sources:\n  - name: rte\n    kind: signalr\n    route: {RTE_APP_ROUTE}\n    token_url: 'http://{hub_admin}/token/{MONITORED_EXTENSION}/rte/'\n{rest_auth}    subscriptions:\n{subscriptions}",
        mappings = mappings.display(),
        store = scratch.join("rte-app.db").display(),
    );
    let lookup = |name: &str| {
        (name == "DEMO_ADMIN_TOKEN").then(|| admin_token.unwrap_or_default().to_string())
    };
    Ok(config::load::parse(
        Path::new("demo-rte-app.yaml"),
        &text,
        &lookup,
    )?)
}

/// Waits until the RTE app's source is connected and subscribed (its `/readyz`).
async fn wait_until_subscribed(addr: SocketAddr) -> anyhow::Result<()> {
    let url = format!("http://{addr}/readyz");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready: serde_json::Value =
            serde_json::from_slice(&reqwest::get(&url).await?.bytes().await?)?;
        if ready["sources"]["rte"] == "connected" {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the demo's RTE client did not connect to the hub within 10 s: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
