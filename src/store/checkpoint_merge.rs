//! What a new checkpoint signs, given the log's current heads and the previous
//! checkpoint's. In an intact log a head only moves forward, past the event the previous
//! checkpoint signed. Where the log says otherwise — a stream vanished, its head moved
//! back, or the previously signed event is gone or different — the previous head is
//! carried forward unchanged: re-signing the damaged state would launder a deleted tail,
//! and verify keeps reporting it.

use std::cmp::Ordering;
use std::collections::HashSet;

use sqlx::PgConnection;
use uuid::Uuid;

use super::checkpoint::Head;

/// The heads to sign (digest order) and which of them are new rows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    pub heads: Vec<Head>,
    /// Indexes into `heads` of the heads new or moved since the previous checkpoint.
    pub changed: Vec<usize>,
    /// Streams whose previous head was kept because the log contradicts it.
    pub withheld: usize,
}

fn key(h: &Head) -> (&[u8], &[u8]) {
    (h.aggregate_type.as_bytes(), h.aggregate_id.as_bytes())
}

/// Heads that moved forward, whose previously signed event must still be in the log.
pub fn moved_forward<'a>(current: &[Head], previous: &'a [Head]) -> Vec<&'a Head> {
    previous
        .iter()
        .filter(|p| {
            current
                .binary_search_by(|c| key(c).cmp(&key(p)))
                .is_ok_and(|i| current[i].sequence > p.sequence)
        })
        .collect()
}

/// Of `heads` (previously signed), those whose event is gone or now hashes differently.
pub async fn contradicted(
    conn: &mut PgConnection,
    tenant: Uuid,
    heads: &[&Head],
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        r#"
SELECT u.t, u.a
  FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) AS u(t, a, s, h)
  LEFT JOIN events e ON e.tenant_id = $1 AND e.aggregate_type = u.t
                    AND e.aggregate_id = u.a AND e.sequence = u.s
 WHERE e.metadata->>'hash' IS DISTINCT FROM u.h"#,
    )
    .bind(tenant)
    .bind(
        heads
            .iter()
            .map(|h| h.aggregate_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        heads
            .iter()
            .map(|h| h.aggregate_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(heads.iter().map(|h| h.sequence).collect::<Vec<_>>())
    .bind(heads.iter().map(|h| h.hash.as_str()).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Merges sorted `current` and `previous` heads; `broken` are streams whose previously
/// signed head the log contradicts.
pub fn merge(current: &[Head], previous: &[Head], broken: &HashSet<(String, String)>) -> Merged {
    let mut m = Merged::default();
    let (mut i, mut j) = (0, 0);
    while i < current.len() || j < previous.len() {
        let order = match (current.get(i), previous.get(j)) {
            (Some(c), Some(p)) => key(c).cmp(&key(p)),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                m.changed.push(m.heads.len());
                m.heads.push(current[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                m.withheld += 1; // the stream vanished
                m.heads.push(previous[j].clone());
                j += 1;
            }
            Ordering::Equal => {
                let (c, p) = (&current[i], &previous[j]);
                let stream = (p.aggregate_type.clone(), p.aggregate_id.clone());
                if c == p {
                    m.heads.push(c.clone());
                } else if c.sequence > p.sequence && !broken.contains(&stream) {
                    m.changed.push(m.heads.len());
                    m.heads.push(c.clone());
                } else {
                    m.withheld += 1;
                    m.heads.push(p.clone());
                }
                i += 1;
                j += 1;
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(id: &str, sequence: i64, hash: &str) -> Head {
        Head {
            aggregate_type: "file".into(),
            aggregate_id: id.into(),
            sequence,
            hash: hash.into(),
        }
    }

    #[test]
    fn forward_moves_and_new_streams_are_signed_contradictions_keep_the_old_head() {
        let previous = vec![
            h("a", 3, "a3"),
            h("b", 5, "b5"),
            h("c", 2, "c2"),
            h("d", 4, "d4"),
            h("e", 1, "e1"),
        ];
        let current = vec![
            h("a", 3, "a3"),
            h("b", 4, "b4"),
            h("c", 6, "c6"),
            h("d", 7, "d7"),
            h("f", 1, "f1"),
        ];
        assert_eq!(
            moved_forward(&current, &previous),
            vec![&previous[2], &previous[3]]
        );
        // d's signed event 4 is no longer in the log (its tail was replaced).
        let broken = HashSet::from([("file".to_string(), "d".to_string())]);
        let m = merge(&current, &previous, &broken);
        assert_eq!(
            m.heads,
            vec![
                h("a", 3, "a3"),
                h("b", 5, "b5"),
                h("c", 6, "c6"),
                h("d", 4, "d4"),
                h("e", 1, "e1"),
                h("f", 1, "f1")
            ]
        );
        assert_eq!(m.changed, vec![2, 5], "c moved forward, f is new");
        assert_eq!(m.withheld, 3, "b moved back, d contradicted, e vanished");
    }

    #[test]
    fn an_unchanged_log_changes_nothing() {
        let heads = vec![h("a", 3, "a3"), h("b", 1, "b1")];
        let m = merge(&heads, &heads, &HashSet::new());
        assert_eq!((m.heads, m.changed, m.withheld), (heads.clone(), vec![], 0));
    }
}
