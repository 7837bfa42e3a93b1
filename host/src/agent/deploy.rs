//! Deploying a certificate on the node: files written atomically (temp + fsync + rename, the
//! previous content kept in `<file>.certctl-prev`), a check command, a reload command, and a
//! verification that the service now presents the new certificate. Anything failing after the
//! files changed rolls every file back and reloads again.
//!
//! Idempotent: files with the same SHA-256 are not written (a loosened mode or owner is put
//! back), and when a verification is configured and the service already presents the
//! certificate, nothing runs. A journal written before the first change lets an agent killed in
//! the middle finish the deployment after a restart (check, reload, verify) or roll it back.

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
    /// Numeric owner and group.
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
    /// Owner and group by name, looked up in the node's `/etc/passwd` and `/etc/group` when
    /// deploying (the same name may have another id on each node). Not with `uid` / `gid`.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
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
            for (name, by_name, by_id) in [
                ("owner", &f.owner, f.uid.is_some()),
                ("group", &f.group, f.gid.is_some()),
            ] {
                if let Some(n) = by_name {
                    if by_id {
                        return Err((
                            field(name),
                            format!(
                                "give {name} by name or by id ({}), not both",
                                if name == "owner" { "uid" } else { "gid" }
                            ),
                        ));
                    }
                    if n.is_empty() || n.contains([':', '\n', '/']) {
                        return Err((field(name), format!("{n:?} is not a user or group name")));
                    }
                }
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

#[derive(Default)]
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

    fn end(self, outcome: &str) -> DeployReport {
        DeployReport {
            outcome: outcome.into(),
            steps: self.steps,
        }
    }
}

/// `<file>.certctl-prev`: the content a file had before the latest deployment that changed it.
fn prev_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.certctl-prev", path.display()))
}

/// Written before the first file changes and removed when the deployment ends: how every file
/// was before. An agent restarted in the middle finds it, finishes the deployment (check,
/// reload, verify, even when the files already hold the new content) and can still roll back.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    before: Vec<Before>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Before {
    path: PathBuf,
    existed: bool,
    /// SHA-256 (hex) of the content before; its copy is in `<file>.certctl-prev`.
    sha256: String,
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn file_sha(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| sha_hex(&b))
}

/// One file to write, with its owner resolved on this node.
struct Planned {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
}

fn plan(target: &Target, material: &Material) -> Result<Vec<Planned>, String> {
    target
        .files
        .iter()
        .map(|f| {
            let default = if matches!(f.content, Content::Key | Content::Combined) {
                0o600
            } else {
                0o644
            };
            let uid = match (&f.owner, f.uid) {
                (Some(name), _) => Some(lookup_id("/etc/passwd", name).map_err(|e| format!("{}: owner {e}", f.path))?),
                (None, id) => id,
            };
            let gid = match (&f.group, f.gid) {
                (Some(name), _) => Some(lookup_id("/etc/group", name).map_err(|e| format!("{}: group {e}", f.path))?),
                (None, id) => id,
            };
            Ok(Planned {
                path: PathBuf::from(&f.path),
                bytes: material.render(f.content).into_bytes(),
                mode: f.mode.unwrap_or(default),
                uid,
                gid,
            })
        })
        .collect()
}

/// The id of `name` in `/etc/passwd` or `/etc/group` (`name:x:id:...`) on this node.
fn lookup_id(file: &str, name: &str) -> Result<u32, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name:?}: cannot read {file}: {e}"))?;
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let entry = fields.next()?;
            let id = fields.nth(1)?;
            (entry == name).then(|| id.parse::<u32>().ok())?
        })
        .next()
        .ok_or_else(|| format!("{name:?}: not in {file} on this node"))
}

/// Sets mode and owner where they differ; the paths corrected.
fn fix_metadata(planned: &[Planned]) -> Result<Vec<String>, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut fixed = Vec::new();
    for p in planned {
        let meta = std::fs::metadata(&p.path).map_err(|e| format!("{}: {e}", p.path.display()))?;
        let mut changed = false;
        if meta.mode() & 0o7777 != p.mode {
            std::fs::set_permissions(&p.path, std::fs::Permissions::from_mode(p.mode))
                .map_err(|e| format!("{}: mode {:o}: {e}", p.path.display(), p.mode))?;
            changed = true;
        }
        if p.uid.is_some_and(|u| u != meta.uid()) || p.gid.is_some_and(|g| g != meta.gid()) {
            std::os::unix::fs::chown(&p.path, p.uid, p.gid).map_err(|e| format!("{}: owner: {e}", p.path.display()))?;
            changed = true;
        }
        if changed {
            fixed.push(p.path.display().to_string());
        }
    }
    Ok(fixed)
}

/// Keeps each file's current content in `<file>.certctl-prev` (same mode and owner), then
/// writes the journal. Nothing has changed yet when this fails.
fn back_up(planned: &[Planned], journal: &Path) -> Result<Vec<Before>, String> {
    use std::os::unix::fs::MetadataExt;
    let mut before = Vec::new();
    for p in planned {
        match std::fs::read(&p.path) {
            Ok(bytes) => {
                let meta = std::fs::metadata(&p.path).map_err(|e| format!("{}: {e}", p.path.display()))?;
                let prev = prev_path(&p.path);
                write_atomic(&prev, &bytes, meta.mode() & 0o777, Some(meta.uid()), Some(meta.gid()))
                    .map_err(|e| format!("keeping the previous {} in {}: {e}", p.path.display(), prev.display()))?;
                before.push(Before {
                    path: p.path.clone(),
                    existed: true,
                    sha256: sha_hex(&bytes),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => before.push(Before {
                path: p.path.clone(),
                existed: false,
                sha256: String::new(),
            }),
            Err(e) => return Err(format!("{}: {e}", p.path.display())),
        }
    }
    let journal_entry = Journal { before };
    let text = serde_json::to_vec(&journal_entry).map_err(|e| e.to_string())?;
    write_atomic(journal, &text, 0o600, None, None).map_err(|e| format!("{}: {e}", journal.display()))?;
    Ok(journal_entry.before)
}

/// Puts every file back as the journal says it was; `Err` lists what could not be restored.
fn restore(before: &[Before]) -> Result<String, String> {
    let mut problems = Vec::new();
    for b in before {
        let now = file_sha(&b.path);
        let result = if !b.existed {
            match std::fs::remove_file(&b.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            }
        } else if now.as_deref() == Some(b.sha256.as_str()) {
            Ok(())
        } else if file_sha(&prev_path(&b.path)).as_deref() == Some(b.sha256.as_str()) {
            std::fs::rename(prev_path(&b.path), &b.path).map_err(|e| e.to_string())
        } else {
            Err("its previous content is gone (the .certctl-prev copy differs)".into())
        };
        if let Err(e) = result {
            problems.push(format!("{}: {e}", b.path.display()));
        }
    }
    if problems.is_empty() {
        Ok(format!("restored {} file(s)", before.len()))
    } else {
        Err(format!("could not restore: {}", problems.join("; ")))
    }
}

/// Deploys `material` to `target` (see the module docs). `journal` is this deployment's
/// journal file: present when an earlier run of the same deployment was interrupted.
pub async fn deploy(target: &Target, material: &Material, journal: &Path) -> DeployReport {
    let mut rec = Record::default();
    let planned = match plan(target, material) {
        Ok(p) => p,
        Err(e) => {
            rec.push("write", Instant::now(), &Err(e));
            return rec.end("failed");
        }
    };
    let resumed: Option<Vec<Before>> = std::fs::read(journal)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Journal>(&bytes).ok())
        .map(|j| j.before);
    let differs: Vec<bool> = planned
        .iter()
        .map(|p| file_sha(&p.path).as_deref() != Some(sha_hex(&p.bytes).as_str()))
        .collect();

    if resumed.is_none() && !differs.contains(&true) {
        let started = Instant::now();
        match fix_metadata(&planned) {
            Err(e) => {
                rec.push("permissions", started, &Err(e));
                return rec.end("failed");
            }
            Ok(fixed) if !fixed.is_empty() => {
                rec.push("permissions", started, &Ok(format!("corrected {}", fixed.join(", "))));
            }
            Ok(_) => {}
        }
        // Same files; but is the service using them? (A reload may have been missed.)
        let started = Instant::now();
        let served = match &target.verify {
            None => Ok(()),
            Some(v) => serves(v, &material.cert_pem).await,
        };
        match served {
            Ok(()) => {
                rec.push("compare", started, &Ok("every file already has this content".into()));
                return rec.end("unchanged");
            }
            Err(why) => rec.push(
                "compare",
                started,
                &Ok(format!("the files already have this content but {why}: reloading")),
            ),
        }
    }

    let started = Instant::now();
    let before = match resumed {
        Some(before) => {
            rec.push(
                "resume",
                started,
                &Ok("finishing a deployment an earlier run of the agent left unfinished".into()),
            );
            before
        }
        None => match back_up(&planned, journal) {
            Ok(before) => before,
            Err(e) => {
                rec.push("backup", started, &Err(e));
                return rec.end("failed");
            }
        },
    };

    let started = Instant::now();
    let mut written = Vec::new();
    let mut write_result = Ok(());
    for (p, changed) in planned.iter().zip(&differs) {
        let result = if *changed {
            write_atomic(&p.path, &p.bytes, p.mode, p.uid, p.gid).map_err(|e| format!("{}: {e}", p.path.display()))
        } else {
            fix_metadata(std::slice::from_ref(p)).map(|_| ())
        };
        if let Err(e) = result {
            write_result = Err(e);
            break;
        }
        if *changed {
            written.push(p.path.display().to_string());
        }
    }
    let write_result = write_result.map(|()| {
        if written.is_empty() {
            "the files already had this content".to_string()
        } else {
            format!("wrote {}", written.join(", "))
        }
    });
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
        let _ = std::fs::remove_file(journal);
        return rec.end("deployed");
    }

    // Roll back: the previous files, or none where there was none, then reload again.
    let started = Instant::now();
    let restored = restore(&before);
    let restore_failed = restored.is_err();
    rec.push("rollback", started, &restored);
    let mut reload_failed = false;
    if let Some(argv) = &target.reload_command {
        let started = Instant::now();
        let result = run(argv).await;
        reload_failed = result.is_err();
        rec.push("reload-previous", started, &result);
    }
    let _ = std::fs::remove_file(journal);
    rec.end(if restore_failed || reload_failed {
        "failed"
    } else {
        "rolled_back"
    })
}

/// Writes `bytes` to `path`: a new temp file beside it (created exclusively, so a planted file
/// or symlink is never written through; mode, owner), fsync, rename over `path` (which replaces
/// a symlink rather than following it), fsync of the directory.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut attempt = 0;
    let (tmp, mut f) = loop {
        let tmp = PathBuf::from(format!("{}.certctl-tmp-{:016x}", path.display(), rand::random::<u64>()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 3 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::chown(&tmp, uid, gid)?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Runs argv (no shell, stdin closed) with a 60 s limit; Ok(output) on exit 0. The output is
/// what the command wrote until it exited (plus a moment): a background process it started
/// that keeps the pipes open (a daemon) does not hold the deployment.
async fn run(argv: &[String]) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program}: cannot run: {e}"))?;
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let mut readers = tokio::task::JoinSet::new();
    let pipes: [Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ];
    for mut pipe in pipes.into_iter().flatten() {
        let output = output.clone();
        readers.spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut out) = output.lock()
                    && out.len() < 65_536
                {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        });
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    readers.abort_all();
    let text = output
        .lock()
        .map(|out| String::from_utf8_lossy(&out).into_owned())
        .unwrap_or_default();
    match status {
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("{program}: no exit after 60 s (killed): {text}"))
        }
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Ok(Ok(status)) if status.success() => Ok(text),
        Ok(Ok(status)) => Err(format!("{program} exited with {status}: {text}")),
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

/// SHA-256 of the leaf in `cert_pem`.
fn leaf_digest(cert_pem: &str) -> Result<[u8; 32], String> {
    use rustls::pki_types::pem::PemObject;
    match rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() {
        Some(Ok(der)) => Ok(Sha256::digest(der.as_ref()).into()),
        _ => Err("the new certificate is not PEM".into()),
    }
}

/// One look at what `address` serves: `Err` says what is served instead, or why nothing was.
async fn serves(v: &Verify, cert_pem: &str) -> Result<(), String> {
    let want = leaf_digest(cert_pem)?;
    // Bounded: a peer that accepts TCP but never finishes the handshake must not hang us.
    let attempt = tokio::time::timeout(Duration::from_secs(5), served_leaf(v))
        .await
        .unwrap_or_else(|_| Err(format!("{}: no TLS handshake within 5 s", v.address)))?;
    if attempt == want {
        Ok(())
    } else {
        Err(format!(
            "{} serves another certificate (SHA-256 {})",
            v.address,
            hex::encode(attempt)
        ))
    }
}

/// Waits (up to the timeout) until `address` serves the new certificate.
async fn verify(v: &Verify, cert_pem: &str) -> Result<String, String> {
    leaf_digest(cert_pem)?;
    let deadline = Instant::now() + Duration::from_secs(v.timeout_seconds.unwrap_or(10));
    loop {
        let last = match serves(v, cert_pem).await {
            Ok(()) => return Ok(format!("{} serves the new certificate", v.address)),
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
                    owner: None,
                    group: None,
                },
                FileTarget {
                    path: dir.join("site.key").display().to_string(),
                    content: Content::Key,
                    mode: None,
                    uid: None,
                    gid: None,
                    owner: None,
                    group: None,
                },
            ],
            check_command: check,
            reload_command: reload,
            verify: None,
        }
    }

    fn journal(dir: &Path) -> PathBuf {
        dir.join("job.journal")
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
        let report = deploy(&t, &m, &journal(dir.path())).await;
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
        let again = deploy(&t, &m, &journal(dir.path())).await;
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
        assert_eq!(deploy(&ok, &old, &journal(dir.path())).await.outcome, "deployed");
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
            let report = deploy(&t, &new, &journal(dir.path())).await;
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
            owner: None,
            group: None,
        });
        let report = deploy(&t, &new, &journal(dir.path())).await;
        assert_eq!(report.outcome, "failed", "{report:?}");
        assert!(!dir.path().join("extra.pem").exists());
        assert_eq!(std::fs::read(dir.path().join("site.pem")).expect("restored"), before);
    }

    #[tokio::test]
    async fn an_interrupted_deployment_is_finished_after_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let counter = dir.path().join("reloads");
        let t = target(dir.path(), sh(&format!("echo x >> {}", counter.display())), None);
        let old = material("old.example.test");
        assert_eq!(deploy(&t, &old, &journal(dir.path())).await.outcome, "deployed");
        let before = std::fs::read(dir.path().join("site.pem")).expect("old");
        // The agent died after backing up and writing the new files, before the reload: the
        // journal is there and the files already hold the new content.
        let new = material("new.example.test");
        let planned = plan(&t, &new).expect("plan");
        back_up(&planned, &journal(dir.path())).expect("backup");
        for p in &planned {
            write_atomic(&p.path, &p.bytes, p.mode, None, None).expect("write");
        }
        let report = deploy(&t, &new, &journal(dir.path())).await;
        assert_eq!(report.outcome, "deployed", "{report:?}");
        assert!(report.steps.iter().any(|s| s.step == "resume"), "{report:?}");
        assert_eq!(
            std::fs::read_to_string(&counter).expect("count").lines().count(),
            2,
            "the missed reload ran"
        );
        assert!(!journal(dir.path()).exists(), "the journal ends with the deployment");
        // The previous version stays beside the file.
        assert_eq!(
            std::fs::read(dir.path().join("site.pem.certctl-prev")).expect("prev"),
            before
        );

        // Interrupted again, and this time the reload fails: the rollback still knows the
        // content from before the interrupted run.
        let newer = material("newer.example.test");
        let planned = plan(&t, &newer).expect("plan");
        let current = std::fs::read(dir.path().join("site.pem")).expect("current");
        back_up(&planned, &journal(dir.path())).expect("backup");
        for p in &planned {
            write_atomic(&p.path, &p.bytes, p.mode, None, None).expect("write");
        }
        let failing = target(dir.path(), sh("exit 1"), None);
        let report = deploy(&failing, &newer, &journal(dir.path())).await;
        assert_eq!(
            report.outcome, "failed",
            "the reload of the restored files fails too: {report:?}"
        );
        assert_eq!(std::fs::read(dir.path().join("site.pem")).expect("restored"), current);
    }

    #[tokio::test]
    async fn unchanged_files_get_their_mode_back_and_prev_symlinks_are_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let t = target(dir.path(), None, None);
        let m = material("a.example.test");
        assert_eq!(deploy(&t, &m, &journal(dir.path())).await.outcome, "deployed");
        let key = dir.path().join("site.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let report = deploy(&t, &m, &journal(dir.path())).await;
        assert_eq!(report.outcome, "unchanged", "{report:?}");
        assert!(
            report
                .steps
                .iter()
                .any(|s| s.step == "permissions" && s.detail.contains("site.key"))
        );
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private again");

        // A symlink planted where the previous copy goes is replaced, not written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").expect("victim");
        let prev = dir.path().join("site.key.certctl-prev");
        std::fs::remove_file(&prev).ok();
        std::os::unix::fs::symlink(&victim, &prev).expect("symlink");
        let report = deploy(&t, &material("b.example.test"), &journal(dir.path())).await;
        assert_eq!(report.outcome, "deployed", "{report:?}");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep me");
        assert!(!std::fs::symlink_metadata(&prev).expect("prev").file_type().is_symlink());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("certctl-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temp files left: {leftovers:?}");
    }

    #[tokio::test]
    async fn owners_by_name_come_from_the_node() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(lookup_id("/etc/passwd", "root"), Ok(0));
        assert_eq!(lookup_id("/etc/group", "root"), Ok(0));
        let dir = tempfile::tempdir().expect("tmp");
        let mut t = target(dir.path(), None, None);
        t.files[0].owner = Some("root".into());
        t.files[0].group = Some("root".into());
        let me = std::fs::metadata(dir.path()).expect("dir");
        if me.uid() == 0 {
            let report = deploy(&t, &material("a.example.test"), &journal(dir.path())).await;
            assert_eq!(report.outcome, "deployed", "{report:?}");
        }
        t.files[1].owner = Some("no-such-user-here".into());
        let report = deploy(&t, &material("c.example.test"), &journal(dir.path())).await;
        assert_eq!(report.outcome, "failed");
        let error = report.error().expect("error");
        assert!(
            error.contains("no-such-user-here") && error.contains("/etc/passwd"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_command_leaving_a_background_process_does_not_hold_the_deployment() {
        // `sleep` keeps the pipes open long after the command exits (a daemon would forever).
        let result = tokio::time::timeout(
            Duration::from_secs(15),
            run(&["sh".into(), "-c".into(), "echo started; sleep 30 & exit 0".into()]),
        )
        .await
        .expect("returns once the command exits");
        assert_eq!(result.as_deref().map(str::trim), Ok("started"));
        let failed = run(&["sh".into(), "-c".into(), "echo bad config >&2; exit 3".into()]).await;
        let error = failed.expect_err("exit 3");
        assert!(
            error.contains("bad config") && error.contains("exit status: 3"),
            "{error}"
        );
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
            bad(serde_json::json!({"files": [{"path": "/a", "content": "cert", "owner": "www", "uid": 33}]})),
            "files.0.owner"
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
