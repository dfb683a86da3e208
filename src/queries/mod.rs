//! The read side that every surface shares: what the JSON API's `GET`s answer and what
//! the console's pages render, one module per resource. A query takes the caller (a
//! `TenantContext`, or a role type such as `AuditorOrAdmin` where only some roles may
//! read), checks what the caller may see with the one policy (src/auth/policy.rs), reads
//! the read tables under row-level security (or the log, where the answer must not lag
//! it), and returns a typed view. Handlers in `api/` and pages in `console/` only parse,
//! call one of these, and render; changes of state are `commands/`.

pub mod audit;
pub mod cursor;
pub mod devices;
pub mod files;
pub mod history;
pub mod jobs;
pub mod listing;
pub mod notifications;
pub mod sessions;
pub mod sharing;
pub mod usage;

use crate::error::AppError;

/// Page size when a listing names none.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page a listing serves.
pub const MAX_LIMIT: u32 = 200;

/// A page size: `DEFAULT_LIMIT` when absent, else 1..=`MAX_LIMIT` or 400.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, AppError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(limit)
}
