//! The `certctl` command-line client: talks to the REST API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use serde_json::Value;

/// certctl: manage TLS certificates through a certctl server.
#[derive(Parser, Debug)]
#[command(name = "certctl", version)]
pub struct Cli {
    /// Server URL (https only).
    #[arg(long, env = "CERTCTL_SERVER_URL", default_value = "https://127.0.0.1:8443")]
    pub server: String,
    /// API key, sent as a bearer token.
    #[arg(long, env = "CERTCTL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM CA bundle to trust for the server (e.g. <data-dir>/tls/ca.crt of a self-generated setup).
    #[arg(long, env = "CERTCTL_SERVER_CA_BUNDLE_PATH")]
    pub cacert: Option<PathBuf>,
    /// Do not verify the server certificate (testing only).
    #[arg(long, env = "CERTCTL_SERVER_TLS_INSECURE_SKIP_VERIFY")]
    pub insecure: bool,
    /// Print raw JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check that the server is up and its database reachable.
    Health,
    /// Show the server version.
    Version,
    /// Certificates.
    #[command(subcommand, alias = "certificates")]
    Certs(CertsCommand),
    /// Issuer instances.
    #[command(subcommand)]
    Issuers(InstancesCommand),
    /// DNS-solver instances.
    #[command(subcommand, name = "dns-solvers")]
    DnsSolvers(InstancesCommand),
    /// dns-persist-01 records waiting for (or past) the operator's approval.
    #[command(subcommand, name = "dns-persist")]
    DnsPersist(DnsPersistCommand),
    /// Jobs (issuance, renewal, revocation, notifications).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Agents: their heartbeats, and retiring one.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Certificates agents found on their nodes: list, claim (adopt) or dismiss.
    #[command(subcommand)]
    Discoveries(DiscoveriesCommand),
    /// Work with plugin files locally (no server needed).
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Show a component's kind, contract version, imports, exports and its manifest's requests.
    Inspect { file: PathBuf },
    /// Run every check the server runs when loading FILE.wasm + FILE.toml; exit 1 with the reason.
    Validate {
        file: PathBuf,
        /// The operator grants file to check requested hosts against (CERTCTL_PLUGIN_GRANTS).
        #[arg(long)]
        grants: Option<PathBuf>,
    },
    /// Create a ready-to-build plugin project on the SDK.
    New {
        /// dns-solver, notifier or issuer.
        #[arg(long)]
        kind: String,
        /// The plugin's name: lower-case letters, digits and '-'.
        name: String,
        /// Where to create the project directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK crate (the sdk/ directory of a certctl checkout); default ./sdk.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run the DNS-solver conformance suite against a real provider: present/cleanup on
    /// `_certctl-conformance.<zone>`, reading the results from the zone's DNS server with dig.
    Test {
        file: PathBuf,
        /// The instance configuration, JSON (secret references env:/file: are resolved).
        #[arg(long)]
        config: String,
        /// The zone to write the probe records into.
        #[arg(long)]
        zone: String,
        /// Authoritative DNS server to read TXT records from, HOST or HOST:PORT.
        #[arg(long)]
        dns_server: String,
        /// Hosts the plugin may reach, scheme://host[:port] (repeatable).
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Let the plugin reach private and loopback addresses.
        #[arg(long)]
        allow_private: bool,
        /// Seconds to wait after each change before reading DNS.
        #[arg(long, default_value_t = 1)]
        settle_seconds: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// List certificates.
    List {
        /// pending, active, expiring, expired, revoked or failed.
        #[arg(long)]
        status: Option<String>,
        /// Only certificates of this issuer id.
        #[arg(long)]
        issuer: Option<String>,
        /// Search in names.
        #[arg(long, short)]
        q: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Follow cursors and list every page.
        #[arg(long)]
        all: bool,
    },
    /// Show one certificate.
    Get { id: String },
    /// Declare a certificate to manage.
    Declare {
        /// Unique name in certctl.
        name: String,
        /// Subject common name (also the first SAN).
        #[arg(long)]
        cn: String,
        /// Further DNS names or IP addresses (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// ecdsa-p256 (default), ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519.
        #[arg(long)]
        key_type: Option<String>,
        /// agent (default: the agent sends a CSR) or server (agentless).
        #[arg(long)]
        key_generation: Option<String>,
        /// The issuer instance id; with one, issuance starts at once.
        #[arg(long)]
        issuer: Option<String>,
        /// Renew this many days before expiry (default: in the last third of the lifetime).
        #[arg(long)]
        renew_before_days: Option<u32>,
        /// Do not renew automatically.
        #[arg(long)]
        no_auto_renew: bool,
        /// key=value labels (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Issuer profile, e.g. an ACME profile the CA lists.
        #[arg(long)]
        profile: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Send a CSR (PEM file) for a certificate whose key is generated elsewhere.
    Csr {
        id: String,
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        wait: Wait,
    },
    /// Renew now.
    Renew {
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Revoke the current version.
    Revoke {
        id: String,
        /// RFC 5280 reason: unspecified, key_compromise, ca_compromise, affiliation_changed,
        /// superseded, cessation_of_operation, certificate_hold, privilege_withdrawn, aa_compromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// List issued versions.
    Versions { id: String },
    /// Download PEM: the certificate, its chain, both, or (admins, server-generated keys) the key.
    Download {
        id: String,
        /// cert, chain, fullchain or key.
        #[arg(long, default_value = "fullchain")]
        part: String,
        /// A version id (default: current).
        #[arg(long)]
        version: Option<String>,
        /// Write to this file (a key is written with mode 0600) instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

/// Waiting for the job a command starts.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct Wait {
    /// Wait until the issuance job ends (its steps are shown as they happen); exit 1 if it fails.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (the job goes on).
    #[arg(long, default_value_t = 600)]
    pub wait_timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Show one job, with its progress steps and last error.
    Get { id: String },
    /// List jobs, newest first.
    List {
        /// pending, running, awaiting_csr, completed, failed, cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        certificate: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum InstancesCommand {
    /// List instances.
    List,
    /// Create an instance of a loaded plugin.
    Create {
        /// Unique name (DNS-solver names are what issuers refer to in `dns_solver`).
        name: String,
        /// The plugin it runs (see GET /api/v1/plugins).
        #[arg(long)]
        plugin: String,
        /// The configuration, a JSON object in a file (`-` for standard input).
        #[arg(long)]
        config: Option<PathBuf>,
        /// One configuration key: key=value; the value is read as JSON when it parses as JSON
        /// (numbers, true, lists), as a string otherwise. Repeatable; applied over --config.
        #[arg(long = "set")]
        set: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DnsPersistCommand {
    /// List records (newest first).
    List {
        /// awaiting_approval, presenting, present, cleaned or failed.
        #[arg(long)]
        state: Option<String>,
    },
    /// Approve a record: the server publishes it once through the issuer's DNS solver.
    Approve { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// Every agent with its last heartbeat and whether it is online (a heartbeat within 5 min).
    List,
    /// One agent in full.
    Show { id: String },
    /// Retire an agent: its next call gets 410 and it exits; its name cannot register again.
    Retire { id: String },
}

#[derive(Subcommand, Debug)]
pub enum DiscoveriesCommand {
    /// Certificates found by agents, newest sighting first.
    List {
        /// new, claimed or dismissed.
        #[arg(long)]
        state: Option<String>,
    },
    /// Adopt a found certificate: the managed certificate (id) that takes it over.
    Claim {
        id: String,
        #[arg(long)]
        certificate: String,
    },
    /// Mark a found certificate as not ours to manage.
    Dismiss { id: String },
}

/// A small API client.
pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl Client {
    pub fn new(cli: &Cli) -> anyhow::Result<Client> {
        if !cli.server.starts_with("https://") {
            return Err(anyhow!(
                "--server / CERTCTL_SERVER_URL must be an https:// URL, got {:?}",
                cli.server
            ));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(std::time::Duration::from_secs(30));
        if let Some(path) = &cli.cacert {
            let pem = std::fs::read(path).with_context(|| format!("cannot read --cacert {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--cacert {} is not a PEM certificate bundle", path.display()))?;
            if certs.is_empty() {
                return Err(anyhow!("--cacert {} holds no certificate", path.display()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if cli.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(Client {
            http: builder.build().context("building the HTTP client")?,
            base: cli.server.trim_end_matches('/').to_string(),
            api_key: cli.api_key.clone(),
        })
    }

    /// GETs `path` and returns the JSON body, or an error carrying the API's message.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let resp = self.send(reqwest::Method::GET, path, query, None).await?;
        Ok(resp.json().await.unwrap_or(Value::Null))
    }

    /// Sends `body` (JSON) with `method` and returns the JSON answer.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let resp = self.send(method, path, &[], body).await?;
        Ok(resp.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path` and returns the body as text (PEM downloads).
    pub async fn get_text(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<String> {
        let resp = self.send(reqwest::Method::GET, path, query, None).await?;
        resp.text().await.context("reading the answer")
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| {
            let mut msg = format!("cannot reach {url}: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            if msg.contains("certificate") || msg.contains("UnknownIssuer") {
                msg.push_str(
                    "\nhint: for a server with a self-generated certificate, pass --cacert <data-dir>/tls/ca.crt",
                );
            }
            anyhow!(msg)
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let detail = &body["error"];
        let message = detail["message"].as_str().unwrap_or("no error message");
        let field = detail["field"]
            .as_str()
            .map(|f| format!(" (field {f})"))
            .unwrap_or_default();
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
            "\nhint: pass --api-key or set CERTCTL_API_KEY"
        } else {
            ""
        };
        Err(anyhow!("HTTP {status}: {message}{field}{hint}"))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows as aligned columns.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

fn cert_rows(items: &[Value]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|c| {
            vec![
                text(&c["id"]),
                text(&c["name"]),
                text(&c["status"]),
                text(&c["common_name"]),
                text(&c["not_after"]),
            ]
        })
        .collect()
}

fn local_runtime() -> anyhow::Result<crate::plugins::Runtime> {
    crate::plugins::Runtime::new(crate::plugins::RuntimeSettings {
        limits: crate::plugins::sandbox::Limits::default(),
        pooling: crate::plugins::Pooling::Off,
        cache_dir: None,
        ca_bundle: None,
    })
}

/// TXT values at `fqdn` according to `server`, via dig.
async fn dig_txt(server: &str, fqdn: &str) -> Result<Vec<String>, String> {
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.to_string()),
        _ => (server.to_string(), "53".to_string()),
    };
    let out = tokio::process::Command::new("dig")
        .args([
            "+short",
            "+norecurse",
            "-t",
            "TXT",
            fqdn,
            &format!("@{host}"),
            "-p",
            &port,
        ])
        .output()
        .await
        .map_err(|e| format!("cannot run dig (Debian package bind9-dnsutils): {e}"))?;
    if !out.status.success() {
        return Err(format!("dig failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('"').skip(1).step_by(2).collect::<String>())
        .collect())
}

async fn conformance(cmd: &PluginCommand) -> anyhow::Result<String> {
    let PluginCommand::Test {
        file,
        config,
        zone,
        dns_server,
        allow,
        allow_private,
        settle_seconds,
    } = cmd
    else {
        return Err(anyhow!("not a test command"));
    };
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| anyhow!("{}: file name is not UTF-8", file.display()))?
        .to_string();
    let dir = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .ok_or_else(|| anyhow!("{}: no directory", file.display()))?;
    let mut grants = crate::plugins::grants::Grants::default();
    grants.0.insert(
        name.clone(),
        crate::plugins::grants::Grant {
            outbound_hosts: allow.clone(),
            allow_private_networks: *allow_private,
        },
    );
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new()?);
    let registry = crate::plugins::registry::Registry::new(local_runtime()?, vec![dir], grants, metrics);
    registry.reload();
    let manifest = registry.manifest(&name).ok_or_else(|| {
        let (_, refused) = registry.list();
        let reason = refused
            .iter()
            .find(|r| r.path.ends_with(&format!("{name}.wasm")))
            .map_or("not found".to_string(), |r| r.error.clone());
        anyhow!("{}: refused: {reason}", file.display())
    })?;
    let config_value: Value = serde_json::from_str(config).context("--config is not valid JSON")?;
    manifest
        .check_config(&config_value)
        .map_err(|(field, msg)| anyhow!("--config: {field}: {msg}"))?;
    let resolved = crate::secrets::resolve(&manifest, &config_value)
        .map_err(|(field, msg)| anyhow!("--config: {field}: {msg}"))?;
    let settle = std::time::Duration::from_secs(*settle_seconds);
    let checks = crate::plugins::conformance::dns_solver(&registry, &name, &resolved, zone, |fqdn| {
        let server = dns_server.clone();
        async move {
            tokio::time::sleep(settle).await;
            dig_txt(&server, &fqdn).await
        }
    })
    .await;
    let failed = checks.iter().filter(|c| !c.passed).count();
    let mut out: Vec<String> = checks
        .iter()
        .map(|c| {
            if c.passed {
                format!("ok    {}", c.rule)
            } else {
                format!("FAIL  {}: {}", c.rule, c.detail)
            }
        })
        .collect();
    out.push(format!("{} passed, {failed} failed", checks.len() - failed));
    if failed > 0 {
        return Err(anyhow!(out.join("\n")));
    }
    Ok(out.join("\n"))
}

async fn plugin_command(cmd: &PluginCommand, json: bool) -> anyhow::Result<String> {
    match cmd {
        PluginCommand::New { kind, name, dir, sdk } => {
            let kind: crate::model::InstanceKind = kind.parse().map_err(|e: String| anyhow!("--kind: {e}"))?;
            let sdk = match sdk {
                Some(p) => p.clone(),
                None if Path::new("sdk/Cargo.toml").exists() => PathBuf::from("sdk"),
                None => return Err(anyhow!("pass --sdk PATH: the sdk/ directory of a certctl checkout")),
            };
            let root = crate::scaffold::new_plugin(dir, name, kind, &sdk)?;
            Ok(format!(
                "created {}\nnext: cd {} && ./build.sh && certctl plugin validate dist/{name}.wasm",
                root.display(),
                root.display()
            ))
        }
        PluginCommand::Inspect { file } => {
            let runtime = local_runtime()?;
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let info = runtime
                .inspect(&bytes)
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let manifest = std::fs::read_to_string(file.with_extension("toml")).ok();
            if json {
                return Ok(serde_json::json!({"component": info, "manifest": manifest}).to_string());
            }
            let mut out = vec![
                format!(
                    "file:      {} ({} bytes, sha256 {})",
                    file.display(),
                    info.size,
                    info.sha256
                ),
                format!(
                    "kind:      {}",
                    info.kind
                        .map_or("none (not a certctl plugin)".to_string(), |k| k.to_string())
                ),
                format!("contract:  {}", info.contract.as_deref().unwrap_or("-")),
                "exports:".to_string(),
            ];
            out.extend(info.exports.iter().map(|e| format!("  {e}")));
            out.push("imports:".to_string());
            out.extend(info.imports.iter().map(|i| format!("  {i}")));
            match manifest {
                Some(m) => {
                    out.push(format!("manifest ({}):", file.with_extension("toml").display()));
                    out.extend(m.lines().map(|l| format!("  {l}")));
                }
                None => out.push("manifest:  none beside the file".to_string()),
            }
            Ok(out.join("\n"))
        }
        PluginCommand::Test { .. } => conformance(cmd).await,
        PluginCommand::Validate { file, grants } => {
            let runtime = local_runtime()?;
            let grants = match grants {
                Some(path) => crate::plugins::grants::Grants::load(path).map_err(|e| anyhow!(e))?,
                None => crate::plugins::grants::Grants::default(),
            };
            let loaded = runtime
                .load(file, &grants)
                .map_err(|e| anyhow!("{}: refused: {e}", file.display()))?;
            Ok(format!(
                "{}: ok — {} {} {} (contract {})",
                file.display(),
                loaded.manifest.kind,
                loaded.manifest.name,
                loaded.manifest.version,
                loaded.manifest.contract
            ))
        }
    }
}

async fn run_command(cli: &Cli) -> anyhow::Result<String> {
    let client = match &cli.command {
        Command::Plugin(cmd) => return plugin_command(cmd, cli.json).await,
        _ => Client::new(cli)?,
    };
    let out = match &cli.command {
        Command::Health => {
            let health = client.get("/health", &[]).await?;
            let ready = client.get("/ready", &[]).await?;
            if cli.json {
                serde_json::json!({"health": health, "ready": ready}).to_string()
            } else {
                format!(
                    "{}: {}, {}",
                    client.base,
                    text(&health["status"]),
                    text(&ready["status"])
                )
            }
        }
        Command::Version => {
            let v = client.get("/api/v1/version", &[]).await?;
            if cli.json {
                v.to_string()
            } else {
                format!(
                    "certctl-server {} (api {}, database {})",
                    text(&v["version"]),
                    text(&v["api"]),
                    text(&v["database"])
                )
            }
        }
        Command::Certs(CertsCommand::List {
            status,
            issuer,
            q,
            limit,
            all,
        }) => {
            let mut query = vec![("limit", limit.to_string())];
            for (k, v) in [("status", status), ("issuer_id", issuer), ("q", q)] {
                if let Some(v) = v {
                    query.push((k, v.clone()));
                }
            }
            let mut items = Vec::new();
            loop {
                let page = client.get("/api/v1/certificates", &query).await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next_cursor"].as_str() {
                    Some(cursor) if *all => {
                        query.retain(|(k, _)| *k != "cursor");
                        query.push(("cursor", cursor.to_string()));
                    }
                    _ => break,
                }
            }
            if cli.json {
                Value::Array(items).to_string()
            } else {
                table(
                    &["ID", "NAME", "STATUS", "COMMON NAME", "NOT AFTER"],
                    &cert_rows(&items),
                )
            }
        }
        Command::Certs(CertsCommand::Get { id }) => {
            let c = client.get(&format!("/api/v1/certificates/{id}"), &[]).await?;
            if cli.json {
                c.to_string()
            } else {
                serde_json::to_string_pretty(&c)?
            }
        }
        Command::Certs(cmd) => certs_command(&client, cmd, cli.json).await?,
        Command::Jobs(JobsCommand::Get { id }) => {
            let job = client.get(&format!("/api/v1/jobs/{id}"), &[]).await?;
            if cli.json { job.to_string() } else { job_text(&job) }
        }
        Command::Jobs(JobsCommand::List { status, certificate }) => {
            let mut query = vec![("limit", "100".to_string())];
            for (k, v) in [("status", status), ("certificate_id", certificate)] {
                if let Some(v) = v {
                    query.push((k, v.clone()));
                }
            }
            let page = client.get("/api/v1/jobs", &query).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if cli.json {
                Value::Array(items).to_string()
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|j| {
                        vec![
                            text(&j["id"]),
                            text(&j["kind"]),
                            text(&j["state"]),
                            text(&j["attempts"]),
                            text(&j["certificate_id"]),
                            text(&j["error_message"]),
                        ]
                    })
                    .collect();
                table(&["ID", "KIND", "STATE", "ATTEMPTS", "CERTIFICATE", "LAST ERROR"], &rows)
            }
        }
        Command::Plugin(cmd) => plugin_command(cmd, cli.json).await?,
        Command::Issuers(cmd) => instances_command(&client, "/api/v1/issuers", cmd, cli.json).await?,
        Command::DnsSolvers(cmd) => instances_command(&client, "/api/v1/dns-solvers", cmd, cli.json).await?,
        Command::Agents(AgentsCommand::List) => {
            let list = client.get("/api/v1/agents", &[]).await?;
            if cli.json {
                list.to_string()
            } else {
                let rows: Vec<Vec<String>> = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        let status = if !a["retired_at"].is_null() {
                            "retired"
                        } else if a["online"] == true {
                            "online"
                        } else {
                            "offline"
                        };
                        vec![
                            text(&a["id"]),
                            text(&a["name"]),
                            status.to_string(),
                            text(&a["last_heartbeat"]),
                            text(&a["version"]),
                            text(&a["hostname"]),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "STATUS", "LAST HEARTBEAT", "VERSION", "HOST"], &rows)
            }
        }
        Command::Agents(AgentsCommand::Show { id }) => {
            let agent = client.get(&format!("/api/v1/agents/{id}"), &[]).await?;
            if cli.json {
                agent.to_string()
            } else {
                serde_json::to_string_pretty(&agent)?
            }
        }
        Command::Agents(AgentsCommand::Retire { id }) => {
            client
                .call(reqwest::Method::POST, &format!("/api/v1/agents/{id}/retire"), None)
                .await?;
            if cli.json {
                serde_json::json!({"retired": id}).to_string()
            } else {
                format!("agent {id} retired: it exits at its next call")
            }
        }
        Command::Discoveries(DiscoveriesCommand::List { state }) => {
            let headers = ["ID", "STATE", "AGENT", "PATH", "SUBJECT", "NOT AFTER"];
            state_list(&client, "/api/v1/discoveries", state, cli.json, &headers, |f| {
                vec![
                    text(&f["id"]),
                    text(&f["state"]),
                    text(&f["agent_name"]),
                    format!("{}#{}", text(&f["path"]), text(&f["index_in_file"])),
                    text(&f["subject"]),
                    text(&f["not_after"]),
                ]
            })
            .await?
        }
        Command::Discoveries(DiscoveriesCommand::Claim { id, certificate }) => {
            client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/discoveries/{id}/claim"),
                    Some(serde_json::json!({"certificate_id": certificate})),
                )
                .await?;
            if cli.json {
                serde_json::json!({"claimed": id, "certificate_id": certificate}).to_string()
            } else {
                format!("discovery {id} claimed by certificate {certificate}")
            }
        }
        Command::Discoveries(DiscoveriesCommand::Dismiss { id }) => {
            client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/discoveries/{id}/dismiss"),
                    None,
                )
                .await?;
            if cli.json {
                serde_json::json!({"dismissed": id}).to_string()
            } else {
                format!("discovery {id} dismissed")
            }
        }
        Command::DnsPersist(DnsPersistCommand::List { state }) => {
            let headers = ["ID", "STATE", "NAME", "TXT VALUE"];
            state_list(&client, "/api/v1/dns-persist", state, cli.json, &headers, |r| {
                vec![
                    text(&r["id"]),
                    text(&r["state"]),
                    text(&r["fqdn"]),
                    format!("\"{}\"", text(&r["value"])),
                ]
            })
            .await?
        }
        Command::DnsPersist(DnsPersistCommand::Approve { id }) => {
            let r = client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/dns-persist/{id}/approve"),
                    None,
                )
                .await?;
            if cli.json {
                r.to_string()
            } else {
                format!("published {} TXT \"{}\"", text(&r["fqdn"]), text(&r["value"]))
            }
        }
    };
    Ok(out)
}

/// GETs a list (a JSON array; `?state=` when given), as JSON or as a table of `row`s.
async fn state_list(
    client: &Client,
    path: &str,
    state: &Option<String>,
    json: bool,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> anyhow::Result<String> {
    let query: Vec<(&str, String)> = state.iter().map(|s| ("state", s.clone())).collect();
    let list = client.get(path, &query).await?;
    if json {
        return Ok(list.to_string());
    }
    let rows: Vec<Vec<String>> = list.as_array().into_iter().flatten().map(row).collect();
    Ok(table(headers, &rows))
}

/// The JSON configuration of `instances create`: the file (or standard input), then each
/// `--set key=value` over it.
fn instance_config(config: Option<&Path>, set: &[String]) -> anyhow::Result<Value> {
    let mut object = match config {
        None => serde_json::Map::new(),
        Some(path) => {
            let raw = if path == Path::new("-") {
                std::io::read_to_string(std::io::stdin()).context("reading --config from standard input")?
            } else {
                std::fs::read_to_string(path).with_context(|| format!("cannot read --config {}", path.display()))?
            };
            match serde_json::from_str::<Value>(&raw) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(anyhow!("--config {}: expected a JSON object", path.display())),
                Err(e) => return Err(anyhow!("--config {}: not JSON: {e}", path.display())),
            }
        }
    };
    for pair in set {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--set {pair:?}: expected key=value"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        object.insert(key.to_string(), value);
    }
    Ok(Value::Object(object))
}

async fn instances_command(client: &Client, path: &str, cmd: &InstancesCommand, json: bool) -> anyhow::Result<String> {
    Ok(match cmd {
        InstancesCommand::List => {
            let page = client.get(path, &[("limit", "500".to_string())]).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if json {
                Value::Array(items).to_string()
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|i| vec![text(&i["id"]), text(&i["name"]), text(&i["plugin"])])
                    .collect();
                table(&["ID", "NAME", "PLUGIN"], &rows)
            }
        }
        InstancesCommand::Create {
            name,
            plugin,
            config,
            set,
        } => {
            let body = serde_json::json!({
                "name": name, "plugin": plugin, "config": instance_config(config.as_deref(), set)?,
            });
            let created = client.call(reqwest::Method::POST, path, Some(body)).await?;
            if json {
                created.to_string()
            } else {
                format!(
                    "created {} ({}), plugin {}",
                    text(&created["name"]),
                    text(&created["id"]),
                    text(&created["plugin"])
                )
            }
        }
    })
}

/// Follows a job until it ends, printing its steps to standard error as they happen. Ok with
/// the job when it completed (or waits for something only a person can give: a CSR, an
/// approval), Err when it failed, was cancelled, or the wait timed out.
async fn wait_for_job(client: &Client, id: &str, wait: Wait) -> anyhow::Result<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait.wait_timeout);
    let mut shown = 0;
    loop {
        let job = client.get(&format!("/api/v1/jobs/{id}"), &[]).await?;
        let steps = job["payload"]["steps"].as_array().cloned().unwrap_or_default();
        for step in steps.iter().skip(shown) {
            eprintln!("  {:<7} {}", text(&step["step"]), text(&step["message"]));
        }
        shown = shown.max(steps.len());
        match job["state"].as_str().unwrap_or_default() {
            "completed" | "awaiting_csr" | "awaiting_approval" => return Ok(job),
            "failed" | "cancelled" => return Err(anyhow!("{}", job_text(&job))),
            state => {
                if std::time::Instant::now() >= deadline {
                    return Err(anyhow!(
                        "job {id} is still {state} after {} s; follow it with `certctl jobs get {id}`",
                        wait.wait_timeout
                    ));
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// A job in a few lines: what, where it is, its steps and last error.
fn job_text(job: &Value) -> String {
    let mut out = format!(
        "job {} ({}): {}, attempt {}/{}",
        text(&job["id"]),
        text(&job["kind"]),
        text(&job["state"]),
        text(&job["attempts"]),
        text(&job["max_attempts"])
    );
    for step in job["payload"]["steps"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  {}  {:<7} {}",
            text(&step["at"]),
            text(&step["step"]),
            text(&step["message"])
        ));
    }
    if let Some(e) = job["error_message"].as_str() {
        out.push_str(&format!("\n  last error ({}): {e}", text(&job["error_class"])));
    }
    out
}

fn write_out(path: &Path, content: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn certs_command(client: &Client, cmd: &CertsCommand, json: bool) -> anyhow::Result<String> {
    use reqwest::Method;
    let show_job = |job: Value| if json { job.to_string() } else { job_text(&job) };
    Ok(match cmd {
        CertsCommand::List { .. } | CertsCommand::Get { .. } => {
            return Err(anyhow!("handled by the caller"));
        }
        CertsCommand::Declare {
            name,
            cn,
            sans,
            key_type,
            key_generation,
            issuer,
            renew_before_days,
            no_auto_renew,
            labels,
            profile,
            wait,
        } => {
            let mut labels_map = serde_json::Map::new();
            for label in labels {
                let (k, v) = label
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--label {label:?}: expected key=value"))?;
                labels_map.insert(k.to_string(), Value::String(v.to_string()));
            }
            let mut body = serde_json::json!({
                "name": name, "common_name": cn, "sans": sans, "labels": labels_map,
                "renewal": {"renew_before_days": renew_before_days, "auto_renew": !no_auto_renew},
            });
            for (k, v) in [
                ("key_type", key_type),
                ("key_generation", key_generation),
                ("issuer_id", issuer),
                ("profile", profile),
            ] {
                if let Some(v) = v {
                    body[k] = Value::String(v.clone());
                }
            }
            let mut c = client.call(Method::POST, "/api/v1/certificates", Some(body)).await?;
            if wait.wait && issuer.is_some() {
                let id = text(&c["id"]);
                let jobs = client
                    .get(
                        "/api/v1/jobs",
                        &[("certificate_id", id.clone()), ("limit", "1".to_string())],
                    )
                    .await?;
                let job = text(&jobs["items"][0]["id"]);
                eprintln!("declared {} ({id}); issuance job {job}:", text(&c["name"]));
                let done = wait_for_job(client, &job, *wait).await?;
                if done["state"] == "awaiting_csr" {
                    eprintln!("waiting for the CSR: certctl certs csr {id} --file <csr.pem>");
                }
                c = client.get(&format!("/api/v1/certificates/{id}"), &[]).await?;
            }
            if json {
                c.to_string()
            } else {
                format!(
                    "declared {} ({}), status {}",
                    text(&c["name"]),
                    text(&c["id"]),
                    text(&c["status"])
                )
            }
        }
        CertsCommand::Csr { id, file, wait } => {
            let csr = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let body = serde_json::json!({ "csr": csr });
            let job = client
                .call(Method::POST, &format!("/api/v1/certificates/{id}/csr"), Some(body))
                .await?;
            show_job(followed(client, job, *wait).await?)
        }
        CertsCommand::Renew { id, wait } => {
            let job = client
                .call(Method::POST, &format!("/api/v1/certificates/{id}/renew"), None)
                .await?;
            show_job(followed(client, job, *wait).await?)
        }
        CertsCommand::Revoke { id, reason } => {
            let v = client
                .call(
                    Method::POST,
                    &format!("/api/v1/certificates/{id}/revoke"),
                    Some(serde_json::json!({ "reason": reason })),
                )
                .await?;
            if json {
                v.to_string()
            } else {
                format!(
                    "revoked serial {} ({})",
                    text(&v["serial"]),
                    text(&v["revocation_reason"])
                )
            }
        }
        CertsCommand::Versions { id } => {
            let list = client.get(&format!("/api/v1/certificates/{id}/versions"), &[]).await?;
            if json {
                list.to_string()
            } else {
                let rows: Vec<Vec<String>> = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        vec![
                            text(&v["id"]),
                            text(&v["serial"]),
                            text(&v["not_after"]),
                            text(&v["revocation_reason"]),
                        ]
                    })
                    .collect();
                table(&["VERSION", "SERIAL", "NOT AFTER", "REVOKED"], &rows)
            }
        }
        CertsCommand::Download { id, part, version, out } => {
            let mut query = Vec::new();
            if let Some(v) = version {
                query.push(("version", v.clone()));
            }
            let (path, secret) = match part.as_str() {
                "key" => (format!("/api/v1/certificates/{id}/private-key"), true),
                "cert" | "chain" | "fullchain" => {
                    query.push(("part", part.clone()));
                    (format!("/api/v1/certificates/{id}/download"), false)
                }
                other => return Err(anyhow!("--part {other:?}: expected cert, chain, fullchain or key")),
            };
            let pem = client.get_text(&path, &query).await?;
            match out {
                Some(file) => {
                    write_out(file, &pem, secret)?;
                    format!("wrote {}", file.display())
                }
                None => pem.trim_end().to_string(),
            }
        }
    })
}

/// The job itself, or with `--wait` the job once it ended.
async fn followed(client: &Client, job: Value, wait: Wait) -> anyhow::Result<Value> {
    if !wait.wait {
        return Ok(job);
    }
    let id = text(&job["id"]);
    eprintln!("job {id}:");
    wait_for_job(client, &id, wait).await
}

/// Entry point of the `certctl` binary.
pub async fn main(cli: Cli) -> ExitCode {
    match run_command(&cli).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("certctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONG"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONG\nxyz  1");
    }

    #[test]
    fn plain_http_is_refused() {
        let cli = Cli::parse_from(["certctl", "--server", "http://example.test", "health"]);
        let err = Client::new(&cli).err().expect("refused").to_string();
        assert!(err.contains("https://"), "{err}");
    }
}
