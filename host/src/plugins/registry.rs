//! The set of loaded plugins, reloaded when plugin directories change, and typed calls by kind.
//!
//! Reloading swaps `Arc`s: a call in flight keeps the `Loaded` it started with, so replacing a
//! plugin never breaks a running call. Directories are polled (file names, sizes, mtimes and
//! symlink targets), which also sees Kubernetes ConfigMap updates (an atomic `..data` symlink
//! swap that inotify watchers on the old files miss).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::grants::Grants;
use super::manifest::Manifest;
use super::v0_1::{self, dns_solver, notifier};
use super::{CallError, CallOutcome, Loaded, PluginFailure, Runtime};
use crate::metrics::Metrics;
use crate::model::{InstanceKind, Timestamp};

/// A plugin file that was refused, with the reason.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Refused {
    pub path: String,
    pub error: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// What `/api/v1/plugins` shows for each plugin.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PluginInfo {
    pub name: String,
    pub kind: InstanceKind,
    pub version: String,
    pub contract: String,
    pub description: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub path: String,
    /// Hosts the manifest asks for.
    pub requested_hosts: Vec<String>,
    /// Hosts it may reach after the operator's grant (`["*"]`: any).
    pub granted_hosts: Vec<String>,
    pub allow_private_networks: bool,
    #[schema(value_type = Object)]
    pub config_schema: serde_json::Value,
    #[schema(value_type = String, format = DateTime)]
    pub loaded_at: Timestamp,
    /// `ok` (its latest call succeeded), `failing` (its latest call failed) or `idle` (no call
    /// since this server started). Counted per server process; `validate-config` calls (bad
    /// configurations, the operator's mistakes) are left out.
    pub status: PluginStatus,
    /// Calls and failed calls since this server started.
    pub calls: u64,
    pub failures: u64,
    /// The latest failure, if any.
    pub last_error: Option<LastError>,
}

/// How a plugin's calls are going (see `PluginInfo::status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginStatus {
    Ok,
    Failing,
    Idle,
}

/// A failed plugin call, as the plugins page shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastError {
    pub op: String,
    /// `plugin_error`, `timeout`, `memory`, `trap` or `host_error`.
    pub outcome: String,
    pub message: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// Call results of one plugin since the server started.
#[derive(Debug, Clone, Default)]
struct Health {
    calls: u64,
    failures: u64,
    latest_failed: bool,
    last_error: Option<LastError>,
}

impl PluginInfo {
    fn of(p: &Loaded) -> PluginInfo {
        let m = &p.manifest;
        PluginInfo {
            name: m.name.clone(),
            kind: m.kind,
            version: m.version.clone(),
            contract: m.contract.clone(),
            description: m.description.clone(),
            sha256: p.digest.clone(),
            size_bytes: p.size,
            path: p.path.display().to_string(),
            requested_hosts: m.capabilities.outbound_hosts.clone(),
            granted_hosts: match &p.allowed.hosts {
                None => vec!["*".to_string()],
                Some(list) => list.iter().map(|h| h.to_string()).collect(),
            },
            allow_private_networks: p.allowed.allow_private_networks,
            config_schema: serde_json::to_value(&m.config).unwrap_or_default(),
            loaded_at: p.loaded_at,
            status: PluginStatus::Idle,
            calls: 0,
            failures: 0,
            last_error: None,
        }
    }

    fn with_health(mut self, health: Option<&Health>) -> PluginInfo {
        if let Some(h) = health {
            self.status = if h.latest_failed {
                PluginStatus::Failing
            } else {
                PluginStatus::Ok
            };
            self.calls = h.calls;
            self.failures = h.failures;
            self.last_error = h.last_error.clone();
        }
        self
    }
}

/// One call to an issuer.
enum IssuerStep<'a> {
    Check(&'a v0_1::issuer::IssueRequest),
    Begin(&'a v0_1::issuer::IssueRequest),
    Resume(&'a [u8]),
    Revoke(&'a str, u8),
    RenewalInfo(&'a str),
}

/// What an issuer call returns: progress for begin/resume, nothing for check/revoke.
#[derive(Debug)]
pub enum IssuerAnswer {
    Progress(v0_1::issuer::Progress),
    Done,
    /// `renewal-info`: the CA's suggested window, if it offers one.
    Renewal(Option<v0_1::issuer::RenewalWindow>),
}

/// Fingerprint of a directory's plugin files, to notice changes cheaply.
type DirState = Vec<(PathBuf, u64, i128, Option<PathBuf>)>;

fn scan_state(dirs: &[PathBuf]) -> DirState {
    let mut state = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str());
            if !matches!(ext, Some("wasm" | "toml")) {
                continue;
            }
            let meta = std::fs::metadata(&path).ok();
            let mtime = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            state.push((
                path.clone(),
                meta.map_or(0, |m| m.len()),
                mtime,
                std::fs::canonicalize(&path).ok(),
            ));
        }
    }
    state.sort();
    state
}

#[derive(Default)]
struct Loadout {
    loaded: BTreeMap<String, Arc<Loaded>>,
    refused: Vec<Refused>,
}

/// All plugins the server knows.
pub struct Registry {
    runtime: Runtime,
    dirs: Vec<PathBuf>,
    grants: Grants,
    metrics: Arc<Metrics>,
    current: RwLock<Loadout>,
    seen: RwLock<DirState>,
    /// Host services for instance calls (kv, keystore, mail); `None` where no instance runs.
    services: Option<Services>,
    /// TLS client configurations of instances' `ca_bundle`s, by SHA-256 of the PEM.
    instance_tls: std::sync::Mutex<HashMap<[u8; 32], Arc<rustls::ClientConfig>>>,
    /// Call results by plugin name (for `/api/v1/plugins` and the dashboard).
    health: std::sync::Mutex<HashMap<String, Health>>,
}

/// The host-reserved configuration key of every plugin that calls out over HTTPS: PEM
/// certificates (inline, or `file:/path`) trusted for that instance's outbound connections, in
/// addition to the system roots and CERTCTL_PLUGIN_CA_BUNDLE (a private ACME CA, say). The
/// host takes it out before the plugin sees the configuration.
pub const CA_BUNDLE_KEY: &str = "ca_bundle";

/// Why an instance's configuration cannot be handed to its plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    /// Worth waiting for: the plugin may be (re)loaded.
    #[error("plugin {0} is not loaded (see GET /api/v1/plugins)")]
    NotLoaded(String),
    /// `field: message`, e.g. a secret reference that does not resolve.
    #[error("{0}")]
    Invalid(String),
}

/// What calls made for a plugin instance can use.
#[derive(Clone)]
pub struct Services {
    pub store: crate::store::Store,
    pub keystore: Arc<crate::keystore::Keystore>,
    pub mailer: Option<Arc<crate::mail::Mailer>>,
    pub challenges: Option<Arc<crate::challenge::ChallengeBroker>>,
}

fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

impl Registry {
    pub fn new(runtime: Runtime, dirs: Vec<PathBuf>, grants: Grants, metrics: Arc<Metrics>) -> Registry {
        Registry {
            runtime,
            dirs,
            grants,
            metrics,
            current: RwLock::new(Loadout::default()),
            seen: RwLock::new(Vec::new()),
            services: None,
            instance_tls: std::sync::Mutex::new(HashMap::new()),
            health: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Gives instance calls their host services: the store (for `host-kv`), the keystore and
    /// the SMTP relay.
    pub fn with_services(mut self, services: Services) -> Self {
        self.services = Some(services);
        self
    }

    pub fn services(&self) -> Option<&Services> {
        self.services.as_ref()
    }

    fn context(&self, instance_id: &str) -> Result<super::sandbox::InstanceContext, CallError> {
        let services = self
            .services
            .as_ref()
            .ok_or_else(|| CallError::Host("instance calls need the store and keystore".into()))?;
        Ok(super::sandbox::InstanceContext {
            id: instance_id.to_string(),
            store: services.store.clone(),
            keystore: services.keystore.clone(),
            mailer: services.mailer.clone(),
            challenges: services.challenges.clone(),
            tls: None,
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// (Re)loads every plugin directory. Returns the number loaded and refused.
    pub fn reload(&self) -> (usize, usize) {
        let state = scan_state(&self.dirs);
        let mut next = Loadout::default();
        for dir in &self.dirs {
            if !dir.is_dir() {
                next.refused.push(Refused {
                    path: dir.display().to_string(),
                    error: "plugin directory does not exist".into(),
                    at: Timestamp::now(),
                });
                continue;
            }
            for path in wasm_files(dir) {
                // Unchanged plugins keep their compiled instance-pre.
                let previous = self
                    .current
                    .read()
                    .ok()
                    .and_then(|cur| cur.loaded.values().find(|l| l.path == path).cloned());
                let result = match previous {
                    Some(prev) if unchanged(&prev, &path) => Ok(prev),
                    _ => self.runtime.load(&path, &self.grants).map(Arc::new),
                };
                match result {
                    Ok(plugin) => {
                        let name = plugin.manifest.name.clone();
                        if let Some(first) = next.loaded.get(&name) {
                            next.refused.push(Refused {
                                path: path.display().to_string(),
                                error: format!("a plugin named {name} is already loaded from {}", first.path.display()),
                                at: Timestamp::now(),
                            });
                        } else {
                            next.loaded.insert(name, plugin);
                        }
                    }
                    Err(error) => {
                        tracing::error!(path = %path.display(), %error, "plugin refused");
                        next.refused.push(Refused {
                            path: path.display().to_string(),
                            error,
                            at: Timestamp::now(),
                        });
                    }
                }
            }
        }
        let counts = (next.loaded.len(), next.refused.len());
        for p in next.loaded.values() {
            tracing::info!(plugin = %p.manifest.name, kind = %p.manifest.kind, version = %p.manifest.version, "plugin loaded");
        }
        if let Ok(mut cur) = self.current.write() {
            *cur = next;
        }
        if let Ok(mut seen) = self.seen.write() {
            *seen = state;
        }
        counts
    }

    /// Reloads if any plugin file changed since the last load. Returns whether it reloaded.
    pub fn reload_if_changed(&self) -> bool {
        let state = scan_state(&self.dirs);
        let changed = self.seen.read().map(|s| *s != state).unwrap_or(true);
        if changed {
            let (loaded, refused) = self.reload();
            tracing::info!(loaded, refused, "plugin directory changed; plugins reloaded");
        }
        changed
    }

    /// Polls the directories every `every` until the task is dropped.
    pub fn watch(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let this = self.clone();
                // Compiling can take a while: keep it off the async workers.
                if let Err(e) = tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                    tracing::error!(error = %e, "plugin reload task failed");
                }
            }
        })
    }

    pub fn list(&self) -> (Vec<PluginInfo>, Vec<Refused>) {
        match self.current.read() {
            Ok(cur) => {
                let health = self.health.lock().map(|h| h.clone()).unwrap_or_default();
                (
                    cur.loaded
                        .values()
                        .map(|p| PluginInfo::of(p).with_health(health.get(&p.manifest.name)))
                        .collect(),
                    cur.refused.clone(),
                )
            }
            Err(_) => (Vec::new(), Vec::new()),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.current.read().ok()?.loaded.get(name).cloned()
    }

    pub fn manifest(&self, name: &str) -> Option<Manifest> {
        self.get(name).map(|p| p.manifest.clone())
    }

    /// An instance's configuration with its secret references resolved, ready for a call.
    pub fn instance_config(&self, instance: &crate::model::PluginInstance) -> Result<String, ConfigProblem> {
        let manifest = self
            .manifest(&instance.plugin)
            .ok_or_else(|| ConfigProblem::NotLoaded(instance.plugin.clone()))?;
        crate::secrets::resolve(&manifest, &instance.config)
            .map_err(|(field, message)| ConfigProblem::Invalid(format!("{field}: {message}")))
    }

    /// Splits the host-reserved `ca_bundle` off a resolved configuration (JSON): the
    /// configuration the plugin gets, and the TLS trust of the instance's calls, if it has one.
    /// Errors name the key.
    pub fn split_ca_bundle(&self, config: &str) -> Result<(String, Option<Arc<rustls::ClientConfig>>), String> {
        let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str::<serde_json::Value>(config) else {
            return Ok((config.to_string(), None));
        };
        let Some(value) = object.remove(CA_BUNDLE_KEY) else {
            return Ok((config.to_string(), None));
        };
        let stripped = serde_json::Value::Object(object).to_string();
        let text = match value {
            serde_json::Value::Null => return Ok((stripped, None)),
            serde_json::Value::String(t) => t,
            _ => return Err(format!("config.{CA_BUNDLE_KEY}: must be a string (PEM, or file:/path)")),
        };
        let pem = match text.strip_prefix("file:") {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("config.{CA_BUNDLE_KEY}: cannot read {path}: {e}"))?
            }
            None => text,
        };
        let digest: [u8; 32] = {
            use sha2::{Digest, Sha256};
            Sha256::digest(pem.as_bytes()).into()
        };
        let mut cache = self
            .instance_tls
            .lock()
            .map_err(|_| format!("config.{CA_BUNDLE_KEY}: TLS cache poisoned"))?;
        if let Some(tls) = cache.get(&digest) {
            return Ok((stripped, Some(tls.clone())));
        }
        let tls = Arc::new(
            super::http::client_tls_with(self.runtime.settings.ca_bundle.as_deref(), Some(&pem))
                .map_err(|e| format!("config.{CA_BUNDLE_KEY}: {e:#}"))?,
        );
        cache.insert(digest, tls.clone());
        Ok((stripped, Some(tls)))
    }

    fn plugin_of_kind(&self, name: &str, kind: InstanceKind) -> Result<Arc<Loaded>, CallError> {
        let plugin = self.get(name).ok_or_else(|| CallError::NotLoaded(name.to_string()))?;
        if plugin.manifest.kind != kind {
            return Err(CallError::WrongKind {
                plugin: name.to_string(),
                actual: plugin.manifest.kind,
                expected: kind,
            });
        }
        Ok(plugin)
    }

    fn record<T>(&self, plugin: &Loaded, op: &str, outcome: &CallOutcome<T>) {
        let label = outcome.label();
        let name = plugin.manifest.name.as_str();
        let kind = plugin.manifest.kind.as_str();
        self.metrics
            .plugin_calls_total
            .with_label_values(&[name, kind, op, label])
            .inc();
        self.metrics
            .plugin_call_duration_seconds
            .with_label_values(&[name, kind, op])
            .observe(outcome.duration.as_secs_f64());
        if let Err(e) = &outcome.result
            && let Some(reason) = e.trap_reason()
        {
            self.metrics.plugin_traps_total.with_label_values(&[name, reason]).inc();
        }
        if op != "validate-config"
            && let Ok(mut all) = self.health.lock()
        {
            let h = all.entry(name.to_string()).or_default();
            h.calls += 1;
            let message = match &outcome.result {
                Ok(Ok(_)) => None,
                Ok(Err(failure)) => Some(failure.to_string()),
                Err(e) => Some(e.to_string()),
            };
            h.latest_failed = message.is_some();
            if let Some(message) = message {
                h.failures += 1;
                h.last_error = Some(LastError {
                    op: op.to_string(),
                    outcome: label.to_string(),
                    message,
                    at: Timestamp::now(),
                });
            }
        }
    }

    /// A call refused before it reached the plugin, as if the plugin had answered `failure`.
    fn refused<T>(failure: PluginFailure) -> CallOutcome<T> {
        CallOutcome {
            result: Ok(Err(failure)),
            logs: Vec::new(),
            logs_dropped: 0,
            duration: Duration::ZERO,
        }
    }

    fn failed<T>(e: CallError) -> CallOutcome<T> {
        CallOutcome {
            result: Err(e),
            logs: Vec::new(),
            logs_dropped: 0,
            duration: Duration::ZERO,
        }
    }

    /// Asks the plugin whether `config` is acceptable.
    pub async fn validate_config(&self, name: &str, kind: InstanceKind, config: &str) -> CallOutcome<()> {
        let plugin = match self.plugin_of_kind(name, kind) {
            Ok(p) => p,
            Err(e) => return Self::failed(e),
        };
        let config = match self.split_ca_bundle(config) {
            Ok((config, _)) => config,
            Err(message) => return Self::refused(PluginFailure::InvalidConfig(message)),
        };
        let outcome = self
            .runtime
            .call(&plugin, "validate-config", None, async |store, instance| match kind {
                InstanceKind::Notifier => {
                    let guest = notifier::GuestIndices::new(&plugin.pre)?.load(&mut *store, instance)?;
                    guest.call_validate_config(&mut *store, &config).await
                }
                InstanceKind::DnsSolver => {
                    let guest = dns_solver::GuestIndices::new(&plugin.pre)?.load(&mut *store, instance)?;
                    guest.call_validate_config(&mut *store, &config).await
                }
                InstanceKind::Issuer => {
                    let guest = v0_1::issuer::GuestIndices::new(&plugin.pre)?.load(&mut *store, instance)?;
                    guest.call_validate_config(&mut *store, &config).await
                }
            })
            .await;
        self.record(&plugin, "validate-config", &outcome);
        outcome
    }

    /// Delivers an event through notifier instance `instance_id` (`None`: a test call outside
    /// any instance, without host services).
    pub async fn notify(
        &self,
        name: &str,
        instance_id: Option<&str>,
        config: &str,
        event: &v0_1::Event,
    ) -> CallOutcome<()> {
        let (plugin, mut ctx) = match self.plugin_of_kind(name, InstanceKind::Notifier).and_then(|p| {
            let ctx = match instance_id {
                Some(id) => Some(self.context(id)?),
                None => None,
            };
            Ok((p, ctx))
        }) {
            Ok(pc) => pc,
            Err(e) => return Self::failed(e),
        };
        let config = match self.split_ca_bundle(config) {
            Ok((config, tls)) => {
                if let Some(ctx) = ctx.as_mut() {
                    ctx.tls = tls;
                }
                config
            }
            Err(message) => return Self::refused(PluginFailure::InvalidConfig(message)),
        };
        let outcome = self
            .runtime
            .call(&plugin, "notify", ctx, async |store, instance| {
                let guest = notifier::GuestIndices::new(&plugin.pre)?.load(&mut *store, instance)?;
                guest.call_notify(&mut *store, &config, event).await
            })
            .await;
        self.record(&plugin, "notify", &outcome);
        outcome
    }

    /// Checks a request against issuer instance `instance_id`'s policy, without side effects.
    pub async fn issuer_check(
        &self,
        name: &str,
        instance_id: &str,
        config: &str,
        request: &v0_1::issuer::IssueRequest,
    ) -> CallOutcome<IssuerAnswer> {
        self.issuer_step(name, instance_id, config, IssuerStep::Check(request))
            .await
    }

    /// Starts an issuance on issuer instance `instance_id`.
    pub async fn issuer_begin(
        &self,
        name: &str,
        instance_id: &str,
        config: &str,
        request: &v0_1::issuer::IssueRequest,
    ) -> CallOutcome<IssuerAnswer> {
        self.issuer_step(name, instance_id, config, IssuerStep::Begin(request))
            .await
    }

    /// Continues an issuance with the state a previous call returned.
    pub async fn issuer_resume(
        &self,
        name: &str,
        instance_id: &str,
        config: &str,
        state: &[u8],
    ) -> CallOutcome<IssuerAnswer> {
        self.issuer_step(name, instance_id, config, IssuerStep::Resume(state))
            .await
    }

    /// Asks the issuer to revoke a certificate (PEM) with an RFC 5280 reason code.
    pub async fn issuer_revoke(
        &self,
        name: &str,
        instance_id: &str,
        config: &str,
        certificate_pem: &str,
        reason: u8,
    ) -> CallOutcome<IssuerAnswer> {
        self.issuer_step(name, instance_id, config, IssuerStep::Revoke(certificate_pem, reason))
            .await
    }

    /// Asks the issuer for the CA's suggested renewal window of a certificate (PEM).
    pub async fn issuer_renewal_info(
        &self,
        name: &str,
        instance_id: &str,
        config: &str,
        certificate_pem: &str,
    ) -> CallOutcome<IssuerAnswer> {
        self.issuer_step(name, instance_id, config, IssuerStep::RenewalInfo(certificate_pem))
            .await
    }

    async fn issuer_step(
        &self,
        name: &str,
        instance_id: &str,
        config: &str,
        step: IssuerStep<'_>,
    ) -> CallOutcome<IssuerAnswer> {
        let (plugin, mut ctx) = match self
            .plugin_of_kind(name, InstanceKind::Issuer)
            .and_then(|p| Ok((p, self.context(instance_id)?)))
        {
            Ok(pc) => pc,
            Err(e) => return Self::failed(e),
        };
        let config = match self.split_ca_bundle(config) {
            Ok((config, tls)) => {
                ctx.tls = tls;
                config
            }
            Err(message) => return Self::refused(PluginFailure::InvalidConfig(message)),
        };
        let op = match step {
            IssuerStep::Check(_) => "check-request",
            IssuerStep::Begin(_) => "begin",
            IssuerStep::Resume(_) => "resume",
            IssuerStep::Revoke(..) => "revoke",
            IssuerStep::RenewalInfo(_) => "renewal-info",
        };
        let outcome = self
            .runtime
            .call(&plugin, op, Some(ctx), async |store, instance| {
                let guest = v0_1::issuer::GuestIndices::new(&plugin.pre)?.load(&mut *store, instance)?;
                Ok(match step {
                    IssuerStep::Check(request) => guest
                        .call_check_request(&mut *store, &config, request)
                        .await?
                        .map(|()| IssuerAnswer::Done),
                    IssuerStep::Begin(request) => guest
                        .call_begin(&mut *store, &config, request)
                        .await?
                        .map(IssuerAnswer::Progress),
                    IssuerStep::Resume(state) => guest
                        .call_resume(&mut *store, &config, state)
                        .await?
                        .map(IssuerAnswer::Progress),
                    IssuerStep::Revoke(pem, reason) => guest
                        .call_revoke(&mut *store, &config, pem, reason)
                        .await?
                        .map(|()| IssuerAnswer::Done),
                    IssuerStep::RenewalInfo(pem) => guest
                        .call_renewal_info(&mut *store, &config, pem)
                        .await?
                        .map(IssuerAnswer::Renewal),
                })
            })
            .await;
        self.record(&plugin, op, &outcome);
        outcome
    }

    /// `present` (true) or `cleanup` (false) of a DNS-01 record.
    pub async fn dns(&self, name: &str, config: &str, record: &v0_1::DnsRecord, present: bool) -> CallOutcome<()> {
        let plugin = match self.plugin_of_kind(name, InstanceKind::DnsSolver) {
            Ok(p) => p,
            Err(e) => return Self::failed(e),
        };
        let op = if present { "present" } else { "cleanup" };
        let (config, tls) = match self.split_ca_bundle(config) {
            Ok(split) => split,
            Err(message) => return Self::refused(PluginFailure::InvalidConfig(message)),
        };
        let outcome = self
            .runtime
            .call_trusting(&plugin, op, None, tls, async |store, instance| {
                let guest = dns_solver::GuestIndices::new(&plugin.pre)?.load(&mut *store, instance)?;
                if present {
                    guest.call_present(&mut *store, &config, record).await
                } else {
                    guest.call_cleanup(&mut *store, &config, record).await
                }
            })
            .await;
        self.record(&plugin, op, &outcome);
        outcome
    }
}

fn unchanged(prev: &Loaded, path: &Path) -> bool {
    use sha2::{Digest, Sha256};
    let manifest_same = std::fs::read_to_string(path.with_extension("toml"))
        .ok()
        .and_then(|t| Manifest::parse(&t, &prev.manifest.name).ok())
        .is_some_and(|m| m.sha256.eq_ignore_ascii_case(&prev.digest) && m.version == prev.manifest.version);
    manifest_same
        && std::fs::read(path)
            .map(|b| hex::encode(Sha256::digest(&b)) == prev.digest)
            .unwrap_or(false)
}
