//! The API's one error type. Each variant documents its HTTP status; internals are logged, never
//! sent to clients. Body: `{"error": {"code", "message", "field"?}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, bad query parameter).
    #[error("{message}")]
    BadRequest { message: String, field: Option<String> },
    /// 401: no API key, or one that is not known.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the key is valid but its role lacks the permission.
    #[error("this API key (role {role}) lacks the {permission} permission")]
    Forbidden {
        role: &'static str,
        permission: &'static str,
    },
    /// 404
    #[error("{0} not found")]
    NotFound(String),
    /// 409: the request conflicts with existing state (duplicate name, object in use).
    #[error("{message}")]
    Conflict { message: String, field: Option<String> },
    /// 413: the body is larger than the configured limit.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415: a body that is not JSON.
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// 422: well-formed but invalid values.
    #[error("{message}")]
    Invalid { message: String, field: String },
    /// 410: the agent was retired; it should stop.
    #[error("{0}")]
    Gone(String),
    /// 503: a dependency (the database) is not reachable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged in full, reported as a generic message.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The JSON error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `not_found`.
    pub code: &'static str,
    pub message: String,
    /// The offending field (dotted path), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            message: message.into(),
            field: field.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Invalid { .. } => "invalid_field",
            ApiError::Gone(_) => "gone",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            ApiError::BadRequest { field, .. } | ApiError::Conflict { field, .. } => field.clone(),
            ApiError::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { field } => ApiError::Conflict {
                message: format!("an object with this {field} already exists"),
                field: Some(field.to_string()),
            },
            StoreError::InUse(message) => ApiError::Conflict { message, field: None },
            e @ StoreError::BadCursor(_) => ApiError::BadRequest {
                message: e.to_string(),
                field: Some("cursor".into()),
            },
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)) => {
                ApiError::Unavailable("the database is not reachable; try again shortly".into())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "internal error while serving a request");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                field: self.field(),
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::lifecycle::Refusal> for ApiError {
    fn from(r: crate::lifecycle::Refusal) -> Self {
        use crate::lifecycle::Refusal;
        match r {
            Refusal::Invalid { field, message } => ApiError::Invalid { message, field },
            Refusal::NotFound(what) => ApiError::NotFound(what),
            Refusal::Conflict(message) => ApiError::Conflict { message, field: None },
            Refusal::Unavailable(message) => ApiError::Unavailable(message),
            Refusal::Store(e) => e.into(),
        }
    }
}
