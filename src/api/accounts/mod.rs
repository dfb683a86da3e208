//! Accounts: sign-up, sign-in and tokens, invitations, the caller's own profile, other
//! users (roles, bans, erasure), sessions, devices, API keys and the tenant's storage usage.

pub(crate) mod api_keys;
pub(crate) mod auth;
pub(crate) mod devices;
pub(crate) mod erase;
pub(crate) mod sessions;
pub(crate) mod usage;
pub(crate) mod users;

use axum::Router;
use axum::routing::{delete, get, post, put};

use crate::api::edge::ratelimit::RateLimitLayer;
use crate::state::AppState;

pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(
            // Password guessing and token grinding get a stricter per-IP budget.
            Router::new()
                .route("/v1/auth/register", post(auth::register))
                .route("/v1/auth/login", post(auth::login))
                .route("/v1/auth/refresh", post(auth::refresh))
                .route_layer(RateLimitLayer::auth(state)),
        )
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/tenants/current/invitations", post(auth::invite))
        .route("/v1/tenants/current/usage", get(usage::usage))
        .route("/v1/me", get(users::me))
        .route("/v1/users/{id}/role", put(users::set_role))
        .route("/v1/users/{id}/ban", post(users::ban))
        .route("/v1/users/{id}/unban", post(users::unban))
        .route("/v1/users/{id}/erase", post(erase::erase))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/sessions/{id}", delete(sessions::revoke))
        .route("/v1/devices", get(devices::list))
        .route("/v1/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/v1/api-keys/{id}", delete(api_keys::revoke))
}
