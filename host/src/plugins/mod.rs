//! The only module that knows wasmtime.
//!
//! Lifecycle of a plugin: a `.wasm` file and its manifest are read from a plugin directory,
//! the digest is checked, the component is compiled once (or loaded from the on-disk cache of
//! artifacts this host compiled itself), its exports are checked against the contract version
//! and kind it claims, its imports against what that kind may use, and its requested
//! capabilities against the operator's grants. A plugin that passes becomes a [`Loaded`] with
//! an `InstancePre`; one that fails is kept as a [`Refused`] with the reason, and the others
//! load regardless.
//!
//! Every call gets a fresh store and instance (a trap poisons an instance, and plugins are
//! stateless by contract), a memory cap, an epoch-based CPU budget and a wall-clock timeout.
//! Outcomes are two-layered: the outer `Result` is the host's view (trap, timeout, memory),
//! the inner one is what the plugin reported.

pub mod conformance;
pub mod grants;
pub mod http;
pub mod manifest;
pub mod registry;
pub mod sandbox;
pub mod v0_1;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};

use self::grants::Allowed;
use self::http::OutboundHooks;
use self::manifest::Manifest;
use self::sandbox::{CappedOutput, Limits, StoreState};
use crate::model::InstanceKind;

/// One epoch tick. CPU budgets are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a call did not produce a plugin result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("plugin ran out of its CPU budget")]
    CpuBudget,
    #[error("plugin did not finish within {0:?}")]
    WallTimeout(Duration),
    #[error("plugin exceeded its memory limit")]
    Memory,
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin {0} is not loaded")]
    NotLoaded(String),
    #[error("plugin {plugin} is a {actual}, not a {expected}")]
    WrongKind {
        plugin: String,
        actual: InstanceKind,
        expected: InstanceKind,
    },
    #[error("host error: {0}")]
    Host(String),
}

impl CallError {
    /// Label for `certctl_plugin_traps_total{reason}`; `None` for errors that are not traps.
    pub fn trap_reason(&self) -> Option<&'static str> {
        match self {
            CallError::CpuBudget | CallError::WallTimeout(_) => Some("timeout"),
            CallError::Memory => Some("memory"),
            CallError::Trap(_) => Some("trap"),
            _ => None,
        }
    }
}

/// What the plugin itself reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum PluginFailure {
    InvalidConfig(String),
    Auth(String),
    NotFound(String),
    RateLimited(Option<u32>),
    Transient(String),
    Permanent(String),
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginFailure::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            PluginFailure::Auth(m) => write!(f, "authentication failed: {m}"),
            PluginFailure::NotFound(m) => write!(f, "not found: {m}"),
            PluginFailure::RateLimited(Some(s)) => write!(f, "rate limited: retry after {s}s"),
            PluginFailure::RateLimited(None) => write!(f, "rate limited"),
            PluginFailure::Transient(m) => write!(f, "temporary failure: {m}"),
            PluginFailure::Permanent(m) => write!(f, "failed: {m}"),
        }
    }
}

impl From<v0_1::PluginError> for PluginFailure {
    fn from(e: v0_1::PluginError) -> Self {
        use v0_1::PluginError as E;
        match e {
            E::InvalidConfig(m) => PluginFailure::InvalidConfig(m),
            E::Auth(m) => PluginFailure::Auth(m),
            E::NotFound(m) => PluginFailure::NotFound(m),
            E::RateLimited(s) => PluginFailure::RateLimited(s),
            E::Transient(m) => PluginFailure::Transient(m),
            E::Permanent(m) => PluginFailure::Permanent(m),
        }
    }
}

/// The result of one call, with what the plugin logged.
#[derive(Debug)]
pub struct CallOutcome<T> {
    pub result: Result<Result<T, PluginFailure>, CallError>,
    pub logs: Vec<(String, String)>,
    pub logs_dropped: usize,
    pub duration: Duration,
}

/// Outcome label of a call result: `ok`, `plugin_error`, or the reason the host stopped it
/// (`timeout`, `memory`, `trap`, `host_error`). Metrics, spans and test reports all use it.
pub fn outcome_label<T>(result: &Result<Result<T, PluginFailure>, CallError>) -> &'static str {
    match result {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "plugin_error",
        Err(e) => e.trap_reason().unwrap_or("host_error"),
    }
}

impl<T> CallOutcome<T> {
    pub fn label(&self) -> &'static str {
        outcome_label(&self.result)
    }
}

/// The outside of a component, for `certctl plugin inspect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// The certctl plugin kind it exports, if any.
    pub kind: Option<InstanceKind>,
    /// The contract version of that export.
    pub contract: Option<String>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    pub size: usize,
    pub sha256: String,
}

/// A plugin that passed every check.
pub struct Loaded {
    pub manifest: Manifest,
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
    pub allowed: Arc<Allowed>,
    pub loaded_at: crate::model::Timestamp,
    pre: InstancePre<StoreState>,
}

impl Loaded {
    /// Instantiates this plugin in `store` (for benchmarks that reuse one instance; the server
    /// itself always goes through [`Runtime::call`]).
    pub async fn instantiate(&self, store: &mut Store<StoreState>) -> wasmtime::Result<wasmtime::component::Instance> {
        self.pre.instantiate_async(store).await
    }

    /// Export indices of the notifier interface, for calling an instance directly.
    pub fn notifier_indices(&self) -> wasmtime::Result<v0_1::notifier::GuestIndices> {
        v0_1::notifier::GuestIndices::new(&self.pre)
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("name", &self.manifest.name)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// Pooling allocator choice (`CERTCTL_PLUGIN_POOLING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Try pooling; fall back to on-demand allocation if the probe fails.
    Auto,
    On,
    Off,
}

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub limits: Limits,
    pub pooling: Pooling,
    /// Where compiled artifacts are cached (`None`: compile on every load).
    pub cache_dir: Option<PathBuf>,
    /// Extra CA bundle plugins trust for outbound HTTPS.
    pub ca_bundle: Option<PathBuf>,
}

/// The engine, the linker and the compiled-artifact cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
    pub settings: RuntimeSettings,
    pub pooling_active: bool,
    tls: Arc<rustls::ClientConfig>,
}

fn engine_config(settings: &RuntimeSettings, pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.max_wasm_stack(512 * 1024);
    config.async_stack_size(2 * 1024 * 1024);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(64);
        pool.total_core_instances(256);
        pool.total_memories(256);
        pool.total_tables(256);
        pool.total_stacks(64);
        pool.max_memory_size(settings.limits.memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl Runtime {
    pub fn new(settings: RuntimeSettings) -> anyhow::Result<Runtime> {
        let (engine, pooling_active) = match settings.pooling {
            Pooling::Off => (
                Engine::new(&engine_config(&settings, false)).map_err(|e| anyhow!("{e}"))?,
                false,
            ),
            Pooling::On => (
                Engine::new(&engine_config(&settings, true))
                    .map_err(|e| anyhow!("pooling allocator unavailable (CERTCTL_PLUGIN_POOLING=on): {e}"))?,
                true,
            ),
            Pooling::Auto => match Engine::new(&engine_config(&settings, true)) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                    (
                        Engine::new(&engine_config(&settings, false)).map_err(|e| anyhow!("{e}"))?,
                        false,
                    )
                }
            },
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("linking WASI: {e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("linking wasi:http: {e}"))?;
        v0_1::add_to_linker(&mut linker).map_err(|e| anyhow!("linking the certctl host: {e}"))?;

        // Epoch ticker: a plain thread, so a busy async runtime cannot delay interruption.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("certctl-plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the plugin epoch thread")?;

        let tls = Arc::new(http::client_tls(settings.ca_bundle.as_deref())?);
        Ok(Runtime {
            engine,
            linker,
            settings,
            pooling_active,
            tls,
        })
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let dir = self.settings.cache_dir.as_ref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{digest}-{:016x}.cwasm", h.finish())))
    }

    /// Compiles a component, through the artifact cache when one is configured.
    pub fn compile(&self, bytes: &[u8], digest: &str) -> anyhow::Result<Component> {
        let Some(path) = self.cache_path(digest) else {
            return Component::new(&self.engine, bytes).map_err(|e| anyhow!("{e}"));
        };
        if path.exists() {
            match load_artifact(&self.engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "discarding an unusable cached artifact"),
            }
        }
        let artifact = self.engine.precompile_component(bytes).map_err(|e| anyhow!("{e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // A private temporary name: two loaders of the same component must not write into one
        // file; the rename makes whichever finishes last win with identical bytes.
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
        std::fs::write(&tmp, &artifact).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        load_artifact(&self.engine, &path)
    }

    /// Checks a component against what its manifest claims and pre-links it.
    pub fn prepare(&self, manifest: &Manifest, component: &Component) -> Result<InstancePre<StoreState>, String> {
        if !manifest::SUPPORTED_CONTRACTS.contains(&manifest.contract.as_str()) {
            return Err(format!(
                "manifest says contract {}, this server runs {}",
                manifest.contract,
                manifest::SUPPORTED_CONTRACTS.join(", ")
            ));
        }
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let interface = manifest.kind.as_str();
        let wanted = format!("certctl:plugin/{interface}@{}", manifest.contract);
        if !exports.contains(&wanted) {
            let found: Vec<&String> = exports.iter().filter(|e| e.starts_with("certctl:plugin/")).collect();
            return Err(match found.first() {
                Some(other) => format!(
                    "the component exports {other}, but its manifest declares a {interface} for contract {}; \
                     this server runs contract {}",
                    manifest.contract,
                    manifest::SUPPORTED_CONTRACTS.join(", ")
                ),
                None => format!("the component does not export {wanted}: not a certctl {interface} plugin"),
            });
        }
        let allowed_host_imports: &[&str] = match manifest.kind {
            InstanceKind::Issuer => &["types", "host-log", "host-kv", "host-keystore", "host-challenge"],
            InstanceKind::Notifier => &["types", "host-log", "host-mail"],
            InstanceKind::DnsSolver => &["types", "host-log", "host-dns"],
        };
        for import in &imports {
            if let Some(rest) = import.strip_prefix("certctl:plugin/") {
                let (name, version) = rest.split_once('@').unwrap_or((rest, ""));
                if version != manifest.contract {
                    return Err(format!(
                        "imports {import}, but the plugin claims contract {}",
                        manifest.contract
                    ));
                }
                if !allowed_host_imports.contains(&name) {
                    return Err(format!("a {interface} plugin may not import {import}"));
                }
                if name == "host-mail" && !manifest.capabilities.mail {
                    return Err(format!(
                        "imports {import} but its manifest does not declare it: add `mail = true` under \
                         [capabilities]"
                    ));
                }
            } else if import.starts_with("wasi:http/") && manifest.kind == InstanceKind::Issuer {
                // Issuers reach their CA over wasi:http; that is fine.
            } else if !import.starts_with("wasi:") {
                return Err(format!("imports {import}, which this host does not provide"));
            }
        }
        self.linker
            .instantiate_pre(component)
            .map_err(|e| format!("cannot link: {e}"))
    }

    /// What a component exports and imports, and which certctl kind and contract it targets.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection, String> {
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(bytes)
            .map_err(|e| format!("not a valid WebAssembly file: {e}"))?;
        if !wasmparser::Parser::is_component(bytes) {
            return Err("a core WebAssembly module, not a component: build for wasm32-wasip2".into());
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| format!("cannot compile: {e}"))?;
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let target = exports.iter().find_map(|e| {
            let rest = e.strip_prefix("certctl:plugin/")?;
            let (iface, version) = rest.split_once('@')?;
            let kind = iface.parse::<InstanceKind>().ok()?;
            Some((kind, version.to_string()))
        });
        Ok(Inspection {
            kind: target.as_ref().map(|(k, _)| *k),
            contract: target.map(|(_, v)| v),
            exports,
            imports,
            size: bytes.len(),
            sha256: hex::encode(Sha256::digest(bytes)),
        })
    }

    /// Reads, verifies, compiles and checks `NAME.wasm` + `NAME.toml`.
    pub fn load(&self, wasm_path: &Path, grants: &grants::Grants) -> Result<Loaded, String> {
        let stem = wasm_path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| "file name is not UTF-8".to_string())?;
        let manifest_path = wasm_path.with_extension("toml");
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| format!("missing or unreadable manifest {}: {e}", manifest_path.display()))?;
        let manifest = Manifest::parse(&text, stem)?;
        let bytes = std::fs::read(wasm_path).map_err(|e| format!("cannot read {}: {e}", wasm_path.display()))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if !digest.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(format!(
                "sha256 of the file is {digest}, the manifest says {}: the file changed or the manifest is stale",
                manifest.sha256
            ));
        }
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&bytes)
            .map_err(|e| format!("not a valid WebAssembly file: {e}"))?;
        if !wasmparser::Parser::is_component(&bytes) {
            return Err("a core WebAssembly module, not a component: build for wasm32-wasip2".into());
        }
        let component = self
            .compile(&bytes, &digest)
            .map_err(|e| format!("cannot compile: {e:#}"))?;
        let pre = self.prepare(&manifest, &component)?;
        let allowed = Allowed::resolve(
            &manifest.name,
            &manifest.capabilities.outbound_hosts,
            grants.0.get(&manifest.name),
        )?;
        Ok(Loaded {
            manifest,
            path: wasm_path.to_path_buf(),
            digest,
            size: bytes.len() as u64,
            allowed: Arc::new(allowed),
            loaded_at: crate::model::Timestamp::now(),
            pre,
        })
    }

    /// A store with every limit applied, as each call gets.
    pub fn new_store(&self, plugin: &Loaded) -> (Store<StoreState>, CappedOutput, CappedOutput) {
        let limits = &self.settings.limits;
        let stdout = CappedOutput::new(limits.output_bytes);
        let stderr = CappedOutput::new(limits.output_bytes);
        // One log per call, shared by host-log, the HTTP hooks and the output capture.
        let log = sandbox::CallLog::new(limits.log_lines);
        let hooks = OutboundHooks {
            plugin: plugin.manifest.name.clone(),
            allowed: plugin.allowed.clone(),
            tls: self.tls.clone(),
            log: log.clone(),
            timeout: limits.wall,
        };
        let state = StoreState::new(
            &plugin.manifest.name,
            hooks,
            log,
            limits,
            stdout.clone(),
            stderr.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Each tick past the deadline yields to the async executor (so a busy plugin never
        // holds a worker thread) and spends one tick of the budget; an empty budget traps.
        let mut budget = limits.cpu_ticks;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if budget == 0 {
                return Err(Trap::Interrupt.into());
            }
            budget -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        (store, stdout, stderr)
    }

    /// Runs `f` on a fresh instance of `plugin`, with every limit applied.
    /// `instance` scopes the host services (kv, keystore) to the plugin instance of the call.
    pub async fn call<T, F>(
        &self,
        plugin: &Loaded,
        op: &str,
        instance: Option<sandbox::InstanceContext>,
        f: F,
    ) -> CallOutcome<T>
    where
        F: AsyncFnOnce(
            &mut Store<StoreState>,
            &wasmtime::component::Instance,
        ) -> wasmtime::Result<Result<T, v0_1::PluginError>>,
    {
        let tls = instance.as_ref().and_then(|i| i.tls.clone());
        self.call_trusting(plugin, op, instance, tls, f).await
    }

    /// [`Runtime::call`] with outbound HTTPS trusting `tls` (an instance's `ca_bundle`) instead
    /// of the server-wide roots.
    pub async fn call_trusting<T, F>(
        &self,
        plugin: &Loaded,
        op: &str,
        instance: Option<sandbox::InstanceContext>,
        tls: Option<Arc<rustls::ClientConfig>>,
        f: F,
    ) -> CallOutcome<T>
    where
        F: AsyncFnOnce(
            &mut Store<StoreState>,
            &wasmtime::component::Instance,
        ) -> wasmtime::Result<Result<T, v0_1::PluginError>>,
    {
        let start = Instant::now();
        let (mut store, stdout, stderr) = self.new_store(plugin);
        if let Some(tls) = tls {
            store.data_mut().hooks.tls = tls;
        }
        store.data_mut().instance = instance;
        let memory_flag = store.data().limiter.exceeded.clone();
        let wall = self.settings.limits.wall;
        let span = tracing::info_span!("plugin.call", plugin = %plugin.manifest.name, op, duration_ms = tracing::field::Empty, outcome = tracing::field::Empty);
        let run = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            f(&mut store, &instance).await
        };
        let raw = tokio::time::timeout(wall, run).instrument(span.clone()).await;
        let result = match raw {
            Err(_) => Err(CallError::WallTimeout(wall)),
            Ok(Ok(inner)) => Ok(inner.map_err(PluginFailure::from)),
            Ok(Err(e)) => Err(classify(&e, memory_flag.load(Ordering::Relaxed))),
        };
        let log = store.data().log.clone();
        for (name, out) in [("stdout", &stdout), ("stderr", &stderr)] {
            for line in out.contents().lines().filter(|l| !l.is_empty()) {
                if log.push(name, line) {
                    tracing::info!(parent: &span, plugin = %plugin.manifest.name, stream = name, "{line}");
                }
            }
            let dropped = out.dropped.load(Ordering::Relaxed);
            if dropped > 0 {
                log.push(
                    "host",
                    &format!("{dropped} bytes of {name} discarded (over the per-call cap)"),
                );
            }
        }
        let duration = start.elapsed();
        span.record("duration_ms", duration.as_millis() as u64);
        span.record("outcome", outcome_label(&result));
        let logs = log.lines.lock().map(|l| l.clone()).unwrap_or_default();
        CallOutcome {
            result,
            logs,
            logs_dropped: log.dropped.load(Ordering::Relaxed),
            duration,
        }
    }
}

fn classify(e: &wasmtime::Error, memory_exceeded: bool) -> CallError {
    if memory_exceeded {
        return CallError::Memory;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::CpuBudget,
        Some(trap) => CallError::Trap(trap.to_string()),
        None => CallError::Trap(format!("{e:#}")),
    }
}

/// Loads an artifact this host compiled and wrote itself.
#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: `Component::deserialize_file` trusts its input to be a wasmtime artifact. The
    // file is in the host's private cache directory (under the 0700 data dir), written only
    // by `Runtime::compile` from `Engine::precompile_component`, and its name carries the
    // component's digest and this engine's compatibility hash; wasmtime also checks the
    // artifact header against the engine before using it.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| anyhow!("{e}"))
}
