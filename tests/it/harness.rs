//! A real HTTP receiver on loopback with programmable replies, and gateways started exactly
//! as `callgate serve` starts them (config text → `config::load::parse` → `Gateway::start`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use callgate::Gateway;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: String,
    /// When the receiver got it.
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the receiver answers: status, body, and a delay before answering.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            status: 200,
            body: "ok".into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: format!("status {status}"),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
}

/// An OAuth 2.0 token endpoint on loopback: each request gets a new token `<prefix>-<n>`
/// (n from 1), valid an hour; the returned counter says how many were issued.
pub async fn token_endpoint(
    prefix: &'static str,
) -> (Receiver, Arc<std::sync::atomic::AtomicUsize>) {
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = issued.clone();
    let endpoint = Receiver::start(move |_| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Reply {
            status: 200,
            body: format!(
                r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{prefix}-{n}"}}"#
            ),
            delay: Duration::ZERO,
            headers: vec![("content-type", "application/json".into())],
        }
    })
    .await;
    (endpoint, issued)
}

/// A receiver that accepts only `Authorization: Bearer <current>` (else 401); the test
/// changes `current` to revoke a token.
pub async fn bearer_receiver(current: Arc<Mutex<String>>) -> Receiver {
    Receiver::start(move |r| {
        let expected = format!("Bearer {}", current.lock().unwrap());
        match r.headers.get("authorization") {
            Some(v) if v == expected.as_str() => Reply::ok(),
            _ => Reply::status(401),
        }
    })
    .await
}

/// Makes a `Receiver::refusing` receiver accept from now on.
pub struct Release(Arc<std::sync::atomic::AtomicBool>);

impl Release {
    pub fn release(&self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

type Behaviour = Box<dyn FnMut(&Received) -> Reply + Send>;

/// A loopback HTTP receiver that records every request it answers with 2xx (and, in
/// `all`, every request whatever it answered).
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Received>>>,
    all: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl Receiver {
    pub async fn start(behaviour: impl FnMut(&Received) -> Reply + Send + 'static) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            all: Arc::default(),
            behaviour: Arc::new(Mutex::new(Box::new(behaviour))),
        };
        let app = Router::new().fallback(handle).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub async fn ok() -> Receiver {
        Receiver::start(|_| Reply::ok()).await
    }

    /// A receiver that answers `status` until the returned switch is released, then 200.
    pub async fn refusing(status: u16) -> (Receiver, Release) {
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = refusing.clone();
        let receiver = Receiver::start(move |_| {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                Reply::status(status)
            } else {
                Reply::ok()
            }
        })
        .await;
        (receiver, Release(refusing))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.accepted.lock().unwrap().clone()
    }

    /// Every request, in arrival order.
    pub fn all(&self) -> Vec<Received> {
        self.all.lock().unwrap().clone()
    }

    /// Waits until `n` requests were accepted (or `limit` passes); returns them.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.accepted();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(State(receiver): State<Receiver>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let received = Received {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    receiver.all.lock().unwrap().push(received.clone());
    let reply = (receiver.behaviour.lock().unwrap())(&received);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap();
    if status.is_success() {
        receiver.accepted.lock().unwrap().push(received);
    }
    let mut response = (
        status,
        [("content-type", "text/plain"), ("x-receiver", "yes")],
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

/// Config text with loopback listeners on free ports, a store in `dir`, the shipped
/// mappings and a fast retry schedule (unless `delivery` gives its own `retry`); `rest` adds
/// `routes:` and the like.
pub fn config_text(dir: &Path, delivery: &str, rest: &str) -> String {
    let mappings = crate::support::root().join("mappings");
    let retry = if delivery.contains("retry:") {
        ""
    } else {
        ", retry: [0s, 50ms, 50ms, 50ms, 50ms, 50ms]"
    };
    format!(
        "server: {{ listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0, request_timeout: 5s }}\n\
         mappings: {}\n\
         store: {{ kind: sqlite, path: {} }}\n\
         delivery: {{ timeout: 2s{retry}{delivery} }}\n{rest}",
        mappings.display(),
        dir.join("callgate.db").display()
    )
}

/// Starts a gateway from config text, as `serve` does.
pub async fn gateway(text: &str) -> Gateway {
    let config =
        callgate::config::load::parse(Path::new("test.yaml"), text, &|n| std::env::var(n).ok())
            .expect("test config parses");
    Gateway::start(config).await.expect("gateway starts")
}

/// A shared HTTP client.
pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// GETs `url` and parses the reply as JSON (panics on any failure).
pub async fn get_json(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("a JSON reply")
}

/// POSTs a JSON body to the gateway; returns status and body.
pub async fn post(gw: &Gateway, path: &str, body: &str) -> (u16, String) {
    post_json(&format!("http://{}{}", gw.addr, path), body).await
}

/// POSTs a JSON body to `url` (a `serve` process, say); returns status and body.
pub async fn post_json(url: &str, body: &str) -> (u16, String) {
    let r = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("gateway reachable");
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `callgate serve` process, killed when dropped (so a failing test leaves none behind).
pub struct Serve(pub std::process::Child);

impl Serve {
    /// Starts `callgate serve --config <config>`.
    pub fn start(config: &Path) -> Serve {
        Serve(spawn_serve(config))
    }

    /// Sends a signal (`-HUP`, `-TERM`, `-9`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `program args` with `input` on stdin; returns what it exited with and printed.
pub fn run_with_stdin(program: &str, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Starts `callgate serve --config <config>` (the real binary).
pub fn spawn_serve(config: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["serve", "--config"])
        .arg(config)
        .env(
            "CALLGATE_LOG",
            std::env::var("CALLGATE_TEST_SERVE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn callgate serve")
}

/// Waits until `/readyz` on `port` answers 200.
pub async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client()
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("callgate did not become ready on port {port}");
}

/// The Prometheus text of an admin listener.
pub async fn metrics(admin: SocketAddr) -> String {
    client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("admin listener reachable")
        .text()
        .await
        .expect("metrics text")
}

/// Waits until every message the gateway stored is settled (delivered or dead): after this,
/// nothing more reaches a receiver unless more is sent. Panics after 20 s.
pub async fn drained(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.store.producer.total_depth() > 0 {
        assert!(Instant::now() < deadline, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Held by the tests that load the machine on purpose (reload under load, memory, crash), so
/// that they do not run at the same time and starve each other on a 2-core machine.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes `dir/callgate.yaml` for the real binary: listeners on `port` and `admin` (plus
/// `server` keys), the mappings at `mappings`, a store in `dir`, `delivery` keys and
/// `routes` (a YAML list body). Returns its path.
pub fn write_serve_config(
    dir: &Path,
    (port, admin): (u16, u16),
    server: &str,
    mappings: &Path,
    delivery: &str,
    routes: &str,
) -> std::path::PathBuf {
    let config = dir.join("callgate.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{ listen: 127.0.0.1:{port}, admin_listen: 127.0.0.1:{admin}{server} }}\n\
             mappings: {}\n\
             store: {{ kind: sqlite, path: {} }}\n\
             delivery: {{ {delivery} }}\n\
             routes:\n{routes}",
            mappings.display(),
            dir.join("store.db").display(),
        ),
    )
    .expect("config written");
    config
}

/// A `nats-server` with JetStream on a loopback port and a scratch store folder (Debian's
/// `nats-server`, installed by `.ci/run`). `restart` kills it with SIGKILL and starts it
/// again on the same port and folder; dropped, it is killed.
pub struct NatsServer {
    child: Option<std::process::Child>,
    /// The server's port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts the server and waits until it accepts clients.
    pub async fn start() -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        server.run().await;
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs (scripts/test installs it: apt-get install nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store folder.
    pub async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Server-Sent Events subscription (`/admin/tail`), read record by record.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
    returned: usize,
    live_after: Option<(usize, serde_json::Value)>,
}

impl SseReader {
    /// Subscribes to `url`; panics unless the reply is 200 `text/event-stream`.
    pub async fn open(url: &str, last_event_id: Option<u64>) -> SseReader {
        let mut request = client().get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("admin listener reachable");
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{url}"
        );
        SseReader {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            returned: 0,
            live_after: None,
        }
    }

    /// The next event's `data` as JSON, with its `event` name checked against `kind`;
    /// `None` when nothing arrives within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<serde_json::Value> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut kind = "";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let record: serde_json::Value = serde_json::from_str(&data).expect("JSON data");
                assert_eq!(record["kind"], kind, "event name = record kind");
                return Some(record);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.expect("stream")).expect("UTF-8"));
        }
    }

    /// Records until `done` says the list is complete, or panics after `limit` with what came.
    /// The `live` marker (where the backlog ends) is not a record: it is noted in
    /// [`live_after`](Self::live_after), not returned.
    pub async fn until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(record) if record["kind"] == "live" => {
                    self.live_after = Some((self.returned + got.len(), record["backlog"].clone()));
                }
                Some(record) => got.push(record),
                None => panic!("the tail stopped short after {limit:?}: {got:#?}"),
            }
        }
        self.returned += got.len();
        got
    }

    /// Where the `live` marker came: after how many records `until` returned (over all its
    /// calls), and the backlog count it carried.
    pub fn live_after(&self) -> Option<(usize, serde_json::Value)> {
        self.live_after.clone()
    }
}
