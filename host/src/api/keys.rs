//! `/api/v1/api-keys`: create (the key is shown once), list (never the key), delete.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, Authorized, perm};
use super::{AppState, validate};
use crate::auth::{ApiKeyHash, Role, generate_key};
use crate::model::ApiKeyInfo;
use crate::store::AuditEntry;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api-keys", get(list).post(create))
        .route("/api-keys/{id}", delete(remove))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub role: Role,
}

/// A new key. `key` is shown this once; only its hash is stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    pub key: String,
}

/// Create an API key.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    caller: Authorized<perm::KeysManage>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    validate::resource_name("name", &body.name)?;
    if state.auth.env_keys.iter().any(|k| k.name == body.name) {
        return Err(ApiError::Conflict {
            message: format!(
                "{:?} is already the name of a key set in CERTCTL_API_KEYS_NAMED",
                body.name
            ),
            field: Some("name".into()),
        });
    }
    let key = generate_key();
    let audit = AuditEntry::new(caller.actor(), "api_key.create", "api_key", "")
        .with_detail(json!({"name": body.name, "role": body.role}));
    let info = state
        .store
        .create_api_key(&body.name, &ApiKeyHash::of(&key), body.role, audit)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { info, key })))
}

/// List stored API keys (keys from the environment are not listed).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiKeyInfo>)))]
pub async fn list(
    _caller: Authorized<perm::KeysManage>,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<ApiKeyInfo>>> {
    Ok(Json(state.store.list_api_keys().await?))
}

/// Delete an API key; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    caller: Authorized<perm::KeysManage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let audit = AuditEntry::new(caller.actor(), "api_key.delete", "api_key", &id);
    if state.store.delete_api_key(&id, audit).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("API key {id}")))
    }
}
