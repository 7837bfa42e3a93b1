//! Health, readiness, version and metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{Authorized, perm};
use crate::model::Timestamp;

#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `healthy`, `ready` or `unavailable`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "system",
    responses((status = 200, body = Status, example = json!({"status": "healthy"}))))]
pub async fn health() -> Json<Status> {
    Json(Status {
        status: "healthy",
        error: None,
    })
}

/// Readiness: the database answers within 2 seconds.
#[utoipa::path(get, path = "/ready", tag = "system",
    responses((status = 200, body = Status), (status = 503, body = Status)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Json(Status {
            status: "ready",
            error: None,
        })
        .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: database error");
            unavailable("database unreachable")
        }
        Err(_) => unavailable("database did not answer within 2s"),
    }
}

fn unavailable(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Status {
            status: "unavailable",
            error: Some(reason.to_string()),
        }),
    )
        .into_response()
}

#[derive(Serialize, ToSchema)]
pub struct Version {
    pub version: &'static str,
    pub api: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
}

/// Server version and database dialect.
#[utoipa::path(get, path = "/api/v1/version", tag = "system", responses((status = 200, body = Version)))]
pub async fn version(State(state): State<AppState>) -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION"),
        api: "v1",
        database: state.store.dialect().as_str(),
    })
}

/// Prometheus metrics (text format). Needs the `metrics.read` permission.
#[utoipa::path(get, path = "/api/v1/metrics/prometheus", tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
              (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)))]
pub async fn metrics(_caller: Authorized<perm::MetricsRead>, State(state): State<AppState>) -> ApiResult<Response> {
    let counts = state.store.fleet_counts(Timestamp::now()).await?;
    let text = state
        .metrics
        .render(&counts)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("rendering metrics: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}
