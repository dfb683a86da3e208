//! Where a tenant's tree lives: every hash the tree stores (leaf hashes and the roots of
//! complete subtrees) by its *stored index* (`tlog_tiles::stored_hash_index`, the dense
//! order of Go's sumdb tlog), 32 to a row of `merkle_hash_tiles`. Appending leaves only
//! appends hashes at the end, so only a tenant's last row ever grows.
//!
//! `tlog_tiles` reads hashes through a synchronous `HashReader`, and each of its
//! computations (`tree_hash`, `prove_record`, `prove_tree`, `stored_hashes…`) asks for
//! all the hashes it needs in one call whose indexes depend on the tree sizes only. So
//! [`compute`] runs a computation once against a [`Recorder`] to learn the indexes, loads
//! them from Postgres in one query, and runs it again against the loaded [`Hashes`].

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use sqlx::{PgConnection, Row};
use tlog_tiles::{HASH_SIZE, Hash, HashReader};
use uuid::Uuid;

/// Stored hashes per `merkle_hash_tiles` row (1 KiB: the row stays inline, no TOAST).
pub const TILE_HASHES: u64 = 32;

/// Hashes in memory, by stored index. A missing index is an error, never a guess.
#[derive(Debug, Default, Clone)]
pub struct Hashes(HashMap<u64, Hash>);

impl Hashes {
    pub fn insert(&mut self, index: u64, hash: Hash) {
        self.0.insert(index, hash);
    }
}

impl HashReader for Hashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Answers every read with placeholder hashes and remembers which indexes were asked for.
#[derive(Debug, Default)]
pub struct Recorder(RefCell<BTreeSet<u64>>);

impl HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend(indexes.iter().copied());
        Ok(vec![Hash::default(); indexes.len()])
    }
}

/// Why the stored tree could not answer.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A hash the tree should hold is missing, or the tree math refused (never expected:
    /// it means the stored tree is damaged).
    #[error("the stored Merkle tree cannot answer: {0}")]
    Tree(#[from] tlog_tiles::Error),
}

/// Runs `f` over the tenant's stored hashes: once to learn which it reads, then again
/// with exactly those loaded from Postgres.
pub async fn compute<T>(
    conn: &mut PgConnection,
    tenant: Uuid,
    f: impl Fn(&dyn ReadHashes) -> Result<T, tlog_tiles::Error>,
) -> Result<T, TreeError> {
    let recorder = Recorder::default();
    f(&recorder)?;
    let wanted: Vec<u64> = recorder.0.into_inner().into_iter().collect();
    let loaded = load(conn, tenant, &wanted).await?;
    Ok(f(&loaded)?)
}

/// Object-safe view of a `HashReader`, so one closure serves both passes of [`compute`].
pub trait ReadHashes {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error>;
}

impl<R: HashReader> ReadHashes for R {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.read_hashes(indexes)
    }
}

impl HashReader for &dyn ReadHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        // The object's own `read`; `self.read` would pick the blanket impl for
        // `&dyn ReadHashes` itself and recurse.
        (**self).read(indexes)
    }
}

/// Loads the hashes at `indexes` (one query over the rows that hold them).
pub async fn load(
    conn: &mut PgConnection,
    tenant: Uuid,
    indexes: &[u64],
) -> Result<Hashes, sqlx::Error> {
    let mut all = load_many(conn, &[(tenant, indexes.to_vec())]).await?;
    Ok(all.remove(&tenant).unwrap_or_default())
}

/// [`load`] for several tenants in one query; every tenant asked for gets an entry.
pub async fn load_many(
    conn: &mut PgConnection,
    wanted: &[(Uuid, Vec<u64>)],
) -> Result<HashMap<Uuid, Hashes>, sqlx::Error> {
    let mut out: HashMap<Uuid, Hashes> = wanted
        .iter()
        .map(|(t, _)| (*t, Hashes::default()))
        .collect();
    let tiles: BTreeSet<(Uuid, i64)> = wanted
        .iter()
        .flat_map(|(t, indexes)| indexes.iter().map(|i| (*t, (i / TILE_HASHES) as i64)))
        .collect();
    if tiles.is_empty() {
        return Ok(out);
    }
    let (tenants, numbers): (Vec<Uuid>, Vec<i64>) = tiles.into_iter().unzip();
    let rows = sqlx::query(
        "SELECT m.tenant_id, m.tile, m.hashes
           FROM merkle_hash_tiles m
           JOIN unnest($1::uuid[], $2::bigint[]) AS u(t, k) ON m.tenant_id = u.t AND m.tile = u.k",
    )
    .bind(tenants)
    .bind(numbers)
    .fetch_all(conn)
    .await?;
    let mut by_tile: HashMap<(Uuid, i64), Vec<u8>> = HashMap::new();
    for r in &rows {
        by_tile.insert(
            (r.try_get("tenant_id")?, r.try_get("tile")?),
            r.try_get("hashes")?,
        );
    }
    for (tenant, indexes) in wanted {
        let hashes = out.entry(*tenant).or_default();
        for &index in indexes {
            let start = (index % TILE_HASHES) as usize * HASH_SIZE;
            let found = by_tile
                .get(&(*tenant, (index / TILE_HASHES) as i64))
                .and_then(|bytes| bytes.get(start..start + HASH_SIZE));
            if let Some(bytes) = found {
                let mut hash = Hash::default();
                hash.0.copy_from_slice(bytes);
                hashes.insert(index, hash);
            }
        }
    }
    Ok(out)
}

/// New hashes for the stored indexes `[first, first + hashes.len())` of one tenant, cut
/// into what extends the tenant's last (partial) row and the new rows after it.
#[derive(Debug, Default)]
pub struct TileWrites {
    /// (tenant, tile, bytes to append, the row's length in bytes before).
    pub extend: Vec<(Uuid, i64, Vec<u8>, i32)>,
    /// (tenant, tile, bytes): rows that do not exist yet.
    pub create: Vec<(Uuid, i64, Vec<u8>)>,
}

impl TileWrites {
    pub fn add(&mut self, tenant: Uuid, first: u64, hashes: &[Hash]) {
        let mut index = first;
        let mut rest = hashes;
        while !rest.is_empty() {
            let offset = index % TILE_HASHES;
            let take = ((TILE_HASHES - offset) as usize).min(rest.len());
            let bytes: Vec<u8> = rest[..take].iter().flat_map(|h| h.0).collect();
            let tile = (index / TILE_HASHES) as i64;
            if offset == 0 {
                self.create.push((tenant, tile, bytes));
            } else {
                let before = (offset as usize * HASH_SIZE) as i32;
                self.extend.push((tenant, tile, bytes, before));
            }
            index += take as u64;
            rest = &rest[take..];
        }
    }

    /// Writes them. A row to extend must have exactly the length this builder expects;
    /// anything else means the stored tree is not what the builder's state says, and the
    /// whole batch fails rather than build on it.
    pub async fn write(self, conn: &mut PgConnection) -> anyhow::Result<()> {
        if !self.extend.is_empty() {
            let (tenants, tiles, bytes, before) = unzip4(self.extend);
            let expected = tenants.len() as u64;
            let done = sqlx::query(
                "UPDATE merkle_hash_tiles m SET hashes = m.hashes || u.bytes
                   FROM unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::int[]) AS u(t, k, bytes, len)
                  WHERE m.tenant_id = u.t AND m.tile = u.k AND octet_length(m.hashes) = u.len",
            )
            .bind(tenants)
            .bind(tiles)
            .bind(bytes)
            .bind(before)
            .execute(&mut *conn)
            .await?;
            anyhow::ensure!(
                done.rows_affected() == expected,
                "stored Merkle hashes are not where the tree size says ({} of {expected} rows)",
                done.rows_affected()
            );
        }
        for chunk in self.create.chunks(2000) {
            let tenants: Vec<Uuid> = chunk.iter().map(|c| c.0).collect();
            let tiles: Vec<i64> = chunk.iter().map(|c| c.1).collect();
            let bytes: Vec<&[u8]> = chunk.iter().map(|c| c.2.as_slice()).collect();
            sqlx::query(
                "INSERT INTO merkle_hash_tiles (tenant_id, tile, hashes)
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bytea[])",
            )
            .bind(tenants)
            .bind(tiles)
            .bind(bytes)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

type Columns4 = (Vec<Uuid>, Vec<i64>, Vec<Vec<u8>>, Vec<i32>);

fn unzip4(rows: Vec<(Uuid, i64, Vec<u8>, i32)>) -> Columns4 {
    let mut out: Columns4 = Default::default();
    for (a, b, c, d) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
        out.3.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u8) -> Hash {
        Hash([i; 32])
    }

    #[test]
    fn writes_fill_the_partial_row_then_whole_rows() {
        let tenant = Uuid::nil();
        let mut w = TileWrites::default();
        let hashes: Vec<Hash> = (0..70).map(|i| h(i as u8)).collect();
        w.add(tenant, 30, &hashes);
        assert_eq!(w.extend.len(), 1);
        let (_, tile, bytes, before) = &w.extend[0];
        assert_eq!((*tile, bytes.len(), *before), (0, 2 * 32, 30 * 32));
        let sizes: Vec<(i64, usize)> = w.create.iter().map(|c| (c.1, c.2.len())).collect();
        assert_eq!(sizes, vec![(1, 32 * 32), (2, 32 * 32), (3, 4 * 32)]);
        assert_eq!(w.create[0].2[..32], [2u8; 32], "index 32 is the third hash");

        let mut aligned = TileWrites::default();
        aligned.add(tenant, 64, &hashes[..3]);
        assert!(aligned.extend.is_empty());
        assert_eq!(aligned.create[0].1, 2);
    }

    #[test]
    fn the_recorder_learns_what_a_proof_reads_and_loaded_hashes_answer_it() {
        // Build an 11-leaf tree in memory the way the builder does.
        let mut hashes = Hashes::default();
        for n in 0..11u64 {
            let leaf = tlog_tiles::record_hash(&[n as u8]);
            let new = tlog_tiles::stored_hashes_for_record_hash(n, leaf, &hashes).unwrap();
            let first = tlog_tiles::stored_hash_index(0, n);
            for (i, hash) in new.into_iter().enumerate() {
                hashes.insert(first + i as u64, hash);
            }
        }
        let recorder = Recorder::default();
        tlog_tiles::prove_record(11, 4, &recorder).unwrap();
        let wanted = recorder.0.into_inner();
        assert!(!wanted.is_empty());
        let mut subset = Hashes::default();
        for i in &wanted {
            subset.insert(*i, hashes.0[i]);
        }
        assert_eq!(
            tlog_tiles::prove_record(11, 4, &subset).unwrap(),
            tlog_tiles::prove_record(11, 4, &hashes).unwrap(),
            "the recorded indexes are all the proof needs"
        );
        let root = tlog_tiles::tree_hash(11, &hashes).unwrap();
        let proof = tlog_tiles::prove_record(11, 4, &subset).unwrap();
        tlog_tiles::check_record(&proof, 11, root, 4, tlog_tiles::record_hash(&[4])).unwrap();
        assert!(
            Hashes::default().read_hashes(&[0]).is_err(),
            "never a guess"
        );
    }
}
