//! The server's own TLS: configured certificate files, or a self-generated local CA and server
//! certificate in the data directory (created on first start, reused afterwards, re-issued from
//! the same CA when it gets within 30 days of expiry).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::TlsMinVersion;
use crate::model::Timestamp;

const CA_COMMON_NAME: &str = "certctl local server CA";

/// Where the server's certificate and key are, and the CA clients should trust (self-generated
/// setups only).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
}

/// A loaded certificate: the rustls config and the leaf's SHA-256 fingerprint.
pub struct LoadedTls {
    pub config: Arc<ServerConfig>,
    pub fingerprint: String,
    pub not_after: Timestamp,
}

/// `AB:CD:...` SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn not_after_of(der: &[u8]) -> anyhow::Result<Timestamp> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    Ok(Timestamp(cert.validity().not_after.timestamp()))
}

/// Reads and checks a PEM chain + key, and builds the rustls server config.
pub fn load(files: &TlsFiles, min_version: TlsMinVersion) -> anyhow::Result<LoadedTls> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read TLS certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("TLS certificate {} is not valid PEM", files.cert.display()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| anyhow!("TLS certificate {} holds no CERTIFICATE block", files.cert.display()))?;
    let not_after = not_after_of(leaf).with_context(|| format!("TLS certificate {}", files.cert.display()))?;
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a PEM private key from {}", files.key.display()))?;

    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "TLS key {} does not fit certificate {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(LoadedTls {
        config: Arc::new(config),
        fingerprint,
        not_after,
    })
}

/// Writes `contents` to `path` atomically (temp file + rename), private when `secret`.
fn write_file(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Makes sure `data_dir/tls` holds a usable self-generated certificate; returns its files.
/// Names covered: localhost, 127.0.0.1, ::1, the machine's hostname and `host` if specific.
pub fn ensure_self_signed(data_dir: &Path, host: IpAddr) -> anyhow::Result<TlsFiles> {
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca: Some(dir.join("ca.crt")),
    };
    let ca_key_path = dir.join("ca.key");
    let ca_cert_path = dir.join("ca.crt");

    if files.cert.exists() && files.key.exists() {
        let pem = std::fs::read(&files.cert).with_context(|| format!("cannot read {}", files.cert.display()))?;
        let der = CertificateDer::from_pem_slice(&pem)
            .with_context(|| format!("{} is not a PEM certificate", files.cert.display()))?;
        if not_after_of(&der)? > Timestamp::now().plus_days(30) {
            return Ok(files);
        }
        tracing::info!("self-generated server certificate expires within 30 days; issuing a new one");
    }

    let ca_key = if ca_key_path.exists() && ca_cert_path.exists() {
        let pem =
            std::fs::read_to_string(&ca_key_path).with_context(|| format!("cannot read {}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem).with_context(|| format!("{} is not a usable key", ca_key_path.display()))?
    } else {
        let key = KeyPair::generate()?;
        let mut params = ca_params()?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key)?;
        write_file(&ca_key_path, &key.serialize_pem(), true)?;
        write_file(&ca_cert_path, &cert.pem(), false)?;
        key
    };
    let issuer = Issuer::new(ca_params()?, ca_key);

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(system_hostname());
    if !host.is_unspecified() && !names.contains(&host.to_string()) {
        names.push(host.to_string());
    }
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, "certctl server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_file(&files.key, &key.serialize_pem(), true)?;
    write_file(&files.cert, &cert.pem(), false)?;
    Ok(files)
}
