//! certctl-agent: runs on each node, pulls its work from the server, keeps private keys local.
//! Configuration: the environment (see `certctl::agent::runner::AgentConfig`).

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let level = std::env::var("CERTCTL_LOG_LEVEL").unwrap_or_else(|_| "info".to_string());
    let format = match std::env::var("CERTCTL_LOG_FORMAT").as_deref() {
        Ok("json") => certctl::config::LogFormat::Json,
        _ => certctl::config::LogFormat::Text,
    };
    if let Err(e) = certctl::telemetry::init(&level, format) {
        eprintln!("certctl-agent: {e:#}");
        return ExitCode::FAILURE;
    }
    let config = match certctl::agent::runner::AgentConfig::from_env() {
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
