//! The challenge broker (`host-challenge`): http-01 served by the host's listener, and dns-01
//! through the powerdns plugin into a real PowerDNS, with the propagation check asking the
//! authoritative server itself.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use certctl::challenge::{ChallengeBroker, ChallengeSettings, dns01_value};
use certctl::dns;
use certctl::model::{InstanceKind, Timestamp};
use certctl::plugins::PluginFailure;
use certctl::plugins::grants::Grants;
use certctl::store::AuditEntry;
use serde_json::json;

use crate::common::{Backend, TestApp};
use crate::sandbox::shipped_dir;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn broker(app: &TestApp) -> Arc<ChallengeBroker> {
    app.lifecycle
        .plugins
        .services()
        .and_then(|s| s.challenges.clone())
        .expect("the test app has a broker")
}

async fn issuer(app: &TestApp, name: &str, config: serde_json::Value) -> String {
    app.store
        .create_instance(
            InstanceKind::Issuer,
            name,
            "acme",
            &config,
            AuditEntry::new("tester", "fixture", "issuer", ""),
        )
        .await
        .expect("issuer")
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_tokens_are_served_by_the_listener_until_cleaned_up() {
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let settings = ChallengeSettings {
        http01_address: Some(address),
        ..ChallengeSettings::default()
    };
    let app = TestApp::with_challenges(Backend::Sqlite, Vec::new(), Grants::default(), settings).await;
    let b = broker(&app);
    let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
    let responder = b.clone().responder();
    tokio::spawn(async move { axum::serve(listener, responder).await });
    let a = issuer(&app, "a", json!({})).await;
    let other = issuer(&app, "b", json!({})).await;

    let handle = b
        .present_http(&a, "tok_EN-1", "tok_EN-1.thumbprint")
        .await
        .expect("present");
    let url = format!("http://{address}/.well-known/acme-challenge/tok_EN-1");
    let resp = reqwest::get(&url).await.expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "tok_EN-1.thumbprint");
    assert_eq!(b.ready(&a, handle).await, Ok(true));
    assert!(
        matches!(b.ready(&other, handle).await, Err(PluginFailure::NotFound(_))),
        "another instance's handle"
    );
    assert!(matches!(
        b.present_http(&a, "../etc/passwd", "x").await,
        Err(PluginFailure::Permanent(_))
    ));
    b.cleanup(&a, handle).await.expect("cleanup");
    b.cleanup(&a, handle).await.expect("cleanup twice");
    assert_eq!(reqwest::get(&url).await.expect("GET").status(), StatusCode::NOT_FOUND);

    // Without a listener configured, http-01 is refused with the setting to change.
    let plain = TestApp::with_challenges(
        Backend::Sqlite,
        Vec::new(),
        Grants::default(),
        ChallengeSettings::default(),
    )
    .await;
    let id = issuer(&plain, "c", json!({})).await;
    let Err(PluginFailure::InvalidConfig(message)) = broker(&plain).present_http(&id, "t", "t.k").await else {
        panic!("refused")
    };
    assert!(message.contains("CERTCTL_ACME_HTTP01_ADDRESS"), "{message}");
}

/// A throwaway PowerDNS authoritative server (SQLite backend) for `example.test`, with the API
/// on; stopped on drop.
pub struct Pdns {
    child: Child,
    pub dns_port: u16,
    pub web_port: u16,
    pub key_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Pdns {
    /// Where pdns.conf is, for pdnsutil and pdns_control.
    pub fn config_dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

impl Drop for Pdns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts PowerDNS with zone `example.test` (ns1 and `hosts` all at 127.0.0.1).
pub async fn pdns(hosts: &[&str]) -> Pdns {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (dns_port, web_port) = (free_port(), free_port());
    let schema = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";
    run(Command::new("/usr/bin/python3").args([
        "-c",
        "import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(open(sys.argv[2]).read())",
        &d.join("pdns.db").display().to_string(),
        schema,
    ]));
    std::fs::write(
        d.join("pdns.conf"),
        format!(
            "launch=gsqlite3\ngsqlite3-database={db}\nlocal-address=127.0.0.1\nlocal-port={dns_port}\n\
             api=yes\napi-key=pdns-test-key\nwebserver=yes\nwebserver-address=127.0.0.1\n\
             webserver-port={web_port}\nwebserver-allow-from=127.0.0.0/8\ndaemon=no\nguardian=no\n\
             security-poll-suffix=\nsocket-dir={dir}\ndisable-syslog=yes\n",
            db = d.join("pdns.db").display(),
            dir = d.display(),
        ),
    )
    .expect("conf");
    let config_dir = format!("--config-dir={}", d.display());
    run(Command::new("pdnsutil").args([&config_dir, "create-zone", "example.test", "ns1.example.test"]));
    for host in std::iter::once("ns1").chain(hosts.iter().copied()) {
        run(Command::new("pdnsutil").args([&config_dir, "add-record", "example.test", host, "A", "127.0.0.1"]));
    }
    let key_file = d.join("api-key");
    std::fs::write(&key_file, "pdns-test-key\n").expect("key");
    let server = Pdns {
        child: Command::new("pdns_server")
            .arg(&config_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pdns_server (Debian pdns-server, installed by scripts/test.sh)"),
        dns_port,
        web_port,
        key_file,
        _dir: dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let up = client
            .get(format!("http://127.0.0.1:{web_port}/api/v1/servers"))
            .header("X-API-Key", "pdns-test-key")
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("PowerDNS did not start");
}

pub async fn txt_values(server: u16, fqdn: &str) -> Vec<String> {
    let addr = format!("127.0.0.1:{server}").parse().expect("addr");
    dns::query(addr, fqdn, dns::TXT, false, Duration::from_secs(3))
        .await
        .expect("TXT query")
        .answers
        .into_iter()
        .filter_map(|r| match r.data {
            dns::Data::Txt(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// An app whose challenge broker resolves through `pdns` and publishes with a powerdns
/// DNS-solver instance named `pdns`.
async fn pdns_app(pdns: &Pdns) -> TestApp {
    let dns_addr: std::net::SocketAddr = format!("127.0.0.1:{}", pdns.dns_port).parse().expect("addr");
    let settings = ChallengeSettings {
        resolvers: vec![dns_addr],
        nameserver_port: pdns.dns_port,
        timeout: Duration::from_secs(3),
        ..ChallengeSettings::default()
    };
    let grants = format!(
        "[powerdns]\noutbound_hosts = [\"http://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        pdns.web_port
    );
    let app = TestApp::with_challenges(
        Backend::Sqlite,
        vec![shipped_dir()],
        Grants::parse(&grants).expect("grants"),
        settings,
    )
    .await;
    let (status, solver) = app
        .admin(
            "POST",
            "/api/v1/dns-solvers",
            Some(json!({"name": "pdns", "plugin": "powerdns",
                        "config": {"api_url": format!("http://127.0.0.1:{}", pdns.web_port),
                                   "api_key": format!("file:{}", pdns.key_file.display())}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{solver}");
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_records_go_through_the_solver_and_are_checked_at_the_authoritative_server() {
    let pdns = pdns(&[]).await;
    let app = pdns_app(&pdns).await;
    let acme = issuer(&app, "acme", json!({"dns_solver": "pdns"})).await;
    let b = broker(&app);

    // Apex and wildcard of one name share the TXT name: both values must coexist.
    let h1 = b
        .present_dns(&acme, "www.example.test", "one.thumb")
        .await
        .expect("present");
    let h2 = b
        .present_dns(&acme, "*.www.example.test", "two.thumb")
        .await
        .expect("present");
    let fqdn = "_acme-challenge.www.example.test";
    let mut values = txt_values(pdns.dns_port, fqdn).await;
    values.sort();
    let mut expected = vec![dns01_value("one.thumb"), dns01_value("two.thumb")];
    expected.sort();
    assert_eq!(values, expected);
    assert_eq!(b.ready(&acme, h1).await, Ok(true));
    assert_eq!(b.ready(&acme, h2).await, Ok(true));

    // Cleanup removes exactly its own value; twice is fine.
    b.cleanup(&acme, h1).await.expect("cleanup");
    b.cleanup(&acme, h1).await.expect("cleanup twice");
    assert_eq!(txt_values(pdns.dns_port, fqdn).await, vec![dns01_value("two.thumb")]);
    assert!(matches!(b.ready(&acme, h1).await, Err(PluginFailure::Permanent(_))));

    // A challenge an order left behind is cleaned by the scheduler's sweep a day later.
    assert_eq!(b.clean_stale(Timestamp::now(), Duration::from_secs(86_400)).await, 0);
    assert_eq!(
        b.clean_stale(Timestamp(Timestamp::now().0 + 2 * 86_400), Duration::from_secs(86_400))
            .await,
        1
    );
    assert!(txt_values(pdns.dns_port, fqdn).await.is_empty());

    // A zone nobody serves, and an issuer without a solver, are clear errors.
    assert!(matches!(
        b.present_dns(&acme, "www.elsewhere.invalid", "x").await,
        Err(PluginFailure::NotFound(_) | PluginFailure::Transient(_))
    ));
    let bare = issuer(&app, "bare", json!({})).await;
    let Err(PluginFailure::InvalidConfig(message)) = b.present_dns(&bare, "www.example.test", "x").await else {
        panic!("refused")
    };
    assert!(message.contains("config.dns_solver"), "{message}");
}

/// A throwaway BIND 9 primary for `example.test` that accepts TSIG-signed updates of TXT
/// records (`update-policy { grant certctl. zonesub TXT; }`); stopped on drop.
pub struct Bind {
    child: Child,
    pub port: u16,
    pub secret_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn bind() -> Bind {
    use base64::Engine;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_path_buf();
    let port = free_port();
    let secret = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    std::fs::write(
        d.join("example.test.zone"),
        "$TTL 60\n@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60\n\
         @ IN NS ns1.example.test.\nns1 IN A 127.0.0.1\n",
    )
    .expect("zone");
    std::fs::write(
        d.join("named.conf"),
        format!(
            "options {{ directory \"{dir}\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n\
             recursion no; dnssec-validation no; pid-file \"{dir}/named.pid\"; session-keyfile \"{dir}/session.key\"; }};\n\
             controls {{ }};\n\
             key \"certctl.\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
             zone \"example.test\" {{ type primary; file \"{dir}/example.test.zone\";\n\
             update-policy {{ grant certctl. zonesub TXT; }}; }};\n",
            dir = d.display(),
        ),
    )
    .expect("conf");
    let secret_file = d.join("tsig-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).expect("secret");
    let server = Bind {
        child: Command::new("named")
            .args(["-g", "-c"])
            .arg(d.join("named.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("named (Debian bind9, installed by scripts/test.sh)"),
        port,
        secret_file,
        _dir: dir,
    };
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    for _ in 0..100 {
        if dns::query(addr, "example.test", dns::SOA, false, Duration::from_millis(300))
            .await
            .is_ok_and(|r| !r.answers.is_empty())
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("BIND did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_rfc2136_updates_into_bind() {
    let bind = bind().await;
    let dns_addr: std::net::SocketAddr = format!("127.0.0.1:{}", bind.port).parse().expect("addr");
    let settings = ChallengeSettings {
        resolvers: vec![dns_addr],
        nameserver_port: bind.port,
        timeout: Duration::from_secs(3),
        ..ChallengeSettings::default()
    };
    let grants = format!(
        "[rfc2136]\noutbound_hosts = [\"dns://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        bind.port
    );
    let app = TestApp::with_challenges(
        Backend::Sqlite,
        vec![shipped_dir()],
        Grants::parse(&grants).expect("grants"),
        settings,
    )
    .await;
    let wrong = bind.secret_file.with_file_name("wrong-secret");
    std::fs::write(&wrong, "c2VjcmV0LXRoYXQtYmluZC1kb2VzLW5vdC1rbm93LTEyMzQ=\n").expect("write");
    for (name, secret) in [
        ("bind", format!("file:{}", bind.secret_file.display())),
        ("wrong-key", format!("file:{}", wrong.display())),
    ] {
        let (status, solver) = app
            .admin(
                "POST",
                "/api/v1/dns-solvers",
                Some(json!({"name": name, "plugin": "rfc2136",
                            "config": {"server": format!("127.0.0.1:{}", bind.port),
                                       "tsig_key_name": "certctl.", "tsig_secret": secret}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{solver}");
    }
    let acme = issuer(&app, "acme", json!({"dns_solver": "bind"})).await;
    let b = broker(&app);
    let h1 = b
        .present_dns(&acme, "www.example.test", "one.thumb")
        .await
        .expect("present");
    let h2 = b
        .present_dns(&acme, "*.www.example.test", "two.thumb")
        .await
        .expect("present");
    let fqdn = "_acme-challenge.www.example.test";
    let mut values = txt_values(bind.port, fqdn).await;
    values.sort();
    let mut expected = vec![dns01_value("one.thumb"), dns01_value("two.thumb")];
    expected.sort();
    assert_eq!(values, expected);
    assert_eq!(b.ready(&acme, h1).await, Ok(true));
    b.cleanup(&acme, h1).await.expect("cleanup");
    b.cleanup(&acme, h1).await.expect("cleanup twice");
    assert_eq!(txt_values(bind.port, fqdn).await, vec![dns01_value("two.thumb")]);
    b.cleanup(&acme, h2).await.expect("cleanup");
    assert!(txt_values(bind.port, fqdn).await.is_empty());

    // A key BIND does not accept: the update is refused as an authentication problem.
    let refused = issuer(&app, "refused", json!({"dns_solver": "wrong-key"})).await;
    let result = b.present_dns(&refused, "api.example.test", "x.thumb").await;
    assert!(matches!(result, Err(PluginFailure::Auth(_))), "{result:?}");
    assert!(
        txt_values(bind.port, "_acme-challenge.api.example.test")
            .await
            .is_empty()
    );
}

/// dns-persist-01: nothing is published without the operator's approval; once approved the
/// record is published once, and stays; later orders (and records the operator published by
/// hand) need no write at all; a wildcard needs `policy=wildcard`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist_records_wait_for_approval_are_published_once_and_stay() {
    let pdns = pdns(&[]).await;
    let app = pdns_app(&pdns).await;
    let acme = issuer(&app, "acme", json!({"dns_solver": "pdns"})).await;
    let b = broker(&app);
    let ca = vec!["ca.example".to_string()];
    let account = "https://ca.example/acme/acct/42";
    let fqdn = "_validation-persist.www.example.test";

    // Nothing there: the record waits for approval, and nothing is written.
    let h1 = b
        .present_persist(&acme, "www.example.test", &ca, account, false)
        .await
        .expect("asked");
    assert_eq!(b.ready(&acme, h1).await, Ok(false));
    assert!(txt_values(pdns.dns_port, fqdn).await.is_empty());
    let (status, waiting) = app
        .admin("GET", "/api/v1/dns-persist?state=awaiting_approval", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{waiting}");
    let record = &waiting[0];
    assert_eq!(record["fqdn"], fqdn);
    assert_eq!(record["value"], format!("ca.example; accounturi={account}"));
    assert!(
        record["message"].as_str().unwrap_or("").contains("/approve"),
        "{record}"
    );
    let id = record["id"].as_i64().expect("id");

    // Viewers cannot approve; an unknown id is 404.
    let (status, _) = app
        .call(
            "POST",
            &format!("/api/v1/dns-persist/{id}/approve"),
            Some(crate::common::key_of(certctl::auth::Role::Viewer)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.admin("POST", "/api/v1/dns-persist/999999/approve", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Approved: published once through the solver, audited; approving again is a conflict.
    let (status, approved) = app
        .admin("POST", &format!("/api/v1/dns-persist/{id}/approve"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["state"], "present");
    assert_eq!(
        txt_values(pdns.dns_port, fqdn).await,
        vec![format!("ca.example; accounturi={account}")]
    );
    assert_eq!(b.ready(&acme, h1).await, Ok(true));
    let (status, _) = app
        .admin("POST", &format!("/api/v1/dns-persist/{id}/approve"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, audit) = app.admin("GET", "/api/v1/audit?action=dns_persist.approve", None).await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");

    // The order ends: cleanup closes the row and the record stays.
    b.cleanup(&acme, h1).await.expect("cleanup");
    assert_eq!(
        txt_values(pdns.dns_port, fqdn).await.len(),
        1,
        "a persistent record stays"
    );

    // A later order for the name is ready at once, with no approval and no write.
    let h2 = b
        .present_persist(&acme, "www.example.test", &ca, account, false)
        .await
        .expect("asked");
    assert_eq!(b.ready(&acme, h2).await, Ok(true));
    let (_, waiting) = app
        .admin("GET", "/api/v1/dns-persist?state=awaiting_approval", None)
        .await;
    assert_eq!(waiting, json!([]), "nothing to approve");

    // A wildcard needs policy=wildcard: the plain record does not do, so a new one is asked for.
    let h3 = b
        .present_persist(&acme, "*.www.example.test", &ca, account, true)
        .await
        .expect("asked");
    assert_eq!(b.ready(&acme, h3).await, Ok(false));
    // ...unless the operator publishes one by hand: then it is ready without approval.
    run(Command::new("pdnsutil").args([
        &format!("--config-dir={}", pdns.config_dir().display()),
        "add-record",
        "example.test",
        "_validation-persist.www",
        "TXT",
        &format!("\"CA.EXAMPLE; accounturi={account}; policy=wildcard; persistUntil=4102444800\""),
    ]));
    // Edits outside the API do not purge PowerDNS's answer cache.
    run(Command::new("pdns_control").args([&format!("--config-dir={}", pdns.config_dir().display()), "purge"]));
    assert_eq!(b.ready(&acme, h3).await, Ok(true));

    // Another account's record, or a CA the challenge does not list, is not accepted.
    let other = b
        .present_persist(&acme, "www.example.test", &ca, "https://ca.example/acme/acct/43", false)
        .await
        .expect("asked");
    assert_eq!(b.ready(&acme, other).await, Ok(false));
    let elsewhere = b
        .present_persist(
            &acme,
            "www.example.test",
            &["other-ca.example".to_string()],
            account,
            false,
        )
        .await
        .expect("asked");
    assert_eq!(b.ready(&acme, elsewhere).await, Ok(false));

    // Bad input from the CA is refused by name.
    let Err(PluginFailure::Permanent(m)) = b.present_persist(&acme, "www.example.test", &[], account, false).await
    else {
        panic!("refused")
    };
    assert!(m.contains("no issuer domain names"), "{m}");
    let Err(PluginFailure::Permanent(m)) = b
        .present_persist(&acme, "www.example.test", &ca, "https://x/a b", false)
        .await
    else {
        panic!("refused")
    };
    assert!(m.contains("accounturi"), "{m}");
}

/// `cname_policy = "follow"`: a CNAME at `_acme-challenge.<name>` sends the record where it
/// points (delegated validation); a CNAME that a wildcard record synthesised is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_follows_an_explicit_cname_and_refuses_a_wildcard_one() {
    let pdns = pdns(&[]).await;
    let config_dir = format!("--config-dir={}", pdns.config_dir().display());
    for (name, target) in [
        ("_acme-challenge.www", "_acme-challenge.delegated.example.test."),
        ("*.wild", "catch-all.example.test."),
    ] {
        run(Command::new("pdnsutil").args([&config_dir, "add-record", "example.test", name, "CNAME", target]));
    }
    let app = pdns_app(&pdns).await;
    let acme = issuer(&app, "acme", json!({"dns_solver": "pdns", "cname_policy": "follow"})).await;
    let b = broker(&app);

    let h = b
        .present_dns(&acme, "www.example.test", "one.thumb")
        .await
        .expect("present");
    let delegated = "_acme-challenge.delegated.example.test";
    assert_eq!(
        txt_values(pdns.dns_port, delegated).await,
        vec![dns01_value("one.thumb")]
    );
    assert_eq!(b.ready(&acme, h).await, Ok(true));
    b.cleanup(&acme, h).await.expect("cleanup");
    assert!(txt_values(pdns.dns_port, delegated).await.is_empty());

    // A name without a CNAME is published where it is.
    let h = b
        .present_dns(&acme, "api.example.test", "two.thumb")
        .await
        .expect("present");
    assert_eq!(
        txt_values(pdns.dns_port, "_acme-challenge.api.example.test").await,
        vec![dns01_value("two.thumb")]
    );
    b.cleanup(&acme, h).await.expect("cleanup");

    let Err(PluginFailure::Permanent(message)) = b.present_dns(&acme, "x.wild.example.test", "three.thumb").await
    else {
        panic!("a wildcard-synthesised CNAME is refused")
    };
    assert!(
        message.contains("wildcard record synthesised") && message.contains("_acme-challenge.x.wild.example.test"),
        "{message}"
    );
    assert!(
        txt_values(pdns.dns_port, "catch-all.example.test").await.is_empty(),
        "nothing published"
    );
}
