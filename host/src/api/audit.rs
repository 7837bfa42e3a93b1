//! `/api/v1/audit`: the append-only trail, newest first.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiQuery, Authorized, perm};
use super::{AppState, PageParams};
use crate::model::{AuditEvent, Page};
use crate::store::AuditFilter;

pub fn routes() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAudit {
    /// Name of the API key that acted.
    pub actor: Option<String>,
    /// e.g. `certificate.create`.
    pub action: Option<String>,
    /// e.g. `certificate`, `issuer`, `api_key`.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Audit events, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(ListAudit),
    responses((status = 200, body = Page<AuditEvent>), (status = 400, body = ErrorBody)))]
pub async fn list(
    _caller: Authorized<perm::AuditRead>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListAudit>,
) -> ApiResult<Json<Page<AuditEvent>>> {
    if let Some(cursor) = &params.cursor
        && cursor.parse::<i64>().is_err()
    {
        return Err(ApiError::BadRequest {
            message: format!("cursor {cursor:?} is not one this endpoint returned"),
            field: Some("cursor".into()),
        });
    }
    let page = PageParams {
        cursor: params.cursor,
        limit: params.limit,
    }
    .to_request()?;
    let filter = AuditFilter {
        actor: params.actor,
        action: params.action,
        target_type: params.target_type,
        target_id: params.target_id,
    };
    Ok(Json(state.store.list_audit(&filter, &page).await?))
}
