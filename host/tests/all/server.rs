//! The server over a real socket, and the binaries as operators run them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use certctl::config::{Config, FlagValues};
use certctl::server;
use certctl::store::Store;
use serde_json::Value;

use crate::common::{Backend, TestApp, TestDb};

fn config_in(dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut env: BTreeMap<String, String> =
        BTreeMap::from([("CERTCTL_DATA_DIR".to_string(), dir.display().to_string())]);
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let mut config = Config::resolve(&FlagValues::default(), &env).expect("config");
    config.port = 0;
    config
}

pub fn client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("ca");
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .tls_info(true)
        .build()
        .expect("client")
}

/// SHA-256 fingerprint of the certificate the server presents on a new connection.
async fn presented_fingerprint(client: &reqwest::Client, url: &str) -> String {
    let resp = client.get(format!("{url}/health")).send().await.expect("request");
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>().expect("tls info");
    certctl::tls::fingerprint(info.peer_certificate().expect("peer certificate"))
}

#[tokio::test]
async fn https_health_with_a_self_generated_certificate_that_is_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server::start(config_in(dir.path(), &[])).await.expect("start");
    let url = format!("https://localhost:{}", running.addr.port());
    let ca = running.tls_files.ca.clone().expect("self-generated CA");
    let admin_key = running.admin_key.clone().expect("first start creates an admin key");
    assert!(admin_key.starts_with("cck_"));
    let http = client(&ca);

    let health: Value = http
        .get(format!("{url}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health, serde_json::json!({"status": "healthy"}));
    let ready = http.get(format!("{url}/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 200);
    let certs = http
        .get(format!("{url}/api/v1/certificates"))
        .bearer_auth(&admin_key)
        .send()
        .await
        .expect("certificates");
    assert_eq!(certs.status(), 200);
    assert_eq!(presented_fingerprint(&http, &url).await, running.fingerprint);

    // TLS 1.3 is the default minimum: a TLS 1.2-only client is refused.
    let old = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("pem"))
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .expect("client");
    assert!(
        old.get(format!("{url}/health")).send().await.is_err(),
        "TLS 1.2 must be refused by default"
    );

    let key_mode = std::fs::metadata(&running.tls_files.key).expect("key").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode) & 0o077,
        0,
        "key file is private"
    );

    let fingerprint = running.fingerprint.clone();
    running.shutdown(Duration::from_secs(5)).await.expect("shutdown");
    let again = server::start(config_in(dir.path(), &[])).await.expect("restart");
    assert_eq!(again.fingerprint, fingerprint, "the generated certificate is reused");
    assert!(again.admin_key.is_none(), "no second admin key");
    again.shutdown(Duration::from_secs(5)).await.expect("shutdown");
}

#[tokio::test]
async fn tls_1_2_can_be_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server::start(config_in(dir.path(), &[("CERTCTL_SERVER_TLS_MIN_VERSION", "1.2")]))
        .await
        .expect("start");
    let ca = running.tls_files.ca.clone().expect("ca");
    let old = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("pem"))
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .expect("client");
    let resp = old
        .get(format!("https://localhost:{}/health", running.addr.port()))
        .send()
        .await
        .expect("TLS 1.2 accepted when configured");
    assert_eq!(resp.status(), 200);
    running.shutdown(Duration::from_secs(5)).await.expect("shutdown");
}

#[tokio::test]
async fn configured_certificate_files_reload_without_restart() {
    // Two independent self-generated setups provide two certificates from two CAs.
    let a = tempfile::tempdir().expect("a");
    let b = tempfile::tempdir().expect("b");
    let files_a = certctl::tls::ensure_self_signed(a.path(), "127.0.0.1".parse().expect("ip")).expect("a");
    let files_b = certctl::tls::ensure_self_signed(b.path(), "127.0.0.1".parse().expect("ip")).expect("b");
    let live = tempfile::tempdir().expect("live");
    let (cert, key) = (live.path().join("tls.crt"), live.path().join("tls.key"));
    std::fs::copy(&files_a.cert, &cert).expect("copy");
    std::fs::copy(&files_a.key, &key).expect("copy");
    let running = server::start(config_in(
        live.path(),
        &[
            ("CERTCTL_SERVER_TLS_CERT_PATH", cert.to_str().expect("utf8")),
            ("CERTCTL_SERVER_TLS_KEY_PATH", key.to_str().expect("utf8")),
        ],
    ))
    .await
    .expect("start");
    assert!(running.tls_files.ca.is_none());
    let url = format!("https://localhost:{}", running.addr.port());
    let first = presented_fingerprint(&client(files_a.ca.as_ref().expect("ca a")), &url).await;

    // A broken file is refused and the current certificate stays.
    std::fs::write(&cert, "not a certificate").expect("write");
    let err = running.reload_tls().expect_err("broken file refused");
    assert!(format!("{err:#}").contains("tls.crt"), "{err:#}");
    assert_eq!(
        presented_fingerprint(&client(files_a.ca.as_ref().expect("ca a")), &url).await,
        first
    );

    std::fs::copy(&files_b.cert, &cert).expect("copy");
    std::fs::copy(&files_b.key, &key).expect("copy");
    let reloaded = running.reload_tls().expect("reload");
    let second = presented_fingerprint(&client(files_b.ca.as_ref().expect("ca b")), &url).await;
    assert_ne!(first, second);
    assert_eq!(second, reloaded);
    running.shutdown(Duration::from_secs(5)).await.expect("shutdown");
}

#[tokio::test]
async fn postgres_without_an_encryption_key_is_refused_at_start() {
    let db = TestDb::new(Backend::Postgres).await;
    let data = tempfile::tempdir().expect("data");
    let err = match server::start(config_in(data.path(), &[("CERTCTL_DATABASE_URL", &db.url)])).await {
        Ok(_) => panic!("replicas would each generate their own key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("CERTCTL_CONFIG_ENCRYPTION_KEY"), "{err}");
}

#[tokio::test]
async fn migrations_via_hook_refuse_an_unmigrated_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = match server::start(config_in(dir.path(), &[("CERTCTL_MIGRATIONS_VIA_HOOK", "true")])).await {
        Ok(_) => panic!("must refuse to start on an empty schema"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("--migrate-only") && err.contains("version 0"), "{err}");
}

async fn migrate_only_needs_nothing_but_the_url(backend: Backend) {
    let db = TestDb::new(backend).await;
    let out = Command::new(env!("CARGO_BIN_EXE_certctl-server"))
        .arg("--migrate-only")
        .env_clear()
        .env("CERTCTL_DATABASE_URL", &db.url)
        .current_dir(db.dir.path())
        .output()
        .expect("run certctl-server");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = Store::connect(&db.url, 1).await.expect("connect");
    assert!(store.schema_status().await.expect("status").is_current());
    store.close().await;
    assert!(
        !db.dir.path().join("certctl-data").exists(),
        "migrating an external database creates no data directory"
    );

    // The server then starts with CERTCTL_MIGRATIONS_VIA_HOOK=true.
    let data = tempfile::tempdir().expect("data");
    let running = server::start(config_in(
        data.path(),
        &[
            ("CERTCTL_MIGRATIONS_VIA_HOOK", "true"),
            ("CERTCTL_DATABASE_URL", &db.url),
            (
                "CERTCTL_CONFIG_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ],
    ))
    .await
    .expect("start after the hook");
    running.shutdown(Duration::from_secs(5)).await.expect("shutdown");
}

async fn ready_turns_503_when_the_database_is_gone(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (status, _) = app.call("GET", "/ready", None, None).await;
    assert_eq!(status, 200);
    match backend {
        Backend::Postgres => {
            use sqlx::{Connection, Executor};
            let name = app.db.url.rsplit('/').next().expect("db name").to_string();
            let mut admin = sqlx::AnyConnection::connect(&crate::common::postgres_admin_url())
                .await
                .expect("admin");
            admin
                .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
                .await
                .expect("drop");
        }
        Backend::Sqlite => app.store.close().await,
    }
    let (status, body) = app.call("GET", "/ready", None, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    let (status, _) = app.call("GET", "/health", None, None).await;
    assert_eq!(status, 200, "liveness does not depend on the database");
}

crate::on_both_backends!(
    migrate_only_needs_nothing_but_the_url,
    ready_turns_503_when_the_database_is_gone
);

#[test]
fn bad_environment_values_stop_the_binary_with_the_variable_named() {
    for (var, value) in [
        ("CERTCTL_SERVER_PORT", "84x3"),
        ("CERTCTL_LOG_FORMAT", "xml"),
        ("CERTCTL_MIGRATIONS_VIA_HOOK", "sometimes"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_certctl-server"))
            .env_clear()
            .env(var, value)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var) && stderr.contains("expected"), "{stderr}");
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The binaries as an operator uses them: start, CLI, SIGHUP, SIGTERM.
#[tokio::test]
async fn server_and_cli_binaries_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let log = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_certctl-server"))
        .env_clear()
        .env("CERTCTL_DATA_DIR", dir.path().join("data"))
        .env("CERTCTL_SERVER_PORT", port.to_string())
        .env("CERTCTL_LOG_FORMAT", "json")
        // No plugins: this test is about the binaries; a debug build compiles components slowly.
        .env("CERTCTL_PLUGIN_DIRS", dir.path().join("no-plugins"))
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
        .spawn()
        .expect("start server");
    let ca = dir.path().join("data/tls/ca.crt");
    let url = format!("https://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..300 {
        if ca.exists() && client(&ca).get(format!("{url}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = std::fs::read_to_string(&log).expect("log");
    assert!(up, "server did not come up:\n{output}");
    let key = output
        .split_whitespace()
        .find(|w| w.starts_with("cck_"))
        .expect("the first start prints the admin key")
        .to_string();

    let created = client(&ca)
        .post(format!("{url}/api/v1/certificates"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "cli-visible", "common_name": "cli.example.test"}))
        .send()
        .await
        .expect("declare");
    assert_eq!(created.status(), 201);

    let cli = |args: &[&str], api_key: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certctl"));
        cmd.env_clear()
            .env("CERTCTL_SERVER_URL", &url)
            .env("CERTCTL_SERVER_CA_BUNDLE_PATH", &ca)
            .args(args);
        if let Some(k) = api_key {
            cmd.env("CERTCTL_API_KEY", k);
        }
        cmd.output().expect("run certctl")
    };
    let out = cli(&["certs", "list"], Some(&key));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cli-visible") && stdout.contains("pending"), "{stdout}");
    let out = cli(&["--json", "certs", "list", "--status", "pending"], Some(&key));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(listed[0]["name"], "cli-visible");
    let out = cli(&["health"], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("healthy, ready"));
    let out = cli(&["issuers", "list"], Some(&key));
    assert!(out.status.success());
    let out = cli(&["certs", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CERTCTL_API_KEY"));
    let out = cli(&["certs", "list", "--status", "bogus"], Some(&key));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("field status"));

    // The lifecycle commands reach their endpoints and report refusals clearly.
    let out = cli(
        &[
            "--json",
            "certs",
            "declare",
            "cli-made",
            "--cn",
            "made.example.test",
            "--san",
            "www.made.example.test",
            "--label",
            "team=edge",
            "--no-auto-renew",
        ],
        Some(&key),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(
        made["sans"],
        serde_json::json!(["made.example.test", "www.made.example.test"])
    );
    assert_eq!(made["renewal"]["auto_renew"], false);
    let id = made["id"].as_str().expect("id");
    let out = cli(
        &[
            "certs",
            "declare",
            "bad",
            "--cn",
            "x.example.test",
            "--label",
            "novalue",
        ],
        Some(&key),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key=value"));
    let out = cli(&["certs", "renew", id], Some(&key));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("issuer_id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["certs", "versions", id], Some(&key));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("VERSION"));
    let out = cli(&["certs", "download", id, "--part", "fullchain"], Some(&key));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not been issued"));
    let out = cli(&["certs", "download", id, "--part", "everything"], Some(&key));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected cert, chain, fullchain or key"));
    let out = cli(&["certs", "revoke", id, "--reason", "key_compromise"], Some(&key));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no version to revoke"));
    let out = cli(&["jobs", "list"], Some(&key));
    assert!(out.status.success());

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        client(&ca).get(format!("{url}/health")).send().await.is_ok(),
        "alive after SIGHUP"
    );
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.wait().expect("wait");
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
    let output = std::fs::read_to_string(&log).expect("log");
    assert!(output.contains("TLS certificate reloaded"), "{output}");
    let json_lines = output.lines().filter(|l| l.starts_with('{')).count();
    assert!(
        json_lines >= 3,
        "CERTCTL_LOG_FORMAT=json gives JSON log lines:\n{output}"
    );
    let after_banner: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with('{') && l.contains(&key))
        .collect();
    assert!(
        after_banner.is_empty(),
        "the admin key never goes into the log stream: {after_banner:?}"
    );
}

/// `certctl plugin new` gives a project that builds to a component the server accepts.
#[test]
fn a_new_plugin_project_builds_and_validates() {
    let work = tempfile::tempdir().expect("tempdir");
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let certctl = env!("CARGO_BIN_EXE_certctl");
    let out = Command::new(certctl)
        .args(["plugin", "new", "--kind", "dns-solver", "acme-dns"])
        .arg("--dir")
        .arg(work.path())
        .arg("--sdk")
        .arg(&sdk)
        .output()
        .expect("run certctl plugin new");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let project = work.path().join("acme-dns");
    let again = Command::new(certctl)
        .args(["plugin", "new", "--kind", "dns-solver", "acme-dns", "--dir"])
        .arg(work.path())
        .arg("--sdk")
        .arg(&sdk)
        .output()
        .expect("run");
    assert!(!again.status.success(), "never overwrites a project");

    let build = Command::new(project.join("build.sh"))
        .env("CARGO_TARGET_DIR", work.path().join("target"))
        .output()
        .expect("run build.sh");
    assert!(
        build.status.success(),
        "{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = project.join("dist/acme-dns.wasm");
    let refused = Command::new(certctl)
        .args(["plugin", "validate"])
        .arg(&wasm)
        .output()
        .expect("validate");
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not granted"),
        "it asks for a host nobody granted"
    );
    let grants = work.path().join("grants.toml");
    std::fs::write(&grants, "[acme-dns]\noutbound_hosts = [\"https://dns.example.com\"]\n").expect("grants");
    let ok = Command::new(certctl)
        .args(["plugin", "validate"])
        .arg(&wasm)
        .arg("--grants")
        .arg(&grants)
        .output()
        .expect("validate");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("dns-solver acme-dns 0.1.0"));
    let inspect = Command::new(certctl)
        .args(["plugin", "inspect"])
        .arg(&wasm)
        .output()
        .expect("inspect");
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("certctl:plugin/dns-solver@0.1.0"));
}

/// A `certctl-server` process on a free loopback port with its own data directory, the named
/// shipped plugins, and the given extra environment; killed when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub url: String,
    /// The self-generated CA clients trust.
    pub ca: PathBuf,
    pub log: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts it in `dir` and waits until `/ready` answers (panics with the log otherwise).
    pub async fn start(dir: &Path, plugins: &[&str], env: &[(&str, String)]) -> ServerProcess {
        let plugin_dir = dir.join("plugins");
        crate::sandbox::copy_shipped(&plugin_dir, plugins);
        let port = free_port();
        let log = dir.join("server.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certctl-server"));
        cmd.env_clear()
            .env("CERTCTL_DATA_DIR", dir.join("data"))
            .env("CERTCTL_SERVER_PORT", port.to_string())
            .env("CERTCTL_PLUGIN_DIRS", &plugin_dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("certctl-server");
        let mut server = ServerProcess {
            child,
            url: format!("https://127.0.0.1:{port}"),
            ca: dir.join("data/tls/ca.crt"),
            log,
        };
        for _ in 0..600 {
            if server.ca.exists()
                && client(&server.ca)
                    .get(format!("{}/ready", server.url))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("certctl-server exited ({status}):\n{}", server.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("certctl-server did not become ready:\n{}", server.log_text())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An API call with `key`; the status and the JSON body (null when there is none).
    pub async fn call(&self, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = client(&self.ca)
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}
