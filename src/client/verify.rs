//! `verify`: fetches the caller's tenant's events (`GET /v1/audit/export`, NDJSON,
//! streamed) and checks every stream's hash chain here, with the library's own chain
//! check (`store::chain`, the algorithm of docs/audit.md) — the server is not trusted
//! to say its log is intact. Signatures and checkpoints need the trusted keys and are
//! checked by `chronicle audit verify --keys` or scripts/verify_export.py.

use std::collections::HashMap;

use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Api, ClientError, Exit, output};
use crate::store::chain::{ChainRow, StreamChain};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Only events recorded at or after this instant (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events recorded before this instant (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Default)]
struct Report {
    events: u64,
    streams: HashMap<(String, String), StreamChain>,
    breaks: Vec<Value>,
    complete: bool,
    ended: bool,
}

impl Report {
    fn line(&mut self, line: &[u8]) -> Result<(), ClientError> {
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| ClientError::Protocol(format!("export line: {e}")))?;
        match value["type"].as_str() {
            Some("export") => self.complete = value["complete"].as_bool().unwrap_or(false),
            Some("end") => self.ended = true,
            Some("event") => {
                let row = ChainRow::from_export_line(&value).map_err(ClientError::Protocol)?;
                self.events += 1;
                let stream = (row.aggregate_type.clone(), row.aggregate_id.clone());
                // A time-bounded export starts streams mid-way: from the first event seen.
                let chain = self.streams.entry(stream).or_insert_with(|| {
                    if row.sequence <= 1 {
                        StreamChain::from_genesis()
                    } else {
                        StreamChain::after(row.sequence - 1, &row.prev_hash)
                    }
                });
                if chain.is_broken() {
                    return Ok(());
                }
                if let Err(problem) = chain.push(&row) {
                    self.breaks.push(json!({
                        "aggregate_type": row.aggregate_type,
                        "aggregate_id": row.aggregate_id,
                        "sequence": problem.sequence,
                        "kind": problem.kind.as_str(),
                        "expected": problem.expected,
                        "found": problem.found,
                    }));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

pub async fn run(api: &Api, args: VerifyArgs, json: bool) -> Result<Exit, ClientError> {
    let mut request = api.request(Method::GET, "/v1/audit/export")?;
    let query: Vec<(&str, String)> = [("since", args.since), ("until", args.until)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    request = request.query(&query);
    let response = api.send(request).await?;
    let mut report = Report::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            if line.len() > 1 {
                report.line(&line[..line.len() - 1])?;
            }
        }
    }
    if !pending.is_empty() {
        report.line(&pending)?;
    }
    let intact = report.breaks.is_empty() && report.ended;
    let summary = json!({
        "intact": intact,
        "events": report.events,
        "streams": report.streams.len(),
        "complete": report.complete,
        "cut": !report.ended,
        "breaks": report.breaks,
    });
    output(json, &summary, || {
        let mut text = format!(
            "{} events in {} streams: {}",
            report.events,
            report.streams.len(),
            if intact {
                "every hash chain verifies"
            } else {
                "BROKEN"
            }
        );
        if !report.ended {
            text.push_str("\nthe export was cut short (no end line)");
        }
        for b in &report.breaks {
            text.push_str(&format!(
                "\n{}/{} #{}: {}",
                b["aggregate_type"].as_str().unwrap_or("?"),
                b["aggregate_id"].as_str().unwrap_or("?"),
                b["sequence"],
                b["kind"].as_str().unwrap_or("?")
            ));
        }
        text
    });
    Ok(if intact {
        Exit::Ok
    } else {
        Exit::CheckFailed(format!("{} broken chain(s)", report.breaks.len()))
    })
}
