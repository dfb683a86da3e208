//! `GET /v1/files` (search, filters, sorts, keyset pagination) and `GET /v1/tags`; the
//! reads are `queries::listing`. A listing is answered from memory when this instance
//! remembers it under the tenant's current listing epoch (src/cache/listing.rs).

use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::api::edge::extract::{ApiQuery, NoParams};
use crate::api::edge::read_routing::Fresh;
use crate::auth::FileReader;
use crate::auth::policy;
use crate::cache::listing::{Answer, ListingKey};
use crate::cache::standing::PrefetchedEpoch;
use crate::error::{AppError, ErrorBody};
use crate::queries::listing::{FilePage, ListParams, TagCount, list_files, tags_of};
use crate::state::AppState;

/// Files the caller may see, newest first unless sorted otherwise, one page at a time.
#[utoipa::path(get, path = "/v1/files", tag = "files", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = FilePage), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    FileReader(ctx): FileReader,
    Fresh(fresh): Fresh,
    prefetched: Option<Extension<PrefetchedEpoch>>,
    uri: Uri,
) -> Result<Response, AppError> {
    let (mut params, tags) = ApiQuery::<ListParams>::from_uri_split(&uri, "tag")?;
    params.tag = tags;
    // Remembered per instance under the tenant's listing epoch (src/cache/listing.rs);
    // the key holds everything of the caller that `list_files` reads.
    let key = ListingKey {
        tenant: ctx.tenant_id.0,
        answer: Answer::Page {
            viewer: ctx.user_id.0,
            role: ctx.role.as_str(),
            reads_every_file: policy::reads_every_file(&ctx),
            query: uri.query().unwrap_or_default().to_string(),
        },
    };
    let epoch = prefetched
        .filter(|p| p.tenant == key.tenant)
        .map(|p| p.0.listing);
    let listings = state.listings.clone();
    let body = listings
        .serve(key, epoch, fresh, move |fresh| async move {
            let page = list_files(&state, ctx, fresh, params).await?;
            Ok(serde_json::to_vec(&page)
                .map_err(|e| AppError::Internal(e.into()))?
                .into())
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Tags with the number of files carrying them, by name. A `user` counts only its own
/// files (other users' tags would reveal their files); admins and auditors the tenant's.
#[utoipa::path(get, path = "/v1/tags", tag = "files", security(("bearer" = [])),
    params(NoParams),
    responses((status = 200, body = [TagCount]), (status = 401, body = ErrorBody)))]
pub async fn tags(
    State(state): State<AppState>,
    FileReader(ctx): FileReader,
    Fresh(fresh): Fresh,
    _: ApiQuery<NoParams>,
) -> Result<Json<Vec<TagCount>>, AppError> {
    Ok(Json(tags_of(&state, ctx, fresh).await?))
}
