//! Server configuration: one typed struct, resolved from command-line flags, then `CERTCTL_*`
//! environment variables, then an optional TOML file, then defaults (first source wins).
//!
//! Every value is parsed strictly. A value that does not parse is a start-up error naming where
//! it came from (`CERTCTL_SERVER_PORT`, `--port`, or the file key) and the accepted form; there is
//! never a silent fallback to the default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{ApiKeyHash, Role};

/// Default HTTPS port, as in the system certctl re-implements.
pub const DEFAULT_PORT: u16 = 8443;

/// Every environment variable the server reads. Other `CERTCTL_*` variables that belong to the
/// agent or the CLI are listed in [`OTHER_KNOWN_VARS`] so a typo can be told apart from them.
pub const SERVER_VARS: &[&str] = &[
    "CERTCTL_CONFIG_FILE",
    "CERTCTL_SERVER_HOST",
    "CERTCTL_SERVER_PORT",
    "CERTCTL_SERVER_TLS_CERT_PATH",
    "CERTCTL_SERVER_TLS_KEY_PATH",
    "CERTCTL_SERVER_TLS_MIN_VERSION",
    "CERTCTL_DATA_DIR",
    "CERTCTL_DATABASE_URL",
    "CERTCTL_DATABASE_MAX_CONNS",
    "CERTCTL_LOG_LEVEL",
    "CERTCTL_LOG_FORMAT",
    "CERTCTL_AUTH_TYPE",
    "CERTCTL_API_KEYS_NAMED",
    "CERTCTL_CONFIG_ENCRYPTION_KEY",
    "CERTCTL_AGENT_BOOTSTRAP_TOKEN",
    "CERTCTL_MIGRATIONS_VIA_HOOK",
    "CERTCTL_MAX_BODY_BYTES",
    "CERTCTL_PLUGIN_DIRS",
    "CERTCTL_PLUGIN_GRANTS",
    "CERTCTL_INSTANCES_FILE",
    "CERTCTL_WEB_DIR",
    "CERTCTL_PLUGIN_POOLING",
    "CERTCTL_PLUGIN_CA_BUNDLE",
    "CERTCTL_PLUGIN_MEMORY_MB",
    "CERTCTL_PLUGIN_CALL_TIMEOUT_SECONDS",
    "CERTCTL_SCHEDULER_ENABLED",
    "CERTCTL_SCHEDULER_RENEWAL_INTERVAL",
    "CERTCTL_SCHEDULER_JOB_INTERVAL",
    "CERTCTL_SCHEDULER_ALERT_INTERVAL",
    "CERTCTL_SCHEDULER_AGENT_HEALTH_INTERVAL",
    "CERTCTL_SCHEDULER_CLEANUP_INTERVAL",
    "CERTCTL_SCHEDULER_RETENTION_DAYS",
    "CERTCTL_SMTP_HOST",
    "CERTCTL_SMTP_PORT",
    "CERTCTL_SMTP_USERNAME",
    "CERTCTL_SMTP_PASSWORD",
    "CERTCTL_SMTP_FROM",
    "CERTCTL_SMTP_TLS",
    "CERTCTL_SMTP_CA_BUNDLE",
    "CERTCTL_SMTP_TIMEOUT_SECONDS",
    "CERTCTL_ACME_HTTP01_ADDRESS",
    "CERTCTL_DNS_RESOLVERS",
    "CERTCTL_DNS_NAMESERVER_PORT",
    "CERTCTL_DNS_TIMEOUT_SECONDS",
];

/// Variables of the agent and the CLI; the server ignores them without a warning.
pub const OTHER_KNOWN_VARS: &[&str] = &[
    "CERTCTL_SERVER_URL",
    "CERTCTL_API_KEY",
    "CERTCTL_AGENT_NAME",
    "CERTCTL_AGENT_ID",
    "CERTCTL_KEY_DIR",
    "CERTCTL_DISCOVERY_DIRS",
    "CERTCTL_SERVER_CA_BUNDLE_PATH",
    "CERTCTL_SERVER_TLS_INSECURE_SKIP_VERIFY",
];

/// A configuration value that could not be used. The message names the source and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}={value:?} is not valid: expected {expected}")]
    Invalid {
        source_name: String,
        value: String,
        expected: String,
    },
    #[error("{0}")]
    Inconsistent(String),
    #[error("cannot read config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    ApiKey,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMinVersion {
    Tls12,
    Tls13,
}

/// An API key given in `CERTCTL_API_KEYS_NAMED`; only its hash is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct NamedKey {
    pub name: String,
    pub hash: ApiKeyHash,
    pub role: Role,
}

impl fmt::Debug for NamedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedKey")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The 32-byte key that encrypts secrets at rest. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey(pub [u8; 32]);

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(..)")
    }
}

/// The resolved server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub tls_cert_path: Option<PathBuf>,
    pub tls_key_path: Option<PathBuf>,
    pub tls_min_version: TlsMinVersion,
    pub data_dir: PathBuf,
    /// `None` means the embedded SQLite database in `data_dir`.
    pub database_url: Option<String>,
    pub database_max_conns: u32,
    pub log_level: String,
    pub log_format: LogFormat,
    pub auth_type: AuthType,
    pub api_keys: Vec<NamedKey>,
    /// The token agents present to register themselves (hash only), if any.
    pub agent_bootstrap_token: Option<crate::auth::ApiKeyHash>,
    /// `None` means: use (or create) the key file in `data_dir`.
    pub encryption_key: Option<EncryptionKey>,
    pub migrations_via_hook: bool,
    pub max_body_bytes: usize,
    /// Plugin directories; `None` means the built-in directory next to the binary, if any.
    pub plugin_dirs: Option<Vec<PathBuf>>,
    pub plugin_grants: Option<PathBuf>,
    /// Plugin instances declared in a JSON file (`crate::declared`).
    pub instances_file: Option<PathBuf>,
    /// The dashboard's files from this directory instead of the embedded copy (developing them).
    pub web_dir: Option<PathBuf>,
    pub plugin_pooling: crate::plugins::Pooling,
    pub plugin_ca_bundle: Option<PathBuf>,
    pub plugin_memory_mb: usize,
    pub plugin_call_timeout_secs: u64,
    pub scheduler: SchedulerSettings,
    /// The SMTP relay for e-mail notifiers; `None` when `CERTCTL_SMTP_HOST` is unset.
    pub smtp: Option<crate::mail::SmtpSettings>,
    /// The ACME challenge broker: http-01 listener, DNS resolvers.
    pub challenges: crate::challenge::ChallengeSettings,
    /// `CERTCTL_*` variables that nothing reads (probably typos), reported at start-up.
    pub unknown_vars: Vec<String>,
}

impl Config {
    /// The database URL in effect: the configured one, or the SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => sqlite_url_for(&self.data_dir),
        }
    }
}

/// The URL of the embedded database inside a data directory.
pub fn sqlite_url_for(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("certctl.db").display())
}

/// The scheduler's loops (`CERTCTL_SCHEDULER_*`).
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Off: nothing runs in the background (jobs wait); for maintenance and tests.
    pub enabled: bool,
    /// Finds certificates inside their renewal window and refreshes CRLs.
    pub renewal_interval: std::time::Duration,
    /// Runs due jobs (issuance, renewal, revocation, notification deliveries and their retries).
    /// New jobs also wake it at once.
    pub job_interval: std::time::Duration,
    /// Sends expiry alerts at each certificate's thresholds.
    pub alert_interval: std::time::Duration,
    /// Notices agents whose heartbeat stopped.
    pub agent_health_interval: std::time::Duration,
    /// Deletes finished jobs older than `retention_days`.
    pub cleanup_interval: std::time::Duration,
    pub retention_days: u32,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        use std::time::Duration;
        SchedulerSettings {
            enabled: true,
            renewal_interval: Duration::from_secs(3600),
            job_interval: Duration::from_secs(10),
            alert_interval: Duration::from_secs(3600),
            agent_health_interval: Duration::from_secs(60),
            cleanup_interval: Duration::from_secs(86_400),
            retention_days: 30,
        }
    }
}

/// A duration: `90s`, `5m`, `1h`, `1d`, or plain seconds; at least one second.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs >= 1).then(|| std::time::Duration::from_secs(secs))
}

/// Values given as command-line flags (highest precedence). Strings are parsed here, like the
/// environment, so every source gets the same strict parsing and the same kind of error.
#[derive(Debug, Default, Clone)]
pub struct FlagValues {
    pub config_file: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
}

/// The optional TOML file. Keys are the variable names without `CERTCTL_`, in lower case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileValues {
    server_host: Option<String>,
    server_port: Option<u16>,
    server_tls_cert_path: Option<PathBuf>,
    server_tls_key_path: Option<PathBuf>,
    server_tls_min_version: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_max_conns: Option<u32>,
    log_level: Option<String>,
    log_format: Option<String>,
    auth_type: Option<String>,
    api_keys_named: Option<String>,
    config_encryption_key: Option<String>,
    agent_bootstrap_token: Option<String>,
    migrations_via_hook: Option<bool>,
    max_body_bytes: Option<usize>,
    plugin_dirs: Option<String>,
    plugin_grants: Option<PathBuf>,
    instances_file: Option<PathBuf>,
    web_dir: Option<PathBuf>,
    plugin_pooling: Option<String>,
    plugin_ca_bundle: Option<PathBuf>,
    plugin_memory_mb: Option<usize>,
    plugin_call_timeout_seconds: Option<u64>,
    scheduler_enabled: Option<bool>,
    scheduler_renewal_interval: Option<String>,
    scheduler_job_interval: Option<String>,
    scheduler_alert_interval: Option<String>,
    scheduler_agent_health_interval: Option<String>,
    scheduler_cleanup_interval: Option<String>,
    scheduler_retention_days: Option<u32>,
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    smtp_username: Option<String>,
    smtp_password: Option<String>,
    smtp_from: Option<String>,
    smtp_tls: Option<String>,
    smtp_ca_bundle: Option<PathBuf>,
    smtp_timeout_seconds: Option<u64>,
    acme_http01_address: Option<String>,
    dns_resolvers: Option<String>,
    dns_nameserver_port: Option<u16>,
    dns_timeout_seconds: Option<u64>,
}

/// Where a raw value came from, for error messages.
struct Raw {
    source_name: String,
    value: String,
}

struct Resolver<'a> {
    env: &'a BTreeMap<String, String>,
}

impl Resolver<'_> {
    /// The first of flag, environment variable, file value that is set.
    fn raw(&self, flag: Option<(&str, &Option<String>)>, var: &str, file: Option<String>) -> Option<Raw> {
        if let Some((flag_name, Some(value))) = flag {
            return Some(Raw {
                source_name: flag_name.to_string(),
                value: value.clone(),
            });
        }
        if let Some(value) = self.env.get(var) {
            return Some(Raw {
                source_name: var.to_string(),
                value: value.clone(),
            });
        }
        file.map(|value| Raw {
            source_name: format!("config file key {}", var.trim_start_matches("CERTCTL_").to_lowercase()),
            value,
        })
    }
}

fn invalid(raw: &Raw, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        source_name: raw.source_name.clone(),
        value: raw.value.clone(),
        expected: expected.to_string(),
    }
}

fn parse_with<T>(
    raw: Option<Raw>,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    match raw {
        None => Ok(None),
        Some(raw) => match parse(raw.value.trim()) {
            Some(v) => Ok(Some(v)),
            None => Err(invalid(&raw, expected)),
        },
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`); anything else is an error, never "false".
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_encryption_key(s: &str) -> Option<EncryptionKey> {
    use base64::Engine;
    let bytes = if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(s).ok()?
    } else {
        base64::engine::general_purpose::STANDARD.decode(s).ok()?
    };
    let key: [u8; 32] = bytes.try_into().ok()?;
    Some(EncryptionKey(key))
}

/// Parses `name:key[:role]` entries separated by commas. The role defaults to `operator`; the
/// original's `:admin` suffix keeps its meaning.
fn parse_named_keys(raw: &Raw) -> Result<Vec<NamedKey>, ConfigError> {
    const EXPECTED: &str = "a comma-separated list of name:key[:role] entries, role one of \
                            admin, operator, viewer, agent, metrics (default operator); \
                            names unique, keys at least 16 characters";
    let mut keys: Vec<NamedKey> = Vec::new();
    for entry in raw.value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parts: Vec<&str> = entry.split(':').collect();
        let (name, key, role) = match parts.as_slice() {
            [name, key] => (*name, *key, Role::Operator),
            [name, key, role] => match role.parse::<Role>() {
                Ok(role) => (*name, *key, role),
                Err(_) => return Err(invalid(raw, EXPECTED)),
            },
            _ => return Err(invalid(raw, EXPECTED)),
        };
        if name.is_empty() || key.len() < 16 || keys.iter().any(|k| k.name == name) {
            return Err(invalid(raw, EXPECTED));
        }
        keys.push(NamedKey {
            name: name.to_string(),
            hash: ApiKeyHash::of(key),
            role,
        });
    }
    Ok(keys)
}

fn load_file(path: &Path) -> Result<FileValues, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl Config {
    /// Resolves the configuration from flags, the given environment and the optional file.
    pub fn resolve(flags: &FlagValues, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let config_file = flags
            .config_file
            .clone()
            .or_else(|| env.get("CERTCTL_CONFIG_FILE").map(PathBuf::from));
        let file = match &config_file {
            Some(path) => load_file(path)?,
            None => FileValues::default(),
        };
        let r = Resolver { env };
        let path_str = |p: Option<PathBuf>| p.map(|p| p.display().to_string());

        let host = parse_with(
            r.raw(Some(("--host", &flags.host)), "CERTCTL_SERVER_HOST", file.server_host),
            "an IP address to listen on, such as 127.0.0.1, 0.0.0.0 or ::",
            |s| s.parse::<IpAddr>().ok(),
        )?
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));

        let port = parse_with(
            r.raw(
                Some(("--port", &flags.port)),
                "CERTCTL_SERVER_PORT",
                file.server_port.map(|p| p.to_string()),
            ),
            "a TCP port number from 1 to 65535",
            |s| s.parse::<u16>().ok().filter(|p| *p != 0),
        )?
        .unwrap_or(DEFAULT_PORT);

        let non_empty_path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        let tls_cert_path = parse_with(
            r.raw(
                None,
                "CERTCTL_SERVER_TLS_CERT_PATH",
                path_str(file.server_tls_cert_path),
            ),
            "a path to a PEM certificate chain",
            non_empty_path,
        )?;
        let tls_key_path = parse_with(
            r.raw(None, "CERTCTL_SERVER_TLS_KEY_PATH", path_str(file.server_tls_key_path)),
            "a path to a PEM private key",
            non_empty_path,
        )?;
        if tls_cert_path.is_some() != tls_key_path.is_some() {
            return Err(ConfigError::Inconsistent(
                "CERTCTL_SERVER_TLS_CERT_PATH and CERTCTL_SERVER_TLS_KEY_PATH must be set together \
                 (or both left unset to use a self-generated certificate)"
                    .to_string(),
            ));
        }
        let tls_min_version = parse_with(
            r.raw(None, "CERTCTL_SERVER_TLS_MIN_VERSION", file.server_tls_min_version),
            "1.2 or 1.3",
            |s| match s {
                "1.2" => Some(TlsMinVersion::Tls12),
                "1.3" => Some(TlsMinVersion::Tls13),
                _ => None,
            },
        )?
        .unwrap_or(TlsMinVersion::Tls13);

        let data_dir = parse_with(
            r.raw(
                Some(("--data-dir", &path_str(flags.data_dir.clone()))),
                "CERTCTL_DATA_DIR",
                path_str(file.data_dir),
            ),
            "a directory path",
            non_empty_path,
        )?
        .unwrap_or_else(|| PathBuf::from("certctl-data"));

        let database_url = parse_with(
            r.raw(
                Some(("--database-url", &flags.database_url)),
                "CERTCTL_DATABASE_URL",
                file.database_url,
            ),
            "a URL starting with postgres://, postgresql:// or sqlite:",
            |s| {
                (s.starts_with("postgres://") || s.starts_with("postgresql://") || s.starts_with("sqlite:"))
                    .then(|| s.to_string())
            },
        )?;

        let database_max_conns = parse_with(
            r.raw(
                None,
                "CERTCTL_DATABASE_MAX_CONNS",
                file.database_max_conns.map(|n| n.to_string()),
            ),
            "a whole number from 1 to 1000",
            |s| s.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)),
        )?
        .unwrap_or(10);

        let log_level = parse_with(
            r.raw(
                Some(("--log-level", &flags.log_level)),
                "CERTCTL_LOG_LEVEL",
                file.log_level,
            ),
            "trace, debug, info, warn, error, or a filter such as info,certctl=debug",
            |s| tracing_subscriber::EnvFilter::try_new(s).ok().map(|_| s.to_string()),
        )?
        .unwrap_or_else(|| "info".to_string());

        let log_format = parse_with(
            r.raw(
                Some(("--log-format", &flags.log_format)),
                "CERTCTL_LOG_FORMAT",
                file.log_format,
            ),
            "json or text",
            |s| match s {
                "json" => Some(LogFormat::Json),
                "text" => Some(LogFormat::Text),
                _ => None,
            },
        )?
        .unwrap_or(LogFormat::Text);

        let auth_type = parse_with(
            r.raw(None, "CERTCTL_AUTH_TYPE", file.auth_type),
            "api-key or none",
            |s| match s {
                "api-key" | "api_key" | "apikey" => Some(AuthType::ApiKey),
                "none" => Some(AuthType::None),
                _ => None,
            },
        )?
        .unwrap_or(AuthType::ApiKey);

        let api_keys = match r.raw(None, "CERTCTL_API_KEYS_NAMED", file.api_keys_named) {
            Some(raw) => parse_named_keys(&raw)?,
            None => Vec::new(),
        };

        let agent_bootstrap_token = parse_with(
            r.raw(None, "CERTCTL_AGENT_BOOTSTRAP_TOKEN", file.agent_bootstrap_token),
            "at least 24 characters without spaces (e.g. the output of `openssl rand -base64 32`)",
            |raw: &str| {
                (raw.len() >= 24 && !raw.chars().any(char::is_whitespace)).then(|| crate::auth::ApiKeyHash::of(raw))
            },
        )?;

        let encryption_key = parse_with(
            r.raw(None, "CERTCTL_CONFIG_ENCRYPTION_KEY", file.config_encryption_key),
            "32 random bytes, base64 or hex encoded (e.g. the output of `openssl rand -base64 32`)",
            parse_encryption_key,
        )?;

        let migrations_via_hook = parse_with(
            r.raw(
                None,
                "CERTCTL_MIGRATIONS_VIA_HOOK",
                file.migrations_via_hook.map(|b| b.to_string()),
            ),
            "true or false",
            parse_bool,
        )?
        .unwrap_or(false);

        let max_body_bytes = parse_with(
            r.raw(
                None,
                "CERTCTL_MAX_BODY_BYTES",
                file.max_body_bytes.map(|n| n.to_string()),
            ),
            "a number of bytes from 1024 to 67108864",
            |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1024..=64 * 1024 * 1024).contains(n))
            },
        )?
        .unwrap_or(1024 * 1024);

        let plugin_dirs = parse_with(
            r.raw(None, "CERTCTL_PLUGIN_DIRS", file.plugin_dirs),
            "a comma-separated list of directories",
            |s| {
                let dirs: Vec<PathBuf> = s
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect();
                Some(dirs)
            },
        )?;
        let plugin_grants = parse_with(
            r.raw(None, "CERTCTL_PLUGIN_GRANTS", path_str(file.plugin_grants)),
            "a path to a TOML grants file",
            non_empty_path,
        )?;
        let instances_file = parse_with(
            r.raw(None, "CERTCTL_INSTANCES_FILE", path_str(file.instances_file)),
            "a path to a JSON file of plugin instances",
            non_empty_path,
        )?;
        let web_dir = parse_with(
            r.raw(None, "CERTCTL_WEB_DIR", path_str(file.web_dir)),
            "a directory holding index.html, app.js, app.css and favicon.svg",
            non_empty_path,
        )?;
        let plugin_pooling = parse_with(
            r.raw(None, "CERTCTL_PLUGIN_POOLING", file.plugin_pooling),
            "auto, on or off",
            |s| match s {
                "auto" => Some(crate::plugins::Pooling::Auto),
                "on" => Some(crate::plugins::Pooling::On),
                "off" => Some(crate::plugins::Pooling::Off),
                _ => None,
            },
        )?
        .unwrap_or(crate::plugins::Pooling::Auto);
        let plugin_ca_bundle = parse_with(
            r.raw(None, "CERTCTL_PLUGIN_CA_BUNDLE", path_str(file.plugin_ca_bundle)),
            "a path to a PEM CA bundle",
            non_empty_path,
        )?;
        let plugin_memory_mb = parse_with(
            r.raw(
                None,
                "CERTCTL_PLUGIN_MEMORY_MB",
                file.plugin_memory_mb.map(|n| n.to_string()),
            ),
            "a number of MiB from 16 to 4096",
            |s| s.parse::<usize>().ok().filter(|n| (16..=4096).contains(n)),
        )?
        .unwrap_or(64);
        let plugin_call_timeout_secs = parse_with(
            r.raw(
                None,
                "CERTCTL_PLUGIN_CALL_TIMEOUT_SECONDS",
                file.plugin_call_timeout_seconds.map(|n| n.to_string()),
            ),
            "a number of seconds from 1 to 3600",
            |s| s.parse::<u64>().ok().filter(|n| (1..=3600).contains(n)),
        )?
        .unwrap_or(30);

        const DURATION: &str = "a duration such as 30s, 5m, 1h or 1d (at least 1s)";
        let defaults = SchedulerSettings::default();
        let scheduler = SchedulerSettings {
            enabled: parse_with(
                r.raw(
                    None,
                    "CERTCTL_SCHEDULER_ENABLED",
                    file.scheduler_enabled.map(|b| b.to_string()),
                ),
                "true or false",
                parse_bool,
            )?
            .unwrap_or(defaults.enabled),
            renewal_interval: parse_with(
                r.raw(
                    None,
                    "CERTCTL_SCHEDULER_RENEWAL_INTERVAL",
                    file.scheduler_renewal_interval,
                ),
                DURATION,
                parse_duration,
            )?
            .unwrap_or(defaults.renewal_interval),
            job_interval: parse_with(
                r.raw(None, "CERTCTL_SCHEDULER_JOB_INTERVAL", file.scheduler_job_interval),
                DURATION,
                parse_duration,
            )?
            .unwrap_or(defaults.job_interval),
            alert_interval: parse_with(
                r.raw(None, "CERTCTL_SCHEDULER_ALERT_INTERVAL", file.scheduler_alert_interval),
                DURATION,
                parse_duration,
            )?
            .unwrap_or(defaults.alert_interval),
            agent_health_interval: parse_with(
                r.raw(
                    None,
                    "CERTCTL_SCHEDULER_AGENT_HEALTH_INTERVAL",
                    file.scheduler_agent_health_interval,
                ),
                DURATION,
                parse_duration,
            )?
            .unwrap_or(defaults.agent_health_interval),
            cleanup_interval: parse_with(
                r.raw(
                    None,
                    "CERTCTL_SCHEDULER_CLEANUP_INTERVAL",
                    file.scheduler_cleanup_interval,
                ),
                DURATION,
                parse_duration,
            )?
            .unwrap_or(defaults.cleanup_interval),
            retention_days: parse_with(
                r.raw(
                    None,
                    "CERTCTL_SCHEDULER_RETENTION_DAYS",
                    file.scheduler_retention_days.map(|n| n.to_string()),
                ),
                "a number of days from 1 to 3650",
                |s| s.parse::<u32>().ok().filter(|n| (1..=3650).contains(n)),
            )?
            .unwrap_or(defaults.retention_days),
        };

        let smtp_host = parse_with(
            r.raw(None, "CERTCTL_SMTP_HOST", file.smtp_host),
            "a host name or IP address of the SMTP relay",
            |s| (!s.is_empty() && !s.contains(char::is_whitespace)).then(|| s.to_string()),
        )?;
        let smtp_port = parse_with(
            r.raw(None, "CERTCTL_SMTP_PORT", file.smtp_port.map(|p| p.to_string())),
            "a TCP port number from 1 to 65535 (587 for STARTTLS, 465 for implicit TLS)",
            |s| s.parse::<u16>().ok().filter(|p| *p != 0),
        )?;
        let smtp_from = parse_with(
            r.raw(None, "CERTCTL_SMTP_FROM", file.smtp_from),
            "the sender address, e.g. certctl@example.com",
            |s| crate::mail::is_address(s).then(|| s.to_string()),
        )?;
        let smtp_tls = parse_with(
            r.raw(None, "CERTCTL_SMTP_TLS", file.smtp_tls),
            "starttls, implicit or none",
            crate::mail::SmtpTls::parse,
        )?;
        let smtp_username = r
            .raw(None, "CERTCTL_SMTP_USERNAME", file.smtp_username)
            .map(|r| r.value);
        let smtp_password = r
            .raw(None, "CERTCTL_SMTP_PASSWORD", file.smtp_password)
            .map(|r| r.value);
        let smtp_ca_bundle = parse_with(
            r.raw(None, "CERTCTL_SMTP_CA_BUNDLE", path_str(file.smtp_ca_bundle)),
            "a path to a PEM CA bundle",
            non_empty_path,
        )?;
        let smtp_timeout = parse_with(
            r.raw(
                None,
                "CERTCTL_SMTP_TIMEOUT_SECONDS",
                file.smtp_timeout_seconds.map(|n| n.to_string()),
            ),
            "a number of seconds from 1 to 600",
            |s| s.parse::<u64>().ok().filter(|n| (1..=600).contains(n)),
        )?
        .unwrap_or(30);
        let smtp = match (smtp_host, smtp_from) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Inconsistent(
                    "CERTCTL_SMTP_HOST and CERTCTL_SMTP_FROM must be set together to enable e-mail".to_string(),
                ));
            }
            (Some(host), Some(from)) => {
                if smtp_username.is_some() != smtp_password.is_some() {
                    return Err(ConfigError::Inconsistent(
                        "CERTCTL_SMTP_USERNAME and CERTCTL_SMTP_PASSWORD must be set together".to_string(),
                    ));
                }
                let port = smtp_port.unwrap_or(587);
                let tls = smtp_tls.unwrap_or(if port == 465 {
                    crate::mail::SmtpTls::Implicit
                } else {
                    crate::mail::SmtpTls::StartTls
                });
                if tls == crate::mail::SmtpTls::None && smtp_username.is_some() {
                    return Err(ConfigError::Inconsistent(
                        "CERTCTL_SMTP_TLS=none cannot be combined with CERTCTL_SMTP_USERNAME: credentials are \
                         never sent in clear"
                            .to_string(),
                    ));
                }
                Some(crate::mail::SmtpSettings {
                    host,
                    port,
                    username: smtp_username,
                    password: smtp_password,
                    from,
                    tls,
                    ca_bundle: smtp_ca_bundle,
                    timeout: std::time::Duration::from_secs(smtp_timeout),
                })
            }
        };

        let challenge_defaults = crate::challenge::ChallengeSettings::default();
        let challenges = crate::challenge::ChallengeSettings {
            http01_address: parse_with(
                r.raw(None, "CERTCTL_ACME_HTTP01_ADDRESS", file.acme_http01_address),
                "IP:PORT for the plain-HTTP ACME challenge listener, e.g. 0.0.0.0:80",
                |s| s.parse::<std::net::SocketAddr>().ok(),
            )?,
            resolvers: parse_with(
                r.raw(None, "CERTCTL_DNS_RESOLVERS", file.dns_resolvers),
                "a comma-separated list of resolver addresses, IP or IP:PORT (e.g. 10.0.0.2,1.1.1.1:53)",
                |s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(|x| {
                            x.parse::<std::net::SocketAddr>()
                                .ok()
                                .or_else(|| x.parse::<IpAddr>().ok().map(|ip| std::net::SocketAddr::new(ip, 53)))
                        })
                        .collect::<Option<Vec<_>>>()
                        .filter(|v| !v.is_empty())
                },
            )?
            .unwrap_or_default(),
            nameserver_port: parse_with(
                r.raw(
                    None,
                    "CERTCTL_DNS_NAMESERVER_PORT",
                    file.dns_nameserver_port.map(|p| p.to_string()),
                ),
                "the port authoritative name servers answer on, 1-65535 (53)",
                |s| s.parse::<u16>().ok().filter(|p| *p != 0),
            )?
            .unwrap_or(challenge_defaults.nameserver_port),
            timeout: parse_with(
                r.raw(
                    None,
                    "CERTCTL_DNS_TIMEOUT_SECONDS",
                    file.dns_timeout_seconds.map(|n| n.to_string()),
                ),
                "a number of seconds from 1 to 60",
                |s| s.parse::<u64>().ok().filter(|n| (1..=60).contains(n)),
            )?
            .map_or(challenge_defaults.timeout, std::time::Duration::from_secs),
            ttl: challenge_defaults.ttl,
        };

        let unknown_vars = env
            .keys()
            .filter(|k| k.starts_with("CERTCTL_"))
            .filter(|k| !SERVER_VARS.contains(&k.as_str()) && !OTHER_KNOWN_VARS.contains(&k.as_str()))
            .cloned()
            .collect();

        Ok(Config {
            host,
            port,
            tls_cert_path,
            tls_key_path,
            tls_min_version,
            data_dir,
            database_url,
            database_max_conns,
            log_level,
            log_format,
            auth_type,
            api_keys,
            agent_bootstrap_token,
            encryption_key,
            migrations_via_hook,
            max_body_bytes,
            plugin_dirs,
            plugin_grants,
            instances_file,
            web_dir,
            plugin_pooling,
            plugin_ca_bundle,
            plugin_memory_mb,
            plugin_call_timeout_secs,
            scheduler,
            smtp,
            challenges,
            unknown_vars,
        })
    }
}

/// The process environment, as a map (non-UTF-8 values are reported, not dropped).
pub fn process_env() -> Result<BTreeMap<String, String>, ConfigError> {
    let mut map = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        let (Some(k), v) = (k.to_str(), v) else { continue };
        if !k.starts_with("CERTCTL_") {
            continue;
        }
        match v.into_string() {
            Ok(v) => {
                map.insert(k.to_string(), v);
            }
            Err(v) => {
                return Err(ConfigError::Invalid {
                    source_name: k.to_string(),
                    value: v.to_string_lossy().into_owned(),
                    expected: "valid UTF-8".to_string(),
                });
            }
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        Config::resolve(&FlagValues::default(), &env(pairs))
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = Config::resolve(&FlagValues::default(), &env(&[])).expect("defaults");
        assert_eq!(c.port, 8443);
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!(c.auth_type, AuthType::ApiKey);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.tls_min_version, TlsMinVersion::Tls13);
        assert!(
            c.effective_database_url()
                .starts_with("sqlite://certctl-data/certctl.db")
        );
        assert!(!c.migrations_via_hook);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_accepted_form() {
        let cases = [
            ("CERTCTL_SERVER_PORT", "84a3", "TCP port"),
            ("CERTCTL_SERVER_PORT", "0", "TCP port"),
            ("CERTCTL_SERVER_HOST", "localhost:80", "IP address"),
            ("CERTCTL_LOG_FORMAT", "yaml", "json or text"),
            ("CERTCTL_LOG_LEVEL", "loud[", "trace, debug"),
            ("CERTCTL_AUTH_TYPE", "jwt", "api-key or none"),
            ("CERTCTL_MIGRATIONS_VIA_HOOK", "maybe", "true or false"),
            ("CERTCTL_DATABASE_MAX_CONNS", "-3", "whole number"),
            ("CERTCTL_DATABASE_URL", "mysql://x", "postgres://"),
            ("CERTCTL_CONFIG_ENCRYPTION_KEY", "short", "32 random bytes"),
            ("CERTCTL_SERVER_TLS_MIN_VERSION", "1.1", "1.2 or 1.3"),
            ("CERTCTL_PLUGIN_POOLING", "maybe", "auto, on or off"),
            ("CERTCTL_PLUGIN_MEMORY_MB", "8", "16 to 4096"),
            ("CERTCTL_PLUGIN_CALL_TIMEOUT_SECONDS", "0", "1 to 3600"),
            ("CERTCTL_API_KEYS_NAMED", "ops", "name:key[:role]"),
            ("CERTCTL_API_KEYS_NAMED", "ops:0123456789abcdef:root", "role one of"),
            ("CERTCTL_API_KEYS_NAMED", "ops:short", "at least 16"),
        ];
        for (var, value, expected) in cases {
            let msg = err(&[(var, value)]);
            assert!(msg.contains(var), "{var}={value}: {msg}");
            assert!(msg.contains(expected), "{var}={value}: {msg}");
        }
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("certctl.toml");
        std::fs::write(
            &file,
            "server_port = 9000\nlog_format = \"json\"\nauth_type = \"none\"\n",
        )
        .expect("write");
        let flags = FlagValues {
            config_file: Some(file),
            port: Some("9100".into()),
            ..FlagValues::default()
        };
        let c = Config::resolve(
            &flags,
            &env(&[("CERTCTL_SERVER_PORT", "9050"), ("CERTCTL_LOG_FORMAT", "text")]),
        )
        .expect("config");
        assert_eq!(c.port, 9100, "flag wins over env and file");
        assert_eq!(c.log_format, LogFormat::Text, "env wins over file");
        assert_eq!(c.auth_type, AuthType::None, "file wins over default");
    }

    #[test]
    fn bad_flag_names_the_flag() {
        let flags = FlagValues {
            port: Some("http".into()),
            ..FlagValues::default()
        };
        let msg = Config::resolve(&flags, &env(&[])).expect_err("refused").to_string();
        assert!(msg.contains("--port"), "{msg}");
    }

    #[test]
    fn unknown_file_key_is_refused_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("certctl.toml");
        std::fs::write(&file, "server_prot = 9000\n").expect("write");
        let msg = err(&[("CERTCTL_CONFIG_FILE", file.to_str().expect("utf8"))]);
        assert!(msg.contains("server_prot"), "{msg}");
    }

    #[test]
    fn tls_paths_must_come_in_pairs() {
        let msg = err(&[("CERTCTL_SERVER_TLS_CERT_PATH", "/tmp/c.pem")]);
        assert!(msg.contains("CERTCTL_SERVER_TLS_KEY_PATH"), "{msg}");
    }

    #[test]
    fn named_keys_parse_roles_and_keep_only_hashes() {
        let c = Config::resolve(
            &FlagValues::default(),
            &env(&[(
                "CERTCTL_API_KEYS_NAMED",
                "ops:0123456789abcdef0123,boss:fedcba9876543210fe:admin",
            )]),
        )
        .expect("config");
        assert_eq!(c.api_keys.len(), 2);
        assert_eq!(c.api_keys[0].role, Role::Operator);
        assert_eq!(c.api_keys[1].role, Role::Admin);
        assert_eq!(c.api_keys[0].hash, ApiKeyHash::of("0123456789abcdef0123"));
        assert!(!format!("{:?}", c.api_keys).contains("0123456789abcdef"));
    }

    #[test]
    fn encryption_key_accepts_base64_and_hex() {
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        for v in [b64, hex] {
            let c =
                Config::resolve(&FlagValues::default(), &env(&[("CERTCTL_CONFIG_ENCRYPTION_KEY", v)])).expect("config");
            assert_eq!(c.encryption_key.expect("key").0[31], 31);
        }
    }

    #[test]
    fn typos_in_variable_names_are_collected() {
        let c = Config::resolve(&FlagValues::default(), &env(&[("CERTCTL_SERVER_PROT", "1")])).expect("config");
        assert_eq!(c.unknown_vars, vec!["CERTCTL_SERVER_PROT".to_string()]);
    }
}
