//! Server start-up: data directory, database, migrations, first admin key, TLS, listener.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum_server::tls_rustls::RustlsConfig;

use crate::api::{self, AppState, AuthSettings};
use crate::auth::{ApiKeyHash, Role, generate_key};
use crate::config::{AuthType, Config};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::plugins::registry::{Registry, Services};
use crate::plugins::sandbox::Limits;
use crate::plugins::{Runtime, RuntimeSettings, grants::Grants};
use crate::store::{AuditEntry, Store};
use crate::tls::{self, TlsFiles};

/// Creates the data directory, private to its owner.
fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {} (CERTCTL_DATA_DIR)", dir.display()))?;
    }
    Ok(())
}

/// Connects to the configured database (creating the SQLite file's directory if needed).
pub async fn connect(config: &Config) -> anyhow::Result<Store> {
    if config.database_url.is_none() {
        ensure_data_dir(&config.data_dir)?;
    }
    let url = config.effective_database_url();
    Store::connect(&url, config.database_max_conns)
        .await
        .with_context(|| format!("cannot connect to the database ({})", redact_url(&url)))
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// `--migrate-only`: applies migrations and returns. Needs nothing but the database URL.
pub async fn migrate_only(config: &Config) -> anyhow::Result<Vec<i64>> {
    let store = connect(config).await?;
    let applied = store.migrate().await.context("migrating the database")?;
    store.close().await;
    Ok(applied)
}

/// Creates the first admin key when no key exists anywhere. Returns it to be shown once.
async fn bootstrap_admin_key(config: &Config, store: &Store) -> anyhow::Result<Option<String>> {
    if config.auth_type != AuthType::ApiKey || !config.api_keys.is_empty() || store.count_api_keys().await? > 0 {
        return Ok(None);
    }
    let key = generate_key();
    store
        .create_api_key(
            "admin",
            &ApiKeyHash::of(&key),
            Role::Admin,
            AuditEntry::new("system", "api_key.bootstrap", "api_key", ""),
        )
        .await
        .context("storing the first admin key")?;
    Ok(Some(key))
}

/// The plugin directories in effect: the configured ones, or the built-in directory shipped
/// next to the binary (`<bin>/../plugins`, as `scripts/run.sh` builds it, or
/// `/usr/lib/certctl/plugins` in the container image).
pub fn plugin_dirs(config: &Config) -> Vec<std::path::PathBuf> {
    if let Some(dirs) = &config.plugin_dirs {
        return dirs.clone();
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin_dir) = exe.parent()
    {
        candidates.push(bin_dir.join("plugins"));
        if let Some(up) = bin_dir.parent() {
            candidates.push(up.join("plugins"));
        }
    }
    candidates.push(std::path::PathBuf::from("/usr/lib/certctl/plugins"));
    candidates.into_iter().filter(|d| d.is_dir()).take(1).collect()
}

/// Builds the plugin runtime and loads every plugin directory once.
pub async fn start_plugins(config: &Config, store: &Store, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Registry>> {
    let shared_db = store.dialect() == crate::store::Dialect::Postgres;
    let key = crate::keystore::encryption_key(config.encryption_key.as_ref(), &config.data_dir, shared_db)?;
    let keystore = Arc::new(crate::keystore::Keystore::new(store.clone(), &key)?);
    let mut grants = match &config.plugin_grants {
        Some(path) => Grants::load(path).map_err(|e| anyhow::anyhow!("{e} (CERTCTL_PLUGIN_GRANTS)"))?,
        None => Grants::default(),
    };
    let dirs = plugin_dirs(config);
    for dir in &dirs {
        grants.add_defaults_from(dir).map_err(|e| anyhow::anyhow!(e))?;
    }
    let settings = RuntimeSettings {
        limits: Limits {
            memory_bytes: config.plugin_memory_mb * 1024 * 1024,
            wall: Duration::from_secs(config.plugin_call_timeout_secs),
            ..Limits::default()
        },
        pooling: config.plugin_pooling,
        cache_dir: Some(config.data_dir.join("plugin-cache")),
        ca_bundle: config.plugin_ca_bundle.clone(),
    };
    let runtime = Runtime::new(settings).context("starting the plugin runtime")?;
    tracing::info!(pooling = runtime.pooling_active, "plugin runtime ready");
    let mailer = match &config.smtp {
        Some(settings) => Some(Arc::new(
            crate::mail::Mailer::new(settings.clone()).context("CERTCTL_SMTP_CA_BUNDLE")?,
        )),
        None => None,
    };
    let broker = Arc::new(crate::challenge::ChallengeBroker::new(
        store.clone(),
        config.challenges.clone(),
    ));
    let services = Services {
        store: store.clone(),
        keystore,
        mailer,
        challenges: Some(broker.clone()),
    };
    let registry = Arc::new(Registry::new(runtime, dirs, grants, metrics).with_services(services));
    broker.attach(&registry);
    let loader = registry.clone();
    let (loaded, refused) = tokio::task::spawn_blocking(move || loader.reload())
        .await
        .context("loading plugins")?;
    tracing::info!(loaded, refused, "plugins loaded");
    Ok(registry)
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub tls_files: TlsFiles,
    pub fingerprint: String,
    /// The admin key created on this first start, if one was.
    pub admin_key: Option<String>,
    pub store: Store,
    tls: RustlsConfig,
    min_version: crate::config::TlsMinVersion,
    pub plugins: Arc<Registry>,
    pub lifecycle: Arc<Lifecycle>,
    scheduler: Vec<tokio::task::JoinHandle<()>>,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Re-reads the certificate files (SIGHUP). On error the current certificate stays.
    pub fn reload_tls(&self) -> anyhow::Result<String> {
        let loaded = tls::load(&self.tls_files, self.min_version)?;
        self.tls.reload_from_config(loaded.config);
        Ok(loaded.fingerprint)
    }

    /// Stops accepting connections, lets in-flight requests finish (up to `grace`), closes the pool.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        self.watcher.abort();
        for loop_task in &self.scheduler {
            loop_task.abort();
        }
        self.handle.graceful_shutdown(Some(grace));
        self.task.await.context("server task")??;
        self.store.close().await;
        Ok(())
    }
}

/// Starts the server: everything up to a listening HTTPS socket.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    for var in &config.unknown_vars {
        tracing::warn!(variable = %var, "unknown CERTCTL_* environment variable ignored (a typo?)");
    }
    if config.auth_type == AuthType::None {
        tracing::warn!(
            "CERTCTL_AUTH_TYPE=none: AUTHENTICATION IS OFF. Anyone who reaches this port is an admin. \
             Use this only on a private, single-user machine."
        );
    }
    ensure_data_dir(&config.data_dir)?;
    let store = connect(&config).await?;
    if config.migrations_via_hook {
        let status = store.schema_status().await.context("checking the database schema")?;
        if !status.is_current() {
            bail!(
                "the database schema is at version {} but this certctl needs {}; \
                 CERTCTL_MIGRATIONS_VIA_HOOK=true means migrations run separately: run \
                 `certctl-server --migrate-only` (the Helm hook does) or unset the variable",
                status.applied,
                status.latest
            );
        }
    } else {
        let applied = store.migrate().await.context("migrating the database")?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "database migrated");
        }
    }
    let admin_key = bootstrap_admin_key(&config, &store).await?;

    let tls_files = match (&config.tls_cert_path, &config.tls_key_path) {
        (Some(cert), Some(key)) => TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: None,
        },
        _ => tls::ensure_self_signed(&config.data_dir, config.host)
            .context("creating the self-generated TLS certificate")?,
    };
    let loaded = tls::load(&tls_files, config.tls_min_version)?;
    let tls = RustlsConfig::from_config(loaded.config);

    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let plugins = start_plugins(&config, &store, metrics.clone()).await?;
    let watcher = plugins.clone().watch(Duration::from_secs(5));
    let declared = match &config.instances_file {
        Some(path) => {
            Some(crate::declared::start(store.clone(), plugins.clone(), path.clone(), Duration::from_secs(5)).await?)
        }
        None => None,
    };
    let keystore = plugins
        .services()
        .map(|s| s.keystore.clone())
        .context("the plugin registry has no keystore")?;
    let lifecycle = Arc::new(Lifecycle::new(
        store.clone(),
        plugins.clone(),
        keystore,
        metrics.clone(),
    ));
    let mut scheduler = if config.scheduler.enabled {
        crate::lifecycle::scheduler::spawn(lifecycle.clone(), &config.scheduler)
    } else {
        tracing::warn!("CERTCTL_SCHEDULER_ENABLED=false: no renewals, alerts or jobs run on this server");
        Vec::new()
    };
    scheduler.extend(declared);
    if let Some(broker) = plugins.services().and_then(|s| s.challenges.clone())
        && let Some(address) = broker.http01_address()
    {
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
            format!("cannot listen on {address} for ACME http-01: choose another CERTCTL_ACME_HTTP01_ADDRESS")
        })?;
        tracing::info!(%address, "ACME http-01 challenge listener ready");
        let app = broker.responder();
        scheduler.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the http-01 challenge listener stopped");
            }
        }));
    }
    let state = AppState {
        store: store.clone(),
        metrics,
        plugins: plugins.clone(),
        lifecycle: lifecycle.clone(),
        auth: Arc::new(AuthSettings {
            mode: config.auth_type,
            env_keys: config.api_keys.clone(),
            agent_bootstrap: config.agent_bootstrap_token.clone(),
        }),
        max_body_bytes: config.max_body_bytes,
        web_dir: config.web_dir.clone(),
    };
    let app = api::router(state);

    let bind = SocketAddr::new(config.host, config.port);
    let listener = std::net::TcpListener::bind(bind).with_context(|| {
        format!("cannot listen on {bind}: choose another CERTCTL_SERVER_PORT / CERTCTL_SERVER_HOST")
    })?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    // TCP_NODELAY: without it, small responses on a kept-alive connection wait for the
    // client's delayed ACK (about 40 ms per request).
    let acceptor =
        axum_server::tls_rustls::RustlsAcceptor::new(tls.clone()).acceptor(axum_server::accept::NoDelayAcceptor::new());
    let server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });

    Ok(Running {
        addr,
        tls_files,
        fingerprint: loaded.fingerprint,
        admin_key,
        store,
        tls,
        min_version: config.tls_min_version,
        plugins,
        lifecycle,
        scheduler,
        handle,
        task,
        watcher,
    })
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://certctl:s3cret@db:5432/certctl"),
            "postgres://certctl:***@db:5432/certctl"
        );
        assert_eq!(redact_url("sqlite://data/certctl.db"), "sqlite://data/certctl.db");
    }
}
