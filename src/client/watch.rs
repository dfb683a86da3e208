//! `watch`: follows the tenant's event feed (`GET /v1/feed/stream`, server-sent events:
//! `id:` is the cursor, `event: feed`, `data:` the item), one line per event. When the
//! connection drops it reconnects with `Last-Event-ID`, so no event is skipped or
//! repeated; `--after` starts from a cursor a previous run printed.

use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::{Api, ClientError, Exit};

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Start after this cursor (default: from now on).
    #[arg(long)]
    pub after: Option<String>,
    /// Only these event types (repeatable).
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Stop after this many events (default: follow until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

/// One server-sent event as the stream delivers it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Sse {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Parses the complete events at the front of `buf` (leaving a partial one there).
pub(crate) fn take_events(buf: &mut String) -> Vec<Sse> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let mut sse = Sse::default();
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => sse.id = Some(value.to_string()),
                "event" => sse.event = Some(value.to_string()),
                "data" => {
                    if !sse.data.is_empty() {
                        sse.data.push('\n');
                    }
                    sse.data.push_str(value);
                }
                _ => {} // comments (keep-alives) and unknown fields
            }
        }
        if !sse.data.is_empty() {
            out.push(sse);
        }
    }
    out
}

fn line_for(item: &Value) -> String {
    format!(
        "{}  {}  {}/{} #{}  {}",
        item["position"],
        item["recorded_at"].as_str().unwrap_or("?"),
        item["aggregate_type"].as_str().unwrap_or("?"),
        item["aggregate_id"].as_str().unwrap_or("?"),
        item["sequence"],
        item["event_type"].as_str().unwrap_or("?"),
    )
}

pub async fn run(api: &Api, args: WatchArgs, json: bool) -> Result<Exit, ClientError> {
    let mut cursor = args.after.clone();
    let mut seen = 0u64;
    let mut failures = 0u32;
    loop {
        let mut request = api
            .request(Method::GET, "/v1/feed/stream")?
            .header("accept", "text/event-stream");
        let mut query: Vec<(&str, String)> =
            args.types.iter().map(|t| ("type", t.clone())).collect();
        if let Some(c) = &cursor {
            request = request.header("last-event-id", c.as_str());
            query.push(("after", c.clone()));
        }
        let response = match api.send(request.query(&query)).await {
            Ok(r) => r,
            Err(e) if e.is_transient() && failures < 10 => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        failures = 0;
        let mut buf = String::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            for sse in take_events(&mut buf) {
                let Ok(item) = serde_json::from_str::<Value>(&sse.data) else {
                    continue;
                };
                if json {
                    println!("{item}");
                } else {
                    println!("{}", line_for(&item));
                }
                cursor = sse
                    .id
                    .or_else(|| item["cursor"].as_str().map(str::to_string));
                seen += 1;
                if args.count.is_some_and(|n| seen >= n) {
                    return Ok(Exit::Ok);
                }
            }
        }
        // The stream ended (server restart, timeout): resume from the last cursor.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_whole_and_partial_ones_wait() {
        let mut buf =
            String::from(": keep-alive\n\nid: c1\nevent: feed\ndata: {\"a\":1}\n\nid: c2\nda");
        let events = take_events(&mut buf);
        assert_eq!(
            events,
            vec![Sse {
                id: Some("c1".into()),
                event: Some("feed".into()),
                data: "{\"a\":1}".into()
            }]
        );
        assert_eq!(buf, "id: c2\nda");
        buf.push_str("ta: 2\n\n");
        assert_eq!(take_events(&mut buf)[0].data, "2");
    }
}
