//! Sharing routes (docs/sharing.md): grants (`/v1/files/{id}/grants/...`), legal holds
//! (`/v1/files/{id}/hold`), links (`/v1/files/{id}/links`, and `GET /l/{token}`, the one
//! route a link's holder calls without an account). Handlers parse, call one use case
//! of src/commands/sharing.rs, and render.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregates::Role;
use crate::aggregates::file::{Access, Grantee};
use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::api::edge::json::JsonBody;
use crate::api::files::download::{Disposition, representation_for_link, serve};
use crate::auth::TenantContext;
use crate::commands::sharing::{self as uc, NewLink};
use crate::error::{AppError, ErrorBody};
use crate::queries::sharing::{
    LinkView, SharingView, grants_of, link_view, links_of, sharing_view,
};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// `viewer` (reads) or `editor` (also renames, tags, uploads versions).
    #[schema(pattern = "^(viewer|editor)$")]
    pub access: String,
}

fn parse_access(text: &str) -> Result<Access, AppError> {
    match text {
        "viewer" => Ok(Access::Viewer),
        "editor" => Ok(Access::Editor),
        _ => Err(AppError::Validation(
            "invalid access: must be viewer or editor".into(),
        )),
    }
}

/// A role path segment; anything else names no grantee (404).
fn parse_role(text: &str) -> Result<Role, AppError> {
    match text {
        "user" => Ok(Role::User),
        "admin" => Ok(Role::Admin),
        "auditor" => Ok(Role::Auditor),
        _ => Err(AppError::NotFound("no such role".into())),
    }
}

/// The grants and legal hold of a file: its owner, admins and auditors.
#[utoipa::path(get, path = "/v1/files/{id}/grants", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id")),
    responses((status = 200, body = SharingView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn grants(
    State(state): State<AppState>,
    ctx: TenantContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<SharingView>, AppError> {
    Ok(Json(grants_of(&state, &ctx, id).await?))
}

/// Share the file with a user of the tenant (owner or admin). Sharing again changes
/// the access. The grantee is notified. A user of another tenant is 404.
#[utoipa::path(put, path = "/v1/files/{id}/grants/users/{user_id}", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), ("user_id" = Uuid, Path, description = "grantee")),
    request_body = GrantRequest,
    responses((status = 200, body = SharingView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn share_user(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath((id, user)): ApiPath<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<GrantRequest>,
) -> Result<Json<SharingView>, AppError> {
    let access = parse_access(&body.access)?;
    let meta = caller_metadata(&ctx, &headers);
    let file = uc::share(&state, &ctx, &meta, id, uc::user_grantee(user), access).await?;
    Ok(Json(sharing_view(id, &file)))
}

/// Share the file with every holder of a role (`user`, `admin`, `auditor`).
#[utoipa::path(put, path = "/v1/files/{id}/grants/roles/{role}", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), ("role" = String, Path, pattern = "^(user|admin|auditor)$", description = "role")),
    request_body = GrantRequest,
    responses((status = 200, body = SharingView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn share_role(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath((id, role)): ApiPath<(Uuid, String)>,
    JsonBody(body): JsonBody<GrantRequest>,
) -> Result<Json<SharingView>, AppError> {
    let role = parse_role(&role)?;
    let access = parse_access(&body.access)?;
    let meta = caller_metadata(&ctx, &headers);
    let file = uc::share(&state, &ctx, &meta, id, Grantee::Role(role), access).await?;
    Ok(Json(sharing_view(id, &file)))
}

/// Revoke a user's grant (owner or admin). Takes effect on the grantee's next request.
#[utoipa::path(delete, path = "/v1/files/{id}/grants/users/{user_id}", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), ("user_id" = Uuid, Path, description = "grantee")),
    responses((status = 200, body = SharingView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn unshare_user(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath((id, user)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<SharingView>, AppError> {
    let meta = caller_metadata(&ctx, &headers);
    let file = uc::unshare(&state, &ctx, &meta, id, uc::user_grantee(user)).await?;
    Ok(Json(sharing_view(id, &file)))
}

/// Revoke a role's grant (owner or admin).
#[utoipa::path(delete, path = "/v1/files/{id}/grants/roles/{role}", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), ("role" = String, Path, pattern = "^(user|admin|auditor)$", description = "role")),
    responses((status = 200, body = SharingView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn unshare_role(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath((id, role)): ApiPath<(Uuid, String)>,
) -> Result<Json<SharingView>, AppError> {
    let role = parse_role(&role)?;
    let meta = caller_metadata(&ctx, &headers);
    let file = uc::unshare(&state, &ctx, &meta, id, Grantee::Role(role)).await?;
    Ok(Json(sharing_view(id, &file)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// Why the file is held (1–1000 bytes), kept in the file's history.
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub reason: String,
}

/// Place a legal hold (auditors and admins): until released, delete, purge and version
/// retention are refused with `409 legal_hold` for everyone, and the file's bytes stay.
/// A file already held is `409 legal_hold`.
#[utoipa::path(put, path = "/v1/files/{id}/hold", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id")), request_body = HoldRequest,
    responses((status = 200, body = SharingView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn hold(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    JsonBody(body): JsonBody<HoldRequest>,
) -> Result<Json<SharingView>, AppError> {
    let meta = caller_metadata(&ctx, &headers);
    let file = uc::place_hold(&state, &ctx, &meta, id, body.reason).await?;
    Ok(Json(sharing_view(id, &file)))
}

/// Release the legal hold (auditors and admins); a no-op when the file is not held.
#[utoipa::path(delete, path = "/v1/files/{id}/hold", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id")),
    responses((status = 200, body = SharingView), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<SharingView>, AppError> {
    let meta = caller_metadata(&ctx, &headers);
    let file = uc::release_hold(&state, &ctx, &meta, id).await?;
    Ok(Json(sharing_view(id, &file)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// When the link stops working (RFC 3339, in the future, at most 365 days ahead).
    pub expires_at: DateTime<Utc>,
    /// A fixed version; default: whatever version is current at each download.
    #[schema(minimum = 1)]
    pub version_number: Option<u32>,
    /// Required from whoever uses the link (`?password=` or `X-Link-Password`).
    #[schema(min_length = 1, max_length = 256)]
    pub password: Option<String>,
    /// The link stops after this many downloads.
    #[schema(minimum = 1)]
    pub max_downloads: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedLink {
    #[serde(flatten)]
    pub link: LinkView,
    /// The token; shown once, never again (the server keeps only its hash).
    pub token: String,
    /// `/l/<token>`, relative to the API's origin.
    pub url: String,
}

/// Create a link to the file (owner or admin): it works without an account until it
/// expires, is revoked or reaches its download limit.
#[utoipa::path(post, path = "/v1/files/{id}/links", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id")), request_body = LinkRequest,
    responses((status = 201, body = CreatedLink), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_link(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    JsonBody(body): JsonBody<LinkRequest>,
) -> Result<(StatusCode, Json<CreatedLink>), AppError> {
    let meta = caller_metadata(&ctx, &headers);
    let new = NewLink {
        version_number: body.version_number,
        expires_at: body.expires_at,
        password: body.password,
        max_downloads: body.max_downloads,
    };
    let (link, token) = uc::create_link(&state, &ctx, &meta, id, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedLink {
            link: link_view(&link, 0),
            url: format!("/l/{token}"),
            token,
        }),
    ))
}

/// The file's links, revoked ones included (owner, admins, auditors).
#[utoipa::path(get, path = "/v1/files/{id}/links", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id")),
    responses((status = 200, body = [LinkView]), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn links(
    State(state): State<AppState>,
    ctx: TenantContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<LinkView>>, AppError> {
    Ok(Json(links_of(&state, &ctx, id).await?))
}

/// Revoke a link (owner or admin); the next request with it is 404.
#[utoipa::path(delete, path = "/v1/files/{id}/links/{link_id}", tag = "sharing", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "file id"), ("link_id" = Uuid, Path, description = "link id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_link(
    State(state): State<AppState>,
    ctx: TenantContext,
    headers: HeaderMap,
    ApiPath((id, link_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, AppError> {
    let meta = caller_metadata(&ctx, &headers);
    uc::revoke_link(&state, &ctx, &meta, id, link_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkParams {
    /// The link's password, if it has one (or the `X-Link-Password` header, which
    /// keeps it out of logs and browser history).
    #[param(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub password: Option<String>,
}

const PASSWORD_HEADER: &str = "x-link-password";

/// Download through a link: no `Authorization` needed. The same bytes, `ETag`, `Range`
/// and `If-None-Match` handling as `/v1/files/{id}/content`; every request the link
/// answers (a `304` or a range included) counts as a download. An unknown, expired, revoked or exhausted link, and a
/// missing or wrong password, all answer the same `404`.
#[utoipa::path(get, path = "/l/{token}", tag = "sharing",
    params(("token" = String, Path, pattern = "^[A-Za-z0-9_-]{1,128}$", description = "the link's token"), LinkParams),
    responses((status = 200, description = "the bytes"), (status = 206), (status = 304),
        (status = 404, body = ErrorBody), (status = 416)))]
pub async fn download(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    ApiQuery(params): ApiQuery<LinkParams>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let password = headers
        .get(PASSWORD_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(params.password);
    let opened = uc::open_link(&state, &token, password).await?;
    let served = representation_for_link(&opened.version);
    serve(&state, &headers, &served, Disposition::Attachment).await
}
