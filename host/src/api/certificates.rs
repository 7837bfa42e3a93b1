//! `/api/v1/certificates`: declare, list, get, update, delete.

use std::collections::BTreeMap;

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
use crate::model::{CertStatus, Certificate, InstanceKind, KeyGeneration, KeyType, Page, RenewalPolicy, Timestamp};
use crate::store::{AuditEntry, CertSort, CertificateFilter, CertificatePatch, NewCertificate};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/certificates", get(list).post(declare))
        .route("/certificates/{id}", get(fetch).patch(update).delete(remove))
}

fn default_key_type() -> KeyType {
    KeyType::EcdsaP256
}

fn default_key_generation() -> KeyGeneration {
    KeyGeneration::Agent
}

/// A certificate to manage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareCertificate {
    /// Unique name of this certificate in certctl.
    pub name: String,
    /// Subject common name; always added to the SANs.
    pub common_name: String,
    /// Further DNS names or IP addresses.
    #[serde(default)]
    pub sans: Vec<String>,
    /// Default `ecdsa-p256`.
    #[serde(default = "default_key_type")]
    pub key_type: KeyType,
    /// Default `agent`.
    #[serde(default = "default_key_generation")]
    pub key_generation: KeyGeneration,
    /// The issuer instance that signs it.
    pub issuer_id: Option<String>,
    #[serde(default)]
    pub renewal: RenewalPolicy,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// An issuer profile, e.g. an ACME profile the CA's directory lists (`shortlived`); the
    /// issuer checks it when the CSR arrives. Absent: the issuer instance's default.
    pub profile: Option<String>,
    /// The agent that generates the key, sends the CSRs and deploys the certificate (agent keys).
    pub agent_id: Option<String>,
    /// Where the agent deploys it: `{"files": [...], "check_command": [...],
    /// "reload_command": [...], "verify": {...}}`. Needs `agent_id`.
    #[schema(value_type = Option<Object>)]
    pub deploy: Option<serde_json::Value>,
}

/// Changes to a certificate; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCertificate {
    pub common_name: Option<String>,
    pub sans: Option<Vec<String>>,
    pub key_type: Option<KeyType>,
    pub issuer_id: Option<String>,
    pub renewal: Option<RenewalPolicy>,
    pub labels: Option<BTreeMap<String, String>>,
    /// A new issuer profile; `""` removes it. Used from the next issuance on.
    pub profile: Option<String>,
    /// A new agent; `""` removes it (and the deployment target).
    pub agent_id: Option<String>,
    /// A new deployment target, used from the next version on; `null` keeps it.
    #[schema(value_type = Option<Object>)]
    pub deploy: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListCertificates {
    /// pending, active, expiring (≤30 days), expired, revoked or failed.
    #[param(value_type = Option<String>)]
    pub status: Option<CertStatus>,
    /// Only certificates of this issuer instance.
    pub issuer_id: Option<String>,
    /// Case-insensitive substring of the name, common name or SANs.
    pub q: Option<String>,
    /// notAfter at or after this time (RFC 3339, e.g. `2026-01-01T00:00:00Z`).
    pub expires_after: Option<String>,
    /// notAfter before this time (RFC 3339).
    pub expires_before: Option<String>,
    /// `name`, `not_after` or `created_at`; `-` in front for descending (`-not_after`).
    /// Default: creation order. Not-yet-issued certificates sort last by `not_after`.
    pub sort: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

fn time_param(field: &str, value: Option<String>) -> ApiResult<Option<Timestamp>> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            Timestamp::parse_rfc3339(&v).map_err(|message| ApiError::BadRequest {
                message: format!("{field}: {message}"),
                field: Some(field.to_string()),
            })
        })
        .transpose()
}

/// The agent must be a live one, hold the key itself, and a deployment target needs an agent.
async fn check_agent(
    state: &AppState,
    agent_id: Option<&str>,
    deploy: Option<&serde_json::Value>,
    key_generation: KeyGeneration,
) -> Result<(), ApiError> {
    if let Some(id) = agent_id {
        match state.store.get_agent(id, crate::model::Timestamp::now()).await? {
            Some(a) if a.retired_at.is_none() => {}
            Some(a) => return Err(ApiError::invalid("agent_id", format!("agent {} is retired", a.name))),
            None => {
                return Err(ApiError::invalid(
                    "agent_id",
                    format!("no agent with id {id:?}; list them with GET /api/v1/agents"),
                ));
            }
        }
        if key_generation == KeyGeneration::Server {
            return Err(ApiError::invalid(
                "agent_id",
                "an agent deploys certificates whose key it generated: use key_generation agent",
            ));
        }
    }
    if let Some(deploy) = deploy {
        if agent_id.is_none() {
            return Err(ApiError::invalid("deploy", "a deployment target needs agent_id"));
        }
        crate::agent::deploy::Target::check_json(deploy)
            .map_err(|(field, message)| ApiError::invalid(&format!("deploy.{field}"), message))?;
    }
    Ok(())
}

/// A profile name: 1 to 64 letters, digits, `.`, `_` or `-`.
fn check_profile(profile: &str) -> Result<(), ApiError> {
    if profile.is_empty()
        || profile.len() > 64
        || !profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ApiError::invalid(
            "profile",
            format!("{profile:?} is not a profile name: 1 to 64 letters, digits, '.', '_' or '-'"),
        ));
    }
    Ok(())
}

/// Common name first, then the other SANs, validated, lower-cased, without duplicates.
fn normalise_names(common_name: &str, sans: &[String]) -> Result<(String, Vec<String>), ApiError> {
    if common_name.len() > 64 {
        return Err(ApiError::invalid(
            "common_name",
            "at most 64 characters (the X.509 limit); put longer names in sans",
        ));
    }
    let cn = validate::san("common_name", common_name)?;
    let mut all = vec![cn.clone()];
    for (i, s) in sans.iter().enumerate() {
        let s = validate::san(&format!("sans.{i}"), s)?;
        if !all.contains(&s) {
            all.push(s);
        }
    }
    if all.len() > 100 {
        return Err(ApiError::invalid("sans", "at most 100 names per certificate"));
    }
    Ok((cn, all))
}

async fn check_issuer(state: &AppState, issuer_id: &str) -> Result<(), ApiError> {
    match state.store.get_instance(InstanceKind::Issuer, issuer_id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::invalid(
            "issuer_id",
            format!("no issuer with id {issuer_id:?}; list them with GET /api/v1/issuers"),
        )),
    }
}

fn check_renewal(renewal: &RenewalPolicy) -> Result<(), ApiError> {
    if let Some(d) = renewal.renew_before_days
        && (d == 0 || d > 365)
    {
        return Err(ApiError::invalid(
            "renewal.renew_before_days",
            "must be between 1 and 365 days",
        ));
    }
    if !(1..=20).contains(&renewal.max_attempts) {
        return Err(ApiError::invalid("renewal.max_attempts", "must be between 1 and 20"));
    }
    if renewal.alert_days.len() > 10 {
        return Err(ApiError::invalid("renewal.alert_days", "at most 10 thresholds"));
    }
    if let Some(bad) = renewal.alert_days.iter().find(|d| **d == 0 || **d > 365) {
        return Err(ApiError::invalid(
            "renewal.alert_days",
            format!("{bad} is not between 1 and 365 days"),
        ));
    }
    Ok(())
}

/// Declare a certificate. It starts `pending` until it is issued.
#[utoipa::path(post, path = "/api/v1/certificates", tag = "certificates", security(("bearer" = [])),
    request_body = DeclareCertificate,
    responses((status = 201, body = Certificate), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn declare(
    caller: Authorized<perm::CertificatesWrite>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DeclareCertificate>,
) -> ApiResult<(StatusCode, Json<Certificate>)> {
    validate::resource_name("name", &body.name)?;
    let (common_name, sans) = normalise_names(&body.common_name, &body.sans)?;
    validate::labels("labels", &body.labels)?;
    check_renewal(&body.renewal)?;
    if let Some(profile) = &body.profile {
        check_profile(profile)?;
    }
    if let Some(issuer) = &body.issuer_id {
        check_issuer(&state, issuer).await?;
    }
    check_agent(
        &state,
        body.agent_id.as_deref(),
        body.deploy.as_ref(),
        body.key_generation,
    )
    .await?;
    let new = NewCertificate {
        name: body.name,
        common_name,
        sans,
        key_type: body.key_type,
        key_generation: body.key_generation,
        issuer_id: body.issuer_id,
        renewal: body.renewal,
        labels: body.labels,
        profile: body.profile,
        agent_id: body.agent_id,
        deploy: body.deploy,
    };
    let audit = AuditEntry::new(caller.actor(), "certificate.create", "certificate", "")
        .with_detail(json!({"name": new.name, "sans": new.sans}));
    let cert = state.store.create_certificate(&new, audit).await?;
    // With an issuer, the first issuance starts now: at once for a server-generated key,
    // waiting for the agent's CSR otherwise.
    if cert.issuer_id.is_some() {
        state.lifecycle.request_issuance(&cert, caller.actor()).await?;
    }
    Ok((StatusCode::CREATED, Json(cert)))
}

/// List certificates, filtered, in pages.
#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates", security(("bearer" = [])),
    params(ListCertificates),
    responses((status = 200, body = Page<Certificate>), (status = 400, body = ErrorBody)))]
pub async fn list(
    _caller: Authorized<perm::CertificatesRead>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListCertificates>,
) -> ApiResult<Json<Page<Certificate>>> {
    let page = PageParams {
        cursor: params.cursor,
        limit: params.limit,
    }
    .to_request()?;
    let sort = match params.sort.as_deref().filter(|s| !s.is_empty()) {
        None => CertSort::default(),
        Some(s) => s.parse().map_err(|message: String| ApiError::BadRequest {
            message: format!("sort: {message}"),
            field: Some("sort".into()),
        })?,
    };
    let filter = CertificateFilter {
        status: params.status,
        issuer_id: params.issuer_id,
        search: params.q.filter(|q| !q.is_empty()),
        expires_after: time_param("expires_after", params.expires_after)?,
        expires_before: time_param("expires_before", params.expires_before)?,
        sort,
    };
    Ok(Json(state.store.list_certificates(&filter, &page).await?))
}

/// One certificate.
#[utoipa::path(get, path = "/api/v1/certificates/{id}", tag = "certificates", security(("bearer" = [])),
    responses((status = 200, body = Certificate), (status = 404, body = ErrorBody)))]
pub async fn fetch(
    _caller: Authorized<perm::CertificatesRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Certificate>> {
    state
        .store
        .get_certificate(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))
}

/// Change a certificate's names, key type, issuer, renewal policy or labels.
#[utoipa::path(patch, path = "/api/v1/certificates/{id}", tag = "certificates", security(("bearer" = [])),
    request_body = UpdateCertificate,
    responses((status = 200, body = Certificate), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    caller: Authorized<perm::CertificatesWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateCertificate>,
) -> ApiResult<Json<Certificate>> {
    let Some(current) = state.store.get_certificate(&id).await? else {
        return Err(ApiError::NotFound(format!("certificate {id}")));
    };
    let names = match (&body.common_name, &body.sans) {
        (None, None) => None,
        (cn, sans) => Some(normalise_names(
            cn.as_ref().unwrap_or(&current.common_name),
            sans.as_ref().unwrap_or(&current.sans),
        )?),
    };
    if let Some(labels) = &body.labels {
        validate::labels("labels", labels)?;
    }
    if let Some(renewal) = &body.renewal {
        check_renewal(renewal)?;
    }
    if let Some(profile) = body.profile.as_deref().filter(|p| !p.is_empty()) {
        check_profile(profile)?;
    }
    if let Some(issuer) = &body.issuer_id {
        check_issuer(&state, issuer).await?;
    }
    let agent_id = match body.agent_id.as_deref() {
        None => current.agent_id.clone(),
        Some("") => None,
        Some(id) => Some(id.to_string()),
    };
    let deploy = if agent_id.is_none() {
        None
    } else {
        body.deploy.clone().or(current.deploy.clone())
    };
    check_agent(&state, agent_id.as_deref(), deploy.as_ref(), current.key_generation).await?;
    let (common_name, sans) = names.map_or((None, None), |(cn, sans)| (Some(cn), Some(sans)));
    let patch = CertificatePatch {
        common_name,
        sans,
        key_type: body.key_type,
        issuer_id: body.issuer_id.map(Some),
        renewal: body.renewal,
        labels: body.labels,
        profile: body.profile.map(|p| Some(p).filter(|p| !p.is_empty())),
        agent_id: Some(agent_id),
        deploy: Some(deploy),
    };
    let audit = AuditEntry::new(caller.actor(), "certificate.update", "certificate", &id);
    state
        .store
        .update_certificate(&id, &patch, audit)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))
}

/// Stop managing a certificate (its versions go with it).
#[utoipa::path(delete, path = "/api/v1/certificates/{id}", tag = "certificates", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    caller: Authorized<perm::CertificatesWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let audit = AuditEntry::new(caller.actor(), "certificate.delete", "certificate", &id);
    if state.store.delete_certificate(&id, audit).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("certificate {id}")))
    }
}
