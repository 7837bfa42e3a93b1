//! Plugin runtime benchmark: compile (cold and from the artifact cache), fresh instance + call
//! of a trivial op, call on a reused instance, and the same op as native Rust.
//!
//! Usage (release): `scripts/bench-plugins.sh`, or
//! `cargo run --release --example plugin-bench -- <dir with misbehave.wasm> [iterations]`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use certctl::plugins::grants::Grants;
use certctl::plugins::sandbox::Limits;
use certctl::plugins::v0_1::{Event, Severity};
use certctl::plugins::{Pooling, Runtime, RuntimeSettings};

/// wasmtime's error type into anyhow's.
fn w<T>(r: wasmtime::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{e:#}"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn runtime(pooling: Pooling, cache: Option<PathBuf>) -> anyhow::Result<Runtime> {
    Runtime::new(RuntimeSettings {
        limits: Limits::default(),
        pooling,
        cache_dir: cache,
        ca_bundle: None,
    })
}

fn event() -> Event {
    Event {
        kind: "test".into(),
        severity: Severity::Info,
        summary: "bench".into(),
        subject: "bench".into(),
        dedup_key: "bench".into(),
        occurred_at: 0,
        detail: Vec::new(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: plugin-bench <plugin dir> [iterations]"))?,
    );
    let iterations: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let wasm = dir.join("misbehave.wasm");
    let bytes = std::fs::read(&wasm)?;
    let cache = tempfile::tempdir()?;

    // Compile: cold, then from the cache (a fresh runtime each time, like a restart).
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for i in 0..5 {
        let rt = runtime(Pooling::Off, None)?;
        let t = Instant::now();
        rt.compile(&bytes, &format!("cold{i}"))?;
        cold.push(t.elapsed());
    }
    let rt = runtime(Pooling::Off, Some(cache.path().to_path_buf()))?;
    rt.compile(&bytes, "warm")?;
    for _ in 0..20 {
        let rt = runtime(Pooling::Off, Some(cache.path().to_path_buf()))?;
        let t = Instant::now();
        rt.compile(&bytes, "warm")?;
        cached.push(t.elapsed());
    }
    println!("misbehave.wasm: {} bytes", bytes.len());
    println!("compile cold:        median {:?}", median(cold));
    println!("compile from cache:  median {:?}", median(cached));

    let config = serde_json::json!({"mode": "ok"}).to_string();
    let ev = event();
    for pooling in [Pooling::Off, Pooling::On] {
        let rt = match runtime(pooling, None) {
            Ok(rt) => rt,
            Err(e) => {
                println!("pooling {pooling:?}: unavailable ({e})");
                continue;
            }
        };
        let plugin = rt.load(&wasm, &Grants::default()).map_err(|e| anyhow::anyhow!(e))?;
        // Fresh store + instance + call, as the server does for every call.
        let mut fresh = Vec::new();
        for _ in 0..iterations {
            let t = Instant::now();
            let out = rt
                .call(&plugin, "notify", None, async |store, instance| {
                    let guest = plugin.notifier_indices()?.load(&mut *store, instance)?;
                    guest.call_notify(&mut *store, &config, &ev).await
                })
                .await;
            fresh.push(t.elapsed());
            if !matches!(out.result, Ok(Ok(()))) {
                anyhow::bail!("call failed: {:?}", out.result);
            }
        }
        // One instance, many calls.
        let (mut store, _, _) = rt.new_store(&plugin);
        let instance = w(plugin.instantiate(&mut store).await)?;
        let guest = w(w(plugin.notifier_indices())?.load(&mut store, &instance))?;
        let mut reused = Vec::new();
        for _ in 0..iterations {
            let t = Instant::now();
            let r = w(guest.call_notify(&mut store, &config, &ev).await)?;
            reused.push(t.elapsed());
            if r.is_err() {
                anyhow::bail!("call failed: {r:?}");
            }
        }
        println!(
            "pooling {:?} (active: {}): fresh instance + call median {:?}; reused instance call median {:?}",
            pooling,
            rt.pooling_active,
            median(fresh),
            median(reused)
        );
    }

    // The same op in native Rust: parse the config and check the mode.
    let mut native = Vec::new();
    for _ in 0..iterations {
        let t = Instant::now();
        let v: serde_json::Value = serde_json::from_str(std::hint::black_box(&config))?;
        std::hint::black_box(v["mode"] == "ok");
        native.push(t.elapsed());
    }
    println!("native equivalent:   median {:?}", median(native));
    Ok(())
}
