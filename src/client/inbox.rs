//! `notifications`: the caller's inbox, newest first (a key has its own: what it uploads
//! is owned by the key), and `--read-all` to mark every unread one read in one request.

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Api, ClientError, Exit, output};

#[derive(Args, Debug)]
pub struct NotificationsArgs {
    /// Only unread notifications.
    #[arg(long)]
    pub unread: bool,
    /// At most this many notifications (default 50).
    #[arg(long, default_value_t = 50)]
    pub max: usize,
    /// Mark every unread notification read instead of listing them.
    #[arg(long, conflicts_with_all = ["unread", "max"])]
    pub read_all: bool,
}

pub async fn notifications(
    api: &Api,
    args: NotificationsArgs,
    json: bool,
) -> Result<Exit, ClientError> {
    if args.read_all {
        return read_all(api, json).await;
    }
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut unread_count = Value::Null;
    while items.len() < args.max {
        let mut path = format!(
            "/v1/notifications?limit={}",
            (args.max - items.len()).min(100)
        );
        if args.unread {
            path.push_str("&unread=true");
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get_json(&path).await?;
        unread_count = page["unread_count"].clone();
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let document = json!({"items": items, "unread_count": unread_count});
    output(json, &document, || {
        let mut lines: Vec<String> = items
            .iter()
            .map(|n| {
                format!(
                    "{}  {}  {}",
                    n["created_at"].as_str().unwrap_or("?"),
                    if n["read_at"].is_string() { " " } else { "*" },
                    n["message"].as_str().unwrap_or("?"),
                )
            })
            .collect();
        lines.push(format!("{unread_count} unread"));
        lines.join("\n")
    });
    Ok(Exit::Ok)
}

/// How many were unread, then one `POST /v1/notifications/read`.
async fn read_all(api: &Api, json: bool) -> Result<Exit, ClientError> {
    let before = api.get_json("/v1/notifications?limit=1").await?["unread_count"].clone();
    api.send(api.request(Method::POST, "/v1/notifications/read")?)
        .await?;
    output(json, &json!({"unread_before": before}), || {
        format!("marked {before} unread notifications read (the inbox shows it a moment later)")
    });
    Ok(Exit::Ok)
}
