//! Plugin instances declared in a file (`CERTCTL_INSTANCES_FILE`), as the Helm chart renders
//! them from its values: applied at start-up and again whenever the file's content changes.
//!
//! ```json
//! {"issuers": [{"name": "letsencrypt", "plugin": "acme", "config": {"dns_solver": "cf"}}],
//!  "dns_solvers": [{"name": "cf", "plugin": "cloudflare",
//!                   "config": {"api_token": "file:/etc/certctl/secrets/cf/token"}}],
//!  "notifiers": []}
//! ```
//!
//! Instances are matched by kind and name: created when missing, their configuration replaced
//! when it differs, nothing deleted (removing an entry leaves the instance; delete it through
//! the API). Each configuration goes through the same checks as the API's; secrets stay
//! references (`file:` / `env:`) resolved at each call. Changes are audited as `instances-file`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::error::ApiError;
use crate::model::InstanceKind;
use crate::plugins::registry::Registry;
use crate::store::{AuditEntry, Store, StoreError};

/// The actor of the audit entries.
const ACTOR: &str = "instances-file";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    #[serde(default)]
    issuers: Vec<Instance>,
    #[serde(default)]
    dns_solvers: Vec<Instance>,
    #[serde(default)]
    notifiers: Vec<Instance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Instance {
    name: String,
    plugin: String,
    #[serde(default = "empty_object")]
    config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// What one application did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
    /// `kind name: what is wrong` for every declaration that could not be applied.
    pub errors: Vec<String>,
}

fn message(e: &ApiError) -> String {
    match e {
        ApiError::Invalid { message, field } => format!("{field}: {message}"),
        other => other.to_string(),
    }
}

/// Parses the file; errors give the JSON path of the bad entry.
fn parse(path: &Path, bytes: &[u8]) -> anyhow::Result<Declared> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, Declared>(&mut de).map_err(|e| {
        anyhow!(
            "{} (CERTCTL_INSTANCES_FILE): at {}: {}",
            path.display(),
            e.path(),
            e.inner()
        )
    })
}

/// Applies every declaration of the file's `bytes`: each one on its own (a bad one does not
/// stop the others) — see the module docs.
pub async fn apply(store: &Store, plugins: &Registry, path: &Path, bytes: &[u8]) -> anyhow::Result<Applied> {
    let declared = parse(path, bytes)?;
    let mut applied = Applied::default();
    for (kind, list, key) in [
        (InstanceKind::DnsSolver, &declared.dns_solvers, "dns_solvers"),
        (InstanceKind::Notifier, &declared.notifiers, "notifiers"),
        (InstanceKind::Issuer, &declared.issuers, "issuers"),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        for (i, decl) in list.iter().enumerate() {
            let label = format!("{key}[{i}] ({kind} {:?})", decl.name);
            if !seen.insert(decl.name.as_str()) {
                applied.errors.push(format!("{label}: declared twice"));
                continue;
            }
            match apply_one(store, plugins, kind, decl).await {
                Ok(Change::Created) => applied.created.push(format!("{kind} {}", decl.name)),
                Ok(Change::Updated) => applied.updated.push(format!("{kind} {}", decl.name)),
                Ok(Change::Unchanged) => applied.unchanged += 1,
                Err(e) => applied.errors.push(format!("{label}: {e}")),
            }
        }
    }
    Ok(applied)
}

enum Change {
    Created,
    Updated,
    Unchanged,
}

async fn apply_one(store: &Store, plugins: &Registry, kind: InstanceKind, decl: &Instance) -> anyhow::Result<Change> {
    crate::api::validate::resource_name("name", &decl.name).map_err(|e| anyhow!(message(&e)))?;
    crate::api::instances::check_plugin_name(&decl.plugin).map_err(|e| anyhow!(message(&e)))?;
    let existing = store.get_instance_by_name(kind, &decl.name).await?;
    if let Some(current) = &existing {
        if current.plugin != decl.plugin {
            return Err(anyhow!(
                "exists with plugin {:?}, declared with {:?}: a plugin cannot change; delete the instance or declare another name",
                current.plugin,
                decl.plugin
            ));
        }
        if current.config == decl.config {
            return Ok(Change::Unchanged);
        }
    }
    crate::api::instances::check_config(plugins, kind, &decl.plugin, &decl.config)
        .await
        .map_err(|e| anyhow!(message(&e)))?;
    match existing {
        Some(current) => {
            let audit = AuditEntry::new(ACTOR, &format!("{kind}.update"), kind.as_str(), &current.id);
            store
                .update_instance(kind, &current.id, None, Some(&decl.config), audit)
                .await?;
            Ok(Change::Updated)
        }
        None => {
            let audit = AuditEntry::new(ACTOR, &format!("{kind}.create"), kind.as_str(), "")
                .with_detail(serde_json::json!({"name": decl.name, "plugin": decl.plugin}));
            match store
                .create_instance(kind, &decl.name, &decl.plugin, &decl.config, audit)
                .await
            {
                Ok(_) => Ok(Change::Created),
                // Another replica created it a moment ago: the next pass compares configs.
                Err(StoreError::Conflict { .. }) => Ok(Change::Unchanged),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Reads and applies the file; logs what changed and every declaration that failed.
async fn apply_file(store: &Store, plugins: &Registry, path: &Path, bytes: &[u8]) -> anyhow::Result<Applied> {
    let applied = apply(store, plugins, path, bytes).await?;
    for e in &applied.errors {
        tracing::error!(file = %path.display(), error = %e, "a declared instance was not applied");
    }
    tracing::info!(
        file = %path.display(),
        created = ?applied.created,
        updated = ?applied.updated,
        unchanged = applied.unchanged,
        failed = applied.errors.len(),
        "declared instances applied"
    );
    Ok(applied)
}

/// At start-up: the file must exist and parse, and every declaration must apply (a wrong
/// declaration stops the server with the reason, rather than running without the instance).
/// Then a task re-applies it whenever its content changes (every `interval`); a bad new
/// version is logged and the instances stay as they are.
pub async fn start(
    store: Store,
    plugins: Arc<Registry>,
    path: PathBuf,
    interval: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let bytes = std::fs::read(&path).with_context(|| format!("CERTCTL_INSTANCES_FILE {}", path.display()))?;
    let applied = apply_file(&store, &plugins, &path, &bytes).await?;
    if !applied.errors.is_empty() {
        return Err(anyhow!(
            "{} (CERTCTL_INSTANCES_FILE): {}",
            path.display(),
            applied.errors.join("; ")
        ));
    }
    let mut last: [u8; 32] = Sha256::digest(&bytes).into();
    Ok(tokio::spawn(async move {
        // A version with failed declarations is tried again every minute (a Secret mounted
        // late, a database briefly away), not every pass.
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(interval).await;
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "CERTCTL_INSTANCES_FILE cannot be read; keeping the instances");
                    continue;
                }
            };
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            let due = retry_at.is_some_and(|t| tokio::time::Instant::now() >= t);
            if digest == last && !due {
                continue;
            }
            last = digest;
            retry_at = match apply_file(&store, &plugins, &path, &bytes).await {
                Ok(applied) if applied.errors.is_empty() => None,
                Ok(_) => Some(tokio::time::Instant::now() + Duration::from_secs(60)),
                Err(e) => {
                    // Does not parse: nothing to retry until the file changes.
                    tracing::error!(error = %format!("{e:#}"), "CERTCTL_INSTANCES_FILE changed but was not applied");
                    None
                }
            };
        }
    }))
}
