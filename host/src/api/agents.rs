//! `/api/v1/agents`: registration (each agent gets its own credential), heartbeats, the work an
//! agent pulls (CSRs to send, deployments to run), deployment results, discovery reports; and
//! for operators the agent list, retirement and `/api/v1/discoveries` triage.
//!
//! An agent's credential is bound to its id: every `/agents/{id}/...` call of an agent must be
//! for its own id (403 otherwise), and a retired agent gets 410 (it should exit).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Authorized, Caller, perm};
use super::{AppState, validate};
use crate::auth::{ApiKeyHash, Role};
use crate::model::{Agent, Discovery, Found, Job, JobState, Timestamp};
use crate::store::AuditEntry;
use crate::store::agents::{AgentInfo, CsrWork, DeployWork};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents", get(list).post(register))
        .route("/agents/{id}", get(fetch))
        .route("/agents/{id}/retire", post(retire))
        .route("/agents/{id}/heartbeat", post(heartbeat))
        .route("/agents/{id}/work", get(work))
        .route("/agents/{id}/certificates/{cert}/csr", post(agent_csr))
        .route("/agents/{id}/jobs/{job}/result", post(deployment_result))
        .route("/agents/{id}/discoveries", post(report_discoveries))
        .route("/discoveries", get(list_discoveries))
        .route("/discoveries/{id}/claim", post(claim))
        .route("/discoveries/{id}/dismiss", post(dismiss))
}

/// Registration: the node's name (default: its hostname) and what it runs on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    pub name: String,
    #[serde(flatten)]
    pub info: AgentInfo,
}

/// A registered agent and the credential it uses from now on (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub agent: Agent,
    /// `cca_...`: send it as `Authorization: Bearer <credential>`. Bound to this agent.
    pub credential: String,
}

/// Register an agent. Needs the bootstrap token (`CERTCTL_AGENT_BOOTSTRAP_TOKEN`), a key of
/// role agent or an admin key. A name that exists gets a new credential (an agent that lost
/// its state); the old one stops working. 201 new, 200 re-registered.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", security(("bearer" = [])),
    request_body = Register,
    responses((status = 201, body = Registered), (status = 200, body = Registered), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Register>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    let p = &caller.principal;
    let allowed = (p.role == Role::Agent && p.agent_id.is_none()) || p.role == Role::Admin;
    if !allowed {
        return Err(ApiError::Forbidden {
            role: p.role.as_str(),
            permission: "agents.register (the bootstrap token, an agent-role key or an admin key)",
        });
    }
    validate::resource_name("name", &body.name)?;
    check_info(&body.info)?;
    let credential = crate::auth::generate_agent_credential();
    let audit = AuditEntry::new(&p.name, "agent.register", "agent", "").with_detail(json!({"name": body.name}));
    let (agent, created) = match state
        .store
        .register_agent(&body.name, &body.info, &ApiKeyHash::of(&credential), audit)
        .await
    {
        Ok(done) => done,
        Err(crate::store::StoreError::InUse(message)) => {
            return Err(ApiError::Conflict {
                message,
                field: Some("name".into()),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Registered { agent, credential })))
}

fn check_info(info: &AgentInfo) -> Result<(), ApiError> {
    for (field, value) in [
        ("hostname", &info.hostname),
        ("os", &info.os),
        ("arch", &info.arch),
        ("version", &info.version),
    ] {
        if let Some(v) = value
            && (v.len() > 255 || v.chars().any(char::is_control))
        {
            return Err(ApiError::invalid(field, "at most 255 printable characters"));
        }
    }
    if info.ips.len() > 64 {
        return Err(ApiError::invalid("ips", "at most 64 addresses"));
    }
    if let Some((i, bad)) = info
        .ips
        .iter()
        .enumerate()
        .find(|(_, ip)| ip.parse::<std::net::IpAddr>().is_err())
    {
        return Err(ApiError::invalid(
            &format!("ips.{i}"),
            format!("{bad:?} is not an IP address"),
        ));
    }
    Ok(())
}

/// The agent behind an agent credential, if it is `id` and still live: 403 for another agent
/// (or any other caller), 410 for a retired one.
async fn own_agent(caller: &Caller, state: &AppState, id: &str) -> Result<Agent, ApiError> {
    if caller.principal.agent_id.as_deref() != Some(id) {
        return Err(ApiError::Forbidden {
            role: caller.principal.role.as_str(),
            permission: "this agent's own credential",
        });
    }
    let agent = state
        .store
        .get_agent(id, Timestamp::now())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("agent {id}")))?;
    if agent.retired_at.is_some() {
        return Err(ApiError::Gone(format!(
            "agent {} was retired: stop, and register again under another name to come back",
            agent.name
        )));
    }
    Ok(agent)
}

/// Every agent, by name, with its last heartbeat and whether it is online (within 5 minutes).
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", security(("bearer" = [])),
    responses((status = 200, body = Vec<Agent>)))]
pub async fn list(
    _caller: Authorized<perm::CertificatesRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<Agent>>> {
    Ok(Json(state.store.list_agents(Timestamp::now()).await?))
}

/// One agent.
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents", security(("bearer" = [])),
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody)))]
pub async fn fetch(
    _caller: Authorized<perm::CertificatesRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    state
        .store
        .get_agent(&id, Timestamp::now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("agent {id}")))
}

/// Retire an agent: its credential answers 410 (the agent exits), its certificates lose their
/// agent. Audited.
#[utoipa::path(post, path = "/api/v1/agents/{id}/retire", tag = "agents", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn retire(
    caller: Authorized<perm::CertificatesWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let audit = AuditEntry::new(caller.actor(), "agent.retire", "agent", &id);
    if state.store.retire_agent(&id, audit).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("live agent {id}")))
    }
}

/// A heartbeat: the agent is alive, and what it runs on now.
#[utoipa::path(post, path = "/api/v1/agents/{id}/heartbeat", tag = "agents", security(("bearer" = [])),
    request_body = AgentInfo,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn heartbeat(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(info): ApiJson<AgentInfo>,
) -> ApiResult<StatusCode> {
    own_agent(&caller, &state, &id).await?;
    check_info(&info)?;
    if !state.store.heartbeat(&id, &info, state.lifecycle.clock.now()).await? {
        return Err(ApiError::Gone(format!("agent {id} was retired")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What an agent has to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Work {
    /// Certificates waiting for a CSR: generate the key here (the declared type), keep it, send
    /// the CSR to `/agents/{id}/certificates/{certificate_id}/csr`.
    pub csr: Vec<CsrWork>,
    /// Versions to deploy; report each to `/agents/{id}/jobs/{job_id}/result`.
    pub deploy: Vec<DeployWork>,
}

/// The agent's work, now. Poll it (the agent backs off when there is none).
#[utoipa::path(get, path = "/api/v1/agents/{id}/work", tag = "agents", security(("bearer" = [])),
    responses((status = 200, body = Work), (status = 403, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn work(caller: Caller, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Work>> {
    own_agent(&caller, &state, &id).await?;
    Ok(Json(Work {
        csr: state.store.agent_csr_work(&id).await?,
        deploy: state.store.agent_deploy_work(&id, Timestamp::now()).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentCsr {
    /// PKCS#10, PEM.
    pub csr: String,
}

/// An agent's CSR for one of its certificates (same checks as `POST /certificates/{id}/csr`).
#[utoipa::path(post, path = "/api/v1/agents/{id}/certificates/{cert}/csr", tag = "agents", security(("bearer" = [])),
    request_body = AgentCsr,
    responses((status = 202, body = Job), (status = 403, body = ErrorBody), (status = 410, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn agent_csr(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, cert)): Path<(String, String)>,
    ApiJson(body): ApiJson<AgentCsr>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let agent = own_agent(&caller, &state, &id).await?;
    let certificate = state.store.get_certificate(&cert).await?;
    if certificate.as_ref().and_then(|c| c.agent_id.as_deref()) != Some(id.as_str()) {
        // Another agent's certificate looks like no certificate at all.
        return Err(ApiError::NotFound(format!(
            "certificate {cert} of agent {}",
            agent.name
        )));
    }
    if body.csr.len() > 64 * 1024 {
        return Err(ApiError::invalid("csr", "larger than 64 KiB: not a CSR"));
    }
    let job = state
        .lifecycle
        .submit_csr(&cert, &body.csr, &caller.principal.name)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// How a deployment went, from the agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentResult {
    /// Absent: deployed (or already in place). Present: what failed; the agent rolled back.
    pub error: Option<String>,
    /// Steps, durations and command outputs, kept on the job.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub report: serde_json::Value,
}

/// Report a deployment: the job turns completed, or failed with the agent's error and report.
#[utoipa::path(post, path = "/api/v1/agents/{id}/jobs/{job}/result", tag = "agents", security(("bearer" = [])),
    request_body = DeploymentResult,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 410, body = ErrorBody)))]
pub async fn deployment_result(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, job)): Path<(String, String)>,
    ApiJson(body): ApiJson<DeploymentResult>,
) -> ApiResult<StatusCode> {
    own_agent(&caller, &state, &id).await?;
    if body.report.to_string().len() > 256 * 1024 {
        return Err(ApiError::invalid("report", "larger than 256 KiB"));
    }
    let error: Option<String> = body.error.as_deref().map(|e| e.chars().take(4096).collect());
    match state
        .store
        .finish_deployment(&job, &id, &body.report, error.as_deref(), Timestamp::now())
        .await?
    {
        Some(JobState::Failed) => {
            tracing::warn!(agent = %id, job = %job, error = ?error, "deployment failed and was rolled back");
            Ok(StatusCode::NO_CONTENT)
        }
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound(format!(
            "pending deployment job {job} of agent {id}"
        ))),
    }
}

/// What a discovery scan found.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryReport {
    pub found: Vec<Found>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiscoveryAccepted {
    /// Findings not seen before.
    pub new: usize,
}

/// Report certificates found on the agent's node.
#[utoipa::path(post, path = "/api/v1/agents/{id}/discoveries", tag = "agents", security(("bearer" = [])),
    request_body = DiscoveryReport,
    responses((status = 200, body = DiscoveryAccepted), (status = 403, body = ErrorBody), (status = 410, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn report_discoveries(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DiscoveryReport>,
) -> ApiResult<Json<DiscoveryAccepted>> {
    own_agent(&caller, &state, &id).await?;
    if body.found.len() > 10_000 {
        return Err(ApiError::invalid("found", "at most 10000 findings per report"));
    }
    for (i, f) in body.found.iter().enumerate() {
        if f.fingerprint_sha256.len() != 64 || !f.fingerprint_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::invalid(
                &format!("found.{i}.fingerprint_sha256"),
                "64 hex digits (SHA-256 of the DER)",
            ));
        }
        if f.path.is_empty() || f.path.len() > 4096 {
            return Err(ApiError::invalid(&format!("found.{i}.path"), "1 to 4096 characters"));
        }
    }
    let new = state
        .store
        .upsert_discoveries(&id, &body.found, Timestamp::now())
        .await?;
    Ok(Json(DiscoveryAccepted { new }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDiscoveries {
    /// new, claimed or dismissed.
    pub state: Option<String>,
}

/// Certificates agents found, newest sighting first (at most 1000).
#[utoipa::path(get, path = "/api/v1/discoveries", tag = "agents", security(("bearer" = [])),
    params(ListDiscoveries),
    responses((status = 200, body = Vec<Discovery>), (status = 400, body = ErrorBody)))]
pub async fn list_discoveries(
    _caller: Authorized<perm::CertificatesRead>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListDiscoveries>,
) -> ApiResult<Json<Vec<Discovery>>> {
    if let Some(s) = &query.state
        && !["new", "claimed", "dismissed"].contains(&s.as_str())
    {
        return Err(ApiError::BadRequest {
            message: format!("state: {s:?} is not one of new, claimed, dismissed"),
            field: Some("state".into()),
        });
    }
    Ok(Json(state.store.list_discoveries(query.state.as_deref()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The managed certificate that takes this one over (declare it first).
    pub certificate_id: String,
}

/// Claim a discovery: a managed certificate takes it over. Audited.
#[utoipa::path(post, path = "/api/v1/discoveries/{id}/claim", tag = "agents", security(("bearer" = [])),
    request_body = Claim,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn claim(
    caller: Authorized<perm::CertificatesWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Claim>,
) -> ApiResult<StatusCode> {
    if state.store.get_certificate(&body.certificate_id).await?.is_none() {
        return Err(ApiError::invalid(
            "certificate_id",
            format!("no certificate with id {:?}", body.certificate_id),
        ));
    }
    let audit = AuditEntry::new(caller.actor(), "discovery.claim", "discovery", &id)
        .with_detail(json!({"certificate_id": body.certificate_id}));
    if state
        .store
        .set_discovery_state(&id, "claimed", Some(&body.certificate_id), audit)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("discovery {id}")))
    }
}

/// Dismiss a discovery (not ours to manage). Audited.
#[utoipa::path(post, path = "/api/v1/discoveries/{id}/dismiss", tag = "agents", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn dismiss(
    caller: Authorized<perm::CertificatesWrite>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let audit = AuditEntry::new(caller.actor(), "discovery.dismiss", "discovery", &id);
    if state.store.set_discovery_state(&id, "dismissed", None, audit).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("discovery {id}")))
    }
}
