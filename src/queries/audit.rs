//! The audit log as auditors read it (the API's `/v1/audit` and `/v1/audit/verify`, the
//! console's audit pages): filtered pages of `audit_logs`, newest first, with signed
//! cursors, and the verify report of the caller's tenant. Roles `auditor` and `admin`
//! only, which the `AuditorOrAdmin` each read takes says; the tenant always comes from
//! the caller.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::auth::AuditorOrAdmin;
use crate::error::AppError;
use crate::queries::cursor::CursorKey;
use crate::queries::page_limit;
use crate::state::AppState;
use crate::store::trust::{Trust, is_digest};
use crate::store::verify::{VerifyReport, verify_log};

/// Longest accepted text filter; longer values can match nothing.
const MAX_FILTER_LEN: usize = 255;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// A user id, `key:<API key id>` or `system:<component>`.
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub actor: Option<String>,
    /// e.g. `file.renamed`.
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub action: Option<String>,
    /// Aggregate type, e.g. `file`.
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub target_type: Option<String>,
    /// Aggregate id; requires `target_type`.
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub target_id: Option<String>,
    /// Entries at or after this instant (RFC 3339; write `+` as `%2B`).
    pub from: Option<DateTime<Utc>>,
    /// Entries before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Any JSON value (no `type` in the schema).
fn any_json() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .build()
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The event's global position.
    pub id: i64,
    pub actor: String,
    /// user, worker or system.
    pub actor_type: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// The event's sequence in its stream.
    pub sequence: i64,
    #[schema(value_type = Object)]
    /// The event's payload: an object, or a string for an event without fields.
    #[schema(schema_with = any_json)]
    pub details: serde_json::Value,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// Non-empty text filters only; too long is a bad request.
fn text_filter(name: &str, value: Option<String>) -> Result<Option<String>, AppError> {
    match value.filter(|v| !v.is_empty()) {
        Some(v) if v.len() > MAX_FILTER_LEN => Err(AppError::BadRequest(format!(
            "{name} is longer than {MAX_FILTER_LEN} bytes"
        ))),
        other => Ok(other),
    }
}

pub(crate) fn check_range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    names: (&str, &str),
) -> Result<(), AppError> {
    match (from, to) {
        (Some(f), Some(t)) if f >= t => Err(AppError::Validation(format!(
            "{} must be before {}",
            names.0, names.1
        ))),
        _ => Ok(()),
    }
}

/// Audit cursors carry `audit:<created_at µs>:<id>`, signed like file cursors (the
/// prefix keeps one kind from being accepted as the other).
pub(crate) fn encode_cursor(key: &CursorKey, tenant: Uuid, at: DateTime<Utc>, id: i64) -> String {
    key.seal(tenant, &format!("audit:{}:{id}", at.timestamp_micros()))
}

pub(crate) fn decode_cursor(
    key: &CursorKey,
    tenant: Uuid,
    cursor: &str,
) -> Result<(DateTime<Utc>, i64), AppError> {
    let invalid = || AppError::BadRequest("invalid cursor".into());
    let text = key.open(tenant, cursor)?;
    let rest = text.strip_prefix("audit:").ok_or_else(invalid)?;
    let (micros, id) = rest.split_once(':').ok_or_else(invalid)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    Ok((at, id.parse().map_err(|_| invalid())?))
}

/// The tenant's audit log, newest first, filtered, one page at a time (`fresh`: read the
/// primary, not a replica).
pub(crate) async fn audit_log(
    state: &AppState,
    AuditorOrAdmin(ctx): &AuditorOrAdmin,
    fresh: bool,
    p: AuditParams,
) -> Result<AuditPage, AppError> {
    let limit = page_limit(p.limit)?;
    let actor = text_filter("actor", p.actor)?;
    let action = text_filter("action", p.action)?;
    let target_type = text_filter("target_type", p.target_type)?;
    let target_id = text_filter("target_id", p.target_id)?;
    if target_id.is_some() && target_type.is_none() {
        return Err(AppError::Validation(
            "target_id requires target_type".into(),
        ));
    }
    check_range(p.from, p.to, ("from", "to"))?;
    let key = CursorKey::new(state.config.jwt_secret.expose());
    let tenant = ctx.tenant_id.0;
    let cursor = p
        .cursor
        .as_deref()
        .map(|c| decode_cursor(&key, tenant, c))
        .transpose()?;

    // Built per attempt: a read that failed on a replica runs again on the primary.
    let build = || {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id, actor, actor_type, action, target_type, target_id, sequence,
                    details, request_id, correlation_id, created_at
               FROM audit_logs WHERE tenant_id = ",
        );
        q.push_bind(tenant);
        for (column, value) in [
            ("actor", &actor),
            ("action", &action),
            ("target_type", &target_type),
            ("target_id", &target_id),
        ] {
            if let Some(v) = value {
                q.push(format_args!(" AND {column} = "))
                    .push_bind(v.clone());
            }
        }
        if let Some(from) = p.from {
            q.push(" AND created_at >= ").push_bind(from);
        }
        if let Some(to) = p.to {
            q.push(" AND created_at < ").push_bind(to);
        }
        if let Some((at, id)) = cursor {
            q.push(" AND (created_at, id) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        q
    };

    let mut items = state
        .reads
        .read(fresh, |pool| {
            let mut q = build();
            async move {
                let mut tx = ctx.begin(&pool).await?;
                let items = q.build_query_as::<AuditEntry>().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                Ok(items)
            }
        })
        .await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|e| encode_cursor(&key, tenant, e.created_at, e.id))
    } else {
        None
    };
    Ok(AuditPage { items, next_cursor })
}

#[derive(Debug, Serialize)]
pub struct VerifyAnswer {
    /// No broken link and every checkpoint holds.
    pub intact: bool,
    #[serde(flatten)]
    pub report: VerifyReport,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// The digest of a checkpoint recorded at an earlier audit (64 lowercase hex): the
    /// report has a `checkpoint_rollback` break when it is no longer in the chain.
    #[param(pattern = "^[0-9a-f]{64}$")]
    pub trusted_digest: Option<String>,
}

/// The verify report of the caller's tenant (docs/audit.md).
pub(crate) async fn verify_chain(
    state: &AppState,
    AuditorOrAdmin(ctx): &AuditorOrAdmin,
    p: VerifyParams,
) -> Result<VerifyAnswer, AppError> {
    let mut trust = Trust::from_config(&state.config);
    if let Some(digest) = p.trusted_digest {
        if !is_digest(&digest) {
            return Err(AppError::BadRequest(
                "trusted_digest must be 64 lowercase hex characters".into(),
            ));
        }
        trust.pinned_digests.push(digest);
    }
    let report = verify_log(&state.db, Some(ctx.tenant_id), &trust).await?;
    Ok(VerifyAnswer {
        intact: report.is_intact(),
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn audit_cursors_round_trip_and_refuse_tampering_and_file_cursors() {
        let key = CursorKey::new("secret");
        let tenant = Uuid::now_v7();
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let cursor = encode_cursor(&key, tenant, at, 42);
        assert_eq!(decode_cursor(&key, tenant, &cursor).unwrap(), (at, 42));
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        bytes[8] ^= 1;
        assert!(decode_cursor(&key, tenant, &URL_SAFE_NO_PAD.encode(&bytes)).is_err());
        assert!(
            decode_cursor(&key, Uuid::now_v7(), &cursor).is_err(),
            "another tenant"
        );
        // A validly signed payload without the audit prefix (a files cursor's shape).
        let other = key.seal(tenant, "1:42");
        assert!(decode_cursor(&key, tenant, &other).is_err());
        assert!(decode_cursor(&key, tenant, "").is_err());
    }
}
