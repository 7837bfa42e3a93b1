//! Plugin instances: `/api/v1/issuers`, `/api/v1/dns-solvers`, `/api/v1/notifiers`.
//!
//! One set of handlers serves the three kinds; the kind comes from the matched path. An
//! instance must name a loaded plugin of its kind; its configuration is checked against the
//! plugin's manifest and then by the plugin itself (`validate-config`). The same check serves
//! instances declared in `CERTCTL_INSTANCES_FILE` (`crate::declared`).

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Caller};
use super::{AppState, PageParams, validate};
use crate::auth::Permission;
use crate::model::{InstanceKind, Page, PluginInstance};
use crate::plugins::registry::Registry;
use crate::plugins::{CallError, CallOutcome, PluginFailure, v0_1};
use crate::secrets;
use crate::store::AuditEntry;

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for path in ["/issuers", "/dns-solvers", "/notifiers"] {
        router = router
            .route(path, get(list).post(create))
            .route(&format!("{path}/{{id}}"), get(fetch).patch(update).delete(remove));
    }
    router
        .route("/dns-solvers/{id}/test", post(test))
        .route("/notifiers/{id}/test", post(test))
}

/// The instance kind named by the request path.
pub struct Kind(pub InstanceKind);

impl Kind {
    fn read(&self) -> Permission {
        match self.0 {
            InstanceKind::Issuer => Permission::IssuersRead,
            _ => Permission::PluginsRead,
        }
    }

    fn write(&self) -> Permission {
        match self.0 {
            InstanceKind::Issuer => Permission::IssuersWrite,
            _ => Permission::PluginsWrite,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Kind {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let kind = if path.contains("/dns-solvers") {
            InstanceKind::DnsSolver
        } else if path.contains("/notifiers") {
            InstanceKind::Notifier
        } else {
            InstanceKind::Issuer
        };
        Ok(Kind(kind))
    }
}

/// A new instance of a plugin with its configuration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    pub name: String,
    /// Name of a loaded plugin of this kind (see `GET /api/v1/plugins`).
    pub plugin: String,
    /// Plugin configuration (a JSON object). Secret keys take `env:NAME` or `file:/path`.
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

pub(crate) fn check_plugin_name(plugin: &str) -> Result<(), ApiError> {
    if crate::plugins::manifest::is_plugin_name(plugin) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "plugin",
            format!("{plugin:?} is not a plugin name: 1-64 lower-case letters, digits or '-'"),
        ))
    }
}

/// The reason a plugin call failed, as an API error.
fn call_failed(plugin: &str, e: &CallError) -> ApiError {
    ApiError::Unavailable(format!("plugin {plugin} failed: {e}"))
}

/// Checks a configuration: object, manifest keys and types, secret references that resolve,
/// then the plugin's own `validate-config`.
pub(crate) async fn check_config(
    plugins: &Registry,
    kind: InstanceKind,
    plugin: &str,
    config: &serde_json::Value,
) -> ApiResult<()> {
    if !config.is_object() {
        return Err(ApiError::invalid("config", "must be a JSON object"));
    }
    let Some(manifest) = plugins.manifest(plugin).filter(|m| m.kind == kind) else {
        let (loaded, _) = plugins.list();
        let names: Vec<String> = loaded.into_iter().filter(|p| p.kind == kind).map(|p| p.name).collect();
        return Err(ApiError::invalid(
            "plugin",
            format!(
                "no {kind} plugin named {plugin:?} is loaded; loaded {kind} plugins: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    };
    manifest
        .check_config(config)
        .map_err(|(field, message)| ApiError::invalid(&field, message))?;
    let resolved =
        secrets::resolve(&manifest, config).map_err(|(field, message)| ApiError::invalid(&field, message))?;
    let outcome = plugins.validate_config(plugin, kind, &resolved).await;
    match outcome.result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(PluginFailure::InvalidConfig(message))) => {
            // SDK plugins start the message with the key: "config.url: required".
            let field = message
                .split_once(": ")
                .map(|(f, _)| f)
                .filter(|f| f.starts_with("config.") && !f.contains(' '))
                .unwrap_or("config")
                .to_string();
            Err(ApiError::invalid(&field, message))
        }
        Ok(Err(other)) => Err(ApiError::invalid("config", other.to_string())),
        Err(e) => Err(call_failed(plugin, &e)),
    }
}

/// Create an instance.
#[utoipa::path(post, path = "/api/v1/issuers", tag = "instances", security(("bearer" = [])),
    request_body = CreateInstance,
    responses((status = 201, body = PluginInstance), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    caller: Caller,
    kind: Kind,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateInstance>,
) -> ApiResult<(StatusCode, Json<PluginInstance>)> {
    caller.require(kind.write())?;
    validate::resource_name("name", &body.name)?;
    check_plugin_name(&body.plugin)?;
    check_config(&state.plugins, kind.0, &body.plugin, &body.config).await?;
    let audit = AuditEntry::new(
        &caller.principal.name,
        &format!("{}.create", kind.0),
        kind.0.as_str(),
        "",
    )
    .with_detail(json!({"name": body.name, "plugin": body.plugin}));
    let instance = state
        .store
        .create_instance(kind.0, &body.name, &body.plugin, &body.config, audit)
        .await?;
    Ok((StatusCode::CREATED, Json(instance)))
}

/// List instances.
#[utoipa::path(get, path = "/api/v1/issuers", tag = "instances", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<PluginInstance>)))]
pub async fn list(
    caller: Caller,
    kind: Kind,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<PluginInstance>>> {
    caller.require(kind.read())?;
    Ok(Json(state.store.list_instances(kind.0, &params.to_request()?).await?))
}

async fn load(state: &AppState, kind: InstanceKind, id: &str) -> ApiResult<PluginInstance> {
    state
        .store
        .get_instance(kind, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{kind} {id}")))
}

/// One instance.
#[utoipa::path(get, path = "/api/v1/issuers/{id}", tag = "instances", security(("bearer" = [])),
    responses((status = 200, body = PluginInstance), (status = 404, body = ErrorBody)))]
pub async fn fetch(
    caller: Caller,
    kind: Kind,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginInstance>> {
    caller.require(kind.read())?;
    Ok(Json(load(&state, kind.0, &id).await?))
}

/// Rename an instance or replace its configuration.
#[utoipa::path(patch, path = "/api/v1/issuers/{id}", tag = "instances", security(("bearer" = [])),
    request_body = UpdateInstance,
    responses((status = 200, body = PluginInstance), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    caller: Caller,
    kind: Kind,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateInstance>,
) -> ApiResult<Json<PluginInstance>> {
    caller.require(kind.write())?;
    if let Some(name) = &body.name {
        validate::resource_name("name", name)?;
    }
    let current = load(&state, kind.0, &id).await?;
    if let Some(config) = &body.config {
        check_config(&state.plugins, kind.0, &current.plugin, config).await?;
    }
    let audit = AuditEntry::new(
        &caller.principal.name,
        &format!("{}.update", kind.0),
        kind.0.as_str(),
        &id,
    );
    state
        .store
        .update_instance(kind.0, &id, body.name.as_deref(), body.config.as_ref(), audit)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("{} {id}", kind.0)))
}

/// Delete an instance. An issuer is refused (409) while certificates use it.
#[utoipa::path(delete, path = "/api/v1/issuers/{id}", tag = "instances", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    caller: Caller,
    kind: Kind,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(kind.write())?;
    let audit = AuditEntry::new(
        &caller.principal.name,
        &format!("{}.delete", kind.0),
        kind.0.as_str(),
        &id,
    );
    if state.store.delete_instance(kind.0, &id, audit).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("{} {id}", kind.0)))
    }
}

/// Options of a test run. DNS solvers need the zone to write a probe record into.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// DNS solvers: the zone; the probe record is `_certctl-test.<zone>`.
    pub zone: Option<String>,
}

/// One call made by a test run.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestStep {
    pub op: String,
    /// `ok`, `plugin_error`, `timeout`, `memory`, `trap` or `host_error`.
    pub outcome: String,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// What the plugin logged, `[level, message]`.
    pub logs: Vec<(String, String)>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestReport {
    pub ok: bool,
    pub steps: Vec<TestStep>,
}

fn step<T>(op: &str, outcome: &CallOutcome<T>) -> TestStep {
    let error = match &outcome.result {
        Ok(Ok(_)) => None,
        Ok(Err(f)) => Some(f.to_string()),
        Err(e) => Some(e.to_string()),
    };
    let label = outcome.label().to_string();
    TestStep {
        op: op.to_string(),
        outcome: label,
        error,
        duration_ms: outcome.duration.as_millis() as u64,
        logs: outcome.logs.clone(),
    }
}

/// Exercise an instance: a notifier sends a test event; a DNS solver presents and cleans up
/// a probe TXT record. Audited. The report says what each call did.
#[utoipa::path(post, path = "/api/v1/notifiers/{id}/test", tag = "instances", security(("bearer" = [])),
    request_body(content = TestRequest, description = "optional; DNS solvers need `zone`"),
    responses((status = 200, body = TestReport), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn test(
    caller: Caller,
    kind: Kind,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<ApiJson<TestRequest>>,
) -> ApiResult<Json<TestReport>> {
    caller.require(kind.write())?;
    let instance = load(&state, kind.0, &id).await?;
    let manifest = state
        .plugins
        .manifest(&instance.plugin)
        .ok_or_else(|| ApiError::Conflict {
            message: format!("plugin {} of this instance is not loaded", instance.plugin),
            field: None,
        })?;
    let config =
        secrets::resolve(&manifest, &instance.config).map_err(|(field, message)| ApiError::invalid(&field, message))?;
    let request = body.map(|ApiJson(b)| b).unwrap_or_default();
    let mut steps = Vec::new();
    match kind.0 {
        InstanceKind::Notifier => {
            let event = v0_1::Event {
                kind: "test".into(),
                severity: v0_1::Severity::Info,
                summary: format!("certctl test notification for {}", instance.name),
                subject: instance.name.clone(),
                dedup_key: format!("test-{}", instance.id),
                occurred_at: crate::model::Timestamp::now().0.max(0) as u64,
                detail: vec![("requested_by".into(), caller.principal.name.clone())],
            };
            let outcome = state
                .plugins
                .notify(&instance.plugin, Some(&instance.id), &config, &event)
                .await;
            steps.push(step("notify", &outcome));
        }
        InstanceKind::DnsSolver => {
            let zone = request.zone.ok_or_else(|| {
                ApiError::invalid("zone", "a DNS solver test needs the zone to write a probe record into")
            })?;
            let zone = validate::dns_name("zone", &zone)?;
            let record = v0_1::DnsRecord {
                fqdn: format!("_certctl-test.{zone}"),
                zone,
                value: crate::auth::generate_key(),
                ttl: 60,
            };
            let present = state.plugins.dns(&instance.plugin, &config, &record, true).await;
            steps.push(step("present", &present));
            // Clean up even when present failed half-way.
            let cleanup = state.plugins.dns(&instance.plugin, &config, &record, false).await;
            steps.push(step("cleanup", &cleanup));
        }
        InstanceKind::Issuer => {
            return Err(ApiError::invalid("id", "issuer instances have no test action yet"));
        }
    }
    let ok = steps.iter().all(|s| s.outcome == "ok");
    let audit = AuditEntry::new(
        &caller.principal.name,
        &format!("{}.test", kind.0),
        kind.0.as_str(),
        &id,
    )
    .with_detail(json!({"ok": ok}));
    state.store.record_audit(audit).await?;
    Ok(Json(TestReport { ok, steps }))
}
