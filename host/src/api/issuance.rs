//! Issuance endpoints: submit a CSR, renew, revoke, versions, downloads, CRLs, CA key import.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Authorized, perm};
use crate::lifecycle::x509::pem_blocks;
use crate::model::{CertificateVersion, InstanceKind, Job, KeyType, RevocationReason};
use crate::store::AuditEntry;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/certificates/{id}/csr", post(submit_csr))
        .route("/certificates/{id}/renew", post(renew))
        .route("/certificates/{id}/revoke", post(revoke))
        .route("/certificates/{id}/versions", get(versions))
        .route("/certificates/{id}/download", get(download))
        .route("/certificates/{id}/private-key", get(private_key))
        .route("/issuers/{id}/keys", post(import_key))
}

/// Routes served without authentication, outside `/api/v1`.
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/crl/{issuer_id}", get(crl))
}

/// A certificate signing request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitCsr {
    /// PKCS#10, PEM (`-----BEGIN CERTIFICATE REQUEST-----`) or base64 DER. Its key type must be
    /// the certificate's and its names exactly the certificate's names.
    pub csr: String,
}

/// Submit a CSR. Checked at once (signature, key type, names, the issuer's policy); issuance
/// then runs as the returned job — follow it with `GET /api/v1/jobs/{id}`.
#[utoipa::path(post, path = "/api/v1/certificates/{id}/csr", tag = "certificates", security(("bearer" = [])),
    request_body = SubmitCsr,
    responses((status = 202, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn submit_csr(
    caller: Authorized<perm::CertificatesWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SubmitCsr>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    if body.csr.len() > 64 * 1024 {
        return Err(ApiError::invalid("csr", "larger than 64 KiB: not a CSR"));
    }
    let job = state.lifecycle.submit_csr(&id, &body.csr, caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Renew now. A server-generated key is replaced and the job runs at once; for an agent's key
/// the job waits for the agent's CSR (`awaiting_csr`).
#[utoipa::path(post, path = "/api/v1/certificates/{id}/renew", tag = "certificates", security(("bearer" = [])),
    responses((status = 202, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn renew(
    caller: Authorized<perm::CertificatesWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let cert = state
        .store
        .get_certificate(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("certificate {id}")))?;
    let job = state.lifecycle.request_issuance(&cert, caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Why a certificate is revoked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// RFC 5280 reason (default `unspecified`): unspecified, key_compromise, ca_compromise,
    /// affiliation_changed, superseded, cessation_of_operation, certificate_hold,
    /// privilege_withdrawn, aa_compromise.
    #[serde(default = "unspecified")]
    pub reason: RevocationReason,
}

fn unspecified() -> RevocationReason {
    RevocationReason::Unspecified
}

/// Revoke the current version. Recorded at once and listed on the issuer's CRL; the issuer
/// plugin is told by a revocation job.
#[utoipa::path(post, path = "/api/v1/certificates/{id}/revoke", tag = "certificates", security(("bearer" = [])),
    request_body = Revoke,
    responses((status = 200, body = CertificateVersion), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn revoke(
    caller: Authorized<perm::CertificatesWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Revoke>,
) -> ApiResult<Json<CertificateVersion>> {
    Ok(Json(state.lifecycle.revoke(&id, body.reason, caller.actor()).await?))
}

/// Issued versions, newest first.
#[utoipa::path(get, path = "/api/v1/certificates/{id}/versions", tag = "certificates", security(("bearer" = [])),
    responses((status = 200, body = Vec<CertificateVersion>), (status = 404, body = ErrorBody)))]
pub async fn versions(
    _caller: Authorized<perm::CertificatesRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<CertificateVersion>>> {
    if state.store.get_certificate(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("certificate {id}")));
    }
    Ok(Json(state.store.list_versions(&id).await?))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The leaf certificate.
    Cert,
    /// The certificates above the leaf.
    Chain,
    /// Leaf and chain.
    Fullchain,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DownloadParams {
    /// cert, chain or fullchain (default fullchain).
    #[param(value_type = Option<String>)]
    pub part: Option<Part>,
    /// A version id (default: the current version).
    pub version: Option<String>,
}

async fn version_of(
    state: &AppState,
    cert_id: &str,
    version: Option<&str>,
) -> Result<(CertificateVersion, Option<String>), ApiError> {
    let cert = state
        .store
        .get_certificate(cert_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("certificate {cert_id}")))?;
    let version_id = match version {
        Some(v) => v.to_string(),
        None => cert.current_version_id.ok_or_else(|| ApiError::Conflict {
            message: format!("certificate {} has not been issued yet", cert.name),
            field: None,
        })?,
    };
    state
        .store
        .get_version(cert_id, &version_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("version {version_id} of certificate {cert_id}")))
}

fn pem_response(pem: String, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        pem,
    )
        .into_response()
}

/// Download the certificate, its chain or both, as PEM.
#[utoipa::path(get, path = "/api/v1/certificates/{id}/download", tag = "certificates", security(("bearer" = [])),
    params(DownloadParams),
    responses((status = 200, content_type = "application/x-pem-file", body = String), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn download(
    _caller: Authorized<perm::CertificatesRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DownloadParams>,
) -> ApiResult<Response> {
    let (version, _) = version_of(&state, &id, params.version.as_deref()).await?;
    let blocks = pem_blocks(&version.chain_pem);
    let part = params.part.unwrap_or(Part::Fullchain);
    let (pem, suffix) = match part {
        Part::Cert => (blocks.first().cloned().unwrap_or_default(), "cert"),
        Part::Chain => (blocks.iter().skip(1).cloned().collect::<String>(), "chain"),
        Part::Fullchain => (blocks.concat(), "fullchain"),
    };
    Ok(pem_response(pem, &format!("{}-{suffix}.pem", version.serial)))
}

/// Download a server-generated private key (PKCS#8 PEM). Admin only, audited; agents' keys
/// never reach the server, so there is nothing to download for them.
#[utoipa::path(get, path = "/api/v1/certificates/{id}/private-key", tag = "certificates", security(("bearer" = [])),
    params(DownloadParams),
    responses((status = 200, content_type = "application/x-pem-file", body = String), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn private_key(
    caller: Authorized<perm::PrivateKeys>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DownloadParams>,
) -> ApiResult<Response> {
    if params.part.is_some() {
        return Err(ApiError::invalid("part", "not used for private keys"));
    }
    let (version, key_id) = version_of(&state, &id, params.version.as_deref()).await?;
    let key_id = key_id.ok_or_else(|| ApiError::Conflict {
        message: "this version's key was generated by its agent and never left the node".into(),
        field: None,
    })?;
    let pem = state
        .lifecycle
        .keystore
        .private_key_pem(&key_id)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    state
        .store
        .record_audit(
            AuditEntry::new(caller.actor(), "certificate.private_key_download", "certificate", &id)
                .with_detail(json!({"version_id": version.id, "serial": version.serial})),
        )
        .await?;
    Ok(pem_response(pem, &format!("{}-key.pem", version.serial)))
}

/// The CRL of an issuer instance (DER, `application/pkix-crl`), for issuers whose CA key is in
/// the host keystore. No authentication: relying parties fetch it.
pub async fn crl(State(state): State<AppState>, Path(issuer_id): Path<String>) -> ApiResult<Response> {
    let issuer_id = issuer_id.trim_end_matches(".crl").to_string();
    let stored = match state.store.get_crl(&issuer_id).await? {
        Some(c) if c.next_update > state.lifecycle.clock.now() => c,
        _ => {
            if state
                .store
                .get_instance(InstanceKind::Issuer, &issuer_id)
                .await?
                .is_none()
            {
                return Err(ApiError::NotFound(format!("issuer {issuer_id}")));
            }
            crate::lifecycle::crl::regenerate(&state.lifecycle, &issuer_id)
                .await
                .map_err(|e| ApiError::NotFound(format!("CRL of issuer {issuer_id} ({e})")))?
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/pkix-crl".to_string()),
            (header::CACHE_CONTROL, "max-age=300".to_string()),
        ],
        stored.der,
    )
        .into_response())
}

/// A private key to import for an issuer instance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKey {
    /// PEM: `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY`. Unencrypted; send it over this API's
    /// TLS only, and delete your copy afterwards.
    pub private_key_pem: String,
}

/// A key now held by the host keystore.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedKey {
    /// Put this in the issuer's configuration (`ca_key_id` for the local CA).
    pub key_id: String,
    pub algorithm: KeyType,
    /// SubjectPublicKeyInfo, base64 DER.
    pub public_key: String,
}

/// Import a private key for an issuer instance (e.g. an existing CA's key, for sub-CA use). It
/// is sealed at rest and usable only by that instance, which signs with it by id.
#[utoipa::path(post, path = "/api/v1/issuers/{id}/keys", tag = "issuers", security(("bearer" = [])),
    request_body = ImportKey,
    responses((status = 201, body = ImportedKey), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_key(
    caller: Authorized<perm::PrivateKeys>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ImportKey>,
) -> ApiResult<(StatusCode, Json<ImportedKey>)> {
    if state.store.get_instance(InstanceKind::Issuer, &id).await?.is_none() {
        return Err(ApiError::NotFound(format!("issuer {id}")));
    }
    let info = state
        .lifecycle
        .keystore
        .import(&format!("instance:{id}"), &body.private_key_pem)
        .await
        .map_err(|e| match e {
            crate::keystore::KeystoreError::Import(m) => ApiError::invalid("private_key_pem", m),
            other => ApiError::Internal(other.into()),
        })?;
    state
        .store
        .record_audit(
            AuditEntry::new(caller.actor(), "issuer.key_import", "issuer", &id)
                .with_detail(json!({"key_id": info.id, "algorithm": info.algorithm})),
        )
        .await?;
    use base64::Engine;
    Ok((
        StatusCode::CREATED,
        Json(ImportedKey {
            key_id: info.id,
            algorithm: info.algorithm,
            public_key: base64::engine::general_purpose::STANDARD.encode(&info.public_key),
        }),
    ))
}
