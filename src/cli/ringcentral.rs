//! `callgate ringcentral status`: the subscription keepers' state from a running gateway's
//! `GET /admin/ringcentral`, one line per route.

use serde_json::Value;
use std::process::ExitCode;

/// Prints each keeper; exit 1 unless every one is active.
pub async fn status(admin: &str, authorization: Option<String>) -> anyhow::Result<ExitCode> {
    let request =
        reqwest::Client::new().get(format!("{}/admin/ringcentral", admin.trim_end_matches('/')));
    let body: Value = super::admin_call(admin, authorization, request).await?;
    let keepers = body["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if keepers.is_empty() {
        println!("no route has a ringcentral subscription keeper");
        return Ok(ExitCode::SUCCESS);
    }
    let mut healthy = true;
    for k in &keepers {
        let s = |key: &str| k[key].as_str().unwrap_or("-").to_string();
        healthy &= k["state"] == "active";
        let mut line = format!(
            "{}\t{}\tsubscription {}\texpires {}\tnext check {}\tcreated {} renewed {} recreated {}",
            s("route"),
            s("state"),
            s("subscription_id"),
            s("expires_at"),
            s("next_check"),
            k["created"],
            k["renewed"],
            k["recreated"]
        );
        for refused in k["disabled_filters"].as_array().into_iter().flatten() {
            line.push_str(&format!(
                "\trefused filter {} ({})",
                refused["filter"].as_str().unwrap_or(""),
                refused["message"].as_str().unwrap_or("")
            ));
        }
        if let Some(error) = k["last_error"].as_str() {
            line.push_str(&format!("\tlast error: {error}"));
        }
        println!("{line}");
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
