//! certctl-agent: runs on each node, pulls its work from the server, keeps private keys local.
//! Configuration: flags or the environment (see `certctl::agent::runner::AgentConfig`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;

/// Each flag stands for the environment variable named in its help and wins over it.
#[derive(Debug, Parser)]
#[command(
    name = "certctl-agent",
    version,
    about = "certctl's node agent: local keys, CSRs, deployments, discovery"
)]
struct Args {
    /// CERTCTL_SERVER_URL: the server's https:// URL.
    #[arg(long)]
    server_url: Option<String>,
    /// CERTCTL_AGENT_NAME: this agent's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// CERTCTL_AGENT_ID: use this registered id with its credential in CERTCTL_API_KEY.
    #[arg(long)]
    agent_id: Option<String>,
    /// CERTCTL_KEY_DIR: where private keys are kept (0700).
    #[arg(long)]
    key_dir: Option<String>,
    /// CERTCTL_AGENT_STATE_DIR: the agent's identity and deployment journals (default: the key dir).
    #[arg(long)]
    state_dir: Option<String>,
    /// CERTCTL_DISCOVERY_DIRS: comma-separated directories to scan for certificates.
    #[arg(long)]
    discovery_dirs: Option<String>,
    /// CERTCTL_SERVER_CA_BUNDLE_PATH: PEM file of the CA(s) to trust for the server.
    #[arg(long)]
    server_ca_bundle_path: Option<String>,
    /// CERTCTL_LOG_LEVEL: trace, debug, info (default), warn, error, or a filter.
    #[arg(long)]
    log_level: Option<String>,
    /// CERTCTL_LOG_FORMAT: text (default) or json.
    #[arg(long)]
    log_format: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let flags: BTreeMap<String, String> = [
        ("CERTCTL_SERVER_URL", args.server_url),
        ("CERTCTL_AGENT_NAME", args.name),
        ("CERTCTL_AGENT_ID", args.agent_id),
        ("CERTCTL_KEY_DIR", args.key_dir),
        ("CERTCTL_AGENT_STATE_DIR", args.state_dir),
        ("CERTCTL_DISCOVERY_DIRS", args.discovery_dirs),
        ("CERTCTL_SERVER_CA_BUNDLE_PATH", args.server_ca_bundle_path),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
    .collect();
    let level = args
        .log_level
        .or_else(|| std::env::var("CERTCTL_LOG_LEVEL").ok())
        .unwrap_or_else(|| "info".to_string());
    let format = match args
        .log_format
        .or_else(|| std::env::var("CERTCTL_LOG_FORMAT").ok())
        .as_deref()
    {
        None | Some("text") => certctl::config::LogFormat::Text,
        Some("json") => certctl::config::LogFormat::Json,
        Some(other) => {
            eprintln!("certctl-agent: CERTCTL_LOG_FORMAT={other:?}: expected text or json");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = certctl::telemetry::init(&level, format) {
        eprintln!("certctl-agent: {e:#}");
        return ExitCode::FAILURE;
    }
    let config = match certctl::agent::runner::AgentConfig::from_sources(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("certctl-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    match certctl::agent::runner::run(config).await {
        Ok(certctl::agent::runner::Exit::Retired) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certctl-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
