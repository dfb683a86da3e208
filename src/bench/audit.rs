//! `chronicle bench audit`: seeds one tenant with N events (default 1,000,000) with valid
//! hash chains (version 2) and one signature per event, as one command per event would
//! write them — computed here and COPYed in, much faster than appending through the
//! store — then measures the NDJSON export (events/s, and resident memory while it
//! runs: it must stay flat), taking a signed checkpoint, and `audit verify` (events/s).

use std::time::Instant;

use futures::StreamExt;

use super::store::{Row, fresh_database};
use crate::config::{CheckpointKey, EventSigningKey};
use crate::db::{self, DbRole};
use crate::ids::TenantId;
use crate::store::checkpoint::timestamp_text;
use crate::store::checkpointer::{Checkpointer, take_all};
use crate::store::export::{ExportFilter, ndjson};
use crate::store::hash::{Attribution, GENESIS_HASH, HashInput, event_hash_v2};
use crate::store::trust::Trust;
use crate::store::verify::verify_log;

/// Events per stream: files with long histories, as an audit export meets them.
const STREAM_LEN: u64 = 100;
/// Rows per COPY message.
const COPY_BATCH: u64 = 10_000;

pub async fn run(server_url: &str, events: u64) -> anyhow::Result<Vec<Row>> {
    let url = fresh_database(server_url, "chronicle_bench_audit").await?;
    db::migrate(&url).await?;
    let pool = db::pool(&url, DbRole::Worker, 4).await?;
    let tenant = TenantId::new();
    let mut rows = Vec::new();

    let signer = EventSigningKey::new("bench", rand::random());
    let started = Instant::now();
    seed(&url, tenant, events, &signer).await?;
    rows.push(rate("seed (hash in Rust + COPY)", events, started));

    // Peak RSS from here on only: writing 5 to clear_refs resets VmHWM (Linux).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmHWM:");
    let started = Instant::now();
    let filter = ExportFilter {
        tenant,
        since: None,
        until: None,
    };
    let mut chunks = Box::pin(ndjson(pool.clone(), filter));
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut rss_samples = Vec::new();
    let mut next_sample = events / 10;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += chunk.len() as u64;
        if lines >= next_sample {
            rss_samples.push(status_kib("VmRSS:"));
            next_sample += events / 10;
        }
    }
    // The header and the end line frame the events (no checkpoint exists yet).
    anyhow::ensure!(
        lines == events + 2,
        "exported {} of {events} events",
        lines.saturating_sub(2)
    );
    rows.push(rate("export NDJSON", events, started));
    rows.push(Row {
        name: "export bytes",
        value: bytes as f64 / (1024.0 * 1024.0),
        unit: "MiB",
        note: format!("{:.0} bytes per event", bytes as f64 / events as f64),
    });
    let after = status_kib("VmHWM:");
    rows.push(Row {
        name: "export peak RSS (VmHWM)",
        value: after as f64 / 1024.0,
        unit: "MiB",
        note: format!(
            "{:.1} MiB before the export; VmRSS at each tenth: {}",
            before as f64 / 1024.0,
            rss_samples
                .iter()
                .map(|k| format!("{:.1}", *k as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });

    let key = CheckpointKey::from_seed(rand::random());
    let trust = Trust {
        event_keys: Some([(signer.id().to_string(), signer.verifying())].into()),
        checkpoint_keys: Some(vec![key.verifying()]),
        pinned_digests: Vec::new(),
    };
    let checkpointer = Checkpointer {
        key,
        trust: trust.clone(),
        adopt_unsigned: false,
    };
    let started = Instant::now();
    let round = take_all(&pool, &checkpointer).await?;
    rows.push(Row {
        name: "checkpoint (first, all heads vetted)",
        value: started.elapsed().as_secs_f64() * 1000.0,
        unit: "ms",
        note: format!("{} streams", round.taken.first().map_or(0, |c| c.streams)),
    });

    let started = Instant::now();
    let report = verify_log(&pool, Some(tenant), &trust).await?;
    anyhow::ensure!(
        report.is_intact(),
        "the seeded log does not verify: {:?}",
        report.breaks.first()
    );
    anyhow::ensure!(
        report.events == events,
        "verified {} of {events}",
        report.events
    );
    rows.push(rate(
        "audit verify (chains + signatures + checkpoints)",
        events,
        started,
    ));
    pool.close().await;
    super::store::drop_database(server_url, "chronicle_bench_audit").await?;
    Ok(rows)
}

fn rate(name: &'static str, events: u64, started: Instant) -> Row {
    let secs = started.elapsed().as_secs_f64();
    Row {
        name,
        value: events as f64 / secs,
        unit: "events/s",
        note: format!("{events} events in {secs:.1} s"),
    }
}

/// A `/proc/self/status` field in KiB (0 where unavailable).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// COPYs `events` events of `STREAM_LEN`-event file streams, hash chains and
/// signatures included.
pub(super) async fn seed(
    url: &str,
    tenant: TenantId,
    events: u64,
    signer: &EventSigningKey,
) -> anyhow::Result<()> {
    let owner = db::pool(url, DbRole::Owner, 1).await?;
    let mut conn = owner.acquire().await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY events (tenant_id, aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata, recorded_at) FROM STDIN",
        )
        .await?;
    let tenant_text = tenant.to_string();
    let mut buf = String::with_capacity(COPY_BATCH as usize * 400);
    let (mut stream_id, mut prev) = (String::new(), GENESIS_HASH.to_string());
    for i in 0..events {
        let sequence = i % STREAM_LEN + 1;
        if sequence == 1 {
            stream_id = uuid::Uuid::now_v7().to_string();
            prev = GENESIS_HASH.to_string();
        }
        let (event_type, payload) = if sequence == 1 {
            (
                "FileCreated",
                format!(
                    r#"{{"FileCreated":{{"display_name":"report-{i}.pdf","owner_id":"{tenant_text}"}}}}"#
                ),
            )
        } else {
            (
                "Tagged",
                format!(r#"{{"Tagged":{{"tag":"tag-{sequence}"}}}}"#),
            )
        };
        let recorded_at = timestamp_text(chrono::Utc::now());
        let hash = event_hash_v2(
            &HashInput {
                tenant_id: &tenant_text,
                aggregate_type: "file",
                aggregate_id: &stream_id,
                sequence,
                event_type,
                event_version: "1",
                payload: &payload,
                prev_hash: &prev,
            },
            &Attribution {
                recorded_at: &recorded_at,
                actor: "system:bench",
                request_id: "bench",
                correlation_id: "bench",
                causation_id: "bench",
            },
        );
        let signature = signer.sign(&hex::decode(&hash)?);
        let metadata = format!(
            r#"{{"actor":"system:bench","causation_id":"bench","correlation_id":"bench","hash":"{hash}","hash_version":"2","prev_hash":"{prev}","request_id":"bench","signature":"{signature}","signature_key":"bench","tenant_id":"{tenant_text}"}}"#
        );
        // COPY text format: no tabs, newlines or backslashes in these values.
        buf.push_str(&format!(
            "{tenant_text}\tfile\t{stream_id}\t{sequence}\t{event_type}\t1\t{payload}\t{metadata}\t{recorded_at}\n"
        ));
        prev = hash;
        if (i + 1) % COPY_BATCH == 0 {
            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
        }
    }
    if !buf.is_empty() {
        copy.send(buf.into_bytes()).await?;
    }
    copy.finish().await?;
    drop(conn);
    sqlx::query("ANALYZE events").execute(&owner).await?;
    owner.close().await;
    Ok(())
}
