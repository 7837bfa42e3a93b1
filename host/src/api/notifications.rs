//! `/api/v1/notification-routes` (which events go to which notifier) and
//! `/api/v1/notifications` (deliveries, their retries and dead letters).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Authorized, perm};
use super::{AppState, PageParams, validate};
use crate::lifecycle::events::{Notification, notification_of};
use crate::model::{EventKind, InstanceKind, JobKind, JobState, NotificationRoute, Page, Severity};
use crate::store::AuditEntry;
use crate::store::jobs::JobFilter;
use crate::store::lifecycle::RouteSpec;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/notification-routes", get(list_routes).post(create_route))
        .route(
            "/notification-routes/{id}",
            get(fetch_route).put(replace_route).delete(remove_route),
        )
        .route("/notifications", get(list))
}

fn default_severity() -> Severity {
    Severity::Info
}

/// A route: events of these kinds, at or above this severity, go to this notifier instance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    pub name: String,
    pub notifier_id: String,
    /// issued, renewed, renewal_failed, expiring, revoked, agent_offline, plugin_failing, test.
    /// Empty or absent: every kind.
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// info, warning or critical (default info: everything).
    #[serde(default = "default_severity")]
    pub min_severity: Severity,
}

async fn spec(state: &AppState, body: RouteBody) -> Result<RouteSpec, ApiError> {
    validate::resource_name("name", &body.name)?;
    if state
        .store
        .get_instance(InstanceKind::Notifier, &body.notifier_id)
        .await?
        .is_none()
    {
        return Err(ApiError::invalid(
            "notifier_id",
            format!(
                "no notifier with id {:?}; list them with GET /api/v1/notifiers",
                body.notifier_id
            ),
        ));
    }
    let mut events = body.events;
    events.sort_by_key(|e| e.as_str());
    events.dedup();
    Ok(RouteSpec {
        name: body.name,
        notifier_id: body.notifier_id,
        events,
        min_severity: body.min_severity,
    })
}

/// Create a route.
#[utoipa::path(post, path = "/api/v1/notification-routes", tag = "notifications", security(("bearer" = [])),
    request_body = RouteBody,
    responses((status = 201, body = NotificationRoute), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_route(
    caller: Authorized<perm::PluginsWrite>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RouteBody>,
) -> ApiResult<(StatusCode, Json<NotificationRoute>)> {
    let spec = spec(&state, body).await?;
    let audit = AuditEntry::new(caller.actor(), "notification_route.create", "notification_route", "")
        .with_detail(json!({"name": spec.name, "notifier_id": spec.notifier_id, "events": spec.events}));
    let route = state.store.create_route(&spec, audit).await?;
    Ok((StatusCode::CREATED, Json(route)))
}

/// Every route, by name.
#[utoipa::path(get, path = "/api/v1/notification-routes", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Vec<NotificationRoute>)))]
pub async fn list_routes(
    _caller: Authorized<perm::PluginsRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<NotificationRoute>>> {
    Ok(Json(state.store.list_routes().await?))
}

/// One route.
#[utoipa::path(get, path = "/api/v1/notification-routes/{id}", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = NotificationRoute), (status = 404, body = ErrorBody)))]
pub async fn fetch_route(
    _caller: Authorized<perm::PluginsRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NotificationRoute>> {
    state
        .store
        .get_route(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("notification route {id}")))
}

/// Replace a route.
#[utoipa::path(put, path = "/api/v1/notification-routes/{id}", tag = "notifications", security(("bearer" = [])),
    request_body = RouteBody,
    responses((status = 200, body = NotificationRoute), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace_route(
    caller: Authorized<perm::PluginsWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RouteBody>,
) -> ApiResult<Json<NotificationRoute>> {
    let spec = spec(&state, body).await?;
    let audit = AuditEntry::new(caller.actor(), "notification_route.update", "notification_route", &id);
    state
        .store
        .update_route(&id, &spec, audit)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("notification route {id}")))
}

/// Delete a route.
#[utoipa::path(delete, path = "/api/v1/notification-routes/{id}", tag = "notifications", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_route(
    caller: Authorized<perm::PluginsWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let audit = AuditEntry::new(caller.actor(), "notification_route.delete", "notification_route", &id);
    if state.store.delete_route(&id, audit).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("notification route {id}")))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListNotifications {
    /// pending (includes retrying), delivered, dead_letter or cancelled.
    pub status: Option<String>,
    pub certificate_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Deliveries, newest first. A dead letter can be retried with `POST /api/v1/jobs/{id}/retry`.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(ListNotifications),
    responses((status = 200, body = Page<Notification>), (status = 400, body = ErrorBody)))]
pub async fn list(
    _caller: Authorized<perm::JobsRead>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListNotifications>,
) -> ApiResult<Json<Page<Notification>>> {
    let job_state = match params.status.as_deref() {
        None => None,
        Some("pending") => Some(JobState::Pending),
        Some("delivered") => Some(JobState::Completed),
        Some("dead_letter") => Some(JobState::Failed),
        Some("cancelled") => Some(JobState::Cancelled),
        Some(other) => {
            return Err(ApiError::BadRequest {
                message: format!("status {other:?}: expected pending, delivered, dead_letter or cancelled"),
                field: Some("status".into()),
            });
        }
    };
    let page = PageParams {
        cursor: params.cursor,
        limit: params.limit,
    }
    .to_request()?;
    let filter = JobFilter {
        state: job_state,
        kind: Some(JobKind::Notification),
        certificate_id: params.certificate_id,
    };
    let jobs = state.store.list_jobs(&filter, &page).await?;
    Ok(Json(Page {
        items: jobs.items.iter().filter_map(notification_of).collect(),
        next_cursor: jobs.next_cursor,
    }))
}
