//! `/api/v1/plugins`: what is loaded, and what was refused and why.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::extract::{Authorized, perm};
use crate::plugins::registry::{PluginInfo, Refused};

pub fn routes() -> Router<AppState> {
    Router::new().route("/plugins", get(list))
}

#[derive(Serialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginInfo>,
    /// Files that were not loaded, with the reason.
    pub refused: Vec<Refused>,
    /// Whether the pooling allocator is in use (see CERTCTL_PLUGIN_POOLING).
    pub pooling: bool,
}

/// Loaded plugins and refused plugin files.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", security(("bearer" = [])),
    responses((status = 200, body = PluginList)))]
pub async fn list(_caller: Authorized<perm::PluginsRead>, State(state): State<AppState>) -> Json<PluginList> {
    let (plugins, refused) = state.plugins.list();
    Json(PluginList {
        plugins,
        refused,
        pooling: state.plugins.runtime().pooling_active,
    })
}
