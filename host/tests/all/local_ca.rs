//! The local CA issuer plugin in the real runtime, with the host keystore and kv: issued chains
//! verify with openssl, and policy violations are refused with the reason.

use std::process::Command;
use std::sync::Arc;

use certctl::keystore::Keystore;
use certctl::metrics::Metrics;
use certctl::model::InstanceKind;
use certctl::plugins::PluginFailure;
use certctl::plugins::grants::Grants;
use certctl::plugins::registry::{IssuerAnswer, Registry, Services};
use certctl::plugins::v0_1::issuer::{IssueRequest, Progress};
use certctl::store::AuditEntry;

use crate::common::{Backend, TestDb};
use crate::sandbox::shipped_dir;

struct Ca {
    reg: Registry,
    instance: String,
    _db: TestDb,
}

async fn local_ca(backend: Backend) -> Ca {
    let db = TestDb::new(backend).await;
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
        vec![shipped_dir()],
        Grants::default(),
        Arc::new(Metrics::new().expect("metrics")),
    )
    .with_services(Services {
        store: store.clone(),
        keystore,
        mailer: None,
        challenges: None,
    });
    reg.reload();
    assert!(reg.get("local-ca").is_some(), "local-ca not loaded: {:?}", reg.list().1);
    let instance = store
        .create_instance(
            InstanceKind::Issuer,
            "ca",
            "local-ca",
            &serde_json::json!({}),
            AuditEntry::new("t", "t", "issuer", ""),
        )
        .await
        .expect("instance")
        .id;
    Ca { reg, instance, _db: db }
}

fn csr(names: &[&str]) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    params.serialize_request(&key).expect("csr").der().to_vec()
}

async fn issue(
    ca: &Ca,
    config: serde_json::Value,
    csr: Vec<u8>,
    names: &[&str],
    days: Option<u32>,
) -> Result<String, PluginFailure> {
    let request = IssueRequest {
        csr,
        names: names.iter().map(|s| s.to_string()).collect(),
        validity_days: days,
        profile: None,
        replaces: None,
    };
    let out = ca
        .reg
        .issuer_begin("local-ca", &ca.instance, &config.to_string(), &request)
        .await;
    match out.result {
        Ok(Ok(IssuerAnswer::Progress(Progress::Issued(chain)))) => Ok(chain),
        Ok(Ok(_)) => panic!("the local CA finishes in one call"),
        Ok(Err(f)) => Err(f),
        Err(e) => panic!("call failed: {e} {:?}", out.logs),
    }
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn issued_chains_verify_with_openssl(backend: Backend) {
    let ca = local_ca(backend).await;
    let names = ["www.example.test", "example.test", "192.0.2.10"];
    let chain = issue(&ca, serde_json::json!({}), csr(&names), &names, Some(30))
        .await
        .expect("issued");
    let blocks: Vec<&str> = chain.split_inclusive("-----END CERTIFICATE-----\n").collect();
    assert_eq!(blocks.len(), 2, "leaf then CA:\n{chain}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (leaf, root) = (dir.path().join("leaf.pem"), dir.path().join("ca.pem"));
    std::fs::write(&leaf, blocks[0]).expect("write");
    std::fs::write(&root, blocks[1]).expect("write");
    let (leaf, root) = (leaf.to_str().expect("utf8"), root.to_str().expect("utf8"));
    assert!(openssl(&["verify", "-CAfile", root, leaf]).contains("OK"));
    let text = openssl(&["x509", "-in", leaf, "-noout", "-text"]);
    for want in [
        "DNS:www.example.test",
        "DNS:example.test",
        "IP Address:192.0.2.10",
        "TLS Web Server Authentication",
        "CA:FALSE",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    let ca_text = openssl(&["x509", "-in", root, "-noout", "-text"]);
    assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
    let end = openssl(&["x509", "-in", leaf, "-noout", "-enddate", "-startdate"]);
    assert!(!end.is_empty());

    // The CA is created once per instance: a second issuance chains to the same root.
    let again = issue(
        &ca,
        serde_json::json!({}),
        csr(&["api.example.test"]),
        &["api.example.test"],
        None,
    )
    .await
    .expect("issued");
    assert!(again.ends_with(blocks[1]), "same CA certificate");
}

async fn policy_violations_are_refused_with_the_reason(backend: Backend) {
    let ca = local_ca(backend).await;
    let config = serde_json::json!({"allowed_names": ["*.example.test"], "max_validity_days": 90});
    let err = issue(&ca, config.clone(), csr(&["evil.test"]), &["evil.test"], None)
        .await
        .expect_err("name");
    assert!(err.to_string().contains("evil.test"), "{err}");
    let err = issue(
        &ca,
        config.clone(),
        csr(&["a.example.test"]),
        &["a.example.test"],
        Some(365),
    )
    .await
    .expect_err("validity");
    assert!(err.to_string().contains("90"), "{err}");
    let mut forged = csr(&["b.example.test"]);
    let last = forged.len() - 3;
    forged[last] ^= 0x55;
    let err = issue(&ca, config.clone(), forged, &["b.example.test"], None)
        .await
        .expect_err("forged");
    assert!(err.to_string().to_lowercase().contains("signature"), "{err}");
    let err = issue(&ca, config, b"garbage".to_vec(), &["c.example.test"], None)
        .await
        .expect_err("garbage");
    assert!(matches!(err, PluginFailure::Permanent(_)), "{err:?}");
}

crate::on_both_backends!(
    issued_chains_verify_with_openssl,
    policy_violations_are_refused_with_the_reason
);
