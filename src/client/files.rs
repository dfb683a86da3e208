//! `ls`, `info`, `versions`, `history`: one request each (`ls` follows the pages), as a
//! table for people or the server's JSON with `--json`.

use clap::Args;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Api, ClientError, Exit, output};

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only files with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// At most this many files (default 1000).
    #[arg(long, default_value_t = 1000)]
    pub max: usize,
}

fn query_value(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub async fn ls(api: &Api, args: LsArgs, json: bool) -> Result<Exit, ClientError> {
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    while items.len() < args.max {
        let mut path = format!("/v1/files?limit={}", (args.max - items.len()).min(200));
        if let Some(tag) = &args.tag {
            path.push_str(&format!("&tag={}", query_value(tag)));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", query_value(c)));
        }
        let page = api.get_json(&path).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    output(json, &json!({"items": items}), || {
        items
            .iter()
            .map(|f| {
                format!(
                    "{}  {:>12}  {:<10}  {}",
                    f["id"].as_str().unwrap_or("?"),
                    f["current_version"]["size_bytes"]
                        .as_i64()
                        .map_or("-".into(), |s| s.to_string()),
                    f["latest_version"]["status"].as_str().unwrap_or("-"),
                    f["display_name"].as_str().unwrap_or("?"),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(Exit::Ok)
}

pub async fn info(api: &Api, id: Uuid, json: bool) -> Result<Exit, ClientError> {
    let file = api.get_json(&format!("/v1/files/{id}")).await?;
    output(json, &file, || {
        serde_json::to_string_pretty(&file).unwrap_or_default()
    });
    Ok(Exit::Ok)
}

/// The tenant's storage: "1,700 bytes stored of a 5,000-byte quota (34 %)".
pub async fn usage(api: &Api, json: bool) -> Result<Exit, ClientError> {
    let usage = api.get_json("/v1/tenants/current/usage").await?;
    output(json, &usage, || {
        let stored = usage["stored_bytes"].as_u64().unwrap_or(0);
        match usage["quota_bytes"].as_u64() {
            Some(quota) => format!(
                "{stored} bytes stored of a {quota}-byte quota ({:.0} %)",
                stored as f64 * 100.0 / quota.max(1) as f64
            ),
            None => format!("{stored} bytes stored (no quota)"),
        }
    });
    Ok(Exit::Ok)
}

pub async fn versions(api: &Api, id: Uuid, json: bool) -> Result<Exit, ClientError> {
    let versions = api.get_json(&format!("/v1/files/{id}/versions")).await?;
    output(json, &versions, || {
        versions["items"]
            .as_array()
            .or(versions.as_array())
            .into_iter()
            .flatten()
            .map(|v| {
                format!(
                    "v{:<4} {:<10} {:>12}  {}  {}",
                    v["version_number"],
                    v["status"].as_str().unwrap_or("-"),
                    v["size_bytes"],
                    v["sha256"].as_str().unwrap_or("-"),
                    v["filename"].as_str().unwrap_or("?"),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(Exit::Ok)
}

pub async fn history(api: &Api, id: Uuid, json: bool) -> Result<Exit, ClientError> {
    let mut items: Vec<Value> = Vec::new();
    let mut after = 0i64;
    loop {
        let page = api
            .get_json(&format!("/v1/files/{id}/history?after={after}&limit=200"))
            .await?;
        let batch = page["items"].as_array().cloned().unwrap_or_default();
        items.extend(batch);
        match page["next_after"].as_i64() {
            Some(next) if next > after => after = next,
            _ => break,
        }
    }
    output(json, &json!({"items": items}), || {
        items
            .iter()
            .map(|e| {
                format!(
                    "{:>4}  {}  {:<20}  {}",
                    e["sequence"],
                    e["recorded_at"].as_str().unwrap_or("?"),
                    e["event_type"].as_str().unwrap_or("?"),
                    e["actor"]
                        .as_str()
                        .or(e["metadata"]["actor"].as_str())
                        .unwrap_or("?"),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(Exit::Ok)
}
