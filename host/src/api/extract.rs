//! Request extractors that turn bad input into [`ApiError`]s naming the offending field, and the
//! [`Authorized`] extractor that authenticates the caller and checks one permission.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::auth::{ApiKeyHash, Permission, Principal, Role};
use crate::config::AuthType;

/// Builds `a.b` paths from serde_path_to_error, adding the field named in "unknown field `x`"
/// and "missing field `x`" messages (serde reports those at the parent's path).
fn field_of(path: &serde_path_to_error::Path, message: &str) -> Option<String> {
    let mut parts: Vec<String> = path
        .iter()
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "?")
        .collect();
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.split(marker).nth(1)
            && let Some(name) = rest.split('`').next()
            && parts.last().map(String::as_str) != Some(name)
        {
            parts.push(name.to_string());
        }
    }
    (!parts.is_empty()).then(|| parts.join("."))
}

/// Drops serde's " at line 1 column 5" suffix: the field name says more to an API user.
fn clean(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// A JSON body. Refuses non-JSON content types (415), oversize bodies (413), malformed JSON and
/// unknown or missing fields (400, with the field named).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest {
                    message: format!("could not read the request body: {rejection}"),
                    field: None,
                }
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let message = e.inner().to_string();
            ApiError::BadRequest {
                field: field_of(e.path(), &message),
                message: format!("invalid JSON body: {}", clean(&message)),
            }
        })?;
        de.end().map_err(|e| ApiError::BadRequest {
            message: format!("invalid JSON body: {}", clean(&e.to_string())),
            field: None,
        })?;
        Ok(ApiJson(value))
    }
}

/// An optional JSON body: absent (no content type, no bytes) is `None`; present is parsed
/// with the same rules as a required one.
impl<T: DeserializeOwned> axum::extract::OptionalFromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if !has_type && length.unwrap_or(0) == 0 {
            return Ok(None);
        }
        <ApiJson<T> as FromRequest<AppState>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// Query parameters; unknown parameters and bad values are a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value = serde_path_to_error::deserialize(de).map_err(|e| {
            let message = e.inner().to_string();
            ApiError::BadRequest {
                field: field_of(e.path(), &message),
                message: format!("invalid query parameter: {message}"),
            }
        })?;
        Ok(ApiQuery(value))
    }
}

/// A permission as a type, so a route states what it needs in its signature.
pub trait Needs {
    const PERMISSION: Permission;
}

macro_rules! needs {
    ($($name:ident),+) => {
        /// Marker types for [`Authorized`], one per permission.
        pub mod perm {
            use crate::auth::Permission;
            $(
                pub struct $name;
                impl super::Needs for $name {
                    const PERMISSION: Permission = Permission::$name;
                }
            )+
        }
    };
}
needs!(
    CertificatesRead,
    CertificatesWrite,
    IssuersRead,
    IssuersWrite,
    AuditRead,
    KeysManage,
    MetricsRead,
    PluginsRead,
    PluginsWrite,
    JobsRead,
    JobsWrite,
    PrivateKeys
);

/// An authenticated caller holding permission `P`. 401 without a known key, 403 without `P`.
pub struct Authorized<P>(pub Principal, PhantomData<P>);

impl<P> Authorized<P> {
    pub fn actor(&self) -> &str {
        &self.0.name
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Finds who holds `key`: configured keys first (constant-time over all), then stored keys.
async fn authenticate(state: &AppState, key: &str) -> Result<Option<Principal>, ApiError> {
    let hash = ApiKeyHash::of(key);
    if key.starts_with(crate::auth::AGENT_CREDENTIAL_PREFIX) {
        return Ok(state.store.agent_by_credential(&hash).await?.map(|a| Principal {
            name: format!("agent:{}", a.name),
            role: Role::Agent,
            agent_id: Some(a.id),
        }));
    }
    if let Some(bootstrap) = &state.auth.agent_bootstrap
        && bootstrap.matches(&hash)
    {
        return Ok(Some(Principal {
            name: "agent-bootstrap".to_string(),
            role: Role::Agent,
            agent_id: None,
        }));
    }
    let mut found = None;
    for k in &state.auth.env_keys {
        if k.hash.matches(&hash) && found.is_none() {
            found = Some(Principal {
                name: k.name.clone(),
                role: k.role,
                agent_id: None,
            });
        }
    }
    if found.is_some() {
        return Ok(found);
    }
    Ok(state.store.find_api_key(&hash).await?.map(|k| Principal {
        name: k.name,
        role: k.role,
        agent_id: None,
    }))
}

/// Authenticates the request: the principal behind its bearer key (401 when there is none).
async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    match state.auth.mode {
        AuthType::None => Ok(Principal {
            name: "anonymous".to_string(),
            role: Role::Admin,
            agent_id: None,
        }),
        AuthType::ApiKey => {
            let Some(key) = bearer(parts) else {
                state
                    .metrics
                    .auth_failures_total
                    .with_label_values(&["missing_key"])
                    .inc();
                return Err(ApiError::Unauthorized(
                    "missing API key: send it as 'Authorization: Bearer <key>'",
                ));
            };
            match authenticate(state, key).await? {
                Some(p) => Ok(p),
                None => {
                    state
                        .metrics
                        .auth_failures_total
                        .with_label_values(&["unknown_key"])
                        .inc();
                    Err(ApiError::Unauthorized("unknown API key"))
                }
            }
        }
    }
}

fn require(state: &AppState, principal: &Principal, permission: Permission) -> Result<(), ApiError> {
    if principal.can(permission) {
        return Ok(());
    }
    state
        .metrics
        .auth_failures_total
        .with_label_values(&["forbidden"])
        .inc();
    Err(ApiError::Forbidden {
        role: principal.role.as_str(),
        permission: permission.as_str(),
    })
}

impl<P: Needs> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let p = principal(parts, state).await?;
        require(state, &p, P::PERMISSION)?;
        Ok(Authorized(p, PhantomData))
    }
}

/// An authenticated caller whose permission depends on the request (e.g. on the instance kind
/// in the path); the handler calls [`Caller::require`] before doing anything.
pub struct Caller {
    pub principal: Principal,
    state: AppState,
}

impl Caller {
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        require(&self.state, &self.principal, permission)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            principal: principal(parts, state).await?,
            state: state.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_drops_position_suffix() {
        assert_eq!(clean("unknown field `x` at line 1 column 5"), "unknown field `x`");
    }
}
