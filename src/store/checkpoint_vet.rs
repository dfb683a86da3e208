//! Before the checkpointer signs a stream's new head it checks the chain from the head
//! it signed last (or from genesis) to the new one, exactly as verify would (chain.rs):
//! links, canonical payloads, hashes, and a trusted signature vouching for the new
//! head. It signs the newest head that passes; whatever follows a problem, or was
//! written without the signing key, stays unsigned and is reported by verify — a
//! checkpoint never launders a forgery.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;
use futures::TryStreamExt;
use sqlx::PgConnection;
use uuid::Uuid;

use super::chain::{CHAIN_COLUMNS, ChainRow, StreamChain};
use super::checkpoint::Head;

/// A stream the checkpointer may advance: its last signed head, or none (new stream).
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    /// `(sequence, hash)` of the head signed last.
    pub signed: Option<(i64, &'a str)>,
}

/// What vetting found.
#[derive(Debug, Default)]
pub struct Vetted {
    /// The heads that may be signed, one per stream that advanced.
    pub heads: Vec<Head>,
    /// Streams with new events not signed: a broken link or an unvouched tail.
    pub refused: Vec<String>,
}

/// `keys`: trusted event keys (`None`: signatures are not required — development
/// without a configured key, or adopting events written before signatures existed).
pub async fn vet(
    conn: &mut PgConnection,
    tenant: Uuid,
    candidates: &[Candidate<'_>],
    keys: Option<&BTreeMap<String, VerifyingKey>>,
) -> Result<Vetted, sqlx::Error> {
    let mut vetted = Vetted::default();
    for chunk in candidates.chunks(5000) {
        vet_chunk(conn, tenant, chunk, keys, &mut vetted).await?;
    }
    Ok(vetted)
}

async fn vet_chunk(
    conn: &mut PgConnection,
    tenant: Uuid,
    candidates: &[Candidate<'_>],
    keys: Option<&BTreeMap<String, VerifyingKey>>,
    out: &mut Vetted,
) -> Result<(), sqlx::Error> {
    let by_stream: HashMap<(&str, &str), &Candidate<'_>> = candidates
        .iter()
        .map(|c| ((c.aggregate_type, c.aggregate_id), c))
        .collect();
    let sql = format!(
        "SELECT {CHAIN_COLUMNS}
           FROM unnest($2::text[], $3::text[], $4::bigint[]) AS u(t, a, s)
           JOIN events ON tenant_id = $1 AND aggregate_type = u.t AND aggregate_id = u.a
                      AND sequence > u.s
          ORDER BY aggregate_type, aggregate_id, sequence"
    );
    let mut rows = sqlx::query(&sql)
        .bind(tenant)
        .bind(
            candidates
                .iter()
                .map(|c| c.aggregate_type)
                .collect::<Vec<_>>(),
        )
        .bind(
            candidates
                .iter()
                .map(|c| c.aggregate_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            candidates
                .iter()
                .map(|c| c.signed.map_or(0, |(s, _)| s))
                .collect::<Vec<_>>(),
        )
        .fetch(&mut *conn);
    let mut current: Option<(ChainRow, StreamChain, i64)> = None;
    while let Some(row) = rows.try_next().await? {
        let row = ChainRow::read(&row)?;
        let same = current.as_ref().is_some_and(|(first, _, _)| {
            first.aggregate_type == row.aggregate_type && first.aggregate_id == row.aggregate_id
        });
        if !same {
            if let Some(done) = current.take() {
                conclude(done, keys, out);
            }
            let Some(c) = by_stream.get(&(row.aggregate_type.as_str(), row.aggregate_id.as_str()))
            else {
                continue;
            };
            let chain = match c.signed {
                Some((sequence, hash)) => StreamChain::after(sequence, hash),
                None => StreamChain::from_genesis(),
            };
            let start = c.signed.map_or(0, |(s, _)| s);
            current = Some((row.clone(), chain, start));
        }
        let (_, chain, _) = current.as_mut().expect("set above");
        if !chain.is_broken() {
            let _ = chain.push(&row);
        }
    }
    drop(rows);
    if let Some(done) = current {
        conclude(done, keys, out);
    }
    Ok(())
}

/// The head to sign for one stream, if it advanced.
fn conclude(
    (first, chain, start): (ChainRow, StreamChain, i64),
    keys: Option<&BTreeMap<String, VerifyingKey>>,
    out: &mut Vetted,
) {
    let (last, last_hash) = chain.last();
    let through = match keys {
        None => Some((last, last_hash.to_string())),
        Some(keys) => chain.vouched(keys).through,
    };
    let stream = format!("{}/{}", first.aggregate_type, first.aggregate_id);
    if chain.is_broken() || through.as_ref().is_none_or(|(s, _)| *s < last) {
        out.refused.push(stream);
    }
    if let Some((sequence, hash)) = through.filter(|(s, _)| *s > start) {
        out.heads.push(Head {
            aggregate_type: first.aggregate_type,
            aggregate_id: first.aggregate_id,
            sequence,
            hash,
        });
    }
}
