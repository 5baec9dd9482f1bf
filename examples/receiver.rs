//! A minimal loopback receiver for `benches/e2e.sh`: answers every request 200 `ok`.
//! Usage: `cargo run --release --example receiver -- 127.0.0.1:18081`

use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let app = Router::new().fallback(|body: axum::body::Bytes| async move {
        drop(body);
        "ok"
    });
    axum::serve(listener, app).await
}
