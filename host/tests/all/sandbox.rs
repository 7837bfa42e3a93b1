//! Real guest components in the real runtime: every hostile behaviour is contained, typed
//! errors cross the boundary, outbound HTTP obeys the grants, and the shipped plugins do what
//! their READMEs say. The components are built by scripts/build-plugins.sh (scripts/test.sh
//! runs it) into the directories named by CERTCTL_TEST_PLUGIN_DIR and
//! CERTCTL_TEST_TESTING_PLUGIN_DIR.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{any, get};
use certctl::metrics::Metrics;
use certctl::plugins::grants::Grants;
use certctl::plugins::registry::{IssuerAnswer, Registry, Services};
use certctl::plugins::sandbox::Limits;
use certctl::plugins::v0_1::{DnsRecord, Event, Severity};
use certctl::plugins::{CallError, PluginFailure};

use crate::common::registry;

fn dir_from(var: &str) -> PathBuf {
    let dir =
        PathBuf::from(std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: run the suite with scripts/test.sh, which builds the plugins")
        }));
    assert!(
        dir.join("misbehave.wasm").exists() || dir.join("webhook.wasm").exists(),
        "no plugins in {}",
        dir.display()
    );
    dir
}

pub fn testing_dir() -> PathBuf {
    dir_from("CERTCTL_TEST_TESTING_PLUGIN_DIR")
}

pub fn shipped_dir() -> PathBuf {
    dir_from("CERTCTL_TEST_PLUGIN_DIR")
}

/// Copies the named shipped plugins (`NAME.wasm` + `NAME.toml`) into `dir`, created if needed:
/// a plugin directory for a server that should load only these.
pub fn copy_shipped(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).expect("plugin dir");
    for name in names {
        for ext in ["wasm", "toml"] {
            std::fs::copy(
                shipped_dir().join(format!("{name}.{ext}")),
                dir.join(format!("{name}.{ext}")),
            )
            .expect("copy plugin");
        }
    }
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 32 * 1024 * 1024,
        cpu_ticks: 50, // 0.5 s of CPU
        wall: Duration::from_secs(5),
        ..Limits::default()
    }
}

fn grants(toml: &str) -> Grants {
    Grants::parse(toml).expect("grants")
}

fn event() -> Event {
    Event {
        kind: "test".into(),
        severity: Severity::Warning,
        summary: "certificate web expires in 7 days".into(),
        subject: "web".into(),
        dedup_key: "web-7".into(),
        occurred_at: 1_800_000_000,
        detail: vec![("days_left".into(), "7".into())],
    }
}

fn misbehaving(grants_toml: &str, limits: Limits) -> (Arc<Registry>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(vec![testing_dir()], grants(grants_toml), metrics.clone(), limits);
    let (loaded, refused) = reg.list();
    assert!(
        loaded.iter().any(|p| p.name == "misbehave"),
        "misbehave not loaded: {refused:?}"
    );
    (reg, metrics)
}

async fn notify_mode(reg: &Registry, config: serde_json::Value) -> certctl::plugins::CallOutcome<()> {
    reg.notify("misbehave", None, &config.to_string(), &event()).await
}

fn metric(metrics: &Metrics, needle: &str) -> String {
    let text = metrics.render(&Default::default()).expect("render");
    text.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_call_succeeds_and_is_counted() {
    let (reg, metrics) = misbehaving("", limits());
    let out = notify_mode(&reg, serde_json::json!({"mode": "ok"})).await;
    assert_eq!(out.result, Ok(Ok(())));
    let calls = metric(&metrics, "certctl_plugin_calls_total{");
    assert!(
        calls
            .lines()
            .any(|l| l.contains("outcome=\"ok\"") && l.contains("op=\"notify\"") && l.ends_with(" 1")),
        "{calls}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_errors_cross_the_boundary() {
    let (reg, _) = misbehaving("", limits());
    let out = notify_mode(&reg, serde_json::json!({"mode": "error"})).await;
    assert_eq!(out.result, Ok(Err(PluginFailure::RateLimited(Some(7)))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_by_the_cpu_budget() {
    let (reg, metrics) = misbehaving("", limits());
    let start = Instant::now();
    let out = notify_mode(&reg, serde_json::json!({"mode": "loop"})).await;
    assert_eq!(out.result, Err(CallError::CpuBudget));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "stopped after {:?}",
        start.elapsed()
    );
    assert!(metric(&metrics, "certctl_plugin_traps_total").contains("reason=\"timeout\"} 1"));
    // The next call on the same plugin is unaffected: instances are never reused.
    assert_eq!(
        notify_mode(&reg, serde_json::json!({"mode": "ok"})).await.result,
        Ok(Ok(()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_refused_and_the_host_carries_on() {
    let (reg, metrics) = misbehaving("", limits());
    let out = notify_mode(&reg, serde_json::json!({"mode": "memory"})).await;
    assert_eq!(out.result, Err(CallError::Memory));
    assert!(metric(&metrics, "certctl_plugin_traps_total").contains("reason=\"memory\"} 1"));
    assert_eq!(
        notify_mode(&reg, serde_json::json!({"mode": "ok"})).await.result,
        Ok(Ok(()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_and_panics_are_traps() {
    let (reg, metrics) = misbehaving("", limits());
    for mode in ["recursion", "panic"] {
        let out = notify_mode(&reg, serde_json::json!({"mode": mode})).await;
        assert!(
            matches!(out.result, Err(CallError::Trap(_))),
            "{mode}: {:?}",
            out.result
        );
    }
    assert!(metric(&metrics, "certctl_plugin_traps_total").contains("reason=\"trap\"} 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_output_floods_are_capped() {
    let (reg, _) = misbehaving(
        "",
        Limits {
            cpu_ticks: 3000,
            wall: Duration::from_secs(60),
            ..limits()
        },
    );
    let out = notify_mode(&reg, serde_json::json!({"mode": "log-flood"})).await;
    assert_eq!(out.result, Ok(Ok(())));
    assert!(out.logs.len() <= 200, "{} lines kept", out.logs.len());
    assert!(out.logs_dropped > 900_000, "{} dropped", out.logs_dropped);
    let out = notify_mode(&reg, serde_json::json!({"mode": "stdout-flood"})).await;
    assert_eq!(out.result, Ok(Ok(())), "writes past the cap are discarded, not failed");
    assert!(
        out.logs.iter().any(|(_, l)| l.contains("discarded")),
        "{:?}",
        out.logs.last()
    );
}

/// A local HTTP server: `/ok` answers 200, `/hang` never answers, `/hook` records requests.
struct TestServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>,
}

async fn test_server() -> TestServer {
    let seen: Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        )
        .route(
            "/{*path}",
            any(move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let record = record.clone();
                async move {
                    if let Ok(mut s) = record.lock() {
                        s.push((uri.path().to_string(), headers, body));
                    }
                    "recorded"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestServer { addr, seen }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_needs_a_grant_and_private_addresses_need_their_own() {
    let server = test_server().await;
    let url = format!("http://127.0.0.1:{}/ok", server.addr.port());
    let host = format!("http://127.0.0.1:{}", server.addr.port());

    let (reg, _) = misbehaving("", limits());
    let out = notify_mode(&reg, serde_json::json!({"mode": "http", "url": url})).await;
    let Ok(Err(failure)) = &out.result else {
        panic!("expected a plugin error, got {:?}", out.result)
    };
    assert!(failure.to_string().to_lowercase().contains("denied"), "{failure}");
    assert!(
        out.logs.iter().any(|(_, l)| l.contains("not granted")),
        "{:?}",
        out.logs
    );

    let (reg, _) = misbehaving(&format!("[misbehave]\noutbound_hosts = [\"{host}\"]\n"), limits());
    let out = notify_mode(&reg, serde_json::json!({"mode": "http", "url": url})).await;
    assert!(
        matches!(out.result, Ok(Err(_))),
        "loopback without a private-network grant: {:?}",
        out.result
    );
    assert!(
        out.logs.iter().any(|(_, l)| l.contains("private address")),
        "{:?}",
        out.logs
    );

    let granted = format!("[misbehave]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n");
    let (reg, _) = misbehaving(&granted, limits());
    let out = notify_mode(&reg, serde_json::json!({"mode": "http", "url": url})).await;
    assert_eq!(out.result, Ok(Ok(())), "{:?}", out.logs);
    let other = format!("http://localhost:{}/ok", server.addr.port());
    let out = notify_mode(&reg, serde_json::json!({"mode": "http", "url": other})).await;
    assert!(
        matches!(out.result, Ok(Err(_))),
        "a different host name is not granted: {:?}",
        out.result
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_gets_an_answer_hits_the_wall_clock_limit() {
    let server = test_server().await;
    let host = format!("http://127.0.0.1:{}", server.addr.port());
    let granted = format!("[misbehave]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n");
    let (reg, metrics) = misbehaving(
        &granted,
        Limits {
            wall: Duration::from_secs(2),
            ..limits()
        },
    );
    let start = Instant::now();
    let out = notify_mode(&reg, serde_json::json!({"mode": "http", "url": format!("{host}/hang")})).await;
    assert_eq!(out.result, Err(CallError::WallTimeout(Duration::from_secs(2))));
    assert!(start.elapsed() < Duration::from_secs(4));
    assert!(metric(&metrics, "certctl_plugin_traps_total").contains("reason=\"timeout\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_requests_from_a_guest_all_succeed() {
    let server = test_server().await;
    let host = format!("http://127.0.0.1:{}", server.addr.port());
    let granted = format!("[misbehave]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n");
    let (reg, _) = misbehaving(
        &granted,
        Limits {
            cpu_ticks: 3000,
            wall: Duration::from_secs(120),
            ..limits()
        },
    );
    let out = notify_mode(
        &reg,
        serde_json::json!({"mode": "http-many", "url": format!("{host}/ok"), "count": 500}),
    )
    .await;
    assert_eq!(out.result, Ok(Ok(())), "{:?}", out.logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_for_an_unknown_contract_is_refused() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(vec![testing_dir()], Grants::default(), metrics, limits());
    let (loaded, refused) = reg.list();
    assert!(!loaded.iter().any(|p| p.name == "future-contract"));
    let reason = refused
        .iter()
        .find(|r| r.path.ends_with("future-contract.wasm"))
        .map(|r| r.error.clone())
        .expect("future-contract refused");
    assert!(reason.contains("9.9.0"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_reloads_it_and_a_call_in_flight_finishes() {
    let server = test_server().await;
    let host = format!("http://127.0.0.1:{}", server.addr.port());
    let dir = tempfile::tempdir().expect("tempdir");
    for ext in ["wasm", "toml"] {
        std::fs::copy(
            testing_dir().join(format!("misbehave.{ext}")),
            dir.path().join(format!("misbehave.{ext}")),
        )
        .expect("copy");
    }
    let granted = format!("[misbehave]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(
        vec![dir.path().to_path_buf()],
        grants(&granted),
        metrics,
        Limits {
            wall: Duration::from_secs(2),
            ..limits()
        },
    );
    assert!(!reg.reload_if_changed(), "nothing changed yet");

    let in_flight = {
        let reg = reg.clone();
        let config = serde_json::json!({"mode": "http", "url": format!("{host}/hang")}).to_string();
        tokio::spawn(async move { reg.notify("misbehave", None, &config, &event()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Remove the plugin while the call runs: the registry drops it, the call is unaffected.
    std::fs::remove_file(dir.path().join("misbehave.wasm")).expect("remove");
    assert!(reg.reload_if_changed());
    assert!(reg.list().0.is_empty());
    let out = in_flight.await.expect("join");
    assert_eq!(out.result, Err(CallError::WallTimeout(Duration::from_secs(2))));
    assert!(matches!(
        notify_mode(&reg, serde_json::json!({"mode": "ok"})).await.result,
        Err(CallError::NotLoaded(_))
    ));
    // Put it back: loaded again without a restart.
    std::fs::copy(testing_dir().join("misbehave.wasm"), dir.path().join("misbehave.wasm")).expect("copy");
    assert!(reg.reload_if_changed());
    assert_eq!(
        notify_mode(&reg, serde_json::json!({"mode": "ok"})).await.result,
        Ok(Ok(()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_notifier_posts_signed_json() {
    let server = test_server().await;
    let host = format!("http://127.0.0.1:{}", server.addr.port());
    let granted = format!("[webhook]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(vec![shipped_dir()], grants(&granted), metrics, limits());
    let config = serde_json::json!({"url": format!("{host}/hook"), "secret": "shared-secret"}).to_string();
    let out = reg.notify("webhook", None, &config, &event()).await;
    assert_eq!(out.result, Ok(Ok(())), "{:?}", out.logs);
    let seen = server.seen.lock().expect("lock").clone();
    let (path, headers, body) = seen.last().expect("a request arrived");
    assert_eq!(path, "/hook");
    let json: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
    assert_eq!(json["subject"], "web");
    assert_eq!(json["dedup_key"], "web-7");
    assert_eq!(json["detail"]["days_left"], "7");
    let ts = headers["x-certctl-timestamp"].to_str().expect("timestamp");
    let sig = headers["x-certctl-signature"].to_str().expect("signature");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"shared-secret");
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(body);
    assert_eq!(
        sig,
        format!("sha256={}", hex::encode(ring::hmac::sign(&key, &signed).as_ref()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_httpreq_solver_speaks_legos_protocol() {
    let server = test_server().await;
    let host = format!("http://127.0.0.1:{}", server.addr.port());
    let granted = format!("[httpreq]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(vec![shipped_dir()], grants(&granted), metrics, limits());
    let config = serde_json::json!({"endpoint": format!("{host}/dns"), "username": "u", "password": "p"}).to_string();
    let record = DnsRecord {
        zone: "example.test".into(),
        fqdn: "_acme-challenge.example.test".into(),
        value: "token-value".into(),
        ttl: 60,
    };
    assert_eq!(reg.dns("httpreq", &config, &record, true).await.result, Ok(Ok(())));
    assert_eq!(reg.dns("httpreq", &config, &record, false).await.result, Ok(Ok(())));
    let seen = server.seen.lock().expect("lock").clone();
    let paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(paths, vec!["/dns/present", "/dns/cleanup"]);
    for (_, headers, body) in &seen {
        let json: serde_json::Value = serde_json::from_slice(body).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"fqdn": "_acme-challenge.example.test.", "value": "token-value"})
        );
        assert_eq!(headers["authorization"], "Basic dTpw");
    }
}

/// The server keeps answering while plugins burn CPU: two runaway calls at once on 2 cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stays_responsive_while_plugins_misbehave() {
    use tower::ServiceExt;
    let app = crate::common::TestApp::new(crate::common::Backend::Sqlite).await;
    let (reg, _) = misbehaving(
        "",
        Limits {
            cpu_ticks: 200,
            ..limits()
        },
    );
    let attacks: Vec<_> = (0..2)
        .map(|_| {
            let reg = reg.clone();
            tokio::spawn(async move { notify_mode(&reg, serde_json::json!({"mode": "loop"})).await })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let start = Instant::now();
        let req = axum::http::Request::builder()
            .uri("/health")
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = app.router.clone().oneshot(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        worst = worst.max(start.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for a in attacks {
        assert_eq!(a.await.expect("join").result, Err(CallError::CpuBudget));
    }
    assert!(
        worst < Duration::from_millis(100),
        "slowest /health during the attack: {worst:?}"
    );
}

/// A lego-httpreq-compatible DNS provider in memory: /present adds a TXT value, /cleanup
/// removes it; `records` is what its authoritative servers would answer.
async fn httpreq_provider() -> (SocketAddr, Arc<Mutex<std::collections::BTreeMap<String, Vec<String>>>>) {
    type Records = Arc<Mutex<std::collections::BTreeMap<String, Vec<String>>>>;
    let records: Records = Arc::default();
    let (p, c) = (records.clone(), records.clone());
    let body = |b: &Bytes| -> Option<(String, String)> {
        let v: serde_json::Value = serde_json::from_slice(b).ok()?;
        Some((
            v["fqdn"].as_str()?.trim_end_matches('.').to_string(),
            v["value"].as_str()?.to_string(),
        ))
    };
    let app = Router::new()
        .route(
            "/present",
            axum::routing::post(move |b: Bytes| {
                let p = p.clone();
                async move {
                    if let (Some((fqdn, value)), Ok(mut r)) = (body(&b), p.lock()) {
                        let values = r.entry(fqdn).or_default();
                        if !values.contains(&value) {
                            values.push(value);
                        }
                    }
                }
            }),
        )
        .route(
            "/cleanup",
            axum::routing::post(move |b: Bytes| {
                let c = c.clone();
                async move {
                    if let (Some((fqdn, value)), Ok(mut r)) = (body(&b), c.lock())
                        && let Some(values) = r.get_mut(&fqdn)
                    {
                        values.retain(|v| *v != value);
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpreq_passes_the_dns_solver_conformance_suite() {
    let (addr, records) = httpreq_provider().await;
    let host = format!("http://127.0.0.1:{}", addr.port());
    let granted = format!("[httpreq]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(vec![shipped_dir()], grants(&granted), metrics, limits());
    let config = serde_json::json!({"endpoint": host}).to_string();
    let checks = certctl::plugins::conformance::dns_solver(&reg, "httpreq", &config, "example.test", |fqdn| {
        let records = records.clone();
        async move {
            Ok(records
                .lock()
                .map_err(|e| e.to_string())?
                .get(&fqdn)
                .cloned()
                .unwrap_or_default())
        }
    })
    .await;
    assert_eq!(checks.len(), 7);
    for c in &checks {
        assert!(c.passed, "{}: {}", c.rule, c.detail);
    }
}

/// The suite fails a solver that replaces the value set instead of appending: a provider that
/// swaps, reached through the same plugin, must be caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_catches_a_provider_that_swaps_values() {
    let (addr, records) = httpreq_provider().await;
    let host = format!("http://127.0.0.1:{}", addr.port());
    let granted = format!("[httpreq]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(vec![shipped_dir()], grants(&granted), metrics, limits());
    let config = serde_json::json!({"endpoint": host}).to_string();
    // Reading back only the newest value makes the provider look like one that swaps.
    let checks = certctl::plugins::conformance::dns_solver(&reg, "httpreq", &config, "example.test", |fqdn| {
        let records = records.clone();
        async move {
            let all = records
                .lock()
                .map_err(|e| e.to_string())?
                .get(&fqdn)
                .cloned()
                .unwrap_or_default();
            Ok(all.last().cloned().into_iter().collect())
        }
    })
    .await;
    let failed: Vec<&str> = checks.iter().filter(|c| !c.passed).map(|c| c.rule).collect();
    assert!(
        failed.contains(&"a second value at the same name is added, not swapped in"),
        "{failed:?}"
    );
}

/// The plugin author's path end to end, on a running server: drop webhook.wasm + webhook.toml
/// into the plugin directory, see it in /api/v1/plugins without a restart, create a notifier
/// instance with a secret reference, run its test action, and find the signed event at the
/// receiver. A DNS solver instance's test action presents and cleans up its probe record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_dropped_into_a_running_server_is_usable_over_the_api() {
    let receiver = test_server().await;
    let recv = format!("http://127.0.0.1:{}", receiver.addr.port());
    let work = tempfile::tempdir().expect("tempdir");
    let plugin_dir = work.path().join("plugins");
    std::fs::create_dir(&plugin_dir).expect("plugin dir");
    let grants = work.path().join("grants.toml");
    std::fs::write(
        &grants,
        format!(
            "[webhook]\noutbound_hosts = [\"{recv}\"]\nallow_private_networks = true\n\
             [httpreq]\noutbound_hosts = [\"{recv}\"]\nallow_private_networks = true\n"
        ),
    )
    .expect("grants");
    let secret_file = work.path().join("webhook-secret");
    std::fs::write(&secret_file, "hook-secret\n").expect("secret");
    let env = std::collections::BTreeMap::from([
        (
            "CERTCTL_DATA_DIR".to_string(),
            work.path().join("data").display().to_string(),
        ),
        ("CERTCTL_PLUGIN_DIRS".to_string(), plugin_dir.display().to_string()),
        ("CERTCTL_PLUGIN_GRANTS".to_string(), grants.display().to_string()),
        (
            "CERTCTL_API_KEYS_NAMED".to_string(),
            "ops:ops-key-0123456789abcdef".to_string(),
        ),
    ]);
    let mut config = certctl::config::Config::resolve(&Default::default(), &env).expect("config");
    config.port = 0;
    let running = certctl::server::start(config).await.expect("start");
    let base = format!("https://localhost:{}/api/v1", running.addr.port());
    let ca = std::fs::read(work.path().join("data/tls/ca.crt")).expect("ca");
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
        .build()
        .expect("client");
    let key = "ops-key-0123456789abcdef";
    let get = |path: String| {
        let http = http.clone();
        async move {
            let resp = http.get(path).bearer_auth(key).send().await.expect("request");
            resp.json::<serde_json::Value>().await.expect("json")
        }
    };
    let list = get(format!("{base}/plugins")).await;
    assert_eq!(list["plugins"], serde_json::json!([]));

    copy_shipped(&plugin_dir, &["webhook", "httpreq"]);
    let mut names = Vec::new();
    for _ in 0..100 {
        let list = get(format!("{base}/plugins")).await;
        names = list["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .filter_map(|p| p["name"].as_str().map(String::from))
            .collect();
        if names.len() == 2 {
            assert_eq!(list["plugins"][1]["granted_hosts"], serde_json::json!([recv.clone()]));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(names, vec!["httpreq", "webhook"], "picked up without a restart");

    let post = |path: String, body: serde_json::Value| {
        let http = http.clone();
        async move {
            let resp = http
                .post(path)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("request");
            (
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    // A literal secret is refused; a reference is accepted and shown back as the reference.
    let (status, body) = post(
        format!("{base}/notifiers"),
        serde_json::json!({"name": "ops-hook", "plugin": "webhook", "config": {"url": format!("{recv}/hook"), "secret": "hook-secret"}}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("config.secret")),
        "{body}"
    );
    let (status, body) = post(
        format!("{base}/notifiers"),
        serde_json::json!({"name": "ops-hook", "plugin": "webhook", "config": {"url": "ftp://nowhere"}}),
    )
    .await;
    assert_eq!(status, 422, "the plugin's own validate-config refuses: {body}");
    let secret_ref = format!("file:{}", secret_file.display());
    let (status, created) = post(
        format!("{base}/notifiers"),
        serde_json::json!({"name": "ops-hook", "plugin": "webhook", "config": {"url": format!("{recv}/hook"), "secret": secret_ref}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["config"]["secret"], secret_ref.as_str());
    let id = created["id"].as_str().expect("id");
    let (status, report) = post(format!("{base}/notifiers/{id}/test"), serde_json::json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    let seen = receiver.seen.lock().expect("lock").clone();
    let (path, headers, body) = seen.last().expect("the receiver got the test event");
    assert_eq!(path, "/hook");
    assert!(
        headers.contains_key("x-certctl-signature"),
        "signed with the secret from the file"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(body).expect("json")["kind"],
        "test"
    );

    let (status, solver) = post(
        format!("{base}/dns-solvers"),
        serde_json::json!({"name": "legacy-scripts", "plugin": "httpreq", "config": {"endpoint": format!("{recv}/dns")}}),
    )
    .await;
    assert_eq!(status, 201, "{solver}");
    let sid = solver["id"].as_str().expect("id");
    let (status, report) = post(
        format!("{base}/dns-solvers/{sid}/test"),
        serde_json::json!({"zone": "example.test"}),
    )
    .await;
    assert_eq!((status, report["ok"].as_bool()), (200, Some(true)), "{report}");
    let paths: Vec<String> = receiver
        .seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(p, _, _)| p.clone())
        .collect();
    assert!(
        paths.ends_with(&["/dns/present".to_string(), "/dns/cleanup".to_string()]),
        "{paths:?}"
    );
    running.shutdown(Duration::from_secs(5)).await.expect("shutdown");
}

/// The host side of the issuer contract: `host-kv` persists per instance across fresh
/// instances, `host-keystore` signs with keys the plugin never sees, keys are private to their
/// instance, and kv limits hold. Both databases.
async fn issuer_host_services_are_scoped_to_the_instance(backend: crate::common::Backend) {
    use base64::Engine;
    use certctl::keystore::Keystore;
    use certctl::model::InstanceKind;
    use certctl::plugins::v0_1::issuer::{IssueRequest, Progress};
    use certctl::store::AuditEntry;

    let db = crate::common::TestDb::new(backend).await;
    let store = db.store().await;
    let keystore = Arc::new(Keystore::new(store.clone(), &certctl::config::EncryptionKey([5; 32])).expect("keystore"));
    let runtime = certctl::plugins::Runtime::new(certctl::plugins::RuntimeSettings {
        limits: limits(),
        pooling: certctl::plugins::Pooling::Auto,
        cache_dir: None,
        ca_bundle: None,
    })
    .expect("runtime");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = Registry::new(runtime, vec![testing_dir()], Grants::default(), metrics).with_services(Services {
        store: store.clone(),
        keystore: keystore.clone(),
        mailer: None,
        challenges: None,
    });
    reg.reload();
    let instance = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .create_instance(
                    InstanceKind::Issuer,
                    name,
                    "kv-issuer",
                    &serde_json::json!({}),
                    AuditEntry::new("t", "t", "issuer", ""),
                )
                .await
                .expect("instance")
                .id
        }
    };
    let (a, b) = (instance("a").await, instance("b").await);
    let request = IssueRequest {
        csr: b"not really a CSR".to_vec(),
        names: vec!["example.test".into()],
        validity_days: None,
        profile: None,
        replaces: None,
    };
    let normal = serde_json::json!({"mode": "normal"}).to_string();
    let out = reg.issuer_begin("kv-issuer", &a, &normal, &request).await;
    let Ok(Ok(IssuerAnswer::Progress(Progress::Pending(pending)))) = out.result else {
        panic!("begin: {:?} {:?}", out.result, out.logs)
    };
    let key_id = String::from_utf8(pending.state.clone()).expect("key id");
    assert_eq!(
        store.kv_get(&a, "key").await.expect("kv"),
        Some(key_id.as_bytes().to_vec()),
        "kv is in the database"
    );
    assert_eq!(
        keystore.info(&key_id).await.expect("key").owner,
        format!("instance:{a}")
    );

    let out = reg.issuer_resume("kv-issuer", &a, &normal, &pending.state).await;
    let Ok(Ok(IssuerAnswer::Progress(Progress::Issued(chain)))) = out.result else {
        panic!("resume: {:?} {:?}", out.result, out.logs)
    };
    let chain: serde_json::Value = serde_json::from_str(&chain).expect("json");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("str"))
            .expect("b64")
    };
    let spki = b64(&chain["public_key"]);
    let (_, info) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(&spki).expect("SPKI");
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        info.subject_public_key.data.to_vec(),
    )
    .verify(b"not really a CSR", &b64(&chain["signature"]))
    .expect("the host signed the CSR bytes with the instance's key");
    assert_eq!(chain["signature_kept_after_delete"], false);

    let foreign = serde_json::json!({"mode": "foreign-key", "key_id": key_id}).to_string();
    let out = reg.issuer_begin("kv-issuer", &b, &foreign, &request).await;
    assert!(
        matches!(out.result, Ok(Err(PluginFailure::NotFound(_)))),
        "another instance's key: {:?}",
        out.result
    );

    let oversize = serde_json::json!({"mode": "oversize"}).to_string();
    let out = reg.issuer_begin("kv-issuer", &a, &oversize, &request).await;
    let Ok(Err(failure)) = &out.result else {
        panic!("oversize: {:?}", out.result)
    };
    assert!(failure.to_string().contains("65536"), "{failure}");
    assert_eq!(store.kv_get(&a, "big").await.expect("kv"), None);
}

crate::on_both_backends!(issuer_host_services_are_scoped_to_the_instance);

/// A Kubernetes ConfigMap mount: files are symlinks through `..data`, and an update swaps that
/// one symlink to a new timestamped directory. The poll must see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let mount = tempfile::tempdir().expect("tempdir");
    let m = mount.path();
    let (v1, v2) = (m.join("..2026_11_28_v1"), m.join("..2026_11_28_v2"));
    std::fs::create_dir(&v1).expect("v1");
    std::fs::create_dir(&v2).expect("v2");
    for ext in ["wasm", "toml"] {
        std::fs::copy(
            testing_dir().join(format!("misbehave.{ext}")),
            v1.join(format!("misbehave.{ext}")),
        )
        .expect("copy");
        std::fs::copy(
            shipped_dir().join(format!("webhook.{ext}")),
            v2.join(format!("webhook.{ext}")),
        )
        .expect("copy");
    }
    symlink("..2026_11_28_v1", m.join("..data")).expect("..data");
    for name in ["misbehave", "webhook"] {
        for ext in ["wasm", "toml"] {
            symlink(format!("..data/{name}.{ext}"), m.join(format!("{name}.{ext}"))).expect("link");
        }
    }
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let reg = registry(vec![m.to_path_buf()], Grants::default(), metrics, limits());
    let names = |reg: &Registry| reg.list().0.into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(
        names(&reg),
        vec!["misbehave"],
        "webhook's links dangle in v1: {:?}",
        reg.list().1
    );

    // The kubelet's atomic swap: a new symlink renamed over ..data.
    symlink("..2026_11_28_v2", m.join("..data_tmp")).expect("tmp link");
    std::fs::rename(m.join("..data_tmp"), m.join("..data")).expect("swap");
    assert!(reg.reload_if_changed(), "the swap is noticed");
    assert_eq!(names(&reg), vec!["webhook"]);
}
