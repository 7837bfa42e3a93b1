//! The DNS-solver conformance suite (host/src/plugins/conformance.rs) against real providers:
//! `powerdns` into a real pdns-server, `rfc2136` into a real BIND 9 and a real Knot DNS, and
//! `route53` against moto's Route 53 server. The values are read back from each provider's
//! authoritative DNS server (moto has none: its API is read instead). `cloudflare` and
//! `digitalocean` cannot run here; their crates run the same rules against fakes of their
//! documented APIs, and `httpreq` runs them in sandbox.rs.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certctl::dns;
use certctl::plugins::conformance::{Check, dns_solver};
use certctl::plugins::grants::Grants;
use serde_json::json;

use crate::challenges::{bind, pdns, txt_values};
use crate::common::{Backend, TestApp};
use crate::sandbox::shipped_dir;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn assert_all_pass(solver: &str, checks: &[Check]) {
    assert_eq!(checks.len(), 7, "{solver}: {checks:?}");
    for c in checks {
        assert!(c.passed, "{solver}: {}: {}", c.rule, c.detail);
    }
}

async fn app(grants: &str) -> TestApp {
    TestApp::with_plugins(
        Backend::Sqlite,
        vec![shipped_dir()],
        Grants::parse(grants).expect("grants"),
    )
    .await
}

/// The suite, reading TXT values from the authoritative server on `dns_port`.
async fn run_against_dns(app: &TestApp, plugin: &str, config: serde_json::Value, dns_port: u16) -> Vec<Check> {
    dns_solver(
        &app.lifecycle.plugins,
        plugin,
        &config.to_string(),
        "example.test",
        |fqdn| async move { Ok(txt_values(dns_port, &fqdn).await) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powerdns_passes_the_conformance_suite_against_pdns_server() {
    let pdns = pdns(&[]).await;
    let app = app(&format!(
        "[powerdns]\noutbound_hosts = [\"http://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        pdns.web_port
    ))
    .await;
    let key = std::fs::read_to_string(&pdns.key_file).expect("key");
    let config = json!({"api_url": format!("http://127.0.0.1:{}", pdns.web_port), "api_key": key.trim()});
    let checks = run_against_dns(&app, "powerdns", config, pdns.dns_port).await;
    assert_all_pass("powerdns", &checks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_passes_the_conformance_suite_against_bind() {
    let bind = bind().await;
    let app = app(&format!(
        "[rfc2136]\noutbound_hosts = [\"dns://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        bind.port
    ))
    .await;
    let secret = std::fs::read_to_string(&bind.secret_file).expect("secret");
    let config = json!({"server": format!("127.0.0.1:{}", bind.port), "tsig_key_name": "certctl.",
                        "tsig_secret": secret.trim()});
    let checks = run_against_dns(&app, "rfc2136", config, bind.port).await;
    assert_all_pass("rfc2136 (BIND)", &checks);
}

/// A throwaway Knot DNS primary for `example.test` that accepts TSIG-signed (hmac-sha512)
/// updates of TXT records; stopped on drop.
struct Knot {
    child: Child,
    port: u16,
    secret: String,
    _dir: tempfile::TempDir,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn knot() -> Knot {
    use base64::Engine;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let port = free_port();
    let secret = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 64]>());
    // Knot keeps its journal there; without it every update is SERVFAIL.
    std::fs::create_dir(d.join("db")).expect("db dir");
    std::fs::write(
        d.join("example.test.zone"),
        "$TTL 60\n@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60\n\
         @ IN NS ns1.example.test.\nns1 IN A 127.0.0.1\n",
    )
    .expect("zone");
    std::fs::write(
        d.join("knot.conf"),
        format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: \"{dir}\"\n\
             database:\n    storage: \"{dir}/db\"\n\
             log:\n  - target: stderr\n    any: error\n\
             key:\n  - id: certctl\n    algorithm: hmac-sha512\n    secret: {secret}\n\
             acl:\n  - id: certctl-update\n    key: certctl\n    action: update\n    update-type: [TXT]\n\
             template:\n  - id: default\n    storage: \"{dir}\"\n    file: \"%s.zone\"\n    zonefile-sync: -1\n\
             zone:\n  - domain: example.test\n    acl: certctl-update\n",
            dir = d.display(),
        ),
    )
    .expect("conf");
    let child = Command::new("knotd")
        .arg("-c")
        .arg(d.join("knot.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("knotd (Debian knot, installed by scripts/test.sh)");
    let server = Knot {
        child,
        port,
        secret,
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
    panic!("Knot did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_passes_the_conformance_suite_against_knot() {
    let knot = knot().await;
    let app = app(&format!(
        "[rfc2136]\noutbound_hosts = [\"dns://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        knot.port
    ))
    .await;
    let config = json!({"server": format!("127.0.0.1:{}", knot.port), "tsig_key_name": "certctl",
                        "tsig_algorithm": "hmac-sha512", "tsig_secret": knot.secret});
    let checks = run_against_dns(&app, "rfc2136", config, knot.port).await;
    assert_all_pass("rfc2136 (Knot)", &checks);

    // Knot refuses an update under a key it does not know: the suite fails, and says why.
    let config = json!({"server": format!("127.0.0.1:{}", knot.port), "tsig_key_name": "stranger",
                        "tsig_algorithm": "hmac-sha512", "tsig_secret": knot.secret});
    let checks = run_against_dns(&app, "rfc2136", config, knot.port).await;
    let publish = checks
        .iter()
        .find(|c| c.rule == "present publishes the value")
        .expect("rule");
    assert!(!publish.passed, "{checks:?}");
}

/// moto's Route 53 server on loopback, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Moto {
    let python = std::env::var("CERTCTL_TEST_MOTO_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let port = free_port();
    let child = Command::new(&python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto server (PyPI moto[server], installed by scripts/test.sh)");
    let server = Moto { child, port };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("http://127.0.0.1:{port}/2013-04-01/hostedzone"))
            .send()
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto did not start");
}

/// moto tells services apart by the credential scope of the Authorization header (it checks
/// no signatures unless told to).
const MOTO_ROUTE53_AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=0";

/// The TXT values at `fqdn` in a moto hosted zone, read through the Route 53 API.
async fn route53_txt(port: u16, zone_id: &str, fqdn: String) -> Result<Vec<String>, String> {
    let body = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/2013-04-01/hostedzone/{zone_id}/rrset?name={fqdn}.&type=TXT"
        ))
        .header("Authorization", MOTO_ROUTE53_AUTH)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let mut values = Vec::new();
    for set in body.split("<ResourceRecordSet>").skip(1) {
        let field = |tag: &str| {
            set.split_once(&format!("<{tag}>"))
                .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")))
                .map(|(v, _)| v.to_string())
        };
        if field("Name").as_deref() == Some(&format!("{fqdn}.")) && field("Type").as_deref() == Some("TXT") {
            for value in set.split("<Value>").skip(1) {
                let raw = value.split("</Value>").next().unwrap_or_default();
                values.push(raw.replace("&quot;", "\"").trim_matches('"').to_string());
            }
        }
    }
    Ok(values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53_passes_the_conformance_suite_against_moto() {
    let moto = moto().await;
    let created = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/2013-04-01/hostedzone", moto.port))
        .header("Authorization", MOTO_ROUTE53_AUTH)
        .header("Content-Type", "text/xml")
        .body(
            "<CreateHostedZoneRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
             <Name>example.test.</Name><CallerReference>certctl-conformance</CallerReference>\
             </CreateHostedZoneRequest>",
        )
        .send()
        .await
        .expect("create zone")
        .text()
        .await
        .expect("answer");
    let zone_id = created
        .split_once("<Id>/hostedzone/")
        .and_then(|(_, rest)| rest.split_once("</Id>"))
        .map(|(id, _)| id.to_string())
        .unwrap_or_else(|| panic!("no zone id in {created}"));
    let app = app(&format!(
        "[route53]\noutbound_hosts = [\"http://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        moto.port
    ))
    .await;
    // The zone found by name, and the zone given by id.
    for extra in [json!({}), json!({"hosted_zone_id": zone_id})] {
        let mut config = json!({"access_key_id": "testing", "secret_access_key": "testing",
                                "api_url": format!("http://127.0.0.1:{}", moto.port)});
        config
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        let port = moto.port;
        let zone = zone_id.clone();
        let checks = dns_solver(
            &app.lifecycle.plugins,
            "route53",
            &config.to_string(),
            "example.test",
            |fqdn| {
                let zone = zone.clone();
                async move { route53_txt(port, &zone, fqdn).await }
            },
        )
        .await;
        assert_all_pass(&format!("route53 {extra}"), &checks);
    }
}
