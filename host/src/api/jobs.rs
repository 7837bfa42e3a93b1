//! `/api/v1/jobs`: the queue and its history; cancel and retry.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiQuery, Authorized, perm};
use super::{AppState, PageParams};
use crate::model::{Job, JobKind, JobState, Page};
use crate::store::AuditEntry;
use crate::store::jobs::JobFilter;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(list))
        .route("/jobs/{id}", get(fetch))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
        .route("/jobs/{id}/approve", post(approve))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListJobs {
    /// pending, running, awaiting_csr, awaiting_approval, completed, failed, cancelled.
    #[param(value_type = Option<String>)]
    pub status: Option<JobState>,
    /// issuance, renewal, revocation, deployment, notification.
    #[param(value_type = Option<String>)]
    #[serde(rename = "type")]
    pub kind: Option<JobKind>,
    pub certificate_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])), params(ListJobs),
    responses((status = 200, body = Page<Job>), (status = 400, body = ErrorBody)))]
pub async fn list(
    _caller: Authorized<perm::JobsRead>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListJobs>,
) -> ApiResult<Json<Page<Job>>> {
    let page = PageParams {
        cursor: params.cursor,
        limit: params.limit,
    }
    .to_request()?;
    let filter = JobFilter {
        state: params.status,
        kind: params.kind,
        certificate_id: params.certificate_id,
    };
    Ok(Json(state.store.list_jobs(&filter, &page).await?))
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub async fn fetch(
    _caller: Authorized<perm::JobsRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    state
        .store
        .get_job(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("job {id}")))
}

/// Cancel a job that has not finished (409 if it has).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    caller: Authorized<perm::JobsWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    let audit = AuditEntry::new(caller.actor(), "job.cancel", "job", &id);
    let (job, changed) = state
        .store
        .cancel_job(&id, audit)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id}")))?;
    if !changed {
        return Err(ApiError::Conflict {
            message: format!("job {id} is {}; only unfinished jobs can be cancelled", job.state),
            field: None,
        });
    }
    Ok(Json(job))
}

/// Queue a failed or cancelled job again (409 otherwise).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry(
    caller: Authorized<perm::JobsWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    let audit = AuditEntry::new(caller.actor(), "job.retry", "job", &id);
    let (job, changed) = state
        .store
        .retry_job(&id, audit)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id}")))?;
    if !changed {
        return Err(ApiError::Conflict {
            message: format!(
                "job {id} is {}; only failed or cancelled jobs can be retried",
                job.state
            ),
            field: None,
        });
    }
    Ok(Json(job))
}

/// Approve a job that waits for approval (a certificate whose policy sets `require_approval`);
/// 409 if it is not waiting.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/approve", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    caller: Authorized<perm::JobsWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    let audit = AuditEntry::new(caller.actor(), "job.approve", "job", &id);
    let (job, changed) = state
        .store
        .approve_job(&id, audit)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id}")))?;
    if !changed {
        return Err(ApiError::Conflict {
            message: format!("job {id} is {}, not awaiting_approval", job.state),
            field: None,
        });
    }
    state.lifecycle.wake();
    Ok(Json(job))
}
