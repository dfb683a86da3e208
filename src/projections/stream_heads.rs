//! `stream_heads`: the last sequence and hash of every stream — the chain heads that
//! signed checkpoints commit to, and a cheap "how long is this stream" for operators.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::PgConnection;

use super::{EventRecord, Projector};
use crate::store::metadata::keys;

pub struct StreamHeadsProjector;

#[async_trait]
impl Projector for StreamHeadsProjector {
    fn name(&self) -> &'static str {
        "stream_heads"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["stream_heads"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), sqlx::Error> {
        // Keep only the newest event of each stream in the batch.
        let mut heads: HashMap<(uuid::Uuid, &str, &str), &EventRecord> = HashMap::new();
        for e in events {
            let key = (
                e.tenant_id,
                e.aggregate_type.as_str(),
                e.aggregate_id.as_str(),
            );
            let slot = heads.entry(key).or_insert(e);
            if e.sequence > slot.sequence {
                *slot = e;
            }
        }
        let mut tenants = Vec::with_capacity(heads.len());
        let mut types = Vec::with_capacity(heads.len());
        let mut ids = Vec::with_capacity(heads.len());
        let mut sequences = Vec::with_capacity(heads.len());
        let mut hashes = Vec::with_capacity(heads.len());
        let mut times = Vec::with_capacity(heads.len());
        for e in heads.values() {
            tenants.push(e.tenant_id);
            types.push(e.aggregate_type.as_str());
            ids.push(e.aggregate_id.as_str());
            sequences.push(e.sequence);
            hashes.push(e.meta(keys::HASH).unwrap_or_default());
            times.push(e.recorded_at);
        }
        sqlx::query(
            r#"
INSERT INTO stream_heads (tenant_id, aggregate_type, aggregate_id, last_sequence, last_hash, updated_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[])
ON CONFLICT (tenant_id, aggregate_type, aggregate_id) DO UPDATE
   SET last_sequence = excluded.last_sequence, last_hash = excluded.last_hash,
       updated_at = excluded.updated_at
 WHERE stream_heads.last_sequence < excluded.last_sequence"#,
        )
        .bind(&tenants)
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .bind(&hashes)
        .bind(&times)
        .execute(conn)
        .await?;
        Ok(())
    }
}
