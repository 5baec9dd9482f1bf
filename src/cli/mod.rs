//! Subcommands with more than a few lines of their own: `demo`, `tail`, `ringcentral`,
//! `replay` and `calls` (`archive`).

pub mod archive;
pub mod demo;
pub mod ringcentral;
pub mod tail;

use anyhow::{Context as _, bail};

/// Sends a request to a running gateway's admin listener at `admin` (with `authorization`
/// when given): the JSON body of a success, or an error naming the listener, the status and
/// the problem's detail.
pub async fn admin_call(
    admin: &str,
    authorization: Option<String>,
    request: reqwest::RequestBuilder,
) -> anyhow::Result<serde_json::Value> {
    let request = match authorization {
        Some(auth) => request.header("authorization", auth),
        None => request,
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the admin listener at {admin}"))?;
    let status = response.status();
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await?).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        bail!(
            "{admin}: HTTP {status}: {}",
            body["detail"].as_str().unwrap_or("no detail")
        );
    }
    Ok(body)
}
