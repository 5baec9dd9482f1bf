//! `callgate demo`: the main job in one command. Starts the gateway on the shipped config
//! with its listeners on free loopback ports, a scratch store and a built-in receiver in
//! place of every destination, sends a real RingCentral call flow through the RingCentral →
//! Vidyo route, prints what the receiver gets, and exits.

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use callgate::config::{self, EnvString, StoreConfig};
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
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-01.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-02.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-02.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-03.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-03.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-04.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-04.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-05.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-05.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-06.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-06.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-07.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-07.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-08.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-08.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-09.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-09.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-10.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-10.json"
        ),
    ),
    (
        "PSTN-RingCentral-DataStreams-11.json",
        include_str!(
            "../tests/fixtures/ringcentral/flows/PSTN-RingCentral-DataStreams/PSTN-RingCentral-DataStreams-11.json"
        ),
    ),
];

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
    // The demo shows the Vidyo sequence: that route keeps only its Vidyo destinations.
    for r in config.routes.iter_mut().filter(|r| r.name == route.name) {
        r.to.retain(|d| d.vendor == "vidyo");
    }
    for r in &mut config.routes {
        for d in &mut r.to {
            d.url = Some(EnvString::literal(&format!(
                "http://{receiver_addr}/{}/{}",
                r.name, d.name
            )));
        }
    }
    let gateway = Gateway::start(config).await?;
    println!(
        "callgate demo: route `{}` {} → vidyo, with a loopback receiver in place of the Vidyo server",
        route.name, route.from
    );
    println!(
        "sending the {} notifications of a real RingCentral call flow to http://{}{}\n",
        FLOW.len(),
        gateway.addr,
        route.path
    );

    let client = reqwest::Client::new();
    let url = format!("http://{}{}", gateway.addr, route.path);
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
    }

    println!("\nthe receiver got, in order:");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            Ok(Some(d)) => {
                received += 1;
                println!("← {}  {}", d.destination, d.body);
            }
            Ok(None) => break,
            Err(_) if gateway.store.producer.total_depth() == 0 || Instant::now() > deadline => {
                break;
            }
            Err(_) => {}
        }
    }
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "\n{} notifications in, {} deliveries out (the PSTN caller's and the IVR's legs are not the user's call, so the Vidyo receiver is not told about them).",
        FLOW.len(),
        received
    );
    Ok(if received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
