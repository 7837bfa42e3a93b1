//! The only module that knows HTTP and JSON. `router()` builds the whole API, so tests can call
//! it with `tower::ServiceExt::oneshot` without a socket.

mod agents;
mod audit;
mod certificates;
mod dashboard;
pub mod error;
pub mod extract;
pub(crate) mod instances;
mod issuance;
mod jobs;
mod keys;
mod notifications;
pub mod openapi;
pub mod persist;
mod plugins;
mod system;
pub(crate) mod validate;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use utoipa::IntoParams;

use self::error::ApiError;
use crate::config::{AuthType, NamedKey};
use crate::metrics::Metrics;
use crate::plugins::registry::Registry;
use crate::store::{PageRequest, Store};

/// How callers are authenticated.
pub struct AuthSettings {
    pub mode: AuthType,
    /// Keys from `CERTCTL_API_KEYS_NAMED` (hashes only).
    pub env_keys: Vec<NamedKey>,
    /// `CERTCTL_AGENT_BOOTSTRAP_TOKEN` (hash only): lets an agent register itself.
    pub agent_bootstrap: Option<crate::auth::ApiKeyHash>,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub plugins: Arc<Registry>,
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    pub auth: Arc<AuthSettings>,
    pub max_body_bytes: usize,
    /// `CERTCTL_WEB_DIR`: serve the dashboard's files from here instead of the embedded copy.
    pub web_dir: Option<std::path::PathBuf>,
}

/// Cursor pagination parameters shared by list endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

impl PageParams {
    fn to_request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::BadRequest {
                message: format!("limit must be between 1 and 500, got {limit}"),
                field: Some("limit".into()),
            });
        }
        Ok(PageRequest {
            cursor: self.cursor.clone(),
            limit,
        })
    }
}

/// Counts every request by route template (never by raw path, so ids do not explode labels).
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.http_requests_total
        .with_label_values(&[method.as_str(), route.as_str(), resp.status().as_str()])
        .inc();
    m.http_request_duration_seconds
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/version", get(system::version))
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics/prometheus", get(system::metrics))
        .merge(dashboard::routes())
        .merge(certificates::routes())
        .merge(instances::routes())
        .merge(keys::routes())
        .merge(plugins::routes())
        .merge(jobs::routes())
        .merge(issuance::routes())
        .merge(notifications::routes())
        .merge(persist::routes())
        .merge(agents::routes())
        .merge(audit::routes());
    Router::new()
        .route("/health", get(system::health))
        .route("/ready", get(system::ready))
        .merge(issuance::public_routes())
        .merge(dashboard::public_routes())
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
