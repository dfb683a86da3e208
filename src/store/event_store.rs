//! Chronicle's event store: cqrs-es's `EventStore` over the postgres-es `events` table,
//! scoped to one tenant, with a hash chain and correct snapshots.
//!
//! Why not `PersistedEventStore::new_snapshot_store`: in cqrs-es 0.5.0 it applies the
//! just-committed events to the aggregate a second time before saving the snapshot
//! (`EventSink::write` has already applied them), so its snapshots are corrupt.
//! Here the context's aggregate — which already holds the new events — is saved as is.
//!
//! Round trips: loading is one query (snapshot + tail), committing is one INSERT
//! (atomic on its own, shared with concurrent commands by the `EventLog`'s group
//! commit), plus one upsert every `snapshot_every` events.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;

use chrono::{SubsecRound, Utc};
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use sqlx::{PgPool, Row};

use super::checkpoint::timestamp_text;
use super::event_log::{AppendError, EventLog, StreamAppend};
use super::hash::{
    Attribution, GENESIS_HASH, HASH_VERSION_2, HashInput, canonical_json, event_hash_v2,
    integers_only,
};
use super::metadata::keys;
use super::stored_form;
use crate::ids::TenantId;
use crate::privacy::StoredEvent;

type StoreResult<T, A> = Result<T, AggregateError<<A as Aggregate>::Error>>;

/// An event store bound to one tenant: it can neither read nor write another tenant's
/// streams, because the tenant is part of every query it runs.
pub struct ChronicleStore<A> {
    log: EventLog,
    pool: PgPool,
    tenant: TenantId,
    snapshot_every: u64,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for ChronicleStore<A> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            pool: self.pool.clone(),
            tenant: self.tenant,
            snapshot_every: self.snapshot_every,
            _aggregate: PhantomData,
        }
    }
}

/// What a command decides on: the aggregate plus where its stream ends.
pub struct StoreContext<A> {
    pub aggregate_id: String,
    pub aggregate: A,
    pub current_sequence: u64,
    /// Hash of the event at `current_sequence` (GENESIS for an empty stream).
    pub last_hash: String,
    /// Sequence covered by the stored snapshot (0 when there is none).
    pub snapshot_sequence: u64,
}

impl<A: Aggregate> StoreContext<A> {
    /// A stream without events.
    fn empty(aggregate_id: &str) -> Self {
        Self {
            aggregate_id: aggregate_id.to_string(),
            aggregate: A::default(),
            current_sequence: 0,
            last_hash: GENESIS_HASH.to_string(),
            snapshot_sequence: 0,
        }
    }
}

impl<A: Aggregate> AggregateContext<A> for StoreContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

/// One row of the load query: the snapshot (kind 0) or an event (kind 1).
struct LoadedRow {
    kind: i32,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    hash: String,
}

impl<A: Aggregate> ChronicleStore<A> {
    pub fn new(log: EventLog, tenant: TenantId, snapshot_every: u64) -> Self {
        Self {
            pool: log.pool().clone(),
            log,
            tenant,
            snapshot_every: snapshot_every.max(1),
            _aggregate: PhantomData,
        }
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Waits for this process's turn to write stream `aggregate_id` (src/store/writers.rs).
    pub async fn writer_turn(&self, aggregate_id: &str) -> super::Turn {
        self.log.writers().turn(self.stream_key(aggregate_id)).await
    }

    /// The stream's key among this process's writer turns and remembered states.
    fn stream_key(&self, aggregate_id: &str) -> String {
        format!("{}/{}/{aggregate_id}", self.tenant, A::TYPE)
    }

    async fn fetch(
        &self,
        aggregate_id: &str,
        use_snapshot: bool,
    ) -> StoreResult<Vec<LoadedRow>, A> {
        self.fetch_until(aggregate_id, use_snapshot, None).await
    }

    /// `fetch`, stopping after event `until` (time travel): a snapshot past it is not used.
    async fn fetch_until(
        &self,
        aggregate_id: &str,
        use_snapshot: bool,
        until: Option<i64>,
    ) -> StoreResult<Vec<LoadedRow>, A> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let rows = sqlx::query(
            r#"
WITH snap AS (
    SELECT last_sequence, last_hash, payload FROM snapshots
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant_id = $3 AND $4
       AND ($5::bigint IS NULL OR last_sequence <= $5))
SELECT 0 AS kind, last_sequence AS sequence, '' AS event_type, '' AS event_version,
       payload::text AS payload, last_hash AS hash
  FROM snap
UNION ALL
SELECT 1, sequence, event_type, event_version, payload::text, metadata->>'hash'
  FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant_id = $3
   AND sequence > coalesce((SELECT last_sequence FROM snap), 0)
   AND ($5::bigint IS NULL OR sequence <= $5)"#,
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(self.tenant.0)
        .bind(use_snapshot)
        .bind(until)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let mut loaded: Vec<LoadedRow> = rows
            .into_iter()
            .map(|r| LoadedRow {
                kind: r.get("kind"),
                sequence: r.get("sequence"),
                event_type: r.get("event_type"),
                event_version: r.get("event_version"),
                payload: r.get("payload"),
                hash: r.get::<Option<String>, _>("hash").unwrap_or_default(),
            })
            .collect();
        loaded.sort_by_key(|r| (r.kind, r.sequence));
        let stored: Vec<StoredEvent<'_>> = loaded
            .iter()
            .filter(|r| r.kind == 1)
            .map(|r| StoredEvent {
                tenant_id: self.tenant.0,
                aggregate_type: A::TYPE,
                aggregate_id,
                event_type: &r.event_type,
                event_version: &r.event_version,
                payload: &r.payload,
            })
            .collect();
        let opened = stored_form::open::<A>(&mut conn, &stored).await?;
        for (row, current) in loaded.iter_mut().filter(|r| r.kind == 1).zip(opened) {
            if let Some(current) = current {
                row.payload = current;
            }
        }
        Ok(loaded)
    }

    /// Deserializes a row whose payload `fetch` has already opened (upcast to the
    /// current version, personal fields readable or `[erased]`).
    fn decode_event(row: &LoadedRow) -> StoreResult<A::Event, A> {
        serde_json::from_str(&row.payload).map_err(|e| {
            AggregateError::DeserializationError(
                format!(
                    "{} {} v{} at sequence {}: {e}",
                    A::TYPE,
                    row.event_type,
                    row.event_version,
                    row.sequence
                )
                .into(),
            )
        })
    }

    /// Folds loaded rows into a context. `None` means the snapshot did not deserialize.
    fn fold(aggregate_id: &str, rows: &[LoadedRow]) -> StoreResult<Option<StoreContext<A>>, A> {
        let mut ctx = StoreContext::empty(aggregate_id);
        for row in rows {
            if row.kind == 0 {
                match serde_json::from_str::<A>(&row.payload) {
                    Ok(state) => ctx.aggregate = state,
                    Err(err) => {
                        tracing::warn!(
                            aggregate_type = A::TYPE,
                            aggregate_id,
                            error = %err,
                            "snapshot no longer deserializes; replaying the full stream"
                        );
                        return Ok(None);
                    }
                }
                ctx.snapshot_sequence = row.sequence as u64;
            } else {
                ctx.aggregate.apply(Self::decode_event(row)?);
            }
            ctx.current_sequence = row.sequence as u64;
            ctx.last_hash = row.hash.clone();
        }
        Ok(Some(ctx))
    }

    /// The aggregate as it was after event `sequence` (time travel). The snapshot is
    /// used only when it does not reach past `sequence`; otherwise, or when it no longer
    /// deserializes, the stream is replayed from the start up to `sequence`.
    pub async fn load_at(
        &self,
        aggregate_id: &str,
        sequence: u64,
    ) -> StoreResult<StoreContext<A>, A> {
        let until = Some(sequence as i64);
        let rows = self.fetch_until(aggregate_id, true, until).await?;
        if let Some(ctx) = Self::fold(aggregate_id, &rows)? {
            return Ok(ctx);
        }
        let rows = self.fetch_until(aggregate_id, false, until).await?;
        Self::fold(aggregate_id, &rows)?.ok_or_else(|| {
            AggregateError::UnexpectedError("replay without snapshot cannot fail on one".into())
        })
    }

    /// Loads the stream without using its snapshot (the reference for tests and auditors).
    pub async fn load_full_replay(&self, aggregate_id: &str) -> StoreResult<StoreContext<A>, A> {
        let rows = self.fetch(aggregate_id, false).await?;
        Self::fold(aggregate_id, &rows)?.ok_or_else(|| {
            AggregateError::UnexpectedError("replay without snapshot cannot fail on one".into())
        })
    }

    /// Saves `ctx.aggregate` as the snapshot at `ctx.current_sequence`. Never moves a
    /// snapshot backwards, so racing writers cannot regress it; an equal sequence is
    /// rewritten, which is how an unreadable snapshot gets replaced.
    async fn save_snapshot(&self, ctx: &StoreContext<A>) -> Result<(), sqlx::Error> {
        let payload =
            serde_json::to_string(&ctx.aggregate).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            r#"
INSERT INTO snapshots (aggregate_type, aggregate_id, tenant_id, last_sequence, last_hash, payload)
VALUES ($1, $2, $3, $4, $5, $6::json)
ON CONFLICT (tenant_id, aggregate_type, aggregate_id) DO UPDATE
   SET last_sequence = excluded.last_sequence, last_hash = excluded.last_hash,
       payload = excluded.payload, taken_at = now()
 WHERE snapshots.last_sequence <= excluded.last_sequence"#,
        )
        .bind(A::TYPE)
        .bind(&ctx.aggregate_id)
        .bind(self.tenant.0)
        .bind(ctx.current_sequence as i64)
        .bind(&ctx.last_hash)
        .bind(payload)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the snapshot was saved.
    async fn save_snapshot_logged(&self, ctx: &StoreContext<A>) -> bool {
        match self.save_snapshot(ctx).await {
            Ok(()) => true,
            Err(err) => {
                // A snapshot is a cache: the events are committed, so failing here only
                // costs a longer replay next time.
                tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %ctx.aggregate_id, error = %err, "snapshot not saved");
                false
            }
        }
    }
}

impl<A: Aggregate> EventStore<A> for ChronicleStore<A> {
    type AC = StoreContext<A>;

    async fn load_events(&self, aggregate_id: &str) -> StoreResult<Vec<EventEnvelope<A>>, A> {
        let rows = self.fetch(aggregate_id, false).await?;
        rows.iter()
            .map(|row| {
                Ok(EventEnvelope {
                    aggregate_id: aggregate_id.to_string(),
                    sequence: row.sequence as usize,
                    payload: Self::decode_event(row)?,
                    metadata: HashMap::from([(keys::HASH.to_string(), row.hash.clone())]),
                })
            })
            .collect()
    }

    async fn load_aggregate(&self, aggregate_id: &str) -> StoreResult<StoreContext<A>, A> {
        let rows = self.fetch(aggregate_id, true).await?;
        if let Some(ctx) = Self::fold(aggregate_id, &rows)? {
            return Ok(ctx);
        }
        // The snapshot is unreadable (the aggregate's shape changed): rebuild from the
        // log and replace the snapshot so the next load is fast again.
        let mut ctx = self.load_full_replay(aggregate_id).await?;
        ctx.snapshot_sequence = ctx.current_sequence;
        self.save_snapshot_logged(&ctx).await;
        Ok(ctx)
    }

    /// Appends `events` after `context.current_sequence`. As with every cqrs-es store,
    /// `context.aggregate` already has these events applied (by `EventSink::write`).
    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: StoreContext<A>,
        metadata: HashMap<String, String>,
    ) -> StoreResult<Vec<EventEnvelope<A>>, A> {
        let (envelopes, _) = self.commit_advancing(events, context, metadata).await?;
        Ok(envelopes)
    }
}

impl<A: Aggregate> ChronicleStore<A> {
    /// `commit`, handing back the context advanced past the new events (with its snapshot
    /// mark moved when a snapshot was taken): the stream's state after the commit.
    pub async fn commit_advancing(
        &self,
        events: Vec<A::Event>,
        mut context: StoreContext<A>,
        metadata: HashMap<String, String>,
    ) -> StoreResult<(Vec<EventEnvelope<A>>, StoreContext<A>), A> {
        if events.is_empty() {
            return Ok((Vec::new(), context));
        }
        let payloads = stored_form::seal::<A>(
            &self.pool,
            None,
            self.tenant,
            &context.aggregate_id,
            &events,
        )
        .await?;
        let (append, envelopes) = self.prepare(events, payloads, &mut context, &metadata)?;
        self.log.append(append).await.map_err(append_error)?;
        if context.current_sequence - context.snapshot_sequence >= self.snapshot_every
            && self.save_snapshot_logged(&context).await
        {
            context.snapshot_sequence = context.current_sequence;
        }
        Ok((envelopes, context))
    }
}

impl<A: Aggregate + 'static> ChronicleStore<A> {
    /// The state a command may decide on without loading (src/store/remembered.rs): what
    /// this process last committed to the stream, else the empty stream. A presumption:
    /// the append refuses it if the stream has moved on.
    pub fn presumed(&self, aggregate_id: &str) -> StoreContext<A> {
        self.log
            .remembered()
            .take(&self.stream_key(aggregate_id))
            .unwrap_or_else(|| StoreContext::empty(aggregate_id))
    }

    /// A copy of the stream's remembered state and the sequence it ends at, if this
    /// process remembers one (it is left in place for the stream's next writer). A
    /// presumption like `presumed`: whatever is decided on it stands only once
    /// `still_ends_at` (or an append) confirms it.
    pub fn remembered_copy(&self, aggregate_id: &str) -> Option<(A, u64)>
    where
        A: Clone,
    {
        self.log
            .remembered()
            .peek(&self.stream_key(aggregate_id), |c: &StoreContext<A>| {
                (c.aggregate.clone(), c.current_sequence)
            })
    }

    /// Whether the stream has no event after `sequence`: one index probe, what a decision
    /// on a remembered state that appends nothing is checked with.
    pub async fn still_ends_at(&self, aggregate_id: &str, sequence: u64) -> StoreResult<bool, A> {
        sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM events WHERE tenant_id = $1 AND aggregate_type = $2
                                   AND aggregate_id = $3 AND sequence > $4)",
        )
        .bind(self.tenant.0)
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(sequence as i64)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)
    }

    /// Remembers `context`, the stream's state as of a commit or a load, for the stream's
    /// next `presumed`. Never for aggregates with personal data.
    pub fn remember(&self, context: StoreContext<A>) {
        if crate::privacy::fields::holds_personal_data(A::TYPE) {
            return;
        }
        let key = self.stream_key(&context.aggregate_id);
        self.log.remembered().keep(key, context);
    }
}

impl<A: Aggregate> ChronicleStore<A> {
    /// Like `commit`, but inside the caller's transaction, so other writes (a credential,
    /// an idempotency record) commit or roll back together with the events. No snapshot
    /// is taken here (the transaction may still roll back).
    pub async fn commit_in(
        &self,
        conn: &mut sqlx::PgConnection,
        events: Vec<A::Event>,
        mut context: StoreContext<A>,
        metadata: HashMap<String, String>,
    ) -> StoreResult<Vec<EventEnvelope<A>>, A> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let payloads = stored_form::seal::<A>(
            &self.pool,
            Some(&mut *conn),
            self.tenant,
            &context.aggregate_id,
            &events,
        )
        .await?;
        let (append, envelopes) = self.prepare(events, payloads, &mut context, &metadata)?;
        super::event_log::insert(&mut *conn, &[&append])
            .await
            .map_err(|e| append_error(super::event_log::classify(e)))?;
        if let Some(marker) = &append.idempotency {
            super::idempotency::mark_committed(conn, &[marker])
                .await
                .map_err(|e| {
                    append_error(match e {
                        super::idempotency::MarkError::Database(e) => super::event_log::classify(e),
                        super::idempotency::MarkError::TakenOver => AppendError::KeyTakenOver,
                    })
                })?;
        }
        Ok(envelopes)
    }

    /// Canonical payloads, metadata, the hash chain (version 2: who and when included)
    /// and the commit's signature for `events` (whose stored forms are `payloads`);
    /// advances `context`.
    fn prepare(
        &self,
        events: Vec<A::Event>,
        payloads: Vec<serde_json::Value>,
        context: &mut StoreContext<A>,
        metadata: &HashMap<String, String>,
    ) -> StoreResult<(StreamAppend, Vec<EventEnvelope<A>>), A> {
        let tenant = self.tenant.to_string();
        if metadata.get(keys::TENANT_ID).is_some_and(|t| *t != tenant) {
            return Err(AggregateError::UnexpectedError(
                "metadata names another tenant than the store".into(),
            ));
        }
        // One instant for the whole commit, written by us (not defaulted by the
        // database after hashing), at the precision Postgres stores.
        let recorded_at = Utc::now().trunc_subsecs(6);
        let recorded_text = timestamp_text(recorded_at);
        let mut base: BTreeMap<String, String> = metadata.clone().into_iter().collect();
        for key in [
            keys::ACTOR,
            keys::REQUEST_ID,
            keys::CORRELATION_ID,
            keys::CAUSATION_ID,
        ] {
            base.entry(key.into()).or_default();
        }
        base.insert(keys::TENANT_ID.into(), tenant.clone());
        base.insert(keys::HASH_VERSION.into(), HASH_VERSION_2.into());
        base.remove(keys::SIGNATURE);
        base.remove(keys::SIGNATURE_KEY);
        let who = Attribution {
            recorded_at: &recorded_text,
            actor: &base[keys::ACTOR],
            request_id: &base[keys::REQUEST_ID],
            correlation_id: &base[keys::CORRELATION_ID],
            causation_id: &base[keys::CAUSATION_ID],
        };
        let n = events.len();
        let mut append = StreamAppend {
            tenant_id: self.tenant.0,
            aggregate_type: A::TYPE.to_string(),
            aggregate_id: context.aggregate_id.clone(),
            recorded_at: Some(recorded_at),
            idempotency: super::idempotency::current(),
            ..StreamAppend::default()
        };
        let mut envelopes = Vec::with_capacity(n);
        let mut prev_hash = context.last_hash.clone();
        for (i, (event, value)) in events.into_iter().zip(payloads).enumerate() {
            let sequence = context.current_sequence + 1 + i as u64;
            if !integers_only(&value) {
                return Err(AggregateError::UnexpectedError(
                    format!("{} payload with a non-integer number", A::TYPE).into(),
                ));
            }
            // The hash covers the stored form: ciphertext for personal fields, so
            // destroying a key never breaks the chain.
            let payload = canonical_json(&value);
            let event_type = event.event_type();
            let event_version = event.event_version();
            let hash = event_hash_v2(
                &HashInput {
                    tenant_id: &tenant,
                    aggregate_type: A::TYPE,
                    aggregate_id: &context.aggregate_id,
                    sequence,
                    event_type: &event_type,
                    event_version: &event_version,
                    payload: &payload,
                    prev_hash: &prev_hash,
                },
                &who,
            );
            let mut meta = base.clone();
            // The last event of the commit carries its signature; the chain vouches
            // for the events before it.
            if let Some(signer) = self.log.signer().filter(|_| i + 1 == n) {
                let digest = hex::decode(&hash).expect("our own hex");
                meta.insert(keys::SIGNATURE_KEY.into(), signer.id().to_string());
                meta.insert(keys::SIGNATURE.into(), signer.sign(&digest));
            }
            meta.insert(
                keys::PREV_HASH.into(),
                std::mem::replace(&mut prev_hash, hash.clone()),
            );
            meta.insert(keys::HASH.into(), hash);
            append
                .metadata
                .push(serde_json::to_string(&meta).expect("string map serializes"));
            envelopes.push(EventEnvelope {
                aggregate_id: context.aggregate_id.clone(),
                sequence: sequence as usize,
                payload: event,
                metadata: meta.into_iter().collect(),
            });
            append.sequences.push(sequence as i64);
            append.event_types.push(event_type);
            append.event_versions.push(event_version);
            append.payloads.push(payload);
        }
        context.current_sequence += n as u64;
        context.last_hash = prev_hash;
        Ok((append, envelopes))
    }
}

fn append_error<E: std::error::Error>(err: AppendError) -> AggregateError<E> {
    match err {
        AppendError::Conflict => AggregateError::AggregateConflict,
        other => AggregateError::DatabaseConnectionError(Box::new(other)),
    }
}

pub(super) fn db_error<E: std::error::Error>(err: sqlx::Error) -> AggregateError<E> {
    AggregateError::DatabaseConnectionError(Box::new(err))
}
