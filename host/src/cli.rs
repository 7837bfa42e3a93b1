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
    Issuers(IssuersCommand),
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
}

#[derive(Subcommand, Debug)]
pub enum IssuersCommand {
    /// List issuer instances.
    List,
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
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url).query(query);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
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
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
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
        Command::Plugin(cmd) => plugin_command(cmd, cli.json).await?,
        Command::Issuers(IssuersCommand::List) => {
            let page = client.get("/api/v1/issuers", &[("limit", "500".to_string())]).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if cli.json {
                Value::Array(items).to_string()
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|i| vec![text(&i["id"]), text(&i["name"]), text(&i["plugin"])])
                    .collect();
                table(&["ID", "NAME", "PLUGIN"], &rows)
            }
        }
    };
    Ok(out)
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
