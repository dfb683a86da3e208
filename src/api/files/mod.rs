//! Files once they exist: reading one and its versions, the listing, managing (rename,
//! tags, trash, restore, bulk), downloads, and sharing (grants, legal holds, links).
//! Creating files and versions is `uploads`.

pub(crate) mod download;
pub(crate) mod list;
pub(crate) mod manage;
pub(crate) mod sharing;
pub(crate) mod show;

use axum::Router;
use axum::routing::{delete, get, post, put};

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/files", get(list::list))
        .route(
            "/v1/files/{id}",
            get(show::get).patch(manage::rename).delete(manage::delete),
        )
        .route("/v1/files/{id}/versions", get(show::versions))
        .route(
            "/v1/files/{id}/tags/{tag}",
            put(manage::tag).delete(manage::untag),
        )
        .route("/v1/files/{id}/restore", post(manage::restore))
        .route(
            "/v1/files/{id}/versions/{n}/restore",
            post(manage::restore_version),
        )
        .route("/v1/files/bulk", post(manage::bulk))
        .route("/v1/tags", get(list::tags))
        .route("/v1/files/{id}/content", get(download::current))
        .route(
            "/v1/files/{id}/versions/{n}/content",
            get(download::version),
        )
        .route("/v1/files/{id}/thumbnail", get(download::thumbnail))
        // Sharing (docs/sharing.md).
        .route("/v1/files/{id}/grants", get(sharing::grants))
        .route(
            "/v1/files/{id}/grants/users/{user_id}",
            put(sharing::share_user).delete(sharing::unshare_user),
        )
        .route(
            "/v1/files/{id}/grants/roles/{role}",
            put(sharing::share_role).delete(sharing::unshare_role),
        )
        .route(
            "/v1/files/{id}/hold",
            put(sharing::hold).delete(sharing::release),
        )
        .route(
            "/v1/files/{id}/links",
            get(sharing::links).post(sharing::create_link),
        )
        .route(
            "/v1/files/{id}/links/{link_id}",
            delete(sharing::revoke_link),
        )
        .route("/l/{token}", get(sharing::download))
}
