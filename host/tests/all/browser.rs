//! A small W3C WebDriver client for the dashboard tests and benchmark: chromedriver on loopback
//! driving a headless Debian Chromium (installed by scripts/test.sh). Only what they use.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// The element reference key of the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    driver: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; killing chromedriver alone would orphan it.
        // (Drop cannot await: a plain blocking HTTP/1.1 request.)
        use std::io::{Read, Write};
        if let Some((host, path)) = self.base.strip_prefix("http://").and_then(|r| r.split_once('/'))
            && let Ok(mut s) = std::net::TcpStream::connect(host)
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Browser {
    /// A fresh browser (own profile, no network but loopback in practice: nothing else is
    /// visited), `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver, installed by scripts/test.sh)");
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{root}/status")).send().await
                && r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.path().display()),
                         format!("--window-size={width},{height}")]
            }
        }}});
        let mut session = Value::Null;
        for _ in 0..3 {
            session = http
                .post(format!("{root}/session"))
                .json(&caps)
                .send()
                .await
                .expect("new session")
                .json()
                .await
                .expect("session json");
            if session["value"]["sessionId"].is_string() {
                break;
            }
        }
        let id = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {session}"));
        Browser {
            http,
            base: format!("{root}/session/{id}"),
            driver,
            _profile: profile,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        req = req.json(&body.unwrap_or_else(|| json!({})));
        let v: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver json");
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    /// Lays pages out as a phone `width` CSS pixels wide would (Chromium's device emulation:
    /// a headless window cannot be made narrower than 500 px).
    pub async fn emulate_phone(&self, width: u32, height: u32) {
        let v = self
            .post(
                "/goog/cdp/execute",
                json!({"cmd": "Emulation.setDeviceMetricsOverride",
                       "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true}}),
            )
            .await;
        assert!(v.get("error").is_none(), "device emulation: {v}");
    }

    pub async fn goto(&self, url: &str) {
        let v = self.post("/url", json!({"url": url})).await;
        assert!(v.is_null() || v.get("error").is_none(), "navigate {url}: {v}");
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        let v = self
            .post("/execute/sync", json!({"script": script, "args": args}))
            .await;
        if let Some(e) = v.get("error") {
            panic!("script failed: {e}: {v}\n{script}");
        }
        v
    }

    /// The element matching `css`, if there is one now.
    pub async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    pub async fn count(&self, css: &str) -> usize {
        let v = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        v.as_array().map_or(0, Vec::len)
    }

    /// Waits (up to `secs`) for `css` to match; panics naming the page and what it shows.
    pub async fn wait(&self, css: &str, secs: u64) -> String {
        for _ in 0..secs * 10 {
            if let Some(e) = self.find(css).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = self
            .js("return document.body ? document.body.innerText : ''", json!([]))
            .await;
        panic!(
            "{css} did not appear within {secs}s; the page shows:\n{}",
            text.as_str().unwrap_or("")
        );
    }

    /// Waits until the page says it has loaded `page` (`body[data-ready]`).
    pub async fn ready(&self, page: &str) {
        self.wait(&format!("body[data-ready=\"{page}\"]"), 30).await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.wait(css, 10).await;
        let v = self.post(&format!("/element/{e}/click"), json!({})).await;
        assert!(v.is_null() || v.get("error").is_none(), "click {css}: {v}");
    }

    /// Clears the field and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.wait(css, 10).await;
        self.post(&format!("/element/{e}/clear"), json!({})).await;
        let v = self.post(&format!("/element/{e}/value"), json!({"text": text})).await;
        assert!(v.is_null() || v.get("error").is_none(), "type into {css}: {v}");
    }

    /// Chooses the `<option>` whose value (or, failing that, text) is `value`.
    pub async fn select(&self, css: &str, value: &str) {
        self.wait(&format!("{css} option"), 10).await;
        let ok = self
            .js(
                "const s = document.querySelector(arguments[0]);
                 const o = [...s.options].find(o => o.value === arguments[1] || o.textContent.trim() === arguments[1]);
                 if (!o) return false;
                 s.value = o.value;
                 s.dispatchEvent(new Event('input', {bubbles: true}));
                 s.dispatchEvent(new Event('change', {bubbles: true}));
                 return true;",
                json!([css, value]),
            )
            .await;
        assert_eq!(ok, true, "{css} has no option {value:?}");
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.wait(css, 10).await;
        self.cmd(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// A PNG of the window, written to `path`.
    pub async fn screenshot_to(&self, path: &Path) {
        use base64::Engine;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot data"))
            .expect("png");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Browser console entries since the last call: `(level, message)`.
    pub async fn console(&self) -> Vec<(String, String)> {
        let v = self.post("/se/log", json!({"type": "browser"})).await;
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}
