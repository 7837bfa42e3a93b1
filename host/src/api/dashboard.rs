//! The web dashboard: its files (embedded in the binary from `host/web/`, or read from
//! `CERTCTL_WEB_DIR` while developing them) and the two API calls made for it — who the key
//! is, and the overview's counts.

use std::path::PathBuf;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiResult;
use super::extract::{Authorized, Caller, perm};
use crate::auth::Permission;
use crate::model::Timestamp;
use crate::store::overview::OverviewCounts;

/// The dashboard's files: name, content type, embedded bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/app.css"),
    ),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../web/favicon.svg")),
];

/// Scripts and styles only from this server; no inline script, no framing, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

pub fn public_routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/ui/{file}", get(asset))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/overview", get(overview))
}

async fn index(State(state): State<AppState>) -> Response {
    serve(&state.web_dir, "index.html").await
}

async fn asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    if file == "index.html" {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve(&state.web_dir, &file).await
}

async fn serve(dir: &Option<PathBuf>, name: &str) -> Response {
    let Some((_, content_type, embedded)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = match dir {
        None => embedded.to_vec(),
        Some(dir) => match tokio::fs::read(dir.join(name)).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(file = %dir.join(name).display(), error = %e, "CERTCTL_WEB_DIR: file not readable");
                return StatusCode::NOT_FOUND.into_response();
            }
        },
    };
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The caller as the server sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub role: String,
    pub permissions: Vec<Permission>,
}

/// Who this API key is: its name, role and permissions (the dashboard hides what the role
/// cannot do; the API refuses it anyway).
#[utoipa::path(get, path = "/api/v1/whoami", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = super::error::ErrorBody)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: caller.principal.name.clone(),
        role: caller.principal.role.as_str().to_string(),
        permissions: caller.principal.role.permissions().to_vec(),
    })
}

/// Plugins as the overview counts them.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginCounts {
    pub loaded: usize,
    /// Plugins whose latest call failed.
    pub failing: Vec<String>,
    /// Files in the plugin directories that were refused.
    pub refused: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    #[serde(flatten)]
    pub counts: OverviewCounts,
    pub plugins: PluginCounts,
    #[schema(value_type = String, format = DateTime)]
    pub generated_at: Timestamp,
}

/// The dashboard's overview: certificates by status, expiries over the next 90 days by day,
/// issuance/renewal results over the last 30 days, agents, pending jobs, plugins failing.
#[utoipa::path(get, path = "/api/v1/overview", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = Overview)))]
pub async fn overview(
    _caller: Authorized<perm::CertificatesRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<Overview>> {
    let now = Timestamp::now();
    let counts = state.store.overview_counts(now).await?;
    let (loaded, refused) = state.plugins.list();
    Ok(Json(Overview {
        counts,
        plugins: PluginCounts {
            loaded: loaded.len(),
            failing: loaded
                .iter()
                .filter(|p| p.status == crate::plugins::registry::PluginStatus::Failing)
                .map(|p| p.name.clone())
                .collect(),
            refused: refused.len(),
        },
        generated_at: now,
    }))
}
