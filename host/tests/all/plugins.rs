//! Plugin loading: every kind of bad file is refused one by one with a reason, and the
//! reasons are visible through the API.

use std::path::Path;
use std::sync::Arc;

use certctl::metrics::Metrics;
use certctl::plugins::grants::Grants;
use certctl::plugins::sandbox::Limits;
use sha2::{Digest, Sha256};

use crate::common::registry;

/// The smallest valid core module and component.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

fn manifest(name: &str, kind: &str, contract: &str, bytes: &[u8]) -> String {
    format!(
        "name = \"{name}\"\nkind = \"{kind}\"\nversion = \"0.1.0\"\ncontract = \"{contract}\"\nsha256 = \"{}\"\n",
        hex::encode(Sha256::digest(bytes))
    )
}

fn put(dir: &Path, name: &str, wasm: &[u8], manifest: Option<String>) {
    std::fs::write(dir.join(format!("{name}.wasm")), wasm).expect("write wasm");
    if let Some(m) = manifest {
        std::fs::write(dir.join(format!("{name}.toml")), m).expect("write manifest");
    }
}

#[tokio::test]
async fn bad_plugin_files_are_refused_one_by_one_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    put(d, "no-manifest", EMPTY_COMPONENT, None);
    put(
        d,
        "stale-digest",
        EMPTY_COMPONENT,
        Some(manifest("stale-digest", "notifier", "0.1.0", b"other bytes")),
    );
    put(
        d,
        "core-module",
        CORE_MODULE,
        Some(manifest("core-module", "notifier", "0.1.0", CORE_MODULE)),
    );
    put(
        d,
        "garbage",
        b"not wasm at all",
        Some(manifest("garbage", "notifier", "0.1.0", b"not wasm at all")),
    );
    put(
        d,
        "empty",
        EMPTY_COMPONENT,
        Some(manifest("empty", "notifier", "0.1.0", EMPTY_COMPONENT)),
    );
    put(
        d,
        "future",
        EMPTY_COMPONENT,
        Some(manifest("future", "notifier", "9.9.0", EMPTY_COMPONENT)),
    );
    put(
        d,
        "misnamed",
        EMPTY_COMPONENT,
        Some(manifest("other-name", "notifier", "0.1.0", EMPTY_COMPONENT)),
    );

    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(vec![d.to_path_buf()], Grants::default(), metrics, Limits::default());
    let (loaded, refused) = reg.list();
    assert!(loaded.is_empty(), "{loaded:?}");
    let reason = |stem: &str| {
        refused
            .iter()
            .find(|r| r.path.ends_with(&format!("{stem}.wasm")))
            .map(|r| r.error.clone())
            .unwrap_or_else(|| panic!("{stem} was not refused: {refused:?}"))
    };
    assert!(
        reason("no-manifest").contains("missing or unreadable manifest"),
        "{}",
        reason("no-manifest")
    );
    assert!(reason("stale-digest").contains("sha256"), "{}", reason("stale-digest"));
    assert!(
        reason("core-module").contains("not a component"),
        "{}",
        reason("core-module")
    );
    assert!(
        reason("garbage").contains("not a valid WebAssembly"),
        "{}",
        reason("garbage")
    );
    assert!(
        reason("empty").contains("does not export certctl:plugin/notifier@0.1.0"),
        "{}",
        reason("empty")
    );
    assert!(reason("future").contains("contract 9.9.0"), "{}", reason("future"));
    assert!(
        reason("misnamed").contains("does not match the file name"),
        "{}",
        reason("misnamed")
    );
    assert_eq!(refused.len(), 7);
}

#[tokio::test]
async fn a_missing_plugin_directory_is_reported_not_fatal() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(
        vec!["/nonexistent/certctl-plugins".into()],
        Grants::default(),
        metrics,
        Limits::default(),
    );
    let (loaded, refused) = reg.list();
    assert!(loaded.is_empty());
    assert_eq!(refused.len(), 1);
    assert!(refused[0].error.contains("does not exist"));
}

#[test]
fn grants_files_with_bad_patterns_are_refused_with_the_plugin_named() {
    let err = Grants::parse("[webhook]\noutbound_hosts = [\"hooks.example.com\"]\n").expect_err("no scheme");
    assert!(err.contains("[webhook]") && err.contains("scheme"), "{err}");
    let err = Grants::parse("[webhook]\noutbound = []\n").expect_err("unknown key");
    assert!(err.contains("outbound"), "{err}");
}
