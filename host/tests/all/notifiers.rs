//! The shipped notifier plugins through the real runtime: what a local receiver sees from the
//! slack, teams and pagerduty plugins, and e-mail through a real SMTP server (aiosmtpd) with
//! STARTTLS and with implicit TLS.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::any;
use certctl::keystore::Keystore;
use certctl::mail::{Mailer, SmtpSettings, SmtpTls};
use certctl::metrics::Metrics;
use certctl::plugins::PluginFailure;
use certctl::plugins::grants::Grants;
use certctl::plugins::registry::{Registry, Services};
use certctl::plugins::v0_1::{Event, Severity};
use serde_json::{Value, json};

use crate::common::{Backend, TestDb};
use crate::sandbox::shipped_dir;

struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>,
}

async fn receiver() -> Receiver {
    let seen: Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new().route(
        "/{*path}",
        any(move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let record = record.clone();
            async move {
                record
                    .lock()
                    .expect("lock")
                    .push((uri.path().to_string(), headers, body));
                (axum::http::StatusCode::ACCEPTED, "{\"status\":\"success\"}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { addr, seen }
}

/// Copies shipped plugins into `dir` with their manifests asking for `host` instead of the
/// SaaS hosts, so a local receiver can stand in for Slack, Teams and PagerDuty.
fn plugins_reaching(dir: &Path, names: &[&str], host: &str) {
    for name in names {
        std::fs::copy(
            shipped_dir().join(format!("{name}.wasm")),
            dir.join(format!("{name}.wasm")),
        )
        .expect("copy");
        let manifest = std::fs::read_to_string(shipped_dir().join(format!("{name}.toml"))).expect("manifest");
        let rewritten: String = manifest
            .lines()
            .map(|l| {
                if l.starts_with("outbound_hosts") {
                    format!("outbound_hosts = [\"{host}\"]")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join(format!("{name}.toml")), rewritten).expect("manifest");
    }
}

fn event(kind: &str, severity: Severity) -> Event {
    Event {
        kind: kind.to_string(),
        severity,
        summary: "certificate web expires in 7 day(s)".to_string(),
        subject: "web".to_string(),
        dedup_key: "certctl:certificate:0190".to_string(),
        occurred_at: 1_790_000_000,
        detail: vec![("threshold_days".to_string(), "7".to_string())],
    }
}

async fn registry_with(dirs: Vec<PathBuf>, grants: &str, mailer: Option<Arc<Mailer>>, db: &TestDb) -> Registry {
    let store = db.store().await;
    let keystore = Arc::new(Keystore::new(store.clone(), &certctl::config::EncryptionKey([3; 32])).expect("keystore"));
    let runtime = certctl::plugins::Runtime::new(certctl::plugins::RuntimeSettings {
        limits: Default::default(),
        pooling: certctl::plugins::Pooling::Auto,
        cache_dir: None,
        ca_bundle: None,
    })
    .expect("runtime");
    let reg = Registry::new(
        runtime,
        dirs,
        Grants::parse(grants).expect("grants"),
        Arc::new(Metrics::new().expect("metrics")),
    )
    .with_services(Services {
        store,
        keystore,
        mailer,
        challenges: None,
    });
    let (_, refused) = reg.reload();
    assert_eq!(refused, 0, "{:?}", reg.list().1);
    reg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_teams_and_pagerduty_send_their_documented_formats() {
    let hook = receiver().await;
    let host = format!("http://127.0.0.1:{}", hook.addr.port());
    let dir = tempfile::tempdir().expect("tmp");
    plugins_reaching(dir.path(), &["slack", "teams", "pagerduty"], &host);
    let grants = ["slack", "teams", "pagerduty"]
        .iter()
        .map(|p| format!("[{p}]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n"))
        .collect::<String>();
    let db = TestDb::new(Backend::Sqlite).await;
    let reg = registry_with(vec![dir.path().to_path_buf()], &grants, None, &db).await;

    let expiring = event("expiring", Severity::Critical);
    let slack = json!({"webhook_url": format!("{host}/services/T0/B0/x")}).to_string();
    let out = reg.notify("slack", None, &slack, &expiring).await;
    assert_eq!(out.result, Ok(Ok(())), "{:?}", out.logs);
    let teams = json!({"webhook_url": format!("{host}/webhookb2/x")}).to_string();
    let out = reg.notify("teams", None, &teams, &expiring).await;
    assert_eq!(out.result, Ok(Ok(())), "{:?}", out.logs);
    let key = "0123456789abcdef0123456789abcdef";
    let pd = json!({"routing_key": key, "events_url": format!("{host}/v2/enqueue")}).to_string();
    let out = reg.notify("pagerduty", None, &pd, &expiring).await;
    assert_eq!(out.result, Ok(Ok(())), "{:?}", out.logs);
    // A renewal resolves the incident: same dedup key.
    let out = reg
        .notify("pagerduty", None, &pd, &event("renewed", Severity::Info))
        .await;
    assert_eq!(out.result, Ok(Ok(())), "{:?}", out.logs);

    let seen = hook.seen.lock().expect("lock").clone();
    let bodies: Vec<(String, Value)> = seen
        .iter()
        .map(|(path, _, body)| (path.clone(), serde_json::from_slice(body).expect("JSON body")))
        .collect();
    assert_eq!(bodies.len(), 4);
    let (path, slack) = &bodies[0];
    assert_eq!(path, "/services/T0/B0/x");
    assert!(
        slack["text"].as_str().unwrap_or("").contains("expires in 7 day"),
        "{slack}"
    );
    assert!(slack["blocks"].as_array().is_some_and(|b| !b.is_empty()), "{slack}");
    let (_, teams) = &bodies[1];
    assert_eq!(teams["type"], "message");
    assert_eq!(
        teams["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
    let (path, trigger) = &bodies[2];
    assert_eq!(path, "/v2/enqueue");
    assert_eq!(trigger["routing_key"], key);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "certctl:certificate:0190");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "certctl");
    let (_, resolve) = &bodies[3];
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
}

/// A running aiosmtpd sink; killed on drop.
struct Sink {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn sink(mode: &str, cert: &Path, key: &Path) -> Sink {
    let out = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp-sink.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(mode)
        .arg(cert)
        .arg(key)
        .arg(out.path())
        .arg("alerts:s3cret-pass")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with aiosmtpd (Debian python3-aiosmtpd, installed by scripts/test.sh)");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "READY", "the SMTP sink did not start");
    Sink { child, port, out }
}

fn mailer(port: u16, tls: SmtpTls, password: &str, ca: &Path) -> Arc<Mailer> {
    Arc::new(
        Mailer::new(SmtpSettings {
            host: "localhost".to_string(),
            port,
            username: Some("alerts".to_string()),
            password: Some(password.to_string()),
            from: "certctl@example.test".to_string(),
            tls,
            ca_bundle: Some(ca.to_path_buf()),
            timeout: Duration::from_secs(10),
        })
        .expect("mailer"),
    )
}

fn messages(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read_to_string(f).expect("eml")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_is_delivered_with_starttls_and_with_implicit_tls() {
    let tls_dir = tempfile::tempdir().expect("tmp");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let (cert_path, key_path) = (tls_dir.path().join("smtp.pem"), tls_dir.path().join("smtp.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");

    // Only the e-mail plugin: compiling every shipped plugin per registry would be slow.
    let plugin_dir = tempfile::tempdir().expect("tmp");
    for file in ["email.wasm", "email.toml"] {
        std::fs::copy(shipped_dir().join(file), plugin_dir.path().join(file)).expect("copy");
    }
    let dirs = || vec![plugin_dir.path().to_path_buf()];
    let config = json!({"to": ["ops@example.test", "oncall@example.test"], "subject_prefix": "[prod]"}).to_string();
    for (mode, tls) in [("starttls", SmtpTls::StartTls), ("implicit", SmtpTls::Implicit)] {
        let sink = sink(mode, &cert_path, &key_path);
        let db = TestDb::new(Backend::Sqlite).await;
        let good = mailer(sink.port, tls, "s3cret-pass", &cert_path);
        let reg = registry_with(dirs(), "", Some(good), &db).await;
        let out = reg
            .notify(
                "email",
                Some("instance-1"),
                &config,
                &event("expiring", Severity::Critical),
            )
            .await;
        assert_eq!(out.result, Ok(Ok(())), "{mode}: {:?}", out.logs);
        let mail = messages(sink.out.path());
        assert_eq!(mail.len(), 1, "{mode}");
        let m = &mail[0];
        assert!(m.contains("X-Envelope-From: certctl@example.test"), "{m}");
        assert!(m.contains("X-Envelope-To: ops@example.test,oncall@example.test"), "{m}");
        assert!(m.contains("Subject: [prod]"), "{m}");
        assert!(m.contains("multipart/alternative"), "{m}");
        let body: String = m
            .split("\r\n\r\n")
            .filter_map(|part| {
                use base64::Engine;
                let b64: String = part.lines().take_while(|l| !l.starts_with("--")).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .collect();
        assert!(body.contains("certificate web expires in 7 day(s)"), "{mode}: {body}");

        // Wrong credentials are an auth error, not a retry.
        let db = TestDb::new(Backend::Sqlite).await;
        let bad = mailer(sink.port, tls, "wrong", &cert_path);
        let reg = registry_with(dirs(), "", Some(bad), &db).await;
        let out = reg
            .notify(
                "email",
                Some("instance-1"),
                &config,
                &event("expiring", Severity::Critical),
            )
            .await;
        assert!(
            matches!(out.result, Ok(Err(PluginFailure::Auth(_)))),
            "{mode}: {:?}",
            out.result
        );
    }

    // No relay configured: a clear configuration error.
    let db = TestDb::new(Backend::Sqlite).await;
    let reg = registry_with(dirs(), "", None, &db).await;
    let out = reg
        .notify(
            "email",
            Some("instance-1"),
            &config,
            &event("expiring", Severity::Critical),
        )
        .await;
    let Ok(Err(PluginFailure::InvalidConfig(message))) = &out.result else {
        panic!("{:?}", out.result)
    };
    assert!(message.contains("CERTCTL_SMTP_HOST"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_relay_without_starttls_is_refused() {
    // A listener that speaks SMTP but offers no STARTTLS: the mailer must not fall back to
    // sending in clear.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        if let Ok((stream, _)) = listener.accept().await {
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            let _ = write.write_all(b"220 plain ESMTP\r\n").await;
            while let Ok(Some(line)) = lines.next_line().await {
                let reply: &[u8] = if line.starts_with("EHLO") {
                    b"250-plain\r\n250 AUTH PLAIN\r\n"
                } else {
                    b"502 no\r\n"
                };
                let _ = write.write_all(reply).await;
            }
        }
    });
    let dir = tempfile::tempdir().expect("tmp");
    let ca = dir.path().join("none.pem");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    std::fs::write(&ca, cert.pem()).expect("write");
    let m = mailer(port, SmtpTls::StartTls, "pw", &ca);
    let err = m
        .send(&certctl::mail::Message {
            to: vec!["ops@example.test".into()],
            subject: "x".into(),
            text_body: "y".into(),
            html_body: None,
        })
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("STARTTLS"), "{err}");
}
