//! `/api/v1/issuers`: plugin instances of kind `issuer`. DNS solvers and notifiers will use the
//! same handlers under their own paths once the plugin runtime can load them.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Authorized, perm};
use super::{AppState, PageParams, validate};
use crate::model::{InstanceKind, Page, PluginInstance};
use crate::store::AuditEntry;

const KIND: InstanceKind = InstanceKind::Issuer;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/issuers", get(list).post(create))
        .route("/issuers/{id}", get(fetch).patch(update).delete(remove))
}

/// A new issuer: an instance of an issuer plugin with its configuration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    pub name: String,
    /// Name of the plugin, e.g. `local-ca` or `acme`.
    pub plugin: String,
    /// Plugin configuration (a JSON object).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInstance {
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn check_config(config: &serde_json::Value) -> Result<(), ApiError> {
    if config.is_object() {
        Ok(())
    } else {
        Err(ApiError::invalid("config", "must be a JSON object"))
    }
}

fn check_plugin(plugin: &str) -> Result<(), ApiError> {
    let ok = !plugin.is_empty()
        && plugin.len() <= 64
        && plugin
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "plugin",
            format!("{plugin:?} is not a plugin name: 1-64 lower-case letters, digits or '-'"),
        ))
    }
}

/// Create an issuer instance.
#[utoipa::path(post, path = "/api/v1/issuers", tag = "issuers", security(("bearer" = [])),
    request_body = CreateInstance,
    responses((status = 201, body = PluginInstance), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    caller: Authorized<perm::IssuersWrite>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateInstance>,
) -> ApiResult<(StatusCode, Json<PluginInstance>)> {
    validate::resource_name("name", &body.name)?;
    check_plugin(&body.plugin)?;
    check_config(&body.config)?;
    let audit = AuditEntry::new(caller.actor(), "issuer.create", KIND.as_str(), "")
        .with_detail(json!({"name": body.name, "plugin": body.plugin}));
    let instance = state
        .store
        .create_instance(KIND, &body.name, &body.plugin, &body.config, audit)
        .await?;
    Ok((StatusCode::CREATED, Json(instance)))
}

/// List issuer instances.
#[utoipa::path(get, path = "/api/v1/issuers", tag = "issuers", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<PluginInstance>)))]
pub async fn list(
    _caller: Authorized<perm::IssuersRead>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<PluginInstance>>> {
    Ok(Json(state.store.list_instances(KIND, &params.to_request()?).await?))
}

/// One issuer instance.
#[utoipa::path(get, path = "/api/v1/issuers/{id}", tag = "issuers", security(("bearer" = [])),
    responses((status = 200, body = PluginInstance), (status = 404, body = ErrorBody)))]
pub async fn fetch(
    _caller: Authorized<perm::IssuersRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginInstance>> {
    state
        .store
        .get_instance(KIND, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("issuer {id}")))
}

/// Rename an issuer or replace its configuration.
#[utoipa::path(patch, path = "/api/v1/issuers/{id}", tag = "issuers", security(("bearer" = [])),
    request_body = UpdateInstance,
    responses((status = 200, body = PluginInstance), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    caller: Authorized<perm::IssuersWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateInstance>,
) -> ApiResult<Json<PluginInstance>> {
    if let Some(name) = &body.name {
        validate::resource_name("name", name)?;
    }
    if let Some(config) = &body.config {
        check_config(config)?;
    }
    let audit = AuditEntry::new(caller.actor(), "issuer.update", KIND.as_str(), &id);
    state
        .store
        .update_instance(KIND, &id, body.name.as_deref(), body.config.as_ref(), audit)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("issuer {id}")))
}

/// Delete an issuer. Refused (409) while certificates use it.
#[utoipa::path(delete, path = "/api/v1/issuers/{id}", tag = "issuers", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    caller: Authorized<perm::IssuersWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let audit = AuditEntry::new(caller.actor(), "issuer.delete", KIND.as_str(), &id);
    if state.store.delete_instance(KIND, &id, audit).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("issuer {id}")))
    }
}
