//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    agents, audit, certificates, dashboard, error, instances, issuance, jobs, keys, notifications, persist, plugins,
    system,
};
use crate::model;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The instance handlers serve three kinds from one set of functions, annotated once for
/// issuers (and the test action once for notifiers); this copies those paths to the others.
struct InstanceKinds;

impl Modify for InstanceKinds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let paths = openapi.paths.paths.clone();
        for (path, item) in paths {
            // Key import is for issuers only.
            let targets: &[&str] = if path.ends_with("/keys") {
                &[]
            } else if path.starts_with("/api/v1/issuers") {
                &["/api/v1/dns-solvers", "/api/v1/notifiers"]
            } else if path.starts_with("/api/v1/notifiers/") {
                &["/api/v1/dns-solvers"]
            } else {
                &[]
            };
            let prefix = if path.starts_with("/api/v1/issuers") {
                "/api/v1/issuers"
            } else {
                "/api/v1/notifiers"
            };
            for target in targets {
                openapi
                    .paths
                    .paths
                    .insert(path.replacen(prefix, target, 1), item.clone());
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "certctl API", description = "TLS certificate lifecycle: certificates, issuers, audit, metrics."),
    paths(
        system::health, system::ready, system::version, system::metrics, dashboard::whoami, dashboard::overview,
        certificates::declare, certificates::list, certificates::fetch, certificates::update, certificates::remove,
        issuance::submit_csr, issuance::renew, issuance::revoke, issuance::versions, issuance::download,
        issuance::private_key, issuance::import_key,
        notifications::create_route, notifications::list_routes, notifications::fetch_route,
        notifications::replace_route, notifications::remove_route, notifications::list,
        instances::create, instances::list, instances::fetch, instances::update, instances::remove, instances::test,
        plugins::list,
        jobs::list, jobs::fetch, jobs::cancel, jobs::retry, jobs::approve,
        keys::create, keys::list, keys::remove,
        audit::list,
        persist::list, persist::approve,
        agents::register, agents::list, agents::fetch, agents::retire, agents::heartbeat, agents::work,
        agents::agent_csr, agents::deployment_result, agents::report_discoveries, agents::list_discoveries,
        agents::claim, agents::dismiss,
    ),
    components(schemas(
        error::ErrorBody, error::ErrorDetail, persist::PersistRecord, model::Agent, model::Found, model::Discovery, model::Certificate, model::PluginInstance, model::AuditEvent,
        model::ApiKeyInfo, model::CertStatus, model::KeyType, model::KeyGeneration, model::RenewalPolicy,
        model::InstanceKind, model::Job, model::JobKind, model::JobState, model::ErrorClass, crate::auth::Role,
        model::CertificateVersion, model::RevocationReason, model::EventKind, model::Severity,
        model::NotificationRoute, crate::lifecycle::events::Notification, issuance::Part,
    )),
    modifiers(&BearerAuth, &InstanceKinds)
)]
pub struct ApiDoc;

/// Serves the document (no authentication: it describes the API, it holds no data).
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
