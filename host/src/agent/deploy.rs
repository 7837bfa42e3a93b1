//! Deploying a certificate on the node: files written atomically (temp + fsync + rename, the
//! previous content kept), a check command, a reload command, and a verification that the
//! service now presents the new certificate. Anything failing after the files changed rolls
//! every file back and reloads again. Unchanged files (same SHA-256) mean nothing to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a certificate goes, as declared on the certificate (`deploy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub files: Vec<FileTarget>,
    /// argv, no shell: e.g. `["nginx", "-t"]`. Runs after the files are in place.
    #[serde(default)]
    pub check_command: Option<Vec<String>>,
    /// argv: e.g. `["nginx", "-s", "reload"]`.
    #[serde(default)]
    pub reload_command: Option<Vec<String>>,
    #[serde(default)]
    pub verify: Option<Verify>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTarget {
    /// Absolute path.
    pub path: String,
    pub content: Content,
    /// Octal permission bits; default 0644, 0600 for `key` and `combined`.
    #[serde(default)]
    pub mode: Option<u32>,
    /// Numeric uid / gid (names differ between nodes; ids are what the files carry).
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    Cert,
    Chain,
    Fullchain,
    Key,
    /// fullchain then key, in one file (HAProxy `crt`).
    Combined,
}

/// Connect to `address` and compare the served leaf with the new certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// `host:port`.
    pub address: String,
    /// SNI to send; default: the host part of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// How long to wait for the new certificate to be served (default 10 s).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

impl Target {
    /// Checks a target given as JSON; `Err((field, message))`, field relative to the target.
    pub fn check_json(value: &serde_json::Value) -> Result<Target, (String, String)> {
        let target: Target = serde_path_to_error::deserialize(value.clone())
            .map_err(|e| (e.path().to_string(), e.inner().to_string()))?;
        target.validate()?;
        Ok(target)
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.files.is_empty() {
            return Err(("files".into(), "at least one file".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in self.files.iter().enumerate() {
            let field = |k: &str| format!("files.{i}.{k}");
            if !f.path.starts_with('/') || f.path.contains("/../") || f.path.ends_with('/') {
                return Err((field("path"), format!("{:?} is not an absolute file path", f.path)));
            }
            if !seen.insert(f.path.clone()) {
                return Err((field("path"), format!("{} is listed twice", f.path)));
            }
            if let Some(mode) = f.mode {
                if mode > 0o777 {
                    return Err((
                        field("mode"),
                        format!("{mode:o} is not a permission mode (at most 777)"),
                    ));
                }
                if matches!(f.content, Content::Key | Content::Combined) && mode & 0o007 != 0 {
                    return Err((
                        field("mode"),
                        "a file with the private key must not be world-accessible".into(),
                    ));
                }
            }
        }
        for (name, cmd) in [
            ("check_command", &self.check_command),
            ("reload_command", &self.reload_command),
        ] {
            if let Some(argv) = cmd
                && argv.first().is_none_or(|p| p.is_empty())
            {
                return Err((name.into(), "an argv list: program first".into()));
            }
        }
        if let Some(v) = &self.verify {
            let ok = v
                .address
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(("verify.address".into(), format!("{:?} is not host:port", v.address)));
            }
        }
        Ok(())
    }
}

/// What is deployed: PEM texts.
#[derive(Debug, Clone)]
pub struct Material {
    pub cert_pem: String,
    /// The intermediates, may be empty.
    pub chain_pem: String,
    pub key_pem: String,
}

impl Material {
    fn render(&self, content: Content) -> String {
        let fullchain = || format!("{}{}", ensure_nl(&self.cert_pem), ensure_nl(&self.chain_pem));
        match content {
            Content::Cert => ensure_nl(&self.cert_pem),
            Content::Chain => ensure_nl(&self.chain_pem),
            Content::Fullchain => fullchain(),
            Content::Key => ensure_nl(&self.key_pem),
            Content::Combined => format!("{}{}", fullchain(), ensure_nl(&self.key_pem)),
        }
    }
}

fn ensure_nl(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// One step of a deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: String,
    pub ok: bool,
    pub millis: u64,
    /// Command output or what went wrong (at most 4 KiB).
    pub detail: String,
}

/// How a deployment went.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// `deployed`, `unchanged` or `rolled_back` (or `failed` when even that went wrong).
    pub outcome: String,
    pub steps: Vec<Step>,
}

impl DeployReport {
    /// The error to report, unless it went well.
    pub fn error(&self) -> Option<String> {
        if self.outcome == "deployed" || self.outcome == "unchanged" {
            return None;
        }
        let failed = self.steps.iter().find(|s| !s.ok);
        Some(match failed {
            Some(s) => format!("{} failed ({}): {}", s.step, self.outcome, s.detail),
            None => self.outcome.clone(),
        })
    }
}

fn cap(text: &str) -> String {
    if text.len() <= 4096 {
        return text.to_string();
    }
    let mut end = 4096;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

struct Record {
    steps: Vec<Step>,
}

impl Record {
    fn push(&mut self, step: &str, started: Instant, result: &Result<String, String>) {
        self.steps.push(Step {
            step: step.to_string(),
            ok: result.is_ok(),
            millis: started.elapsed().as_millis() as u64,
            detail: cap(match result {
                Ok(s) | Err(s) => s,
            }),
        });
    }
}

fn prev_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.certctl-prev", path.display()))
}

/// Deploys `material` to `target` (see the module docs).
pub async fn deploy(target: &Target, material: &Material) -> DeployReport {
    let mut rec = Record { steps: Vec::new() };
    let rendered: Vec<(PathBuf, Vec<u8>, u32, &FileTarget)> = target
        .files
        .iter()
        .map(|f| {
            let default = if matches!(f.content, Content::Key | Content::Combined) {
                0o600
            } else {
                0o644
            };
            (
                PathBuf::from(&f.path),
                material.render(f.content).into_bytes(),
                f.mode.unwrap_or(default),
                f,
            )
        })
        .collect();
    let unchanged = rendered
        .iter()
        .all(|(path, bytes, _, _)| std::fs::read(path).is_ok_and(|old| Sha256::digest(&old) == Sha256::digest(bytes)));
    if unchanged {
        rec.push(
            "compare",
            Instant::now(),
            &Ok("every file already has this content".into()),
        );
        return DeployReport {
            outcome: "unchanged".into(),
            steps: rec.steps,
        };
    }

    // Write every file, keeping what was there (or noting it was absent).
    let started = Instant::now();
    let mut existed = Vec::new();
    let mut written = Vec::new();
    let mut write_error = None;
    for (path, bytes, mode, f) in &rendered {
        let had = path.exists();
        if had && let Err(e) = std::fs::copy(path, prev_path(path)) {
            write_error = Some(format!("keeping the previous {}: {e}", path.display()));
            break;
        }
        existed.push((path.clone(), had));
        if let Err(e) = write_atomic(path, bytes, *mode, f.uid, f.gid) {
            write_error = Some(format!("{}: {e}", path.display()));
            break;
        }
        written.push(path.display().to_string());
    }
    let write_result = match write_error {
        None => Ok(format!("wrote {}", written.join(", "))),
        Some(e) => Err(e),
    };
    rec.push("write", started, &write_result);
    let mut failure = write_result.is_err();

    if !failure && let Some(argv) = &target.check_command {
        let started = Instant::now();
        let result = run(argv).await;
        failure = result.is_err();
        rec.push("check", started, &result);
    }
    if !failure && let Some(argv) = &target.reload_command {
        let started = Instant::now();
        let result = run(argv).await;
        failure = result.is_err();
        rec.push("reload", started, &result);
    }
    if !failure && let Some(v) = &target.verify {
        let started = Instant::now();
        let result = verify(v, &material.cert_pem).await;
        failure = result.is_err();
        rec.push("verify", started, &result);
    }
    if !failure {
        for (path, _) in &existed {
            let _ = std::fs::remove_file(prev_path(path));
        }
        return DeployReport {
            outcome: "deployed".into(),
            steps: rec.steps,
        };
    }

    // Roll back: the previous files, or none where there was none, then reload again.
    let started = Instant::now();
    let mut problems = Vec::new();
    for (path, had) in &existed {
        let result = if *had {
            std::fs::rename(prev_path(path), path)
        } else {
            std::fs::remove_file(path)
        };
        if let Err(e) = result {
            problems.push(format!("{}: {e}", path.display()));
        }
    }
    let restored = if problems.is_empty() {
        Ok(format!("restored {} file(s)", existed.len()))
    } else {
        Err(format!("could not restore: {}", problems.join("; ")))
    };
    let restore_failed = restored.is_err();
    rec.push("rollback", started, &restored);
    let mut reload_failed = false;
    if let Some(argv) = &target.reload_command {
        let started = Instant::now();
        let result = run(argv).await;
        reload_failed = result.is_err();
        rec.push("reload-previous", started, &result);
    }
    DeployReport {
        outcome: if restore_failed || reload_failed {
            "failed"
        } else {
            "rolled_back"
        }
        .into(),
        steps: rec.steps,
    }
}

/// Writes `bytes` to `path`: a temp file beside it (mode, owner), fsync, rename, fsync of the
/// directory.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = PathBuf::from(format!("{}.certctl-tmp", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(&tmp, uid, gid)?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Runs argv with a 60 s limit; Ok(output) on exit 0.
async fn run(argv: &[String]) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(60), child).await {
        Err(_) => Err(format!("{program}: no exit after 60 s")),
        Ok(Err(e)) => Err(format!("{program}: cannot run: {e}")),
        Ok(Ok(out)) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                Ok(text)
            } else {
                Err(format!("{program} exited with {}: {text}", out.status))
            }
        }
    }
}

/// Accepts any server certificate: we compare what is served, we do not validate it.
#[derive(Debug)]
struct AcceptAny(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// SHA-256 of the leaf `address` serves.
async fn served_leaf(v: &Verify) -> Result<[u8; 32], String> {
    use rustls::pki_types::ServerName;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let host = v.address.rsplit_once(':').map_or(v.address.as_str(), |(h, _)| h);
    let sni = v
        .server_name
        .clone()
        .unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
    let name = ServerName::try_from(sni.clone()).map_err(|e| format!("server name {sni:?}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(&v.address)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", v.address))?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {}: {e}", v.address))?;
    let (_, conn) = tls.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| format!("{} presented no certificate", v.address))?;
    Ok(Sha256::digest(leaf.as_ref()).into())
}

/// Waits (up to the timeout) until `address` serves the new certificate.
async fn verify(v: &Verify, cert_pem: &str) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    let want: [u8; 32] = match rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() {
        Some(Ok(der)) => Sha256::digest(der.as_ref()).into(),
        _ => return Err("the new certificate is not PEM".into()),
    };
    let deadline = Instant::now() + Duration::from_secs(v.timeout_seconds.unwrap_or(10));
    loop {
        // Each attempt is bounded: a peer that accepts TCP but never finishes the handshake
        // must not hang the deployment.
        let attempt = tokio::time::timeout(Duration::from_secs(5), served_leaf(v))
            .await
            .unwrap_or_else(|_| Err(format!("{}: no TLS handshake within 5 s", v.address)));
        let last = match attempt {
            Ok(got) if got == want => return Ok(format!("{} serves the new certificate", v.address)),
            Ok(got) => format!(
                "{} still serves another certificate (SHA-256 {})",
                v.address,
                hex::encode(got)
            ),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(name: &str) -> Material {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        Material {
            cert_pem: cert.pem(),
            chain_pem: String::new(),
            key_pem: key.serialize_pem(),
        }
    }

    fn target(dir: &Path, reload: Option<Vec<String>>, check: Option<Vec<String>>) -> Target {
        Target {
            files: vec![
                FileTarget {
                    path: dir.join("site.pem").display().to_string(),
                    content: Content::Fullchain,
                    mode: None,
                    uid: None,
                    gid: None,
                },
                FileTarget {
                    path: dir.join("site.key").display().to_string(),
                    content: Content::Key,
                    mode: None,
                    uid: None,
                    gid: None,
                },
            ],
            check_command: check,
            reload_command: reload,
            verify: None,
        }
    }

    fn sh(script: &str) -> Option<Vec<String>> {
        Some(vec!["sh".into(), "-c".into(), script.into()])
    }

    #[tokio::test]
    async fn deploys_once_then_skips_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let counter = dir.path().join("reloads");
        let t = target(dir.path(), sh(&format!("echo x >> {}", counter.display())), None);
        let m = material("a.example.test");
        let report = deploy(&t, &m).await;
        assert_eq!(report.outcome, "deployed", "{report:?}");
        assert_eq!(report.error(), None);
        let pem = std::fs::read_to_string(dir.path().join("site.pem")).expect("written");
        assert_eq!(pem, m.cert_pem);
        let mode = std::fs::metadata(dir.path().join("site.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(dir.path().join("site.pem"))
            .expect("pem")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        let again = deploy(&t, &m).await;
        assert_eq!(again.outcome, "unchanged");
        assert_eq!(
            std::fs::read_to_string(&counter).expect("count").lines().count(),
            1,
            "no second reload"
        );
    }

    #[tokio::test]
    async fn a_failed_check_or_reload_restores_every_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let old = material("old.example.test");
        let ok = target(dir.path(), sh("true"), None);
        assert_eq!(deploy(&ok, &old).await.outcome, "deployed");
        let before = std::fs::read(dir.path().join("site.pem")).expect("old");
        let new = material("new.example.test");
        // A reload that fails once (the new files), then works (the restored ones).
        let flag = dir.path().join("failed-once");
        let once = sh(&format!(
            "if [ -e {f} ]; then exit 0; fi; touch {f}; exit 1",
            f = flag.display()
        ));
        for (check, reload, step) in [
            (sh("echo broken >&2; exit 1"), sh("true"), "check"),
            (None, once, "reload"),
        ] {
            let t = target(dir.path(), reload, check);
            let report = deploy(&t, &new).await;
            assert_eq!(report.outcome, "rolled_back", "{report:?}");
            let error = report.error().expect("an error");
            assert!(error.starts_with(step), "{error}");
            assert_eq!(std::fs::read(dir.path().join("site.pem")).expect("restored"), before);
        }
        // A file that did not exist before is removed again; a reload that keeps failing, even
        // on the restored files, is reported as `failed`, not `rolled_back`.
        let mut t = target(dir.path(), sh("false"), None);
        t.files.push(FileTarget {
            path: dir.path().join("extra.pem").display().to_string(),
            content: Content::Cert,
            mode: None,
            uid: None,
            gid: None,
        });
        let report = deploy(&t, &new).await;
        assert_eq!(report.outcome, "failed", "{report:?}");
        assert!(!dir.path().join("extra.pem").exists());
        assert_eq!(std::fs::read(dir.path().join("site.pem")).expect("restored"), before);
    }

    #[test]
    fn targets_are_checked_by_field() {
        let bad = |v: serde_json::Value| Target::check_json(&v).expect_err("refused").0;
        assert_eq!(bad(serde_json::json!({"files": []})), "files");
        assert_eq!(
            bad(serde_json::json!({"files": [{"path": "rel.pem", "content": "cert"}]})),
            "files.0.path"
        );
        assert_eq!(
            bad(serde_json::json!({"files": [{"path": "/a.key", "content": "key", "mode": 0o644}]})),
            "files.0.mode"
        );
        assert_eq!(
            bad(serde_json::json!({"files": [{"path": "/a", "content": "everything"}]})),
            "files[0].content"
        );
        assert_eq!(
            bad(serde_json::json!({"files": [{"path": "/a", "content": "cert"}], "reload_command": []})),
            "reload_command"
        );
        assert_eq!(
            bad(serde_json::json!({"files": [{"path": "/a", "content": "cert"}], "verify": {"address": "nohost"}})),
            "verify.address"
        );
        Target::check_json(
            &serde_json::json!({"files": [{"path": "/etc/x.pem", "content": "combined", "mode": 0o640}],
            "check_command": ["nginx", "-t"], "verify": {"address": "127.0.0.1:443"}}),
        )
        .expect("valid");
    }
}
