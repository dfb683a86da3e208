//! Checking checkpoints against the trusted keys and the log. Every checkpoint of a
//! tenant must follow its predecessor (counter + 1, the predecessor's digest) and be
//! signed by a trusted key; checkpoints an auditor pinned must still be there; the
//! newest one's heads must give its digest and still be in the log with the same hash
//! — a deleted tail shows up here and nowhere else. The newest checkpoint also vouches
//! for streams whose tail carries no trusted signature (events written before
//! signatures existed, adopted by a checkpoint).
//!
//! Only the newest checkpoint's digest is recomputed from its heads: the older ones are
//! covered by the signed chain of digests, and recomputing each would cost all heads
//! per checkpoint.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use ed25519_dalek::VerifyingKey;

use super::checkpoint::{CHECKPOINT_COLUMNS, GENESIS_DIGEST, Head, StoredCheckpoint, heads_at};
use super::trust::Trust;
use super::verify::{BreakKind, ChainBreak};

/// A checkpoint as the verify report shows it (auditors may keep the newest digest
/// outside the database and pin it next time with `--trusted-digest`).
pub type CheckpointSeen = StoredCheckpoint;

/// An intact stream whose tail, after `signed_through`, no trusted signature vouches
/// for (verify.rs finds these; a checkpoint may still vouch for them).
#[derive(Debug, Clone)]
pub struct Unvouched {
    pub tenant_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The newest sequence a valid signature covers (0: none).
    pub signed_through: i64,
    /// The stream's last sequence.
    pub end: i64,
    /// Why the newest signature does not vouch ("no signature" when there is none).
    pub why: String,
}

/// What checking the checkpoints found.
#[derive(Debug, Default)]
pub struct Checked {
    /// The newest checkpoint of each tenant in scope.
    pub newest: Vec<CheckpointSeen>,
    pub breaks: Vec<ChainBreak>,
}

pub async fn check_all(
    conn: &mut PgConnection,
    tenant: Option<Uuid>,
    trust: &Trust,
    unvouched: &[Unvouched],
) -> Result<Checked, sqlx::Error> {
    let mut checked = Checked::default();
    let mut pinned: HashSet<&str> = trust.pinned_digests.iter().map(String::as_str).collect();
    let keys = trust.checkpoint_keys.as_deref();
    {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE $1::uuid IS NULL OR tenant_id = $1
              ORDER BY tenant_id, id"
        );
        let mut rows = sqlx::query(&sql).bind(tenant).fetch(&mut *conn);
        let mut walk: Option<Walk> = None;
        while let Some(row) = rows.try_next().await? {
            let c = StoredCheckpoint::read(&row)?;
            pinned.remove(c.digest.as_str());
            if walk
                .as_ref()
                .is_some_and(|w| w.last.tenant_id != c.tenant_id)
            {
                checked.newest.push(walk.take().expect("checked").last);
            }
            match &mut walk {
                Some(w) => w.step(c, keys, &mut checked.breaks),
                None => walk = Some(Walk::start(c, keys, &mut checked.breaks)),
            }
        }
        if let Some(w) = walk {
            checked.newest.push(w.last);
        }
    }
    for digest in pinned {
        checked.breaks.push(ChainBreak {
            tenant_id: tenant.map(|t| t.to_string()).unwrap_or_default(),
            aggregate_type: "checkpoint".into(),
            aggregate_id: String::new(),
            sequence: 0,
            problem: BreakKind::CheckpointRollback,
            expected: format!("a checkpoint with the pinned digest {digest}"),
            found: "no such checkpoint: the checkpoints were rolled back or rewritten".into(),
        });
    }
    let mut by_tenant: HashMap<&str, Vec<&Unvouched>> = HashMap::new();
    for u in unvouched {
        by_tenant.entry(&u.tenant_id).or_default().push(u);
    }
    for c in &checked.newest {
        let mut heads = heads_at(conn, c.tenant_id, c.id).await?;
        let recomputed = c.recompute_digest(&heads);
        let signature = c.signature_problem(keys);
        let mut trusted = signature.is_none();
        if let (None, Some((expected, found))) = (c.link(), signature) {
            checked.breaks.push(checkpoint_break(
                c,
                BreakKind::CheckpointSignatureInvalid,
                expected,
                found,
            ));
        }
        if recomputed != c.digest {
            trusted = false;
            checked.breaks.push(checkpoint_break(
                c,
                BreakKind::CheckpointDigestMismatch,
                recomputed,
                c.digest.clone(),
            ));
        }
        checked.breaks.extend(missing_heads(conn, c).await?);
        if !trusted {
            heads.clear(); // a checkpoint that does not verify vouches for nothing
        }
        let tenant_text = c.tenant_id.to_string();
        for u in by_tenant.remove(tenant_text.as_str()).unwrap_or_default() {
            checked.breaks.extend(unvouched_break(u, &heads));
        }
    }
    for u in by_tenant.into_values().flatten() {
        checked.breaks.extend(unvouched_break(u, &[]));
    }
    Ok(checked)
}

/// One tenant's checkpoints in id order.
struct Walk {
    last: StoredCheckpoint,
    /// The counter of the last chained (version 2) checkpoint.
    counter: Option<i64>,
}

impl Walk {
    fn start(
        c: StoredCheckpoint,
        keys: Option<&[VerifyingKey]>,
        breaks: &mut Vec<ChainBreak>,
    ) -> Self {
        let mut walk = Walk {
            last: c.clone(),
            counter: None,
        };
        walk.check(&c, None, keys, breaks);
        walk.advance(c);
        walk
    }

    fn step(
        &mut self,
        c: StoredCheckpoint,
        keys: Option<&[VerifyingKey]>,
        breaks: &mut Vec<ChainBreak>,
    ) {
        let prev = self.last.digest.clone();
        self.check(&c, Some(&prev), keys, breaks);
        self.advance(c);
    }

    fn advance(&mut self, c: StoredCheckpoint) {
        if let Some(counter) = c.counter {
            self.counter = Some(counter);
        }
        self.last = c;
    }

    /// Checks `c` against its predecessor's digest (`None`: it is the first).
    fn check(
        &self,
        c: &StoredCheckpoint,
        prev_digest: Option<&str>,
        keys: Option<&[VerifyingKey]>,
        breaks: &mut Vec<ChainBreak>,
    ) {
        let expected_prev = prev_digest.unwrap_or(GENESIS_DIGEST);
        let expected_counter = self.counter.unwrap_or(0) + 1;
        match c.link() {
            None if c.format == 1 && self.counter.is_none() => {
                // A legacy checkpoint before the chain began: only the one the chain
                // starts from matters, and the chain's first link signs its digest.
            }
            None => breaks.push(checkpoint_break(
                c,
                BreakKind::CheckpointChainBroken,
                format!("a chained checkpoint with counter {expected_counter}"),
                format!("format {} without a counter", c.format),
            )),
            Some(link) => {
                if link.counter != expected_counter || link.prev_digest != expected_prev {
                    breaks.push(checkpoint_break(
                        c,
                        BreakKind::CheckpointChainBroken,
                        format!("counter {expected_counter} after digest {expected_prev}"),
                        format!("counter {} after digest {}", link.counter, link.prev_digest),
                    ));
                }
            }
        }
        // Every chained checkpoint's signature is checked here; a legacy one only when
        // it is the newest (in `check_all`).
        if c.link().is_some()
            && let Some((expected, found)) = c.signature_problem(keys)
        {
            breaks.push(checkpoint_break(
                c,
                BreakKind::CheckpointSignatureInvalid,
                expected,
                found,
            ));
        }
    }
}

fn checkpoint_break(
    c: &StoredCheckpoint,
    problem: BreakKind,
    expected: String,
    found: String,
) -> ChainBreak {
    ChainBreak {
        tenant_id: c.tenant_id.to_string(),
        aggregate_type: "checkpoint".into(),
        aggregate_id: c.id.to_string(),
        sequence: c.counter.unwrap_or(0),
        problem,
        expected,
        found,
    }
}

/// The break for a stream whose tail neither a signature nor the newest trusted
/// checkpoint (`heads`, digest order) vouches for. None when the checkpoint covers it,
/// or signed a head beyond the stream's end (a truncated tail, reported as such).
fn unvouched_break(u: &Unvouched, heads: &[Head]) -> Option<ChainBreak> {
    let signed = heads
        .binary_search_by(|h| {
            (h.aggregate_type.as_bytes(), h.aggregate_id.as_bytes())
                .cmp(&(u.aggregate_type.as_bytes(), u.aggregate_id.as_bytes()))
        })
        .ok()
        .map(|i| heads[i].sequence);
    if signed.is_some_and(|s| s > u.end) {
        return None;
    }
    let through = u.signed_through.max(signed.unwrap_or(0));
    (through < u.end).then(|| ChainBreak {
        tenant_id: u.tenant_id.clone(),
        aggregate_type: u.aggregate_type.clone(),
        aggregate_id: u.aggregate_id.clone(),
        sequence: through + 1,
        problem: BreakKind::UnvouchedEvent,
        expected: format!(
            "a trusted signature or a trusted checkpoint covering sequence {}",
            u.end
        ),
        found: u.why.clone(),
    })
}

/// Heads the checkpoint signed that are gone (truncated tail) or hold another event
/// (the tail was replaced).
async fn missing_heads(
    conn: &mut PgConnection,
    c: &StoredCheckpoint,
) -> Result<Vec<ChainBreak>, sqlx::Error> {
    let rows = sqlx::query(
        r#"
WITH heads AS (
    SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id,
           last_sequence, last_hash
      FROM checkpoint_heads WHERE tenant_id = $1 AND checkpoint_id <= $2
     ORDER BY aggregate_type, aggregate_id, checkpoint_id DESC)
SELECT h.aggregate_type, h.aggregate_id, h.last_sequence, h.last_hash,
       e.metadata->>'hash' AS found_hash,
       (SELECT max(x.sequence) FROM events x
         WHERE x.tenant_id = $1 AND x.aggregate_type = h.aggregate_type
           AND x.aggregate_id = h.aggregate_id) AS stream_end
  FROM heads h
  LEFT JOIN events e ON e.tenant_id = $1 AND e.aggregate_type = h.aggregate_type
                    AND e.aggregate_id = h.aggregate_id AND e.sequence = h.last_sequence
 WHERE e.metadata->>'hash' IS DISTINCT FROM h.last_hash
 ORDER BY h.aggregate_type, h.aggregate_id"#,
    )
    .bind(c.tenant_id)
    .bind(c.id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let sequence: i64 = r.get("last_sequence");
            let expected_hash: String = r.get("last_hash");
            let found_hash: Option<String> = r.get("found_hash");
            let stream_end: Option<i64> = r.get("stream_end");
            let (problem, found) = match found_hash {
                None => (
                    BreakKind::TruncatedTail,
                    match stream_end {
                        Some(end) => format!("stream ends at sequence {end}"),
                        None => "stream is gone".to_string(),
                    },
                ),
                Some(hash) => (BreakKind::CheckpointHeadMismatch, hash),
            };
            ChainBreak {
                tenant_id: c.tenant_id.to_string(),
                aggregate_type: r.get("aggregate_type"),
                aggregate_id: r.get("aggregate_id"),
                sequence,
                problem,
                expected: format!("{expected_hash} (checkpoint {})", c.id),
                found,
            }
        })
        .collect())
}
