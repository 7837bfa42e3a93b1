//! Lifecycle benchmarks (release), run by scripts/bench-lifecycle.sh:
//!
//! - `issue N CONCURRENCY`: local-CA issuance through the REST API of a real server (HTTPS,
//!   embedded SQLite): N certificates declared, then N CSRs posted by CONCURRENCY clients and
//!   each chain fetched once its job completed. Prints certificates per second.
//! - `cfssl URL N CONCURRENCY`: the same CSRs signed by `cfssl serve` at URL, for comparison.
//! - `scan N DATABASE_URL`: the renewal scan over N declared, issued certificates (none due, then
//!   1% due), straight on the store.
//! - `walk N`: listing N certificates through the paginated API (100 per page) over HTTPS.
//! - `agents N SECONDS`: N agents (tasks, each with its own HTTPS connection and credential)
//!   register, then each sends a heartbeat and polls its work every second for SECONDS.
//!   Prints requests per second and latency percentiles.
//! - `overview N RUNS`: the dashboard's overview over N issued certificates (expiries spread
//!   over the next four months, a few expired), in a headless Chromium through chromedriver:
//!   a full page load (HTML, script, the overview call, drawing) and an in-app navigation to
//!   the overview, RUNS times each. Times are from the page's own clock, to the moment it marks
//!   itself ready (`performance.mark("certctl:ready:overview")`).

// The dashboard tests' WebDriver client; this benchmark uses part of it.
#[allow(dead_code)]
#[path = "../tests/all/browser.rs"]
mod browser;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use certctl::config::{Config, FlagValues};
use certctl::model::Timestamp;
use serde_json::{Value, json};

const KEY: &str = "bench-admin-key-0123456789";
const BOOTSTRAP: &str = "bench-bootstrap-token-0123456789abcdef";

struct Server {
    running: certctl::server::Running,
    client: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

async fn server(plugins: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let env: BTreeMap<String, String> = [
        ("CERTCTL_DATA_DIR", dir.path().display().to_string()),
        ("CERTCTL_SERVER_PORT", port.to_string()),
        ("CERTCTL_API_KEYS_NAMED", format!("bench:{KEY}:admin")),
        ("CERTCTL_PLUGIN_DIRS", plugins.to_string()),
        ("CERTCTL_LOG_LEVEL", "warn".to_string()),
        ("CERTCTL_DATABASE_MAX_CONNS", "16".to_string()),
        ("CERTCTL_SCHEDULER_JOB_INTERVAL", "1s".to_string()),
        ("CERTCTL_AGENT_BOOTSTRAP_TOKEN", BOOTSTRAP.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = Config::resolve(&FlagValues::default(), &env)?;
    let running = certctl::server::start(config).await?;
    let ca = std::fs::read(dir.path().join("tls/ca.crt"))?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .pool_max_idle_per_host(64)
        .build()?;
    Ok(Server {
        base: format!("https://127.0.0.1:{}", running.addr.port()),
        running,
        client,
        _dir: dir,
    })
}

impl Server {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(anyhow!("{path}: {status} {value}"));
        }
        Ok(value)
    }
}

fn csrs(n: usize) -> anyhow::Result<Vec<(String, String)>> {
    (0..n)
        .map(|i| {
            let name = format!("c{i}.bench.example");
            let key = rcgen::KeyPair::generate()?;
            let mut params = rcgen::CertificateParams::new(vec![name.clone()])?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(rcgen::DnType::CommonName, name.clone());
            let csr = params.serialize_request(&key)?.pem()?;
            Ok((name, csr))
        })
        .collect()
}

/// Runs `work(i)` for i in 0..n on `concurrency` tasks.
async fn fan_out<F, Fut>(n: usize, concurrency: usize, work: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let work = Arc::new(work);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, work) = (next.clone(), work.clone());
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                work(i).await?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// N agents polling one server: each registers, then heartbeats and reads its work once a
/// second (±10 %, as the agent does) over its own connection.
async fn agents(plugins: &str, n: usize, seconds: u64) -> anyhow::Result<()> {
    let s = Arc::new(server(plugins).await?);
    let ca = std::fs::read(s._dir.path().join("tls/ca.crt"))?;
    let mut set = tokio::task::JoinSet::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    for i in 0..n {
        let (base, ca) = (s.base.clone(), ca.clone());
        set.spawn(async move {
            let client = reqwest::Client::builder()
                .use_rustls_tls()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
                .build()?;
            let reg: Value = client
                .post(format!("{base}/api/v1/agents"))
                .bearer_auth(BOOTSTRAP)
                .json(&json!({"name": format!("bench-agent-{i}")}))
                .send()
                .await?
                .json()
                .await?;
            let id = reg["agent"]["id"].as_str().context("agent id")?.to_string();
            let credential = reg["credential"].as_str().context("credential")?.to_string();
            let mut latencies = Vec::new();
            // Spread the first round over the first second, as agents started together do.
            tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 1000)).await;
            while Instant::now() < deadline {
                let round = Instant::now();
                for (method, path) in [
                    (reqwest::Method::POST, format!("{base}/api/v1/agents/{id}/heartbeat")),
                    (reqwest::Method::GET, format!("{base}/api/v1/agents/{id}/work")),
                ] {
                    let t = Instant::now();
                    let mut req = client.request(method.clone(), &path).bearer_auth(&credential);
                    if method == reqwest::Method::POST {
                        req = req.json(&json!({"hostname": format!("node-{i}"), "os": "linux"}));
                    }
                    let status = req.send().await?.status();
                    if !status.is_success() {
                        return Err(anyhow!("{path}: {status}"));
                    }
                    latencies.push(t.elapsed());
                }
                let jitter = Duration::from_millis(900 + rand::random::<u64>() % 200);
                tokio::time::sleep(jitter.saturating_sub(round.elapsed())).await;
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{n} agents, heartbeat + work every second for {seconds} s: {} requests, {:.0} requests/s, \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        all.len(),
        all.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    let listed = s.call(reqwest::Method::GET, "/api/v1/agents", None).await?;
    let online = listed
        .as_array()
        .map_or(0, |a| a.iter().filter(|x| x["online"] == true).count());
    println!("agents listed online by the server: {online}");
    Ok(())
}

async fn issue(plugins: &str, n: usize, concurrency: usize) -> anyhow::Result<()> {
    let s = Arc::new(server(plugins).await?);
    let issuer = s
        .call(
            reqwest::Method::POST,
            "/api/v1/issuers",
            Some(json!({"name": "bench", "plugin": "local-ca"})),
        )
        .await?;
    let issuer_id = issuer["id"].as_str().context("issuer id")?.to_string();
    let requests = Arc::new(csrs(n + 1)?);
    let mut ids = Vec::with_capacity(n + 1);
    for (i, (name, _)) in requests.iter().enumerate() {
        let c = s
            .call(
                reqwest::Method::POST,
                "/api/v1/certificates",
                Some(json!({"name": format!("c{i}"), "common_name": name, "issuer_id": issuer_id})),
            )
            .await?;
        ids.push(c["id"].as_str().context("id")?.to_string());
    }
    let ids = Arc::new(ids);
    // Warm-up: the first issuance creates the CA.
    issue_one(&s, &ids[n], &requests[n].1).await?;

    // Closed loop: each client posts a CSR, follows its job, downloads the chain, repeats.
    let half = n / 2;
    let start = Instant::now();
    let (s2, ids2, req2) = (s.clone(), ids.clone(), requests.clone());
    fan_out(half, concurrency, move |i| {
        let (s, ids, req) = (s2.clone(), ids2.clone(), req2.clone());
        async move { issue_one(&s, &ids[i], &req[i].1).await }
    })
    .await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "certctl REST issuance, closed loop (post, follow the job, download): {half} certificates, \
         concurrency {concurrency}: {secs:.2} s, {:.0} certificates/s",
        half as f64 / secs
    );

    // Open loop: all CSRs in, then all chains out; measures the server, not the clients' polls.
    let rest = n - half;
    let start = Instant::now();
    let (s2, ids2, req2) = (s.clone(), ids.clone(), requests.clone());
    fan_out(rest, concurrency, move |i| {
        let (s, ids, req) = (s2.clone(), ids2.clone(), req2.clone());
        async move {
            s.call(
                reqwest::Method::POST,
                &format!("/api/v1/certificates/{}/csr", ids[half + i]),
                Some(json!({"csr": req[half + i].1})),
            )
            .await
            .map(|_| ())
        }
    })
    .await?;
    let accepted = start.elapsed().as_secs_f64();
    loop {
        let pending = s
            .call(reqwest::Method::GET, "/api/v1/jobs?status=pending&limit=1", None)
            .await?;
        let running = s
            .call(reqwest::Method::GET, "/api/v1/jobs?status=running&limit=1", None)
            .await?;
        let empty = |v: &Value| v["items"].as_array().is_none_or(Vec::is_empty);
        if empty(&pending) && empty(&running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (s2, ids2) = (s.clone(), ids.clone());
    fan_out(rest, concurrency, move |i| {
        let (s, ids) = (s2.clone(), ids2.clone());
        async move {
            let chain = s
                .client
                .get(format!(
                    "{}/api/v1/certificates/{}/download?part=fullchain",
                    s.base,
                    ids[half + i]
                ))
                .bearer_auth(KEY)
                .send()
                .await?
                .text()
                .await?;
            if chain.contains("BEGIN CERTIFICATE") {
                Ok(())
            } else {
                Err(anyhow!("no chain for {}", ids[half + i]))
            }
        }
    })
    .await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "certctl REST issuance, open loop (all CSRs in: {accepted:.2} s, then every chain out): {rest} \
         certificates, concurrency {concurrency}: {secs:.2} s, {:.0} certificates/s",
        rest as f64 / secs
    );
    Ok(())
}

/// CSR in, chain out: POST the CSR (202 + job), wait for the job, download the full chain.
async fn issue_one(s: &Server, id: &str, csr: &str) -> anyhow::Result<()> {
    let job = s
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/certificates/{id}/csr"),
            Some(json!({"csr": csr})),
        )
        .await?;
    let job_id = job["id"].as_str().context("job id")?;
    let mut wait = Duration::from_millis(2);
    loop {
        let j = s
            .call(reqwest::Method::GET, &format!("/api/v1/jobs/{job_id}"), None)
            .await?;
        match j["state"].as_str() {
            Some("completed") => break,
            Some("failed" | "cancelled") => return Err(anyhow!("job {job_id}: {j}")),
            _ => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(50));
            }
        }
    }
    let chain = s
        .client
        .get(format!("{}/api/v1/certificates/{id}/download?part=fullchain", s.base))
        .bearer_auth(KEY)
        .send()
        .await?
        .text()
        .await?;
    if !chain.contains("BEGIN CERTIFICATE") {
        return Err(anyhow!("no chain for {id}"));
    }
    Ok(())
}

async fn cfssl(url: &str, n: usize, concurrency: usize) -> anyhow::Result<()> {
    let requests = Arc::new(csrs(n)?);
    let client = reqwest::Client::new();
    let url = Arc::new(format!("{url}/api/v1/cfssl/sign"));
    let start = Instant::now();
    fan_out(n, concurrency, move |i| {
        let (client, url, req) = (client.clone(), url.clone(), requests.clone());
        async move {
            let resp: Value = client
                .post(url.as_str())
                .json(&json!({"certificate_request": req[i].1}))
                .send()
                .await?
                .json()
                .await?;
            if resp["success"] != true {
                return Err(anyhow!("cfssl: {resp}"));
            }
            Ok(())
        }
    })
    .await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "cfssl serve signing: {n} CSRs, concurrency {concurrency}: {secs:.2} s, {:.0} certificates/s",
        n as f64 / secs
    );
    Ok(())
}

async fn scan(n: usize, url: &str) -> anyhow::Result<()> {
    use certctl::store::Store;
    let store = Store::connect(url, 8).await?;
    store.migrate().await?;
    let dialect = store.dialect().as_str();
    let now = Timestamp::now();
    seed(url, n, now).await?;
    for (label, at) in [
        ("none due", now),
        ("1% due", Timestamp(now.0 + 61 * 86_400 + (n as i64 / 100))),
    ] {
        let start = Instant::now();
        let due = store.due_renewals(at, 1_000_000).await?;
        let elapsed = start.elapsed();
        println!(
            "renewal scan on {dialect}: {n} certificates, {label}: {} found in {:.1} ms",
            due.len(),
            elapsed.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

/// N issued certificates; certificate i renews at now + 61 days + i seconds.
async fn seed(url: &str, n: usize, now: Timestamp) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await?;
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut sql = String::from(
            "INSERT INTO certificates (id, name, common_name, sans, key_type, key_generation, state, renewal, \
             labels, not_before, not_after, renew_at, created_at, updated_at) VALUES ",
        );
        for (k, i) in chunk.iter().enumerate() {
            if k > 0 {
                sql.push(',');
            }
            let renew_at = now.0 + 61 * 86_400 + *i as i64;
            sql.push_str(&format!(
                "('{id}', 's{i}', 's{i}.bench.example', '[\"s{i}.bench.example\"]', 'ecdsa-p256', 'server', \
                 'issued', '{{}}', '{{}}', {nb}, {na}, {renew_at}, {nb}, {nb})",
                id = uuid::Uuid::now_v7(),
                nb = now.0,
                na = now.0 + 90 * 86_400,
            ));
        }
        sqlx::query(&sql).execute(&pool).await?;
    }
    println!("seeded {n} certificates in {:.1} s", start.elapsed().as_secs_f64());
    pool.close().await;
    Ok(())
}

async fn walk(plugins: &str, n: usize) -> anyhow::Result<()> {
    let s = server(plugins).await?;
    for i in 0..n {
        s.call(
            reqwest::Method::POST,
            "/api/v1/certificates",
            Some(json!({"name": format!("w{i}"), "common_name": format!("w{i}.bench.example")})),
        )
        .await?;
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut cursor: Option<String> = None;
        let mut seen = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/certificates?limit=100&cursor={c}"),
                None => "/api/v1/certificates?limit=100".to_string(),
            };
            let page = s.call(reqwest::Method::GET, &path, None).await?;
            seen += page["items"].as_array().map_or(0, Vec::len);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        if seen != n {
            return Err(anyhow!("walked {seen} of {n}"));
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "inventory walk: {n} certificates, 100 per page, over HTTPS: best of 5 {:.1} ms",
        best * 1000.0
    );
    s.running.shutdown(Duration::from_secs(1)).await
}

async fn overview(n: usize, runs: usize) -> anyhow::Result<()> {
    let s = server("no-plugins").await?;
    let db = format!("sqlite://{}", s._dir.path().join("certctl.db").display());
    let now = Timestamp::now();
    seed(&db, n, now).await?;
    {
        // Spread expiries: -5..115 days from now; 2 % revoked.
        let pool = sqlx::AnyPool::connect(&db).await?;
        sqlx::query("UPDATE certificates SET not_after = $1 + ((abs(random()) % 120) - 5) * 86400")
            .bind(now.0)
            .execute(&pool)
            .await?;
        sqlx::query("UPDATE certificates SET state = 'revoked' WHERE abs(random()) % 50 = 0")
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    let counts = s.call(reqwest::Method::GET, "/api/v1/overview", None).await?;
    let total = counts["certificates"]["total"].as_u64().unwrap_or(0);
    if total != n as u64 {
        return Err(anyhow!("the overview counts {total} certificates, not {n}"));
    }
    let b = browser::Browser::start(1280, 900).await;
    b.goto(&format!("{}/", s.base)).await;
    b.fill("#api-key", KEY).await;
    b.click("#signin-submit").await;
    b.ready("overview").await;
    let shown = b.text("[data-count=\"total\"]").await;
    if shown != n.to_string() {
        return Err(anyhow!("the page shows {shown} certificates, not {n}"));
    }
    let ready_at = "const e = performance.getEntriesByName('certctl:ready:overview'); \
                    return e.length ? e[e.length - 1].startTime : null;";
    let mut loads = Vec::new();
    let mut navigations = Vec::new();
    for _ in 0..runs {
        // A full load (a new document: leave the page first, or the hash change would not
        // reload it): navigation start to the overview drawn.
        b.goto("about:blank").await;
        b.goto(&format!("{}/#/overview", s.base)).await;
        b.ready("overview").await;
        loads.push(b.js(ready_at, json!([])).await.as_f64().context("no ready mark")?);
        // In the app: from the click to the overview drawn again.
        b.click("a[data-nav=\"certificates\"]").await;
        b.ready("certificates").await;
        let clicked = b
            .js(
                "performance.clearMarks('certctl:ready:overview'); const t = performance.now(); \
                 document.querySelector('a[data-nav=\"overview\"]').click(); return t;",
                json!([]),
            )
            .await
            .as_f64()
            .context("clock")?;
        b.ready("overview").await;
        navigations.push(b.js(ready_at, json!([])).await.as_f64().context("no ready mark")? - clicked);
    }
    let show = |label: &str, v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        println!(
            "overview with {n} certificates, {label}: median {:.0} ms, best {:.0} ms, worst {:.0} ms ({} runs)",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1],
            v.len()
        );
    };
    show("full page load", &mut loads);
    show("in-app navigation", &mut navigations);
    drop(b);
    s.running.shutdown(Duration::from_secs(1)).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> anyhow::Result<usize> {
        args.get(i).context("missing argument")?.parse().context("not a number")
    };
    let plugins = std::env::var("CERTCTL_BENCH_PLUGINS").unwrap_or_else(|_| "target/plugins".into());
    match args.first().map(String::as_str) {
        Some("issue") => issue(&plugins, num(1)?, num(2)?).await,
        Some("agents") => agents(&plugins, num(1)?, num(2)? as u64).await,
        Some("cfssl") => cfssl(args.get(1).context("cfssl URL")?, num(2)?, num(3)?).await,
        Some("scan") => scan(num(1)?, args.get(2).context("database URL")?).await,
        Some("walk") => walk(&plugins, num(1)?).await,
        Some("overview") => overview(num(1)?, num(2)?).await,
        _ => Err(anyhow!(
            "usage: lifecycle-bench issue N C | cfssl URL N C | scan N DATABASE_URL | walk N | agents N SECONDS | overview N RUNS"
        )),
    }
}
