//! The ACME issuer plugin end to end against a real ACME server (Pebble), through the REST API
//! and the job runner: http-01 answered by the host's challenge listener, dns-01 published
//! through the powerdns plugin into a real PowerDNS that Pebble queries. The chains verify with
//! openssl against Pebble's root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use certctl::challenge::ChallengeSettings;
use certctl::plugins::grants::Grants;
use serde_json::{Value, json};

use crate::challenges::{bind, pdns};
use crate::common::{Backend, TestApp, TestDb};
use crate::sandbox::shipped_dir;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

struct Pebble {
    child: Child,
    port: u16,
    management_port: u16,
    /// The CA certificate of Pebble's own HTTPS listeners, for the plugin to trust.
    tls_ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Pebble resolving names through `dns_port`, validating http-01 on `http_port`.
/// `nonce_reject` is the percentage of nonces refused (a real client retries badNonce).
async fn pebble(dns_port: u16, http_port: u16, nonce_reject: u8) -> Pebble {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    // A small CA and a server certificate for Pebble's own HTTPS listeners (rustls will not
    // take a CA certificate as a server's).
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pebble listener test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("server cert");
    std::fs::write(d.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(d.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(d.join("key.pem"), key.serialize_pem()).expect("write");
    let (port, management_port) = (free_port(), free_port());
    let config = json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{port}"),
        "managementListenAddress": format!("127.0.0.1:{management_port}"),
        "certificate": d.join("cert.pem"),
        "privateKey": d.join("key.pem"),
        "httpPort": http_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    std::fs::write(d.join("pebble.json"), config.to_string()).expect("write");
    let server = Pebble {
        child: Command::new("pebble")
            .arg("-config")
            .arg(d.join("pebble.json"))
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", nonce_reject.to_string())
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble (Debian package pebble, installed by scripts/test.sh)"),
        port,
        management_port,
        tls_ca: d.join("ca.pem"),
        _dir: dir,
    };
    let client = https_client(&server.tls_ca);
    for _ in 0..100 {
        if client
            .get(format!("https://127.0.0.1:{port}/dir"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Pebble did not start");
}

fn https_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("ca");
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client")
}

/// POSTs `body` to `path` as an admin and returns the created object.
async fn create(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, created) = app.admin("POST", path, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{path}: {created}");
    created
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.admin("GET", path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// Runs jobs, moving the clock over the plugin's waits, until the certificate is issued.
async fn issue_until_active(app: &TestApp, id: &str) {
    for _ in 0..120 {
        app.lifecycle.run_due_jobs().await.expect("jobs");
        let cert = get(app, &format!("/api/v1/certificates/{id}")).await;
        if cert["status"] == "active" || cert["status"] == "expiring" {
            return;
        }
        if cert["status"] == "failed" {
            let jobs = get(app, &format!("/api/v1/jobs?certificate_id={id}")).await;
            panic!("issuance failed: {jobs}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.lifecycle.clock.advance(2);
    }
    let jobs = get(app, &format!("/api/v1/jobs?certificate_id={id}")).await;
    panic!("not issued in time: {jobs}");
}

/// openssl verifies the issued chain to Pebble's root.
async fn verify_with_pebble_root(app: &TestApp, pebble: &Pebble, id: &str) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let root = https_client(&pebble.tls_ca)
        .get(format!("https://127.0.0.1:{}/roots/0", pebble.management_port))
        .send()
        .await
        .expect("root")
        .text()
        .await
        .expect("root PEM");
    std::fs::write(dir.path().join("root.pem"), root).expect("write");
    for part in ["cert", "chain"] {
        let (status, body) = app
            .admin("GET", &format!("/api/v1/certificates/{id}/download?part={part}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        std::fs::write(dir.path().join(format!("{part}.pem")), body.as_str().expect("PEM")).expect("write");
    }
    let out = Command::new("openssl")
        .args(["verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "cert.pem"])
        .current_dir(dir.path())
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("cert.pem: OK"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(
        &Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in", "cert.pem"])
            .current_dir(dir.path())
            .output()
            .expect("openssl")
            .stdout,
    )
    .into_owned()
}

/// An app that trusts Pebble, answers http-01 on `http_port`, resolves through the DNS server
/// on `dns_port`, and grants the plugins in `solver_grants` (extra grants-file entries).
async fn acme_app(backend: Backend, dns_port: u16, solver_grants: &str, pebble: &Pebble, http_port: u16) -> TestApp {
    let grants = format!(
        "[acme]\noutbound_hosts = [\"https://127.0.0.1:{}\"]\nallow_private_networks = true\n{solver_grants}",
        pebble.port
    );
    let dns: std::net::SocketAddr = format!("127.0.0.1:{dns_port}").parse().expect("addr");
    let http01: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse().expect("addr");
    let app = TestApp::with_options(
        backend,
        vec![shipped_dir()],
        Grants::parse(&grants).expect("grants"),
        ChallengeSettings {
            http01_address: Some(http01),
            resolvers: vec![dns],
            nameserver_port: dns_port,
            timeout: Duration::from_secs(3),
            ..ChallengeSettings::default()
        },
        Some(pebble.tls_ca.clone()),
    )
    .await;
    let broker = app
        .lifecycle
        .plugins
        .services()
        .and_then(|s| s.challenges.clone())
        .expect("broker");
    let listener = tokio::net::TcpListener::bind(http01).await.expect("bind http-01");
    let responder = broker.responder();
    tokio::spawn(async move { axum::serve(listener, responder).await });
    app
}

async fn http01_and_dns01_issuance_against_pebble(backend: Backend) {
    let pdns = pdns(&["web", "api"]).await;
    let http_port = free_port();
    // One in five nonces refused: the plugin must retry badNonce.
    let pebble = pebble(pdns.dns_port, http_port, 20).await;
    let solver_grants = format!(
        "[powerdns]\noutbound_hosts = [\"http://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        pdns.web_port
    );
    let app = acme_app(backend, pdns.dns_port, &solver_grants, &pebble, http_port).await;
    let directory = format!("https://127.0.0.1:{}/dir", pebble.port);

    // http-01, served by the host's listener.
    let issuer = create(
        &app,
        "/api/v1/issuers",
        json!({"name": "pebble-http", "plugin": "acme",
                        "config": {"directory_url": directory, "challenge": "http-01"}}),
    )
    .await;
    let (status, cert) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(
                json!({"name": "web", "common_name": "web.example.test", "key_generation": "server",
                        "issuer_id": issuer["id"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    let id = cert["id"].as_str().expect("id");
    issue_until_active(&app, id).await;
    let sans = verify_with_pebble_root(&app, &pebble, id).await;
    assert!(sans.contains("DNS:web.example.test"), "{sans}");

    // dns-01 with a wildcard and its apex: two values at one TXT name, through PowerDNS.
    create(
        &app,
        "/api/v1/dns-solvers",
        json!({"name": "pdns", "plugin": "powerdns",
                        "config": {"api_url": format!("http://127.0.0.1:{}", pdns.web_port),
                                   "api_key": format!("file:{}", pdns.key_file.display())}}),
    )
    .await;
    let issuer = create(
        &app,
        "/api/v1/issuers",
        json!({"name": "pebble-dns", "plugin": "acme",
                        "config": {"directory_url": directory, "challenge": "dns-01", "dns_solver": "pdns"}}),
    )
    .await;
    let (status, cert) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(
                json!({"name": "wild", "common_name": "api.example.test", "sans": ["*.api.example.test"],
                        "key_generation": "server", "issuer_id": issuer["id"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    let id = cert["id"].as_str().expect("id");
    issue_until_active(&app, id).await;
    let sans = verify_with_pebble_root(&app, &pebble, id).await;
    assert!(
        sans.contains("DNS:*.api.example.test") && sans.contains("DNS:api.example.test"),
        "{sans}"
    );
    // Every challenge record is gone afterwards.
    assert!(
        crate::challenges::txt_values(pdns.dns_port, "_acme-challenge.api.example.test")
            .await
            .is_empty(),
        "challenge records cleaned up"
    );
}

/// dns-01 for the apex and the wildcard of one name in one order, published with RFC 2136
/// updates into a real BIND that Pebble queries.
async fn dns01_through_rfc2136_into_bind_against_pebble(backend: Backend) {
    let bind = bind().await;
    let http_port = free_port();
    let pebble = pebble(bind.port, http_port, 5).await;
    let solver_grants = format!(
        "[rfc2136]\noutbound_hosts = [\"dns://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        bind.port
    );
    let app = acme_app(backend, bind.port, &solver_grants, &pebble, http_port).await;
    create(
        &app,
        "/api/v1/dns-solvers",
        json!({"name": "bind", "plugin": "rfc2136",
                        "config": {"server": format!("127.0.0.1:{}", bind.port), "tsig_key_name": "certctl.",
                                   "tsig_secret": format!("file:{}", bind.secret_file.display())}}),
    )
    .await;
    let issuer = create(
        &app,
        "/api/v1/issuers",
        json!({"name": "pebble-bind", "plugin": "acme",
                        "config": {"directory_url": format!("https://127.0.0.1:{}/dir", pebble.port),
                                   "challenge": "dns-01", "dns_solver": "bind"}}),
    )
    .await;
    let (status, cert) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(
                json!({"name": "zone", "common_name": "example.test", "sans": ["*.example.test"],
                        "key_generation": "server", "issuer_id": issuer["id"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    let id = cert["id"].as_str().expect("id");
    issue_until_active(&app, id).await;
    let sans = verify_with_pebble_root(&app, &pebble, id).await;
    assert!(
        sans.contains("DNS:*.example.test") && sans.contains("DNS:example.test"),
        "{sans}"
    );
    assert!(
        crate::challenges::txt_values(bind.port, "_acme-challenge.example.test")
            .await
            .is_empty(),
        "challenge records cleaned up"
    );
}

/// The server dies during an order (after the challenge is presented, while it holds the job's
/// lease) and another server on the same database takes over when the lease expires: the order
/// is resumed, not restarted, one certificate is stored, and no challenge is left presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_survives_the_death_of_its_server() {
    let pdns = pdns(&["web"]).await;
    let http_port = free_port();
    let pebble = pebble(pdns.dns_port, http_port, 0).await;
    let app = acme_app(Backend::Postgres, pdns.dns_port, "", &pebble, http_port).await;
    let issuer = create(
        &app,
        "/api/v1/issuers",
        json!({"name": "pebble", "plugin": "acme",
                        "config": {"directory_url": format!("https://127.0.0.1:{}/dir", pebble.port)}}),
    )
    .await;
    let (status, cert) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(
                json!({"name": "web", "common_name": "web.example.test", "key_generation": "server",
                        "issuer_id": issuer["id"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    let id = cert["id"].as_str().expect("id");

    // First server: the order is opened and its challenge presented; the job sleeps.
    app.lifecycle.run_due_jobs().await.expect("jobs");
    let job = get(&app, &format!("/api/v1/jobs?certificate_id={id}")).await["items"][0].clone();
    assert_eq!(job["state"], "pending", "{job}");
    assert!(
        job["payload"]["issuer_state"].is_string(),
        "the order state is persisted: {job}"
    );
    // It takes the job again and dies holding the lease.
    let job_id = job["id"].as_str().expect("job id").to_string();
    let later = certctl::model::Timestamp(certctl::model::Timestamp::now().0 + 5);
    let leased = app
        .store
        .lease_jobs("server-that-dies", 10, 300, later)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1);

    // Second server, its own pool, same database: nothing to do until the lease expires.
    let store = certctl::store::Store::connect(&app.db.url, 4).await.expect("pool");
    let survivor = std::sync::Arc::new(certctl::lifecycle::Lifecycle::new(
        store,
        app.lifecycle.plugins.clone(),
        app.lifecycle.keystore.clone(),
        app.lifecycle.metrics.clone(),
    ));
    assert_eq!(survivor.run_due_jobs().await.expect("jobs"), 0, "the lease still holds");
    survivor.clock.advance(400);
    let mut issued = false;
    for _ in 0..60 {
        survivor.run_due_jobs().await.expect("jobs");
        let cert = get(&app, &format!("/api/v1/certificates/{id}")).await;
        if cert["current_version_id"].is_string() {
            issued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        survivor.clock.advance(2);
    }
    assert!(issued, "{}", get(&app, &format!("/api/v1/jobs/{job_id}")).await);
    let versions = get(&app, &format!("/api/v1/certificates/{id}/versions")).await;
    assert_eq!(versions.as_array().expect("list").len(), 1, "one certificate, not two");
    let job = get(&app, &format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(job["state"], "completed", "{job}");
    let resumed = job["payload"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == "order")
        .count();
    assert_eq!(resumed, 1, "the order was begun once and resumed afterwards: {job}");
    let left = app
        .store
        .stale_challenges(certctl::model::Timestamp(i64::MAX / 2))
        .await
        .expect("challenges");
    assert!(left.is_empty(), "no challenge left presented: {left:?}");
    verify_with_pebble_root(&app, &pebble, id).await;
}

/// The operator's path with the binaries: `certctl-server` on its own process (the database
/// of `backend`, Pebble trusted by the issuer instance's own `ca_bundle`, http-01 on its
/// listener), and
/// every step through the `certctl` CLI: create the issuer, declare a certificate and wait for
/// the issuance, download the chain. openssl verifies it against Pebble's root.
async fn acme_issuance_from_the_cli(backend: Backend) {
    let pdns = pdns(&["cli"]).await;
    let http_port = free_port();
    let pebble = pebble(pdns.dns_port, http_port, 5).await;
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    // Only the ACME plugin: the server compiles each component it loads.
    let plugins = d.join("plugins");
    crate::sandbox::copy_shipped(&plugins, &["acme"]);
    std::fs::write(
        d.join("grants.toml"),
        format!(
            "[acme]\noutbound_hosts = [\"https://127.0.0.1:{}\"]\nallow_private_networks = true\n",
            pebble.port
        ),
    )
    .expect("grants");
    let port = free_port();
    let log = d.join("server.log");
    let server = Command::new(env!("CARGO_BIN_EXE_certctl-server"))
        .env_clear()
        .env("CERTCTL_DATA_DIR", d.join("data"))
        .env("CERTCTL_DATABASE_URL", &db.url)
        .env("CERTCTL_SERVER_PORT", port.to_string())
        .env("CERTCTL_PLUGIN_DIRS", &plugins)
        .env("CERTCTL_PLUGIN_GRANTS", d.join("grants.toml"))
        .env("CERTCTL_ACME_HTTP01_ADDRESS", format!("127.0.0.1:{http_port}"))
        .env("CERTCTL_DNS_RESOLVERS", format!("127.0.0.1:{}", pdns.dns_port))
        .env("CERTCTL_SCHEDULER_JOB_INTERVAL", "1")
        // Required with PostgreSQL (replicas share it); any key will do for one test server.
        .env(
            "CERTCTL_CONFIG_ENCRYPTION_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
        .spawn()
        .expect("start certctl-server");
    // Stopped on every way out of this test, a failed assertion included.
    let _server = KillOnDrop(server);
    let ca = d.join("data/tls/ca.crt");
    let url = format!("https://127.0.0.1:{port}");
    let mut key = None;
    for _ in 0..600 {
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(k) = output.split_whitespace().find(|w| w.starts_with("cck_"))
            && ca.exists()
            && https_client(&ca)
                .get(format!("{url}/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        {
            key = Some(k.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(key) = key else {
        panic!(
            "server did not come up:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_certctl"))
            .env_clear()
            .env("CERTCTL_SERVER_URL", &url)
            .env("CERTCTL_SERVER_CA_BUNDLE_PATH", &ca)
            .env("CERTCTL_API_KEY", &key)
            .args(args)
            .output()
            .expect("run certctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let directory = format!("directory_url=https://127.0.0.1:{}/dir", pebble.port);
    let trust = format!("ca_bundle=file:{}", pebble.tls_ca.display());
    // A CA bundle that is not PEM is refused by name.
    let (ok, _, err) = cli(&[
        "issuers",
        "create",
        "bad-trust",
        "--plugin",
        "acme",
        "--set",
        &directory,
        "--set",
        "ca_bundle=not a certificate",
    ]);
    assert!(!ok && err.contains("ca_bundle"), "{err}");
    let (ok, out, err) = cli(&[
        "--json",
        "issuers",
        "create",
        "pebble",
        "--plugin",
        "acme",
        "--set",
        &directory,
        "--set",
        r#"contact=["mailto:ops@example.test"]"#,
        "--set",
        &trust,
    ]);
    assert!(ok, "{out}{err}");
    let issuer: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(issuer["config"]["contact"], json!(["mailto:ops@example.test"]));
    let issuer_id = issuer["id"].as_str().expect("id");
    // A misspelt key is refused by name, and nothing is created.
    let (ok, _, err) = cli(&[
        "issuers",
        "create",
        "typo",
        "--plugin",
        "acme",
        "--set",
        &directory,
        "--set",
        "chalenge=http-01",
    ]);
    assert!(!ok && err.contains("chalenge"), "{err}");

    let (ok, out, err) = cli(&[
        "--json",
        "certs",
        "declare",
        "cli-acme",
        "--cn",
        "cli.example.test",
        "--key-generation",
        "server",
        "--issuer",
        issuer_id,
        "--wait",
        "--wait-timeout",
        "300",
    ]);
    if !ok {
        panic!("{out}{err}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    let cert: Value = serde_json::from_str(&out).expect("json");
    assert!(cert["status"] == "active" || cert["status"] == "expiring", "{cert}");
    assert!(
        err.contains("order") && err.contains("issued"),
        "progress was shown: {err}"
    );
    let id = cert["id"].as_str().expect("id");
    for part in ["cert", "chain"] {
        let file = d.join(format!("{part}.pem"));
        let (ok, out, err) = cli(&[
            "certs",
            "download",
            id,
            "--part",
            part,
            "-o",
            &file.display().to_string(),
        ]);
        assert!(ok, "{out}{err}");
    }
    let root = https_client(&pebble.tls_ca)
        .get(format!("https://127.0.0.1:{}/roots/0", pebble.management_port))
        .send()
        .await
        .expect("root")
        .text()
        .await
        .expect("root PEM");
    std::fs::write(d.join("root.pem"), root).expect("write");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "cert.pem"])
        .current_dir(d)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// lego (an independent ACME client, Debian's package) and certctl issue the same kind of
/// certificate (apex + wildcard, dns-01 through PowerDNS) against one Pebble, one after the
/// other; both durations are printed and written to `$CERTCTL_TEST_STATE/acme-timings.txt` for
/// docs/performance.md. Both chains must verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lego_and_certctl_issue_against_the_same_pebble_and_powerdns() {
    let pdns = pdns(&["lego", "certctl"]).await;
    let http_port = free_port();
    let pebble = pebble(pdns.dns_port, http_port, 0).await;
    let directory = format!("https://127.0.0.1:{}/dir", pebble.port);
    let dir = tempfile::tempdir().expect("tmp");
    let api_key = std::fs::read_to_string(&pdns.key_file).expect("key");

    let started = std::time::Instant::now();
    let out = Command::new("lego")
        .env_clear()
        .env("LEGO_CA_CERTIFICATES", &pebble.tls_ca)
        .env("PDNS_API_URL", format!("http://127.0.0.1:{}", pdns.web_port))
        .env("PDNS_API_KEY", api_key.trim())
        .env("PDNS_POLLING_INTERVAL", "1")
        .env("PDNS_PROPAGATION_TIMEOUT", "60")
        .args([
            "--server",
            &directory,
            "--email",
            "ops@example.test",
            "--accept-tos",
            "--path",
        ])
        .arg(dir.path().join("lego"))
        .args(["--key-type", "ec256", "--dns", "pdns", "--dns.disable-cp"])
        // Only the loopback PowerDNS: lego's default would be the system's or public resolvers.
        .args(["--dns.resolvers", &format!("127.0.0.1:{}", pdns.dns_port)])
        .args(["-d", "lego.example.test", "-d", "*.lego.example.test", "run"])
        .output()
        .expect("lego (Debian package lego, installed by scripts/test.sh)");
    let lego = started.elapsed();
    assert!(
        out.status.success(),
        "lego failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lego_cert = std::fs::read_to_string(dir.path().join("lego/certificates/lego.example.test.crt"))
        .expect("lego's certificate");
    assert!(lego_cert.contains("BEGIN CERTIFICATE"));

    let solver_grants = format!(
        "[powerdns]\noutbound_hosts = [\"http://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        pdns.web_port
    );
    let app = acme_app(Backend::Sqlite, pdns.dns_port, &solver_grants, &pebble, http_port).await;
    create(
        &app,
        "/api/v1/dns-solvers",
        json!({"name": "pdns", "plugin": "powerdns",
               "config": {"api_url": format!("http://127.0.0.1:{}", pdns.web_port),
                          "api_key": format!("file:{}", pdns.key_file.display())}}),
    )
    .await;
    let issuer = create(
        &app,
        "/api/v1/issuers",
        json!({"name": "pebble-dns", "plugin": "acme",
               "config": {"directory_url": directory, "challenge": "dns-01", "dns_solver": "pdns"}}),
    )
    .await;
    let started = std::time::Instant::now();
    let cert = create(
        &app,
        "/api/v1/certificates",
        json!({"name": "timed", "common_name": "certctl.example.test", "sans": ["*.certctl.example.test"],
               "key_generation": "server", "issuer_id": issuer["id"]}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    // On the real clock, like lego: the waits the plugin asks for are waited, not skipped.
    loop {
        app.lifecycle.run_due_jobs().await.expect("jobs");
        let status = get(&app, &format!("/api/v1/certificates/{id}")).await["status"].clone();
        if status == "active" || status == "expiring" {
            break;
        }
        assert!(
            status != "failed" && started.elapsed() < Duration::from_secs(120),
            "{status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let certctl = started.elapsed();
    let sans = verify_with_pebble_root(&app, &pebble, id).await;
    assert!(sans.contains("DNS:*.certctl.example.test"), "{sans}");

    let line = format!(
        "apex + wildcard, dns-01 through PowerDNS, Pebble 2.4 (new account each): lego {:.2} s, certctl {:.2} s\n",
        lego.as_secs_f64(),
        certctl.as_secs_f64()
    );
    eprint!("{line}");
    if let Ok(state) = std::env::var("CERTCTL_TEST_STATE") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::path::Path::new(&state).join("acme-timings.txt"))
            .expect("timings file");
        f.write_all(line.as_bytes()).expect("write timings");
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

crate::on_both_backends!(
    acme_issuance_from_the_cli,
    http01_and_dns01_issuance_against_pebble,
    dns01_through_rfc2136_into_bind_against_pebble,
);
