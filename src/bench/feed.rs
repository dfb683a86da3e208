//! `chronicle bench feed`: the tenant-wide feed's catch-up over N events (default
//! 1,000,000) of one tenant, page by page (1,000 a page, each its own REPEATABLE READ
//! snapshot, as `GET /v1/feed` reads them), beside one plain `SELECT` streaming the same
//! rows in the same run: what the no-skip rule and the paging cost over reading the table.

use std::time::Instant;

use futures::TryStreamExt;

use super::store::{Row, fresh_database};
use crate::config::EventSigningKey;
use crate::db::{self, DbRole};
use crate::feed::{FeedFilter, FeedPosition, read_page};
use crate::ids::TenantId;

const PAGE: i64 = 1000;
const DATABASE: &str = "chronicle_bench_feed";

pub async fn run(server_url: &str, events: u64) -> anyhow::Result<Vec<Row>> {
    let url = fresh_database(server_url, DATABASE).await?;
    db::migrate(&url).await?;
    let pool = db::pool(&url, DbRole::App, 4).await?;
    let tenant = TenantId::new();
    let signer = EventSigningKey::new("bench", rand::random());
    super::audit::seed(&url, tenant, events, &signer).await?;
    let mut rows = Vec::new();

    // Warm the cache alike for both readers: the plain SELECT first, then the feed,
    // then the SELECT again (the figure reported).
    plain_select(&pool, tenant).await?;
    let started = Instant::now();
    let (mut after, mut read, mut bytes) = (FeedPosition::default(), 0u64, 0usize);
    loop {
        let page = read_page(&pool, tenant, after, PAGE, &FeedFilter::default()).await?;
        if page.events.is_empty() {
            break;
        }
        read += page.events.len() as u64;
        bytes += page
            .events
            .iter()
            .map(|e| e.payload.len() + e.metadata.len())
            .sum::<usize>();
        after = page.next;
    }
    anyhow::ensure!(read == events, "the feed read {read} of {events} events");
    rows.push(rate("feed catch-up, pages of 1,000", read, started, bytes));

    let filter = FeedFilter {
        event_types: vec!["FileCreated".into()],
        ..Default::default()
    };
    let started = Instant::now();
    let (mut after, mut matched) = (FeedPosition::default(), 0u64);
    loop {
        let page = read_page(&pool, tenant, after, PAGE, &filter).await?;
        matched += page.events.len() as u64;
        // At the horizon: everything readable was examined.
        if page.events.is_empty() && page.next.global_position == i64::MAX {
            break;
        }
        after = page.next;
    }
    rows.push(rate(
        "feed catch-up, type=FileCreated (1 in 100)",
        events,
        started,
        0,
    ));
    anyhow::ensure!(
        matched == events.div_ceil(100),
        "filtered feed read {matched}"
    );

    let started = Instant::now();
    let (n, bytes) = plain_select(&pool, tenant).await?;
    rows.push(rate(
        "plain SELECT of the same rows (one query)",
        n,
        started,
        bytes,
    ));

    pool.close().await;
    super::store::drop_database(server_url, DATABASE).await?;
    Ok(rows)
}

/// The tenant's rows in one streamed query: the floor any reader pays.
async fn plain_select(pool: &sqlx::PgPool, tenant: TenantId) -> anyhow::Result<(u64, usize)> {
    let mut rows = sqlx::query_as::<_, (i64, String, String)>(
        "SELECT global_position, payload::text, metadata::text FROM events
          WHERE tenant_id = $1 ORDER BY transaction_id, global_position",
    )
    .bind(tenant.0)
    .fetch(pool);
    let (mut n, mut bytes) = (0u64, 0usize);
    while let Some((_, payload, metadata)) = rows.try_next().await? {
        n += 1;
        bytes += payload.len() + metadata.len();
    }
    Ok((n, bytes))
}

fn rate(name: &'static str, events: u64, started: Instant, bytes: usize) -> Row {
    let secs = started.elapsed().as_secs_f64();
    Row {
        name,
        value: events as f64 / secs,
        unit: "events/s",
        note: format!(
            "{events} events in {secs:.1} s{}",
            if bytes > 0 {
                format!(", {:.0} MB of JSON", bytes as f64 / 1e6)
            } else {
                String::new()
            }
        ),
    }
}
