//! The notifications projector's writes: recipients, numbered rows, read marks. Each
//! is one statement over `unnest` arrays, whatever the batch size.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{EventRecord, NewRow};
use crate::aggregates::file::FileStatus;
use crate::live::message::{self, EventId, NotificationView, Published};

#[derive(Clone)]
pub(super) struct Recipient {
    pub(super) owner_id: Uuid,
    pub(super) display_name: String,
    /// The file's highest version and its status as this projector saw them (0 and
    /// `uploaded` before any upload): what a sharing notification names.
    pub(super) latest_version: u32,
    pub(super) latest_status: &'static str,
}

/// The recipients of the files these events concern, as stored before this batch.
pub(super) async fn load_recipients(
    conn: &mut PgConnection,
    file_events: &[(&EventRecord, Uuid)],
) -> Result<HashMap<(Uuid, Uuid), Recipient>, sqlx::Error> {
    let keys: BTreeSet<(Uuid, Uuid)> = file_events
        .iter()
        .map(|(e, id)| (e.tenant_id, *id))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
    let rows = sqlx::query(
        "SELECT r.tenant_id, r.file_id, r.owner_id, r.display_name,
                coalesce(r.latest_version, 0) AS latest_version,
                coalesce(r.latest_status::text, 'uploaded') AS latest_status
           FROM notification_recipients r
           JOIN unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, file_id) USING (tenant_id, file_id)",
    )
    .bind(tenants)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                (row.get("tenant_id"), row.get("file_id")),
                Recipient {
                    owner_id: row.get("owner_id"),
                    display_name: row.get("display_name"),
                    latest_version: row.get::<i32, _>("latest_version").max(0) as u32,
                    latest_status: static_status(&row.get::<String, _>("latest_status")),
                },
            )
        })
        .collect())
}

pub(super) async fn save_recipients(
    conn: &mut PgConnection,
    files: &HashMap<(Uuid, Uuid), Recipient>,
    changed: &BTreeSet<(Uuid, Uuid)>,
) -> Result<(), sqlx::Error> {
    if changed.is_empty() {
        return Ok(());
    }
    let (mut tenants, mut ids, mut owners, mut names) = (vec![], vec![], vec![], vec![]);
    let (mut versions, mut statuses) = (vec![], vec![]);
    for key in changed {
        let r = &files[key];
        tenants.push(key.0);
        ids.push(key.1);
        owners.push(r.owner_id);
        names.push(r.display_name.clone());
        versions.push(r.latest_version as i32);
        statuses.push(r.latest_status);
    }
    sqlx::query(
        "INSERT INTO notification_recipients (tenant_id, file_id, owner_id, display_name,
                                              latest_version, latest_status)
         SELECT t, f, o, n, v, s::file_status
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::text[])
                AS u(t, f, o, n, v, s)
         ON CONFLICT (tenant_id, file_id) DO UPDATE
            SET display_name = EXCLUDED.display_name, latest_version = EXCLUDED.latest_version,
                latest_status = EXCLUDED.latest_status",
    )
    .bind(tenants)
    .bind(ids)
    .bind(owners)
    .bind(names)
    .bind(versions)
    .bind(statuses)
    .execute(conn)
    .await?;
    Ok(())
}

/// Numbers the rows per recipient (continuing from the stored maximum), inserts them,
/// and returns them as they will be published.
pub(super) async fn insert_rows(
    conn: &mut PgConnection,
    rows: Vec<NewRow>,
) -> Result<Vec<Published>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let recipients: BTreeSet<(Uuid, Uuid)> =
        rows.iter().map(|r| (r.tenant_id, r.recipient_id)).collect();
    let (tenants, users): (Vec<Uuid>, Vec<Uuid>) = recipients.into_iter().unzip();
    let mut next: BTreeMap<(Uuid, Uuid), i64> = sqlx::query(
        "SELECT k.tenant_id, k.recipient_id,
                coalesce((SELECT max(n.seq) FROM notifications n
                           WHERE n.tenant_id = k.tenant_id AND n.recipient_id = k.recipient_id), 0) AS seq
           FROM unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, recipient_id)",
    )
    .bind(tenants)
    .bind(users)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| ((row.get("tenant_id"), row.get("recipient_id")), row.get("seq")))
    .collect();

    let mut published = Vec::with_capacity(rows.len());
    for r in rows {
        let seq = next.entry((r.tenant_id, r.recipient_id)).or_insert(0);
        *seq += 1;
        let version_number = r.version_number.map(|n| n as i32);
        let event_id = EventId {
            transaction_id: r.position.transaction_id,
            global_position: r.position.global_position,
        };
        published.push(Published {
            tenant_id: r.tenant_id,
            recipient_id: r.recipient_id,
            seq: *seq,
            row: NotificationView {
                id: r.id,
                event_id: event_id.to_string(),
                kind: r.kind.to_string(),
                file_id: r.file_id,
                message: message::message(
                    r.kind,
                    r.file_name.as_deref(),
                    version_number,
                    r.status,
                    &r.details,
                ),
                file_name: r.file_name,
                version_number,
                status: r.status.map(str::to_string),
                details: r.details,
                created_at: r.created_at,
                read_at: None,
            },
        });
    }

    let mut cols = Columns::default();
    for p in &published {
        cols.push(p);
    }
    sqlx::query(
        "INSERT INTO notifications (tenant_id, id, recipient_id, seq, transaction_id, global_position,
                                    kind, file_id, file_name, version_number, status, details, created_at)
         SELECT t, i, r, s, x::xid8, p, k, f, n, v, st::file_status, d::jsonb, c
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::int8[], $7::text[],
                       $8::uuid[], $9::text[], $10::int4[], $11::text[], $12::text[], $13::timestamptz[])
                AS u(t, i, r, s, x, p, k, f, n, v, st, d, c)",
    )
    .bind(cols.tenants)
    .bind(cols.ids)
    .bind(cols.recipients)
    .bind(cols.seqs)
    .bind(cols.xids)
    .bind(cols.positions)
    .bind(cols.kinds)
    .bind(cols.files)
    .bind(cols.names)
    .bind(cols.versions)
    .bind(cols.statuses)
    .bind(cols.details)
    .bind(cols.created)
    .execute(conn)
    .await?;
    Ok(published)
}

/// Column arrays for one `unnest` insert.
#[derive(Default)]
struct Columns {
    tenants: Vec<Uuid>,
    ids: Vec<Uuid>,
    recipients: Vec<Uuid>,
    seqs: Vec<i64>,
    xids: Vec<String>,
    positions: Vec<i64>,
    kinds: Vec<String>,
    files: Vec<Option<Uuid>>,
    names: Vec<Option<String>>,
    versions: Vec<Option<i32>>,
    statuses: Vec<Option<String>>,
    details: Vec<String>,
    created: Vec<DateTime<Utc>>,
}

impl Columns {
    fn push(&mut self, p: &Published) {
        let id: EventId = p.row.event_id.parse().expect("formatted above");
        self.tenants.push(p.tenant_id);
        self.ids.push(p.row.id);
        self.recipients.push(p.recipient_id);
        self.seqs.push(p.seq);
        self.xids.push(id.transaction_id.to_string());
        self.positions.push(id.global_position);
        self.kinds.push(p.row.kind.clone());
        self.files.push(p.row.file_id);
        self.names.push(p.row.file_name.clone());
        self.versions.push(p.row.version_number);
        self.statuses.push(p.row.status.clone());
        self.details.push(p.row.details.to_string());
        self.created.push(p.row.created_at);
    }
}

/// `NotificationRead` sets `read_at` to the first read's time. The notification's row
/// always precedes its read in catch-up order: the API only records a read of a row it
/// found in the table. A row read before (by `InboxRead`) keeps the earlier time, so the
/// outcome does not depend on how events fall into batches (a rebuild's differ).
pub(super) async fn mark_read(
    conn: &mut PgConnection,
    reads: Vec<(Uuid, Uuid, DateTime<Utc>)>,
) -> Result<(), sqlx::Error> {
    if reads.is_empty() {
        return Ok(());
    }
    let (mut tenants, mut ids, mut ats) = (vec![], vec![], vec![]);
    for (t, i, at) in reads {
        tenants.push(t);
        ids.push(i);
        ats.push(at);
    }
    sqlx::query(
        "UPDATE notifications n SET read_at = r.at
           FROM (SELECT t, i, min(at) AS at
                   FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS u(t, i, at)
                  GROUP BY t, i) r
          WHERE n.tenant_id = r.t AND n.id = r.i AND (n.read_at IS NULL OR n.read_at > r.at)",
    )
    .bind(tenants)
    .bind(ids)
    .bind(ats)
    .execute(conn)
    .await?;
    Ok(())
}

/// One `InboxRead`: the recipient read every notification up to `up_to_seq` at `at`.
pub(super) struct InboxRead {
    pub tenant_id: Uuid,
    pub recipient_id: Uuid,
    pub up_to_seq: i64,
    pub at: DateTime<Utc>,
}

/// `InboxRead` sets `read_at` on every notification of its recipient up to its `seq`,
/// to the first time a read covered it (an earlier `NotificationRead`, or an earlier
/// `InboxRead`, keeps its time: the same order-free rule as [`mark_read`]). The rows it
/// covers precede it in catch-up order: the API asked for the newest `seq` the table
/// held, and each recipient's `seq` grows in catch-up order, live and in a rebuild.
///
/// Here the read is only recorded (`notification_read_marks`, migration 0057);
/// [`mark_some`] sets the rows' `read_at` a bounded share at a time, because a row costs
/// ~23 µs and an inbox may hold hundreds of thousands (docs/benchmarks.md). Two reads of
/// the same `seq` keep the earlier time.
pub(super) async fn record_inbox_reads(
    conn: &mut PgConnection,
    reads: Vec<InboxRead>,
) -> Result<(), sqlx::Error> {
    if reads.is_empty() {
        return Ok(());
    }
    let (mut tenants, mut recipients, mut seqs, mut ats) = (vec![], vec![], vec![], vec![]);
    for r in reads {
        tenants.push(r.tenant_id);
        recipients.push(r.recipient_id);
        seqs.push(r.up_to_seq);
        ats.push(r.at);
    }
    sqlx::query(
        "INSERT INTO notification_read_marks AS m
                (tenant_id, recipient_id, up_to_seq, read_at, below_seq)
         SELECT t, r, s, min(at), s + 1
           FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[]) AS u(t, r, s, at)
          GROUP BY t, r, s
         ON CONFLICT (tenant_id, recipient_id, up_to_seq)
         DO UPDATE SET read_at = least(m.read_at, excluded.read_at)",
    )
    .bind(tenants)
    .bind(recipients)
    .bind(seqs)
    .bind(ats)
    .execute(conn)
    .await?;
    Ok(())
}

/// A recorded inbox read still being applied.
#[derive(sqlx::FromRow)]
struct Mark {
    tenant_id: Uuid,
    recipient_id: Uuid,
    up_to_seq: i64,
    read_at: DateTime<Utc>,
    below_seq: i64,
}

/// Marks up to `budget` covered notifications read, oldest inbox read first and each
/// read's newest rows first (the top of the inbox reads as read soonest). Each share is
/// a range of the listing's index (`notifications_listing`, newest first), so a share
/// costs its own rows, never a rescan of those already marked. Returns whether there
/// was anything to do.
pub(super) async fn mark_some(conn: &mut PgConnection, budget: i64) -> Result<bool, sqlx::Error> {
    let marks: Vec<Mark> = sqlx::query_as(
        "SELECT tenant_id, recipient_id, up_to_seq, read_at, below_seq
           FROM notification_read_marks
          ORDER BY read_at, tenant_id, recipient_id, up_to_seq
          LIMIT $1",
    )
    .bind(budget.max(1))
    .fetch_all(&mut *conn)
    .await?;
    let worked = !marks.is_empty();
    let mut left = budget.max(1);
    for m in marks {
        if left <= 0 {
            break;
        }
        // The share: the next `left` covered rows below `below_seq`, newest first.
        let (lowest, rows): (Option<i64>, i64) = sqlx::query_as(
            "WITH share AS (
                SELECT seq FROM notifications
                 WHERE tenant_id = $1 AND recipient_id = $2 AND kind <> 'version_status'
                   AND seq < $3
                 ORDER BY seq DESC
                 LIMIT $4),
             marked AS (
                UPDATE notifications n SET read_at = $5
                  FROM share
                 WHERE n.tenant_id = $1 AND n.recipient_id = $2 AND n.seq = share.seq
                   AND n.kind <> 'version_status' AND (n.read_at IS NULL OR n.read_at > $5))
             SELECT min(seq), count(*) FROM share",
        )
        .bind(m.tenant_id)
        .bind(m.recipient_id)
        .bind(m.below_seq.min(m.up_to_seq + 1))
        .bind(left)
        .bind(m.read_at)
        .fetch_one(&mut *conn)
        .await?;
        let finished = rows < left;
        // Even an empty share costs its statements.
        left -= rows.max(1);
        if finished {
            sqlx::query(
                "DELETE FROM notification_read_marks
                  WHERE tenant_id = $1 AND recipient_id = $2 AND up_to_seq = $3",
            )
            .bind(m.tenant_id)
            .bind(m.recipient_id)
            .bind(m.up_to_seq)
            .execute(&mut *conn)
            .await?;
        } else {
            sqlx::query(
                "UPDATE notification_read_marks SET below_seq = $4
                  WHERE tenant_id = $1 AND recipient_id = $2 AND up_to_seq = $3",
            )
            .bind(m.tenant_id)
            .bind(m.recipient_id)
            .bind(m.up_to_seq)
            .bind(lowest.unwrap_or(0))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(worked)
}

/// A `file_status` label as the static text rows carry.
pub(super) fn static_status(label: &str) -> &'static str {
    serde_json::from_value::<FileStatus>(serde_json::Value::String(label.to_string()))
        .unwrap_or_default()
        .as_str()
}
