//! The floor for `benches/e2e.sh`: a hand-written forwarder doing what a callgate proxy route
//! from RingCentral to Vidyo does, and nothing else. A hyper HTTP/1 server takes a RingCentral
//! telephony-session notification, translates it with typed serde (`hand.rs`), POSTs the
//! Vidyo `userStatusNotification` to the receiver through a pooled hyper client, waits for
//! its answer and replies 200. No verification, lifecycle, metrics, logs or queue.
//!
//! Usage: `baseline <listen address> <receiver URL>`, e.g.
//! `cargo run --release --example baseline -- 127.0.0.1:18090 http://127.0.0.1:18081/vidyo`.

#[path = "hand.rs"]
mod hand;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;

// The same allocator as the `callgate` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Forwarder = Client<HttpConnector, Full<Bytes>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let target: Uri = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18081/vidyo".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let client: Arc<Forwarder> = Arc::new(Client::builder(TokioExecutor::new()).build_http());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, target) = (client.clone(), target.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                forward(client.clone(), target.clone(), request)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: Arc<Forwarder>,
    target: Uri,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let input = request.into_body().collect().await?.to_bytes();
    let reply = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    let Some(body) = hand::translate(&input) else {
        return Ok(reply(StatusCode::OK, "{\"forwarded\":0}"));
    };
    let outbound = Request::post(target)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request");
    Ok(match client.request(outbound).await {
        Ok(answer) if answer.status().is_success() => {
            // Read the receiver's reply to the end so the connection goes back to the pool.
            let _ = answer.into_body().collect().await;
            reply(StatusCode::OK, "{\"forwarded\":1}")
        }
        _ => reply(StatusCode::BAD_GATEWAY, "{\"forwarded\":0}"),
    })
}
