//! `certctl-agent`'s runtime: configuration from flags and the environment (the original's names), its
//! identity (registered once, kept in the state directory), and the loops — heartbeat, work
//! (local keys, CSRs, deployments) and discovery — each with jitter, backing off on failure.
//! The server never connects to the agent; a 410 means the agent was retired and it exits 0.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::KeyType;

/// The agent's settings. `from_env` reads the `CERTCTL_*` variables; errors name the variable.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `CERTCTL_SERVER_URL`, https only.
    pub server_url: String,
    /// `CERTCTL_AGENT_BOOTSTRAP_TOKEN` or `CERTCTL_API_KEY` (an agent-role key): used once, to
    /// register when the state directory holds no identity yet.
    pub registration_token: Option<String>,
    /// `CERTCTL_AGENT_ID` with `CERTCTL_API_KEY` holding that agent's own credential (`cca_…`,
    /// from an administrator's `POST /api/v1/agents`): used as is, without registering.
    pub fixed_identity: Option<(String, String)>,
    /// `CERTCTL_AGENT_NAME`, default the node's hostname (every DaemonSet pod is its own agent).
    pub name: String,
    /// `CERTCTL_KEY_DIR` (created 0700): private keys, one directory per certificate.
    pub key_dir: PathBuf,
    /// `CERTCTL_AGENT_STATE_DIR` (default: `CERTCTL_KEY_DIR`): the agent's id and credential.
    pub state_dir: PathBuf,
    /// `CERTCTL_DISCOVERY_DIRS`, comma-separated; empty: no discovery.
    pub discovery_dirs: Vec<PathBuf>,
    /// `CERTCTL_SERVER_CA_BUNDLE_PATH`.
    pub ca_bundle: Option<PathBuf>,
    /// `CERTCTL_SERVER_TLS_INSECURE_SKIP_VERIFY` (testing only).
    pub insecure: bool,
    /// `CERTCTL_AGENT_HEARTBEAT_SECONDS` (default 60).
    pub heartbeat: Duration,
    /// `CERTCTL_AGENT_POLL_SECONDS` (default 30).
    pub poll: Duration,
    /// `CERTCTL_AGENT_DISCOVERY_SECONDS` (default 21600).
    pub discovery: Duration,
}

/// Where settings come from: command-line flags first, then the environment.
struct Sources<'a> {
    flags: &'a std::collections::BTreeMap<String, String>,
}

impl Sources<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.flags
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .filter(|v| !v.trim().is_empty())
    }

    fn seconds(&self, name: &str, default: u64) -> Result<Duration, String> {
        match self.get(name) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(s) if (1..=604_800).contains(&s) => Ok(Duration::from_secs(s)),
                _ => Err(format!("{name}={v:?}: expected whole seconds from 1 to 604800")),
            },
        }
    }
}

impl AgentConfig {
    /// From `flags` (variable name → value, set by the binary's command-line flags), then the
    /// environment. Errors name the variable (each flag stands for one).
    pub fn from_sources(flags: &std::collections::BTreeMap<String, String>) -> Result<AgentConfig, String> {
        let sources = Sources { flags };
        let env = |name: &str| sources.get(name);
        let seconds = |name: &str, default: u64| sources.seconds(name, default);
        let server_url = env("CERTCTL_SERVER_URL").ok_or("CERTCTL_SERVER_URL is not set: the server's https:// URL")?;
        if !server_url.starts_with("https://") {
            return Err(format!("CERTCTL_SERVER_URL={server_url:?}: must be an https:// URL"));
        }
        let name = match env("CERTCTL_AGENT_NAME") {
            Some(n) => n,
            None => hostname().ok_or("CERTCTL_AGENT_NAME is not set and the hostname cannot be read")?,
        };
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "CERTCTL_AGENT_NAME={name:?}: 1 to 128 letters, digits, '-', '_' or '.'"
            ));
        }
        let key_dir = PathBuf::from(env("CERTCTL_KEY_DIR").ok_or("CERTCTL_KEY_DIR is not set: where keys are kept")?);
        let state_dir = env("CERTCTL_AGENT_STATE_DIR").map_or_else(|| key_dir.clone(), PathBuf::from);
        let insecure = match env("CERTCTL_SERVER_TLS_INSECURE_SKIP_VERIFY").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(format!(
                    "CERTCTL_SERVER_TLS_INSECURE_SKIP_VERIFY={other:?}: expected true or false"
                ));
            }
        };
        let fixed_identity = match env("CERTCTL_AGENT_ID") {
            None => None,
            Some(id) => {
                if !safe_component(&id) {
                    return Err(format!(
                        "CERTCTL_AGENT_ID={id:?}: not an agent id (letters, digits and '-')"
                    ));
                }
                match env("CERTCTL_API_KEY") {
                    Some(key) if key.starts_with(crate::auth::AGENT_CREDENTIAL_PREFIX) => Some((id, key)),
                    _ => {
                        return Err(format!(
                            "CERTCTL_AGENT_ID={id} needs CERTCTL_API_KEY set to that agent's own credential \
                             ({}…, returned when the agent was registered); or unset CERTCTL_AGENT_ID and \
                             let the agent register itself with CERTCTL_AGENT_BOOTSTRAP_TOKEN",
                            crate::auth::AGENT_CREDENTIAL_PREFIX
                        ));
                    }
                }
            }
        };
        Ok(AgentConfig {
            fixed_identity,
            server_url: server_url.trim_end_matches('/').to_string(),
            registration_token: env("CERTCTL_AGENT_BOOTSTRAP_TOKEN").or_else(|| env("CERTCTL_API_KEY")),
            name,
            key_dir,
            state_dir,
            discovery_dirs: env("CERTCTL_DISCOVERY_DIRS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
            ca_bundle: env("CERTCTL_SERVER_CA_BUNDLE_PATH").map(PathBuf::from),
            insecure,
            heartbeat: seconds("CERTCTL_AGENT_HEARTBEAT_SECONDS", 60)?,
            poll: seconds("CERTCTL_AGENT_POLL_SECONDS", 30)?,
            discovery: seconds("CERTCTL_AGENT_DISCOVERY_SECONDS", 21_600)?,
        })
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Who this agent is, as the server registered it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    id: String,
    name: String,
    credential: String,
}

/// How the agent stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// The server retired this agent (410): exit 0.
    Retired,
}

/// An answer that is not a success, with the status kept (410 means retired).
#[derive(Debug)]
struct HttpFailure {
    status: Option<u16>,
    message: String,
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, HttpFailure> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| HttpFailure {
            status: None,
            message: format!("cannot reach {url}: {e}"),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        Err(HttpFailure {
            status: Some(status.as_u16()),
            message: format!("{url}: HTTP {status}: {message}"),
        })
    }
}

fn http_client(config: &AgentConfig) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(60));
    if let Some(path) = &config.ca_bundle {
        let pem = std::fs::read(path).with_context(|| format!("CERTCTL_SERVER_CA_BUNDLE_PATH {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("CERTCTL_SERVER_CA_BUNDLE_PATH {}: not PEM", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    if config.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().context("building the HTTP client")
}

/// Creates `dir` (and parents) with mode 0700, or tightens an existing one.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (0700)", dir.display()))
}

/// Writes `bytes` to `path` with mode 0600, atomically (as deployments write files).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    super::deploy::write_atomic(path, bytes, 0o600, None, None)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn info() -> Value {
    json!({
        "hostname": hostname(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "version": env!("CARGO_PKG_VERSION"),
        "ips": local_ips(),
    })
}

/// The node's addresses, from the routes the kernel would use (no packets are sent).
fn local_ips() -> Vec<String> {
    let mut ips = Vec::new();
    for target in ["192.0.2.1:9", "[2001:db8::1]:9"] {
        let bind = if target.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
        if let Ok(s) = std::net::UdpSocket::bind(bind)
            && s.connect(target).is_ok()
            && let Ok(addr) = s.local_addr()
            && !addr.ip().is_unspecified()
        {
            ips.push(addr.ip().to_string());
        }
    }
    ips
}

/// The identity kept in the state directory, or a new registration.
async fn identity(config: &AgentConfig, http: &reqwest::Client) -> anyhow::Result<Identity> {
    if let Some((id, credential)) = &config.fixed_identity {
        return Ok(Identity {
            id: id.clone(),
            name: config.name.clone(),
            credential: credential.clone(),
        });
    }
    let path = config.state_dir.join("agent.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id: Identity = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not an agent identity; remove it to register again",
                path.display()
            )
        })?;
        if id.name == config.name {
            return Ok(id);
        }
        tracing::warn!(old = %id.name, new = %config.name, "the agent name changed: registering again");
    }
    let token = config.registration_token.clone().ok_or_else(|| {
        anyhow!(
            "no identity in {} and nothing to register with: set CERTCTL_AGENT_BOOTSTRAP_TOKEN (or CERTCTL_API_KEY, an agent-role key)",
            path.display()
        )
    })?;
    let api = Api {
        http: http.clone(),
        base: config.server_url.clone(),
        token,
    };
    let mut body = info();
    body["name"] = json!(config.name);
    let answer = api
        .send(reqwest::Method::POST, "/api/v1/agents", Some(body))
        .await
        .map_err(|e| anyhow!("registration failed: {e}"))?;
    let id = Identity {
        id: answer["agent"]["id"].as_str().unwrap_or_default().to_string(),
        name: config.name.clone(),
        credential: answer["credential"].as_str().unwrap_or_default().to_string(),
    };
    if id.id.is_empty() || id.credential.is_empty() {
        return Err(anyhow!("registration answered without an id or credential: {answer}"));
    }
    write_private(&path, serde_json::to_string(&id)?.as_bytes())?;
    tracing::info!(agent = %id.id, name = %id.name, "registered");
    Ok(id)
}

/// Runs the agent until it is retired (`Ok(Exit::Retired)`) or cannot start (`Err`).
pub async fn run(config: AgentConfig) -> anyhow::Result<Exit> {
    private_dir(&config.key_dir)?;
    private_dir(&config.state_dir)?;
    let http = http_client(&config)?;
    let me = identity(&config, &http).await?;
    let api = Api {
        http,
        base: config.server_url.clone(),
        token: me.credential.clone(),
    };
    let mut next_beat = tokio::time::Instant::now();
    let mut next_poll = tokio::time::Instant::now();
    let mut next_scan = tokio::time::Instant::now();
    let mut failures: u32 = 0;
    loop {
        let now = tokio::time::Instant::now();
        let mut result: Result<(), HttpFailure> = Ok(());
        if now >= next_beat {
            result = api
                .send(
                    reqwest::Method::POST,
                    &format!("/api/v1/agents/{}/heartbeat", me.id),
                    Some(info()),
                )
                .await
                .map(|_| ());
            next_beat = now + jitter(config.heartbeat);
        }
        if result.is_ok() && now >= next_poll {
            result = work(&config, &api, &me).await;
            next_poll = now + jitter(config.poll);
        }
        if result.is_ok() && now >= next_scan && !config.discovery_dirs.is_empty() {
            result = discover(&config, &api, &me).await;
            next_scan = now + jitter(config.discovery);
        }
        match result {
            Err(HttpFailure { status: Some(410), .. }) => {
                tracing::info!(agent = %me.id, "retired by the server: exiting");
                return Ok(Exit::Retired);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(failures);
                tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "agent loop failed");
                tokio::time::sleep(wait).await;
                continue;
            }
            Ok(()) => failures = 0,
        }
        let next = next_beat.min(next_poll);
        let next = if config.discovery_dirs.is_empty() {
            next
        } else {
            next.min(next_scan)
        };
        tokio::time::sleep_until(next).await;
    }
}

/// ±10 % so a fleet started together does not poll in step.
fn jitter(d: Duration) -> Duration {
    let spread = d.as_millis() as f64 * 0.1;
    let offset = (rand::random::<f64>() * 2.0 - 1.0) * spread;
    Duration::from_millis((d.as_millis() as f64 + offset).max(100.0) as u64)
}

/// 2 s doubling, at most 5 minutes, with jitter: never a spin.
fn backoff(failures: u32) -> Duration {
    let secs = 2u64.saturating_pow(failures.min(9)).min(300);
    jitter(Duration::from_secs(secs))
}

/// One round of work: CSRs for certificates waiting for this agent's key, then deployments.
async fn work(config: &AgentConfig, api: &Api, me: &Identity) -> Result<(), HttpFailure> {
    let work = api
        .send(reqwest::Method::GET, &format!("/api/v1/agents/{}/work", me.id), None)
        .await?;
    for item in work["csr"].as_array().into_iter().flatten() {
        if let Err(e) = send_csr(config, api, me, item).await {
            if e.status == Some(410) {
                return Err(e);
            }
            tracing::warn!(certificate = %item["certificate_id"], error = %e, "CSR not sent");
        }
    }
    for item in work["deploy"].as_array().into_iter().flatten() {
        let report = deploy_one(config, item).await;
        let job = item["job_id"].as_str().unwrap_or_default();
        api.send(
            reqwest::Method::POST,
            &format!("/api/v1/agents/{}/jobs/{job}/result", me.id),
            Some(report),
        )
        .await?;
    }
    Ok(())
}

/// Generates the key for a waiting job (once: a restart reuses it), keeps it 0600 in
/// `<key_dir>/<certificate>/<job>.key`, and sends the CSR. The key never leaves the node.
async fn send_csr(config: &AgentConfig, api: &Api, me: &Identity, item: &Value) -> Result<(), HttpFailure> {
    let local = |e: anyhow::Error| HttpFailure {
        status: None,
        message: format!("{e:#}"),
    };
    let cert = item["certificate_id"].as_str().unwrap_or_default();
    let job = item["job_id"].as_str().unwrap_or_default();
    if cert.is_empty() || job.is_empty() || !safe_component(cert) || !safe_component(job) {
        return Err(local(anyhow!("malformed work item {item}")));
    }
    let kind: KeyType = item["key_type"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e: String| local(anyhow!("key_type: {e}")))?;
    let dir = config.key_dir.join(cert);
    private_dir(&dir).map_err(local)?;
    let path = dir.join(format!("{job}.key"));
    let pkcs8 = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(_) => {
            let pkcs8 = crate::keystore::generate_pkcs8(kind).map_err(|e| local(anyhow!("key generation: {e}")))?;
            write_private(&path, &pkcs8).map_err(local)?;
            pkcs8
        }
    };
    let pair = crate::keystore::key_pair(kind, &pkcs8).map_err(|e| local(anyhow!("{e}")))?;
    let sans: Vec<String> = item["sans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let mut params = rcgen::CertificateParams::new(sans).map_err(|e| local(anyhow!("names: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        item["common_name"].as_str().unwrap_or_default(),
    );
    let csr = params
        .serialize_request(&pair)
        .and_then(|c| c.pem())
        .map_err(|e| local(anyhow!("building the CSR: {e}")))?;
    api.send(
        reqwest::Method::POST,
        &format!("/api/v1/agents/{}/certificates/{cert}/csr", me.id),
        Some(json!({"csr": csr})),
    )
    .await?;
    tracing::info!(certificate = %cert, job = %job, "CSR sent; the key stays here");
    Ok(())
}

/// Ids from the server become file names: letters, digits and '-' only.
fn safe_component(s: &str) -> bool {
    s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The key in `<key_dir>/<certificate>/` whose public key is the leaf's, as PKCS#8 PEM.
fn key_for(config: &AgentConfig, cert: &str, leaf_spki: &[u8]) -> anyhow::Result<String> {
    use rcgen::PublicKeyData;
    let dir = config.key_dir.join(cert);
    for entry in std::fs::read_dir(&dir).with_context(|| format!("no keys in {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("key") {
            continue;
        }
        let pkcs8 = std::fs::read(&path)?;
        for kind in [
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::Ed25519,
            KeyType::Rsa2048,
            KeyType::Rsa3072,
            KeyType::Rsa4096,
        ] {
            if let Ok(pair) = crate::keystore::key_pair(kind, &pkcs8)
                && pair.subject_public_key_info() == leaf_spki
            {
                return Ok(pair.serialize_pem());
            }
        }
    }
    Err(anyhow!(
        "none of the keys in {} matches the issued certificate (was the key directory wiped?)",
        dir.display()
    ))
}

/// Deploys one work item; the report the server keeps on the job.
async fn deploy_one(config: &AgentConfig, item: &Value) -> Value {
    let cert = item["certificate_id"].as_str().unwrap_or_default();
    let job = item["job_id"].as_str().unwrap_or_default();
    let chain = item["chain_pem"].as_str().unwrap_or_default();
    let prepared = (|| -> anyhow::Result<(crate::agent::deploy::Target, crate::agent::deploy::Material)> {
        if !safe_component(cert) || !safe_component(job) {
            return Err(anyhow!("malformed work item: certificate {cert:?}, job {job:?}"));
        }
        let target: crate::agent::deploy::Target =
            serde_json::from_value(item["target"].clone()).context("the deployment target does not parse")?;
        let blocks = crate::lifecycle::x509::pem_blocks(chain);
        let leaf_pem = blocks
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("no certificate in the chain"))?;
        let leaf = crate::lifecycle::x509::leaf_spki(&leaf_pem).map_err(|e| anyhow!("the issued certificate: {e}"))?;
        let key_pem = key_for(config, cert, &leaf)?;
        Ok((
            target,
            crate::agent::deploy::Material {
                cert_pem: leaf_pem,
                chain_pem: blocks[1..].concat(),
                key_pem,
            },
        ))
    })();
    match prepared {
        Err(e) => json!({"error": format!("{e:#}"), "report": {}}),
        Ok((target, material)) => {
            let journals = config.state_dir.join("deployments");
            if let Err(e) = private_dir(&journals) {
                return json!({"error": format!("{e:#}"), "report": {}});
            }
            let journal = journals.join(format!("{job}.json"));
            let report = crate::agent::deploy::deploy(&target, &material, &journal).await;
            let value = serde_json::to_value(&report).unwrap_or(Value::Null);
            match report.error() {
                Some(e) => json!({"error": e, "report": value}),
                None => json!({"report": value}),
            }
        }
    }
}

/// One discovery scan of the configured directories, reported to the server.
async fn discover(config: &AgentConfig, api: &Api, me: &Identity) -> Result<(), HttpFailure> {
    let dirs = config.discovery_dirs.clone();
    let report = tokio::task::spawn_blocking(move || {
        crate::agent::discovery::scan(&dirs, &crate::agent::discovery::DiscoveryLimits::default())
    })
    .await
    .map_err(|e| HttpFailure {
        status: None,
        message: format!("discovery scan: {e}"),
    })?;
    for (path, problem) in &report.problems {
        tracing::debug!(path = %path.display(), %problem, "discovery skipped a file");
    }
    let found = report.found;
    for chunk in found.chunks(5_000) {
        api.send(
            reqwest::Method::POST,
            &format!("/api/v1/agents/{}/discoveries", me.id),
            Some(json!({"found": chunk})),
        )
        .await?;
    }
    tracing::info!(
        found = found.len(),
        skipped = report.problems.len(),
        "discovery scan reported"
    );
    Ok(())
}
