//! `/v1/webhooks`: an admin's webhook endpoints (docs/webhooks.md) — create (the secret
//! is in this answer only), list, read, change, delete — and each endpoint's delivery
//! log with manual redelivery. Admins only (`Admin`); the tenant comes from the token.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregates::WebhookEndpoint;
use crate::api::edge::caller::caller_metadata;
use crate::api::edge::extract::{ApiPath, ApiQuery};
use crate::api::edge::json::JsonBody;
use crate::auth::Admin;
use crate::commands::webhooks::{Webhooks, redeliver as redeliver_delivery};
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;
use crate::webhooks::AddressPolicy;
use crate::webhooks::read::{self, DeliveryView, EndpointView};

fn use_cases<'a>(state: &'a AppState, policy: &'a AddressPolicy) -> Webhooks<'a> {
    Webhooks {
        db: &state.db,
        events: &state.events,
        snapshot_every: state.config.snapshot_every,
        policy,
    }
}

fn policy(state: &AppState) -> AddressPolicy {
    AddressPolicy::new(state.config.webhooks.allow_networks.clone())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// `http` or `https`; refused when it or its host's addresses are loopback, private,
    /// link-local … (unless allowlisted in configuration).
    #[schema(example = "https://hooks.example.com/chronicle")]
    pub url: String,
    /// Event types to deliver, e.g. `FileCreated`; `*` for all.
    #[schema(example = json!(["FileCreated", "VersionCompleted"]))]
    pub event_types: Vec<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Enable (deliveries resume in order) or disable the endpoint.
    pub enabled: Option<bool>,
}

/// An endpoint as its stream says it is now (never lagging a change just made).
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointState {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedEndpoint {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// The signing secret (`whsec_…`), shown this once: verify `webhook-signature` with
    /// it (Standard Webhooks).
    pub secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    /// Newest event first.
    pub items: Vec<DeliveryView>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only deliveries of events before this position (the last item's `position`).
    #[param(minimum = 0)]
    pub before: Option<i64>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

fn state_view(id: Uuid, e: WebhookEndpoint) -> EndpointState {
    EndpointState {
        id,
        url: e.url,
        event_types: e.event_types,
        enabled: e.enabled,
    }
}

/// Admin: register a webhook endpoint. Deliveries start with events committed after it.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = NewEndpoint,
    responses((status = 201, body = CreatedEndpoint), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewEndpoint>,
) -> Result<(StatusCode, Json<CreatedEndpoint>), AppError> {
    let policy = policy(&state);
    let meta = caller_metadata(&ctx, &headers);
    let created = use_cases(&state, &policy)
        .create(&meta, &body.url, body.event_types)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint {
            id: created.id,
            url: created.endpoint.url,
            event_types: created.endpoint.event_types,
            enabled: created.endpoint.enabled,
            secret: created.secret.expose(),
        }),
    ))
}

/// Admin: the tenant's endpoints.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = EndpointList), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Admin(ctx): Admin,
) -> Result<Json<EndpointList>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let items = read::endpoints(&mut tx, ctx.tenant_id.0).await?;
    tx.commit().await?;
    Ok(Json(EndpointList { items }))
}

/// Admin: one endpoint (as projected; a change just made may take a moment to show).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "endpoint id")),
    responses((status = 200, body = EndpointView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<EndpointView>, AppError> {
    let mut tx = ctx.begin(&state.db).await?;
    let found = read::endpoint(&mut tx, ctx.tenant_id.0, id).await?;
    tx.commit().await?;
    found
        .map(Json)
        .ok_or_else(|| AppError::NotFound("webhook endpoint not found".into()))
}

/// Admin: change the URL, the event types, or enable/disable.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "endpoint id")), request_body = EndpointChange,
    responses((status = 200, body = EndpointState), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    JsonBody(body): JsonBody<EndpointChange>,
) -> Result<Json<EndpointState>, AppError> {
    let policy = policy(&state);
    let meta = caller_metadata(&ctx, &headers);
    let endpoint = use_cases(&state, &policy)
        .update(
            &meta,
            id,
            body.url.as_deref(),
            body.event_types,
            body.enabled,
        )
        .await?;
    Ok(Json(state_view(id, endpoint)))
}

/// Admin: delete an endpoint and its secret; undelivered events are dropped.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "endpoint id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, AppError> {
    let policy = policy(&state);
    let meta = caller_metadata(&ctx, &headers);
    use_cases(&state, &policy).delete(&meta, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Admin: the endpoint's delivery log — status, attempts, last response code, latency
/// and error — newest event first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "endpoint id"), DeliveryParams),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(p): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryList>, AppError> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::BadRequest(
            "limit must be between 1 and 200".into(),
        ));
    }
    if p.before.is_some_and(|b| b < 0) {
        return Err(AppError::BadRequest("before must not be negative".into()));
    }
    let mut tx = ctx.begin(&state.db).await?;
    let items = read::deliveries(&mut tx, ctx.tenant_id.0, id, p.before, i64::from(limit)).await?;
    tx.commit().await?;
    Ok(Json(DeliveryList { items }))
}

/// Admin: send a delivery again (it goes out in its place in the endpoint's order).
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "endpoint id"), ("delivery_id" = Uuid, Path, description = "delivery id")),
    responses((status = 202), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn redeliver(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    ApiPath((id, delivery)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, AppError> {
    redeliver_delivery(&state.db, ctx.tenant_id, id, delivery).await?;
    Ok(StatusCode::ACCEPTED)
}
