//! Discovery: walks directories for certificates already on the node (PEM bundles and DER
//! files), with limits on size, count and depth, directory loops detected, and special files
//! (FIFOs, sockets, devices) never opened. One bad file is a problem to report, never a failure.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::model::Found;

#[derive(Debug, Clone)]
pub struct DiscoveryLimits {
    pub max_file_bytes: u64,
    pub max_files: usize,
    pub max_depth: usize,
}

impl Default for DiscoveryLimits {
    fn default() -> Self {
        DiscoveryLimits {
            max_file_bytes: 1024 * 1024,
            max_files: 100_000,
            max_depth: 32,
        }
    }
}

/// What a scan found, and what it skipped and why.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub found: Vec<Found>,
    pub problems: Vec<(PathBuf, String)>,
}

/// Walks `dirs` (blocking: run it on a blocking thread).
pub fn scan(dirs: &[PathBuf], limits: &DiscoveryLimits) -> ScanReport {
    let mut report = ScanReport::default();
    let mut visited: HashSet<(u64, u64)> = HashSet::new();
    let mut files = 0usize;
    for dir in dirs {
        walk(dir, 0, limits, &mut visited, &mut files, &mut report);
    }
    report
}

fn walk(
    dir: &Path,
    depth: usize,
    limits: &DiscoveryLimits,
    visited: &mut HashSet<(u64, u64)>,
    files: &mut usize,
    report: &mut ScanReport,
) {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => return report.problems.push((dir.to_path_buf(), format!("cannot read: {e}"))),
    };
    if !visited.insert((meta.dev(), meta.ino())) {
        return report.problems.push((
            dir.to_path_buf(),
            "directory already visited (a symlink loop or a second link)".into(),
        ));
    }
    if depth > limits.max_depth {
        return report.problems.push((
            dir.to_path_buf(),
            format!("deeper than {} levels: not walked", limits.max_depth),
        ));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return report.problems.push((dir.to_path_buf(), format!("cannot list: {e}"))),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if *files >= limits.max_files {
            return report.problems.push((
                path,
                format!("more than {} files: the scan stopped here", limits.max_files),
            ));
        }
        // Follows symlinks; a dangling one is a problem.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                report.problems.push((path, format!("cannot read: {e}")));
                continue;
            }
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            walk(&path, depth + 1, limits, visited, files, report);
        } else if kind.is_file() {
            *files += 1;
            if meta.len() > limits.max_file_bytes {
                report.problems.push((
                    path,
                    format!("{} bytes: over the {} byte limit", meta.len(), limits.max_file_bytes),
                ));
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) => read_certificates(&path, &bytes, report),
                Err(e) => report.problems.push((path, format!("cannot read: {e}"))),
            }
        } else if kind.is_fifo() || kind.is_socket() || kind.is_block_device() || kind.is_char_device() {
            report.problems.push((path, "not a regular file: not opened".into()));
        }
    }
}

fn read_certificates(path: &Path, bytes: &[u8], report: &mut ScanReport) {
    use rustls::pki_types::pem::{PemObject, SectionKind};
    let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    let ders: Vec<Vec<u8>> = if is_pem {
        <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(bytes)
            .filter_map(Result::ok)
            .filter(|(kind, _)| *kind == SectionKind::Certificate)
            .map(|(_, der)| der)
            .collect()
    } else {
        vec![bytes.to_vec()]
    };
    for (index, der) in ders.iter().enumerate() {
        match X509Certificate::from_der(der) {
            Ok((_, cert)) => report.found.push(found(path, index, der, &cert)),
            // Not a certificate (a key, a config file, anything): skipped without a word.
            Err(_) if !is_pem => {}
            Err(e) => report
                .problems
                .push((path.to_path_buf(), format!("certificate {index} does not parse: {e}"))),
        }
    }
}

fn found(path: &Path, index: usize, der: &[u8], cert: &X509Certificate<'_>) -> Found {
    let mut sans = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(d.to_string()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => sans.push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                    16 => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(ip);
                        sans.push(std::net::Ipv6Addr::from(b).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Found {
        path: path.display().to_string(),
        index_in_file: u32::try_from(index).unwrap_or(u32::MAX),
        fingerprint_sha256: hex::encode(Sha256::digest(der)),
        serial: crate::lifecycle::x509::serial_hex(cert.raw_serial()),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str, ca: bool) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params.self_signed(&key).expect("cert")
    }

    #[test]
    fn finds_pem_bundles_and_der_and_survives_junk_loops_and_fifos() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let leaf = cert("leaf.example.test", false);
        let ca = cert("ca.example.test", true);
        std::fs::create_dir_all(d.join("nginx/nested")).expect("mkdir");
        std::fs::write(d.join("nginx/bundle.pem"), format!("{}{}", leaf.pem(), ca.pem())).expect("write");
        std::fs::write(d.join("nginx/nested/site.der"), leaf.der().as_ref()).expect("write");
        std::fs::write(
            d.join("nginx/site.key"),
            rcgen::KeyPair::generate().expect("k").serialize_pem(),
        )
        .expect("w");
        std::fs::write(d.join("junk.txt"), "not a certificate at all").expect("write");
        std::fs::write(d.join("empty"), "").expect("write");
        std::fs::write(d.join("huge.pem"), vec![b'x'; 2 * 1024 * 1024]).expect("write");
        std::fs::write(
            d.join("broken.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        std::os::unix::fs::symlink(d, d.join("nginx/loop")).expect("loop");
        std::os::unix::fs::symlink(d.join("missing"), d.join("dangling")).expect("dangling");
        let fifo = d.join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());

        let report = scan(&[d.to_path_buf(), d.join("not-there")], &DiscoveryLimits::default());
        let mut names: Vec<(String, u32, bool)> = report
            .found
            .iter()
            .map(|f| {
                (
                    f.path.trim_start_matches(&d.display().to_string()).to_string(),
                    f.index_in_file,
                    f.is_ca,
                )
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                ("/nginx/bundle.pem".to_string(), 0, false),
                ("/nginx/bundle.pem".to_string(), 1, true),
                ("/nginx/nested/site.der".to_string(), 0, false),
            ]
        );
        let der = report.found.iter().find(|f| f.path.ends_with("site.der")).expect("der");
        assert_eq!(der.sans, vec!["leaf.example.test".to_string()]);
        assert_eq!(der.fingerprint_sha256, hex::encode(Sha256::digest(leaf.der())));
        let problem = |suffix: &str| {
            report
                .problems
                .iter()
                .find(|(p, _)| p.display().to_string().ends_with(suffix))
                .map(|(_, m)| m.clone())
                .unwrap_or_else(|| panic!("no problem reported for {suffix}: {:?}", report.problems))
        };
        assert!(problem("huge.pem").contains("limit"));
        assert!(problem("broken.pem").contains("does not parse"));
        assert!(problem("pipe").contains("not a regular file"));
        assert!(problem("dangling").contains("cannot read"));
        assert!(problem("loop").contains("already visited"));
        assert!(problem("not-there").contains("cannot read"));
        assert!(
            !report
                .problems
                .iter()
                .any(|(p, _)| p.ends_with("site.key") || p.ends_with("junk.txt")),
            "keys and other files are skipped silently: {:?}",
            report.problems
        );
    }

    #[test]
    fn limits_stop_deep_and_large_walks() {
        let dir = tempfile::tempdir().expect("tmp");
        let deep = dir.path().join("a/b/c/d");
        std::fs::create_dir_all(&deep).expect("mkdir");
        std::fs::write(deep.join("x.pem"), cert("deep.example.test", false).pem()).expect("write");
        let limits = DiscoveryLimits {
            max_depth: 2,
            ..DiscoveryLimits::default()
        };
        let report = scan(&[dir.path().to_path_buf()], &limits);
        assert!(report.found.is_empty());
        assert!(report.problems.iter().any(|(_, m)| m.contains("deeper than 2")));
        let limits = DiscoveryLimits {
            max_files: 0,
            ..DiscoveryLimits::default()
        };
        let report = scan(std::slice::from_ref(&deep), &limits);
        assert!(report.problems.iter().any(|(_, m)| m.contains("the scan stopped")));
    }
}
