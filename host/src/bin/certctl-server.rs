//! certctl-server: the HTTPS API server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use certctl::config::{Config, FlagValues, process_env};
use certctl::{server, telemetry};

/// certctl server. Every flag has a CERTCTL_* environment variable (see
/// docs/operators/configuration.md); flags win over variables, variables over the config file.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (CERTCTL_CONFIG_FILE).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (CERTCTL_SERVER_HOST, default 127.0.0.1).
    #[arg(long)]
    host: Option<String>,
    /// HTTPS port (CERTCTL_SERVER_PORT, default 8443).
    #[arg(long)]
    port: Option<String>,
    /// Data directory for the embedded database and generated TLS files (CERTCTL_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL, postgres://... or sqlite:... (CERTCTL_DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
    /// Log filter, e.g. info or info,certctl=debug (CERTCTL_LOG_LEVEL).
    #[arg(long)]
    log_level: Option<String>,
    /// json or text (CERTCTL_LOG_FORMAT).
    #[arg(long)]
    log_format: Option<String>,
    /// Apply database migrations and exit. Needs only the database URL.
    #[arg(long)]
    migrate_only: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let flags = FlagValues {
        config_file: args.config,
        host: args.host,
        port: args.port,
        data_dir: args.data_dir,
        database_url: args.database_url,
        log_level: args.log_level,
        log_format: args.log_format,
    };
    let config = match process_env().and_then(|env| Config::resolve(&flags, &env)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("certctl-server: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init(&config.log_level, config.log_format) {
        eprintln!("certctl-server: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("certctl-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        if args.migrate_only {
            let applied = server::migrate_only(&config).await?;
            tracing::info!(applied = ?applied, "migrations complete");
            return Ok(());
        }
        serve(config).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "certctl-server stopped");
            eprintln!("certctl-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let running = server::start(config).await?;
    let url = format!("https://{}", running.addr);
    tracing::info!(url = %url, fingerprint = %running.fingerprint, "certctl-server listening");
    eprintln!("\ncertctl-server is listening on {url}");
    eprintln!("  dashboard: {url}/ (sign in with an API key)");
    eprintln!("  TLS certificate SHA-256: {}", running.fingerprint);
    if let Some(ca) = &running.tls_files.ca {
        eprintln!("  self-generated; clients trust it with: --cacert {}", ca.display());
    }
    match &running.admin_key {
        Some(key) => {
            eprintln!("\n  First start: an admin API key was created. It is shown ONLY NOW; store it safely:");
            eprintln!("\n      {key}\n");
            eprintln!(
                "  Use it as:  curl --cacert <ca.crt> -H 'Authorization: Bearer {key}' {url}/api/v1/certificates"
            );
            eprintln!("  or:         CERTCTL_API_KEY={key} certctl --server {url} certs list\n");
        }
        None => eprintln!(
            "  Authenticate with 'Authorization: Bearer <API key>' (keys from CERTCTL_API_KEYS_NAMED or created via /api/v1/api-keys)\n"
        ),
    }

    loop {
        tokio::select! {
            _ = hup.recv() => match running.reload_tls() {
                Ok(fp) => tracing::info!(fingerprint = %fp, "TLS certificate reloaded"),
                Err(e) => tracing::error!(error = format!("{e:#}"), "TLS reload failed; keeping the current certificate"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down: finishing in-flight requests (up to 10s)");
    running.shutdown(Duration::from_secs(10)).await
}
