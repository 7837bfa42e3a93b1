//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, certificates, error, instances, keys, system};
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

#[derive(OpenApi)]
#[openapi(
    info(title = "certctl API", description = "TLS certificate lifecycle: certificates, issuers, audit, metrics."),
    paths(
        system::health, system::ready, system::version, system::metrics,
        certificates::declare, certificates::list, certificates::fetch, certificates::update, certificates::remove,
        instances::create, instances::list, instances::fetch, instances::update, instances::remove,
        keys::create, keys::list, keys::remove,
        audit::list,
    ),
    components(schemas(
        error::ErrorBody, error::ErrorDetail, model::Certificate, model::PluginInstance, model::AuditEvent,
        model::ApiKeyInfo, model::CertStatus, model::KeyType, model::KeyGeneration, model::RenewalPolicy,
        model::InstanceKind, crate::auth::Role,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Serves the document (no authentication: it describes the API, it holds no data).
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
