//! `/api/v1/dns-persist`: dns-persist-01 records (draft-ietf-acme-dns-persist) the ACME issuer
//! asked for, and the operator's approval that lets the host publish one. A record is written
//! once and never removed, so it is never published without that approval.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiQuery, Authorized, perm};
use crate::challenge::ApprovalError;
use crate::model::Timestamp;
use crate::plugins::PluginFailure;
use crate::store::AuditEntry;
use crate::store::challenges::Challenge;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dns-persist", get(list))
        .route("/dns-persist/{id}/approve", post(approve))
}

/// A dns-persist-01 record the host was asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersistRecord {
    pub id: i64,
    /// The issuer instance whose order asked for it.
    pub issuer_id: String,
    /// The name being validated (`*.` kept for wildcards).
    pub identifier: String,
    /// `_validation-persist.<domain>`.
    pub fqdn: String,
    /// The TXT value the host publishes on approval.
    pub value: String,
    pub zone: String,
    /// `awaiting_approval`, `presenting` (being published), `present` (visible, or already
    /// there: no write was needed), `cleaned` (the order is over; the record stays) or `failed`.
    pub state: String,
    /// What the operator should know: how to approve, or why publishing failed.
    pub message: Option<String>,
    /// The DNS-solver instance that publishes it on approval; none: publish it by hand.
    pub solver_id: Option<String>,
    #[schema(value_type = String)]
    pub created_at: Timestamp,
}

impl From<Challenge> for PersistRecord {
    fn from(c: Challenge) -> Self {
        PersistRecord {
            id: c.id,
            issuer_id: c.instance_id,
            identifier: c.identifier,
            fqdn: c.fqdn.unwrap_or_default(),
            value: c.value.unwrap_or_default(),
            zone: c.zone.unwrap_or_default(),
            state: c.state,
            message: c.last_error,
            solver_id: c.solver_id,
            created_at: c.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPersist {
    /// awaiting_approval, presenting, present, cleaned or failed.
    pub state: Option<String>,
}

const STATES: [&str; 5] = ["awaiting_approval", "presenting", "present", "cleaned", "failed"];

/// dns-persist-01 records, newest first (at most 500).
#[utoipa::path(get, path = "/api/v1/dns-persist", tag = "issuers", security(("bearer" = [])),
    params(ListPersist),
    responses((status = 200, body = Vec<PersistRecord>), (status = 400, body = ErrorBody)))]
pub async fn list(
    _caller: Authorized<perm::IssuersRead>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListPersist>,
) -> ApiResult<Json<Vec<PersistRecord>>> {
    if let Some(s) = &query.state
        && !STATES.contains(&s.as_str())
    {
        return Err(ApiError::BadRequest {
            message: format!("state: {s:?} is not one of {}", STATES.join(", ")),
            field: Some("state".into()),
        });
    }
    let rows = state.store.persist_challenges(query.state.as_deref()).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Approve a record: the host publishes it through the issuer's DNS solver, once. It is never
/// removed afterwards; later orders for the name need no DNS write.
#[utoipa::path(post, path = "/api/v1/dns-persist/{id}/approve", tag = "issuers", security(("bearer" = [])),
    responses((status = 200, body = PersistRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn approve(
    caller: Authorized<perm::IssuersWrite>,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<PersistRecord>> {
    let broker = state
        .plugins
        .services()
        .and_then(|s| s.challenges.clone())
        .ok_or_else(|| ApiError::Unavailable("this server has no challenge broker".into()))?;
    match broker.approve_persist(id).await {
        Ok(c) => {
            let audit = AuditEntry::new(caller.actor(), "dns_persist.approve", "dns_persist", &id.to_string())
                .with_detail(json!({"fqdn": c.fqdn, "value": c.value}));
            state.store.record_audit(audit).await?;
            Ok(Json(c.into()))
        }
        Err(ApprovalError::NotFound) => Err(ApiError::NotFound(format!("dns-persist record {id}"))),
        Err(ApprovalError::NotAwaiting(s)) => Err(ApiError::Conflict {
            message: format!("dns-persist record {id} is {s}, not awaiting_approval"),
            field: None,
        }),
        Err(ApprovalError::Failed(f @ (PluginFailure::InvalidConfig(_) | PluginFailure::Auth(_)))) => {
            Err(ApiError::Invalid {
                message: format!("dns-persist record {id} not published: {f}"),
                field: "id".into(),
            })
        }
        Err(ApprovalError::Failed(f)) => Err(ApiError::Unavailable(format!(
            "dns-persist record {id} not published, still awaiting approval: {f}"
        ))),
    }
}
