//! API key use cases: create (the secret is made here and leaves only in the answer)
//! and revoke. Who may call them is the handler's `KeyManager` (src/auth/policy.rs).

use uuid::Uuid;

use super::execute;
use crate::aggregates::{ApiKey, ApiKeyCommand, ApiKeyError, Role};
use crate::auth::api_keys::PresentedKey;
use crate::auth::scopes::Scope;
use crate::error::AppError;
use crate::ids::{TenantId, UserId};
use crate::store::{ChronicleStore, EventMetadata};

/// What an admin asks for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub scopes: Option<Vec<Scope>>,
    pub expires_at: Option<i64>,
}

/// A key just created: its id, the whole key (shown once), and its state.
pub struct CreatedKey {
    pub id: Uuid,
    pub key: String,
    pub prefix: String,
    pub state: ApiKey,
}

/// Creates a key of `tenant` for `new`, made by admin `creator`.
pub async fn create(
    store: &ChronicleStore<ApiKey>,
    tenant: TenantId,
    creator: UserId,
    new: NewKey,
    meta: &EventMetadata,
) -> Result<CreatedKey, AppError> {
    let id = Uuid::now_v7();
    let key = PresentedKey::generate(tenant.0, id);
    let command = ApiKeyCommand::Create {
        name: new.name,
        role: new.role,
        scopes: new.scopes,
        expires_at: new.expires_at,
        created_by: creator,
        secret_hash: key.hash(),
        prefix: key.display_prefix(),
        now: chrono::Utc::now().timestamp(),
    };
    let done = execute(store, &id.to_string(), command, meta, &()).await?;
    Ok(CreatedKey {
        id,
        key: key.expose(),
        prefix: key.display_prefix(),
        state: done.aggregate,
    })
}

/// Revokes key `id`: refused from the next request on. Revoking a revoked key is a
/// no-op; an unknown one (or another tenant's: the store is the caller's) is 404.
pub async fn revoke(
    store: &ChronicleStore<ApiKey>,
    id: Uuid,
    meta: &EventMetadata,
) -> Result<(), AppError> {
    execute(store, &id.to_string(), ApiKeyCommand::Revoke, meta, &()).await?;
    Ok(())
}

impl From<ApiKeyError> for AppError {
    fn from(err: ApiKeyError) -> Self {
        match err {
            ApiKeyError::NotFound => AppError::NotFound(err.to_string()),
            ApiKeyError::AlreadyExists => AppError::AlreadyExists(err.to_string()),
            ApiKeyError::Invalid { .. } => AppError::Validation(err.to_string()),
        }
    }
}
