//! Whole issuances, natively, against a fake host whose keystore holds real keys (ECDSA, and
//! the RSA and ECDSA keys of the openssl-made CA in testdata/ for an imported CA): the chains are
//! checked field by field, their signatures verified, and (when `openssl` is on the PATH)
//! verified by openssl too.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use certctl_sdk::{IssueRequest, Issuer, PluginError};
use ecdsa::signature::Signer;
use ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256, Sha384};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::der::asn1::{Any, BitString, Null, SetOfVec};
use x509_cert::der::{Decode, DecodePem, Encode, Sequence};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::request::{CertReqInfo, ExtensionReq, Version};
use x509_cert::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};

use crate::ca::{CA_KV_KEY, Lookup, Services, check, issue};
use crate::config::{CaKeyAlgorithm, Config};
use crate::csr::BAD_SIGNATURE;
use crate::x509::{
    ECDSA_WITH_SHA256, ECDSA_WITH_SHA384, ID_EC_PUBLIC_KEY, ID_ED25519, RSA_ENCRYPTION, SECP256R1, SECP384R1,
    SHA256_WITH_RSA, common_name,
};

/// A thursday, 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;
const DAY: u64 = 86_400;

enum FakeKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(Box<rsa::PrivateKey>),
}

/// host-kv, host-keystore, a clock (at [`NOW`] unless set) and a counter for randomness; it
/// counts what changes anything (kv writes, generated keys, signatures).
#[derive(Default)]
struct FakeHost {
    kv: RefCell<BTreeMap<String, Vec<u8>>>,
    keys: RefCell<BTreeMap<String, FakeKey>>,
    generated: Cell<u8>,
    kv_writes: Cell<u32>,
    signatures: Cell<u32>,
    now: Cell<Option<u64>>,
    random_calls: Cell<u8>,
    logs: RefCell<Vec<String>>,
}

impl FakeHost {
    /// A key imported into the keystore under `id`, as the host API does for a sub-CA.
    fn import(&self, id: &str, key: FakeKey) {
        self.keys.borrow_mut().insert(id.to_string(), key);
    }

    fn set_now(&self, seconds: u64) {
        self.now.set(Some(seconds));
    }

    fn now_secs(&self) -> u64 {
        self.now.get().unwrap_or(NOW)
    }

    /// Nothing was written or created, nothing signed.
    fn assert_untouched(&self) {
        assert!(self.kv.borrow().is_empty(), "kv: {:?}", self.kv.borrow().keys());
        assert_eq!(self.kv_writes.get(), 0, "kv writes");
        assert_eq!(self.generated.get(), 0, "generated keys");
        assert_eq!(self.signatures.get(), 0, "signatures");
    }
}

fn ec_spki(curve: ObjectIdentifier, point: &[u8]) -> Vec<u8> {
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(Any::encode_from(&curve).expect("curve")),
        },
        subject_public_key: BitString::from_bytes(point).expect("point"),
    }
    .to_der()
    .expect("spki")
}

impl Lookup for FakeHost {
    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.kv.borrow().get(key).cloned()
    }

    fn public_key(&self, key_id: &str) -> Result<Vec<u8>, PluginError> {
        match self.keys.borrow().get(key_id) {
            Some(FakeKey::P256(k)) => Ok(ec_spki(SECP256R1, k.verifying_key().to_sec1_point(false).as_bytes())),
            Some(FakeKey::P384(k)) => Ok(ec_spki(SECP384R1, k.verifying_key().to_sec1_point(false).as_bytes())),
            Some(FakeKey::Rsa(k)) => {
                use rsa::pkcs8::EncodePublicKey;
                Ok(rsa::PublicKey::from(k.as_ref())
                    .to_public_key_der()
                    .expect("spki")
                    .into_vec())
            }
            None => Err(PluginError::not_found(format!("no key {key_id}"))),
        }
    }

    fn now(&self) -> Result<Duration, PluginError> {
        Ok(Duration::from_secs(self.now_secs()))
    }

    fn log(&self, message: &str) {
        self.logs.borrow_mut().push(message.to_string());
    }
}

impl Services for FakeHost {
    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), PluginError> {
        assert!(value.len() <= 64 * 1024, "kv values are at most 64 KiB");
        self.kv_writes.set(self.kv_writes.get() + 1);
        self.kv.borrow_mut().insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn generate_key(&self, algorithm: CaKeyAlgorithm) -> Result<String, PluginError> {
        let n = self.generated.get() + 1;
        self.generated.set(n);
        let seed = [0x40 + n; 48];
        let key = match algorithm {
            CaKeyAlgorithm::EcdsaP256 => FakeKey::P256(p256::ecdsa::SigningKey::from_slice(&seed[..32]).expect("key")),
            CaKeyAlgorithm::EcdsaP384 => FakeKey::P384(p384::ecdsa::SigningKey::from_slice(&seed).expect("key")),
        };
        let id = format!("key-{n}");
        self.keys.borrow_mut().insert(id.clone(), key);
        Ok(id)
    }

    fn sign(&self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.signatures.set(self.signatures.get() + 1);
        // As the host does: SHA-256 for P-256 and RSA (PKCS#1 v1.5), SHA-384 for P-384, DER
        // ECDSA signatures.
        match self.keys.borrow().get(key_id) {
            Some(FakeKey::P256(k)) => Ok(Signer::<p256::ecdsa::Signature>::sign(k, data)
                .to_der()
                .as_bytes()
                .to_vec()),
            Some(FakeKey::P384(k)) => Ok(Signer::<p384::ecdsa::Signature>::sign(k, data)
                .to_der()
                .as_bytes()
                .to_vec()),
            Some(FakeKey::Rsa(k)) => Ok(k
                .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data))
                .expect("rsa sign")),
            None => Err(PluginError::not_found(format!("no key {key_id}"))),
        }
    }

    fn random(&self, buf: &mut [u8]) -> Result<(), PluginError> {
        // Distinct per call; the first call starts with a zero byte, which must be redrawn.
        let n = self.random_calls.get();
        self.random_calls.set(n + 1);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = if n == 0 {
                0
            } else {
                0x80 | n.wrapping_mul(31).wrapping_add(i as u8)
            };
        }
        Ok(())
    }
}

/// A CSR subject key.
enum TestKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<rsa::PrivateKey>),
}

impl TestKey {
    fn p256(seed: u8) -> TestKey {
        TestKey::P256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("key"))
    }

    fn p384() -> TestKey {
        TestKey::P384(p384::ecdsa::SigningKey::from_slice(&[9; 48]).expect("key"))
    }

    fn ed25519() -> TestKey {
        TestKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[5; 32]))
    }

    fn rsa(pem: &str) -> TestKey {
        use rsa::pkcs8::DecodePrivateKey;
        let (_, der) = x509_cert::der::pem::decode_vec(pem.as_bytes()).expect("pem");
        TestKey::Rsa(Box::new(rsa::PrivateKey::from_pkcs8_der(&der).expect("rsa key")))
    }

    fn spki(&self) -> SubjectPublicKeyInfoOwned {
        let der = match self {
            TestKey::P256(k) => ec_spki(SECP256R1, k.verifying_key().to_sec1_point(false).as_bytes()),
            TestKey::P384(k) => ec_spki(SECP384R1, k.verifying_key().to_sec1_point(false).as_bytes()),
            TestKey::Ed25519(k) => SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: ID_ED25519,
                    parameters: None,
                },
                subject_public_key: BitString::from_bytes(k.verifying_key().as_bytes()).expect("key"),
            }
            .to_der()
            .expect("spki"),
            TestKey::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey;
                rsa::PublicKey::from(k.as_ref())
                    .to_public_key_der()
                    .expect("spki")
                    .into_vec()
            }
        };
        SubjectPublicKeyInfoOwned::from_der(&der).expect("spki")
    }

    fn sign(&self, data: &[u8]) -> (AlgorithmIdentifierOwned, Vec<u8>) {
        let (oid, parameters, signature) = match self {
            TestKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(data);
                (ECDSA_WITH_SHA256, None, s.to_der().as_bytes().to_vec())
            }
            TestKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(data);
                (ECDSA_WITH_SHA384, None, s.to_der().as_bytes().to_vec())
            }
            TestKey::Ed25519(k) => {
                let s: ed25519_dalek::Signature = ed25519_dalek::Signer::sign(k, data);
                (ID_ED25519, None, s.to_bytes().to_vec())
            }
            TestKey::Rsa(k) => {
                let s = k
                    .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data))
                    .expect("rsa sign");
                (SHA256_WITH_RSA, Some(Any::encode_from(&Null).expect("null")), s)
            }
        };
        (AlgorithmIdentifierOwned { oid, parameters }, signature)
    }
}

#[derive(Sequence)]
struct TestCertReq {
    info: CertReqInfo,
    algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// A CSR for `key` with `CN=<first name>` and the names as DNS/IP subjectAltNames.
fn csr_with(key: &TestKey, names: &[&str], signer: &TestKey) -> Vec<u8> {
    let general_names: Vec<GeneralName> = names
        .iter()
        .map(|n| match (n.parse::<std::net::IpAddr>(), n.strip_prefix("mail:")) {
            (Ok(ip), _) => GeneralName::from(ip),
            (_, Some(mail)) => GeneralName::Rfc822Name(x509_cert::der::asn1::Ia5String::new(mail).expect("ia5")),
            _ => GeneralName::DnsName(x509_cert::der::asn1::Ia5String::new(n).expect("ia5")),
        })
        .collect();
    let san = SubjectAltName(general_names).to_der().expect("san");
    let extension = x509_cert::ext::Extension {
        extn_id: <SubjectAltName as x509_cert::der::oid::AssociatedOid>::OID,
        critical: false,
        extn_value: x509_cert::der::asn1::OctetString::new(san).expect("octets"),
    };
    let mut attributes = SetOfVec::new();
    if !names.is_empty() {
        attributes
            .insert(Attribute::try_from(ExtensionReq(vec![extension])).expect("attribute"))
            .expect("insert");
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject: common_name(names.first().copied()).expect("name"),
        public_key: key.spki(),
        attributes,
    };
    let (algorithm, signature) = signer.sign(&info.to_der().expect("info"));
    TestCertReq {
        info,
        algorithm,
        signature: BitString::from_bytes(&signature).expect("signature"),
    }
    .to_der()
    .expect("csr")
}

fn csr(key: &TestKey, names: &[&str]) -> Vec<u8> {
    csr_with(key, names, key)
}

fn config(json: &str) -> Config {
    let config: Config = certctl_sdk::config(json).expect("config");
    crate::config::check(&config).expect("valid config");
    config
}

fn request(csr: Vec<u8>, names: &[&str], days: Option<u32>) -> IssueRequest {
    IssueRequest {
        csr,
        names: names.iter().map(|s| s.to_string()).collect(),
        validity_days: days,
        profile: None,
        replaces: None,
    }
}

fn permanent(result: Result<String, PluginError>) -> String {
    match result {
        Err(PluginError::Permanent(m)) => m,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

/// Leaf and CA certificate of a chain, checking the PEM layout on the way.
fn split_chain(chain: &str) -> (Certificate, Certificate) {
    let blocks: Vec<&str> = chain.split_inclusive("-----END CERTIFICATE-----\n").collect();
    assert_eq!(blocks.len(), 2, "leaf then CA:\n{chain}");
    let leaf = Certificate::from_pem(blocks[0]).expect("leaf");
    let ca = Certificate::from_pem(blocks[1]).expect("ca");
    (leaf, ca)
}

/// Verifies `cert`'s signature with `issuer`'s ECDSA key.
fn verify_signed_by(cert: &Certificate, issuer: &Certificate) {
    let tbs = cert.tbs_certificate().to_der().expect("tbs");
    let signature = cert.signature().as_bytes().expect("signature");
    let key = issuer
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes();
    let alg = cert.signature_algorithm().oid;
    assert!(
        cert.signature_algorithm().parameters.is_none(),
        "ECDSA algorithm identifiers have no parameters"
    );
    assert_eq!(cert.tbs_certificate().signature(), cert.signature_algorithm());
    if alg == ECDSA_WITH_SHA256 {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key).expect("p256 key");
        let signature = p256::ecdsa::Signature::from_der(signature).expect("der");
        key.verify_prehash(&Sha256::digest(&tbs), &signature)
            .expect("signature verifies");
    } else {
        assert_eq!(alg, ECDSA_WITH_SHA384);
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(key).expect("p384 key");
        let signature = p384::ecdsa::Signature::from_der(signature).expect("der");
        key.verify_prehash(&Sha384::digest(&tbs), &signature)
            .expect("signature verifies");
    }
}

fn ext<'a, T: Decode<'a> + x509_cert::der::oid::AssociatedOid>(cert: &'a Certificate) -> (bool, T) {
    match cert.tbs_certificate().get_extension::<T>() {
        Ok(Some(found)) => found,
        _ => panic!("missing or bad extension {}", T::OID),
    }
}

fn cn(cert: &Certificate) -> Option<String> {
    cert.tbs_certificate()
        .subject()
        .common_name()
        .expect("cn")
        .map(|s| s.value().into_owned())
}

fn seconds(t: x509_cert::time::Time) -> u64 {
    t.to_unix_duration().as_secs()
}

#[test]
fn issues_a_leaf_and_ca_chain_with_the_documented_fields() {
    let host = FakeHost::default();
    let names = ["www.example.test", "example.test", "192.0.2.10", "2001:db8::1"];
    let chain = issue(
        &host,
        &config("{}"),
        &request(csr(&TestKey::p256(1), &names), &names, Some(30)),
    )
    .expect("issued");
    let (leaf, ca) = split_chain(&chain);

    // The CA: self-signed, CA:TRUE pathlen 0 critical, keyCertSign + cRLSign critical, SKI.
    verify_signed_by(&ca, &ca);
    let tbs = ca.tbs_certificate();
    assert_eq!(tbs.version(), x509_cert::Version::V3);
    assert_eq!(cn(&ca).as_deref(), Some("certctl local CA"));
    assert_eq!(tbs.issuer(), tbs.subject());
    assert_eq!(
        ext::<BasicConstraints>(&ca),
        (
            true,
            BasicConstraints {
                ca: true,
                path_len_constraint: Some(0)
            }
        )
    );
    assert_eq!(
        ext::<KeyUsage>(&ca),
        (true, KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))
    );
    let (critical, ca_ski) = ext::<SubjectKeyIdentifier>(&ca);
    assert!(!critical);
    assert_eq!(ca_ski.0.as_bytes().len(), 20);
    assert_eq!(seconds(tbs.validity().not_before), NOW - 3600);
    assert_eq!(seconds(tbs.validity().not_after), NOW + 3650 * DAY);
    let serial = tbs.serial_number().as_bytes();
    assert_eq!(serial.len(), 16, "16-byte serial");
    assert!(
        serial[0] & 0x80 == 0 && serial[0] != 0,
        "positive, no leading zero: {serial:x?}"
    );

    // The leaf: signed by the CA, CN = first name, SANs in order, TLS usages, AKI = CA SKI.
    verify_signed_by(&leaf, &ca);
    let tbs = leaf.tbs_certificate();
    assert_eq!(tbs.issuer(), ca.tbs_certificate().subject());
    assert_eq!(cn(&leaf).as_deref(), Some("www.example.test"));
    assert_eq!(
        ext::<BasicConstraints>(&leaf),
        (
            true,
            BasicConstraints {
                ca: false,
                path_len_constraint: None
            }
        )
    );
    assert_eq!(
        ext::<KeyUsage>(&leaf),
        (true, KeyUsage(KeyUsages::DigitalSignature.into()))
    );
    let (critical, eku) = ext::<ExtendedKeyUsage>(&leaf);
    assert!(!critical);
    assert_eq!(
        eku.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["1.3.6.1.5.5.7.3.1"],
        "serverAuth only, by default"
    );
    let (critical, san) = ext::<SubjectAltName>(&leaf);
    assert!(!critical, "the subject is not empty");
    let sans: Vec<String> = san
        .0
        .iter()
        .map(|n| match n {
            GeneralName::DnsName(d) => format!("DNS:{}", d.as_str()),
            GeneralName::IpAddress(ip) => format!("IP:{:?}", crate::x509::ip_from_octets(ip.as_bytes()).expect("ip")),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        sans,
        [
            "DNS:www.example.test",
            "DNS:example.test",
            "IP:192.0.2.10",
            "IP:2001:db8::1"
        ]
    );
    let (_, aki) = ext::<AuthorityKeyIdentifier>(&leaf);
    assert_eq!(
        aki.key_identifier.as_ref().map(|k| k.as_bytes()),
        Some(ca_ski.0.as_bytes())
    );
    let (_, leaf_ski) = ext::<SubjectKeyIdentifier>(&leaf);
    assert_ne!(leaf_ski, ca_ski);
    assert_eq!(seconds(tbs.validity().not_before), NOW - 300);
    assert_eq!(seconds(tbs.validity().not_after), NOW + 30 * DAY);
    assert_eq!(tbs.serial_number().as_bytes().len(), 16);
    assert_ne!(tbs.serial_number(), ca.tbs_certificate().serial_number());
    assert_eq!(
        tbs.subject_public_key_info(),
        &TestKey::p256(1).spki(),
        "the CSR's key is certified"
    );

    // The CA was created once and stored as one kv entry.
    assert_eq!(host.kv.borrow().keys().collect::<Vec<_>>(), [CA_KV_KEY]);
    assert!(
        host.logs.borrow().iter().any(|l| l.starts_with("created the CA")),
        "{:?}",
        host.logs.borrow()
    );
    openssl_verify(
        &chain,
        &[
            "DNS:www.example.test",
            "IP Address:192.0.2.10",
            "TLS Web Server Authentication",
        ],
    );
}

#[test]
fn the_ca_is_created_once_and_reused_even_after_the_configuration_changes() {
    let host = FakeHost::default();
    let first = issue(
        &host,
        &config("{}"),
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None),
    )
    .expect("first");
    let later = config(r#"{"key_algorithm": "ecdsa-p384", "ca_common_name": "Other"}"#);
    let second = issue(
        &host,
        &later,
        &request(csr(&TestKey::p256(2), &["b.test"]), &["b.test"], None),
    )
    .expect("second");
    let (_, ca1) = split_chain(&first);
    let (leaf2, ca2) = split_chain(&second);
    assert_eq!(ca1, ca2);
    assert!(second.ends_with(first.split_inclusive("-----END CERTIFICATE-----\n").nth(1).expect("ca")));
    assert_eq!(host.generated.get(), 1, "one CA key");
    // Signed with the stored P-256 key, whatever the configuration says now.
    verify_signed_by(&leaf2, &ca2);
    assert_eq!(leaf2.signature_algorithm().oid, ECDSA_WITH_SHA256);
    assert_eq!(
        seconds(leaf2.tbs_certificate().validity().not_after),
        NOW + 90 * DAY,
        "default validity"
    );
}

#[test]
fn a_p384_ca_signs_with_sha384_and_the_configured_name_and_path_length() {
    let host = FakeHost::default();
    let c = config(
        r#"{"key_algorithm": "ecdsa-p384", "ca_common_name": "Lab, CA", "path_length": 2, "ca_validity_days": 400}"#,
    );
    let chain = issue(
        &host,
        &c,
        &request(csr(&TestKey::p256(1), &["x.lab.test"]), &["x.lab.test"], None),
    )
    .expect("issued");
    let (leaf, ca) = split_chain(&chain);
    assert_eq!(ca.signature_algorithm().oid, ECDSA_WITH_SHA384);
    verify_signed_by(&ca, &ca);
    verify_signed_by(&leaf, &ca);
    assert_eq!(cn(&ca).as_deref(), Some("Lab, CA"));
    assert_eq!(ext::<BasicConstraints>(&ca).1.path_len_constraint, Some(2));
    assert_eq!(seconds(ca.tbs_certificate().validity().not_after), NOW + 400 * DAY);
    openssl_verify(&chain, &["DNS:x.lab.test"]);
}

#[test]
fn every_supported_key_type_is_verified_and_certified() {
    let host = FakeHost::default();
    let keys = [
        ("ecdsa-p384", TestKey::p384(), false),
        ("ed25519", TestKey::ed25519(), false),
        ("rsa-2048", TestKey::rsa(include_str!("../testdata/rsa-2048.pem")), true),
    ];
    for (name, key, rsa) in keys {
        let chain = issue(
            &host,
            &config("{}"),
            &request(csr(&key, &["k.test"]), &["k.test"], None),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (leaf, ca) = split_chain(&chain);
        verify_signed_by(&leaf, &ca);
        assert_eq!(leaf.tbs_certificate().subject_public_key_info(), &key.spki(), "{name}");
        let usage = ext::<KeyUsage>(&leaf).1;
        assert!(usage.digital_signature(), "{name}");
        assert_eq!(usage.key_encipherment(), rsa, "{name}: keyEncipherment for RSA only");
        if rsa {
            assert_eq!(
                leaf.tbs_certificate().subject_public_key_info().algorithm.oid,
                RSA_ENCRYPTION
            );
        }
        openssl_verify(&chain, &["DNS:k.test"]);
    }
}

#[test]
fn forged_and_mismatched_csrs_are_refused_before_a_ca_exists() {
    let host = FakeHost::default();
    let c = config("{}");
    // A byte of the signature flipped (as the host's integration test does).
    let mut forged = csr(&TestKey::p256(1), &["a.test"]);
    let at = forged.len() - 3;
    forged[at] ^= 0x55;
    assert_eq!(
        permanent(issue(&host, &c, &request(forged, &["a.test"], None))),
        BAD_SIGNATURE
    );
    // The subject changed after signing.
    let mut altered = csr(&TestKey::p256(1), &["a.test"]);
    let at = altered.windows(6).position(|w| w == b"a.test").expect("cn");
    altered[at] = b'b';
    assert_eq!(
        permanent(issue(&host, &c, &request(altered, &["b.test"], None))),
        BAD_SIGNATURE
    );
    // Signed by another key than the one it carries.
    let other = csr_with(&TestKey::p256(1), &["a.test"], &TestKey::p256(2));
    assert_eq!(
        permanent(issue(&host, &c, &request(other, &["a.test"], None))),
        BAD_SIGNATURE
    );
    // Signed with an algorithm that does not fit the key.
    let mismatched = csr_with(&TestKey::p256(1), &["a.test"], &TestKey::ed25519());
    let m = permanent(issue(&host, &c, &request(mismatched, &["a.test"], None)));
    assert!(m.contains("1.3.101.112") && m.contains("ecdsa-p256"), "{m}");
    // Not a CSR at all.
    let m = permanent(issue(&host, &c, &request(b"garbage".to_vec(), &["a.test"], None)));
    assert!(m.starts_with("the CSR is not a valid PKCS#10 request"), "{m}");
    assert!(host.kv.borrow().is_empty(), "no CA is created for a refused request");
    assert_eq!(host.generated.get(), 0);
}

#[test]
fn names_outside_allowed_names_are_refused_by_name() {
    let host = FakeHost::default();
    let c = config(r#"{"allowed_names": ["*.example.test", "example.test", "192.0.2.1"]}"#);
    let names = ["www.example.test", "evil.test", "192.0.2.2", "a.b.example.test"];
    let m = permanent(issue(&host, &c, &request(csr(&TestKey::p256(1), &names), &names, None)));
    assert_eq!(
        m,
        "this CA may not certify evil.test, 192.0.2.2 (not matched by allowed_names)"
    );
    let names = ["example.test", "*.example.test", "192.0.2.1", "deep.er.example.test"];
    issue(&host, &c, &request(csr(&TestKey::p256(1), &names), &names, None)).expect("all allowed");
}

#[test]
fn key_types_outside_allowed_key_types_are_refused() {
    let host = FakeHost::default();
    let c = config(r#"{"allowed_key_types": ["ecdsa-p384", "rsa-4096"]}"#);
    let m = permanent(issue(
        &host,
        &c,
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None),
    ));
    assert_eq!(
        m,
        "the CSR's key type ecdsa-p256 is not allowed by this CA (allowed_key_types: ecdsa-p384, rsa-4096)"
    );
    let small = TestKey::rsa(include_str!("../testdata/rsa-1024.pem"));
    let m = permanent(issue(
        &host,
        &config("{}"),
        &request(csr(&small, &["a.test"]), &["a.test"], None),
    ));
    assert!(m.contains("1024 bits"), "{m}");
}

#[test]
fn validity_is_limited_by_max_validity_days_and_by_the_ca() {
    let host = FakeHost::default();
    let c = config(r#"{"max_validity_days": 90, "default_validity_days": 30}"#);
    let m = permanent(issue(
        &host,
        &c,
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], Some(365)),
    ));
    assert!(m.contains("365 days") && m.contains("limit of 90 days"), "{m}");
    let chain = issue(
        &host,
        &c,
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], Some(90)),
    )
    .expect("90 days");
    assert_eq!(
        seconds(split_chain(&chain).0.tbs_certificate().validity().not_after),
        NOW + 90 * DAY
    );

    // A leaf never outlives its CA.
    let host = FakeHost::default();
    let short = config(r#"{"ca_validity_days": 10, "max_validity_days": 10, "default_validity_days": 10}"#);
    issue(
        &host,
        &short,
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None),
    )
    .expect("creates the CA");
    let longer = config(r#"{"max_validity_days": 397, "default_validity_days": 90}"#);
    let m = permanent(issue(
        &host,
        &longer,
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], Some(11)),
    ));
    assert!(
        m.contains("would outlive the CA certificate, which expires in 10 days"),
        "{m}"
    );
}

#[test]
fn names_come_from_the_csr_when_the_request_has_none() {
    let host = FakeHost::default();
    let names = ["One.Test", "192.0.2.7", "mail:ops@one.test", "one.test", "2001:db8::7"];
    let chain = issue(
        &host,
        &config("{}"),
        &request(csr(&TestKey::p256(1), &names), &[], None),
    )
    .expect("issued");
    let (leaf, _) = split_chain(&chain);
    assert_eq!(cn(&leaf).as_deref(), Some("one.test"));
    let san = ext::<SubjectAltName>(&leaf).1;
    assert_eq!(san.0.len(), 4, "duplicates dropped: {san:?}");
    openssl_verify(
        &chain,
        &[
            "DNS:one.test",
            "IP Address:192.0.2.7",
            "email:ops@one.test",
            "IP Address:2001:DB8:0:0:0:0:0:7",
        ],
    );

    let m = permanent(issue(
        &host,
        &config("{}"),
        &request(csr(&TestKey::p256(1), &[]), &[], None),
    ));
    assert!(m.starts_with("no names to certify"), "{m}");
    let m = permanent(issue(
        &host,
        &config("{}"),
        &request(csr(&TestKey::p256(1), &["a.test"]), &["bad name"], None),
    ));
    assert!(m.contains("\"bad name\" is not a DNS name"), "{m}");
}

#[test]
fn a_first_name_too_long_for_a_common_name_leaves_the_subject_empty() {
    let host = FakeHost::default();
    let long = format!("{}.example.test", "a".repeat(60));
    let names = [long.as_str(), "short.test"];
    let chain = issue(
        &host,
        &config("{}"),
        &request(csr(&TestKey::p256(1), &["x.test"]), &names, None),
    )
    .expect("issued");
    let (leaf, _) = split_chain(&chain);
    assert!(leaf.tbs_certificate().subject().is_empty());
    let (critical, san) = ext::<SubjectAltName>(&leaf);
    assert!(critical, "SAN is critical when the subject is empty");
    assert_eq!(san.0.len(), 2);
    openssl_verify(&chain, &[long.as_str()]);
}

#[test]
fn the_issuer_leaves_revocation_to_the_host_and_refuses_bad_configuration() {
    let c = config("{}");
    assert_eq!(
        crate::LocalCa::revoke(&c, "pem", 1),
        Ok(()),
        "the host records it and signs the CRL"
    );
    assert!(matches!(
        crate::LocalCa::validate_config(r#"{"colour": 1}"#),
        Err(PluginError::InvalidConfig(_))
    ));
    assert!(matches!(
        crate::LocalCa::validate_config(r#"{"default_validity_days": 500}"#),
        Err(PluginError::InvalidConfig(m)) if m.starts_with("config.default_validity_days")
    ));
    assert_eq!(crate::LocalCa::validate_config("{}"), Ok(()));
}

/// `openssl verify` of the leaf against the CA for a TLS server at [`NOW`], and the leaf's text
/// holds `wanted`.
fn openssl_verify(chain: &str, wanted: &[&str]) {
    openssl_check(chain, NOW + 60, "sslserver", wanted);
}

/// `openssl verify -purpose <purpose>` of the leaf at `at` (Unix seconds), with the last
/// certificate of the chain as the trust anchor and those between as untrusted intermediates;
/// the leaf's text holds `wanted`. Skipped (with a note) where no openssl binary is installed.
fn openssl_check(chain: &str, at: u64, purpose: &str, wanted: &[&str]) {
    use std::process::Command;
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not found: skipping the openssl cross-check");
        return;
    }
    let blocks: Vec<&str> = chain.split_inclusive("-----END CERTIFICATE-----\n").collect();
    assert!(blocks.len() >= 2, "a leaf and its CA at least:\n{chain}");
    let dir = std::env::temp_dir().join(format!(
        "local-ca-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (leaf, root, untrusted) = (dir.join("leaf.pem"), dir.join("root.pem"), dir.join("untrusted.pem"));
    std::fs::write(&leaf, blocks[0]).expect("write");
    std::fs::write(&root, blocks[blocks.len() - 1]).expect("write");
    std::fs::write(&untrusted, blocks[1..blocks.len() - 1].concat()).expect("write");
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (leaf, root, untrusted) = (
        leaf.to_str().expect("utf8"),
        root.to_str().expect("utf8"),
        untrusted.to_str().expect("utf8"),
    );
    // -attime: the fake clock's "now", so the check does not depend on the real date.
    let at = at.to_string();
    let mut verify = vec![
        "verify",
        "-attime",
        &at,
        "-x509_strict",
        "-purpose",
        purpose,
        "-CAfile",
        root,
    ];
    if blocks.len() > 2 {
        verify.extend(["-untrusted", untrusted]);
    }
    verify.push(leaf);
    let verified = run(&verify);
    assert!(verified.contains(": OK"), "{verified}");
    run(&[
        "verify",
        "-attime",
        &at,
        "-x509_strict",
        "-check_ss_sig",
        "-CAfile",
        root,
        root,
    ]);
    let text = run(&["x509", "-in", leaf, "-noout", "-text"]);
    for want in wanted.iter().chain(&["CA:FALSE", "Digital Signature"]) {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    let root_text = run(&["x509", "-in", root, "-noout", "-text"]);
    assert!(
        root_text.contains("CA:TRUE") && root_text.contains("Certificate Sign, CRL Sign"),
        "{root_text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pem_blocks_end_with_a_newline() {
    let host = FakeHost::default();
    let chain = issue(
        &host,
        &config("{}"),
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None),
    )
    .expect("issued");
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(chain.ends_with("-----END CERTIFICATE-----\n"));
    assert!(!chain.contains('\r'));
}

#[test]
fn csrs_made_by_openssl_are_accepted() {
    use std::process::Command;
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not found: skipping the openssl-made CSRs");
        return;
    }
    let dir = std::env::temp_dir().join(format!("local-ca-csr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = |name: &str| dir.join(name).to_str().expect("utf8").to_string();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let host = FakeHost::default();
    let cases: [(&str, &[&str], &[&str]); 6] = [
        (
            "ec256",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &[],
        ),
        (
            "ec384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            &[],
        ),
        (
            "ec256-sha512",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &["-sha512"],
        ),
        ("ed25519", &["-algorithm", "ED25519"], &[]),
        ("rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], &[]),
        (
            "rsa-sha384",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
            &["-sha384"],
        ),
    ];
    for (name, keygen, digest) in cases {
        let (key, csr_path) = (path(&format!("{name}.key")), path(&format!("{name}.csr")));
        run(&[&["genpkey", "-out", key.as_str()][..], keygen].concat());
        let req = [
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            "/CN=www.example.test",
            "-addext",
            "subjectAltName=DNS:www.example.test,IP:192.0.2.1",
            "-outform",
            "DER",
            "-out",
            &csr_path,
        ];
        run(&[&req[..], digest].concat());
        let der = std::fs::read(&csr_path).expect("csr");
        let chain = issue(&host, &config("{}"), &request(der, &[], None)).unwrap_or_else(|e| panic!("{name}: {e}"));
        openssl_verify(&chain, &["DNS:www.example.test", "IP Address:192.0.2.1"]);
    }

    // RSASSA-PSS is refused with the reason.
    let (key, csr_path) = (path("rsa.key"), path("pss.csr"));
    let req = [
        "req",
        "-new",
        "-key",
        &key,
        "-subj",
        "/CN=a.test",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-outform",
        "DER",
        "-out",
        &csr_path,
    ];
    run(&req);
    let m = permanent(issue(
        &host,
        &config("{}"),
        &request(std::fs::read(&csr_path).expect("csr"), &["a.test"], None),
    ));
    assert!(m.contains("RSASSA-PSS is not supported"), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

// --- check-request: the same checks as begin, without side effects -------------------------

/// Requests `begin` refuses, with a configuration: each refused with the same message by
/// `check` and by `issue`.
fn refused_requests() -> Vec<(&'static str, IssueRequest)> {
    let mut forged = csr(&TestKey::p256(1), &["a.test"]);
    let at = forged.len() - 3;
    forged[at] ^= 0x55;
    vec![
        ("{}", request(forged, &["a.test"], None)),
        ("{}", request(b"garbage".to_vec(), &["a.test"], None)),
        (
            r#"{"allowed_key_types": ["ecdsa-p384"]}"#,
            request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None),
        ),
        (
            r#"{"allowed_names": ["*.example.test", "*@example.test"]}"#,
            request(
                csr(&TestKey::p256(1), &["a.test"]),
                &["www.example.test", "evil.test", "ops@evil.test"],
                None,
            ),
        ),
        (
            "{}",
            request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], Some(398)),
        ),
        ("{}", request(csr(&TestKey::p256(1), &[]), &[], None)),
        (
            "{}",
            request(csr(&TestKey::p256(1), &["a.test"]), &["a@b@c.test"], None),
        ),
    ]
}

#[test]
fn check_request_refuses_what_begin_refuses_and_changes_nothing() {
    for (json, bad) in refused_requests() {
        let host = FakeHost::default();
        let checked = match check(&host, &config(json), &bad) {
            Err(PluginError::Permanent(m)) => m,
            Err(other) => panic!("{json}: expected permanent, got {other:?}"),
            Ok(_) => panic!("{json}: check accepted what begin refuses"),
        };
        host.assert_untouched();
        let begun = permanent(issue(&host, &config(json), &bad));
        assert_eq!(checked, begun, "{json}");
        host.assert_untouched();
    }

    // An acceptable request, before the CA exists: accepted, and no CA is created.
    let host = FakeHost::default();
    let good = request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None);
    assert!(check(&host, &config("{}"), &good).is_ok());
    host.assert_untouched();
}

#[test]
fn check_request_through_the_export_glue_never_writes_kv() {
    use certctl_sdk::testkit::{self, MockKv};
    let store = MockKv::install();
    for (json, bad) in refused_requests() {
        let plugin = testkit::issuer::<crate::LocalCa>(json);
        let by_glue = plugin.check_request(&bad).expect_err("refused");
        let direct = permanent(issue(&FakeHost::default(), &config(json), &bad));
        assert_eq!(by_glue, PluginError::Permanent(direct), "{json}");
    }
    let good = request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None);
    assert_eq!(testkit::issuer::<crate::LocalCa>("{}").check_request(&good), Ok(()));
    assert!(
        store.entries().is_empty(),
        "check-request wrote {:?}",
        store.entries().keys()
    );
    // An invalid configuration is refused before the request is looked at.
    assert!(matches!(
        testkit::issuer::<crate::LocalCa>(r#"{"extended_key_usages": []}"#).check_request(&good),
        Err(PluginError::InvalidConfig(m)) if m.starts_with("config.extended_key_usages")
    ));
}

#[test]
fn an_expired_self_signed_ca_is_refused_by_check_and_begin() {
    let host = FakeHost::default();
    let short = config(r#"{"ca_validity_days": 10, "max_validity_days": 5, "default_validity_days": 5}"#);
    let good = request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None);
    issue(&host, &short, &good).expect("creates the CA");
    let created = host.kv.borrow().clone();
    let writes = host.kv_writes.get();

    host.set_now(NOW + 11 * DAY);
    let expected = "the CA certificate expired on 2026-01-11T00:00:00Z: this instance's self-signed CA is never \
                    replaced: create a new issuer instance, or import a CA (ca_certificate_pem and ca_key_id)";
    assert_eq!(
        check(&host, &short, &good).err(),
        Some(PluginError::Permanent(expected.into()))
    );
    assert_eq!(permanent(issue(&host, &short, &good)), expected);
    assert_eq!(*host.kv.borrow(), created, "the expired CA is kept, not replaced");
    assert_eq!((host.kv_writes.get(), host.generated.get()), (writes, 1));

    // Through the export glue, with the real clock (well past 2026-01-11) and the stored CA.
    let store = certctl_sdk::testkit::MockKv::install();
    store.set(CA_KV_KEY, &created[CA_KV_KEY]).expect("stored");
    let plugin = certctl_sdk::testkit::issuer::<crate::LocalCa>(
        r#"{"ca_validity_days": 10, "max_validity_days": 5, "default_validity_days": 5}"#,
    );
    assert_eq!(
        plugin.check_request(&good),
        Err(PluginError::Permanent(expected.into()))
    );
    assert_eq!(store.entries(), created);
}

// --- an imported CA (sub-CA mode) -----------------------------------------------------------

const ROOT_PEM: &str = include_str!("../testdata/root-ca.pem");
const INTERMEDIATE_PEM: &str = include_str!("../testdata/intermediate-ca.pem");
const IMPORTED_KEY_ID: &str = "0190c0de-0000-7000-8000-000000000001";

fn pem_der(pem: &str) -> Vec<u8> {
    x509_cert::der::pem::decode_vec(pem.as_bytes()).expect("pem").1
}

fn intermediate_key() -> FakeKey {
    use p256::pkcs8::DecodePrivateKey;
    FakeKey::P256(
        p256::ecdsa::SigningKey::from_pkcs8_der(&pem_der(include_str!("../testdata/intermediate-ca.key")))
            .expect("p256 key"),
    )
}

fn root_key() -> FakeKey {
    use rsa::pkcs8::DecodePrivateKey;
    FakeKey::Rsa(Box::new(
        rsa::PrivateKey::from_pkcs8_der(&pem_der(include_str!("../testdata/root-ca.key"))).expect("rsa key"),
    ))
}

/// The configuration of an imported CA, with more keys in `extra` (`"k": v, `).
fn imported_json(certificate: &str, chain: Option<&str>, extra: &str) -> String {
    let chain = chain.map_or(String::new(), |c| {
        format!(r#""ca_chain_pem": {}, "#, serde_json::to_string(c).expect("json"))
    });
    format!(
        r#"{{{extra}{chain}"ca_certificate_pem": {}, "ca_key_id": "{IMPORTED_KEY_ID}"}}"#,
        serde_json::to_string(certificate).expect("json")
    )
}

/// The validity of a PEM certificate, Unix seconds.
fn validity(pem: &str) -> (u64, u64) {
    let cert = Certificate::from_pem(pem).expect("certificate");
    let v = cert.tbs_certificate().validity();
    (seconds(v.not_before), seconds(v.not_after))
}

/// A fake host holding `key` under [`IMPORTED_KEY_ID`], its clock a day into `ca_pem`'s life.
fn host_with_imported(key: FakeKey, ca_pem: &str) -> FakeHost {
    let host = FakeHost::default();
    host.import(IMPORTED_KEY_ID, key);
    host.set_now(validity(ca_pem).0 + DAY);
    host
}

fn blocks(chain: &str) -> Vec<Certificate> {
    chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .map(|b| Certificate::from_pem(b).expect("certificate"))
        .collect()
}

#[test]
fn an_imported_intermediate_issues_leaves_that_chain_to_its_root() {
    let host = host_with_imported(intermediate_key(), INTERMEDIATE_PEM);
    let c = config(&imported_json(INTERMEDIATE_PEM, Some(ROOT_PEM), ""));
    let names = ["svc.example.test", "192.0.2.20"];
    let chain = issue(&host, &c, &request(csr(&TestKey::p256(7), &names), &names, Some(30))).expect("issued");

    // leaf + the CA certificate + ca_chain_pem, each as imported.
    let certs = blocks(&chain);
    assert_eq!(certs.len(), 3, "{chain}");
    assert_eq!(certs[1].to_der().expect("der"), pem_der(INTERMEDIATE_PEM));
    assert_eq!(certs[2].to_der().expect("der"), pem_der(ROOT_PEM));
    let (leaf, ca) = (&certs[0], &certs[1]);

    // The issuer Name is the CA's subject, byte for byte (PrintableStrings, as openssl wrote
    // them), and the AKI is the CA's own SKI (which openssl computed with SHA-1, not our method).
    let issuer = leaf.tbs_certificate().issuer().to_der().expect("der");
    assert_eq!(issuer, ca.tbs_certificate().subject().to_der().expect("der"));
    assert!(
        pem_der(INTERMEDIATE_PEM)
            .windows(issuer.len())
            .any(|w| w == issuer.as_slice()),
        "the issuer name bytes are the CA certificate's"
    );
    assert!(issuer.windows(2).any(|w| w == [0x13, 0x19]), "PrintableString CN kept");
    let ca_ski = ext::<SubjectKeyIdentifier>(ca).1;
    let aki = ext::<AuthorityKeyIdentifier>(leaf).1;
    assert_eq!(
        aki.key_identifier.as_ref().map(|k| k.as_bytes()),
        Some(ca_ski.0.as_bytes())
    );
    assert_ne!(
        ca_ski.0.as_bytes(),
        crate::x509::key_identifier(ca.tbs_certificate().subject_public_key_info()).as_slice(),
        "the fixture's SKI is not the one we would compute, so copying it is tested"
    );

    assert_eq!(leaf.signature_algorithm().oid, ECDSA_WITH_SHA256);
    verify_signed_by(leaf, ca);
    let now = host.now_secs();
    assert_eq!(seconds(leaf.tbs_certificate().validity().not_after), now + 30 * DAY);
    // The leaf starts no earlier than the CA (which is a day old here: 5 minutes back is fine).
    assert_eq!(seconds(leaf.tbs_certificate().validity().not_before), now - 300);

    // No CA was created, nothing stored: an imported CA does not use the kv entry.
    assert!(host.kv.borrow().is_empty());
    assert_eq!(host.generated.get(), 0);
    assert_eq!(host.signatures.get(), 1, "the leaf only");
    openssl_check(
        &chain,
        now + 60,
        "sslserver",
        &[
            "DNS:svc.example.test",
            "IP Address:192.0.2.20",
            "TLS Web Server Authentication",
        ],
    );
}

#[test]
fn an_imported_ca_starts_its_leaves_no_earlier_than_itself() {
    let host = host_with_imported(intermediate_key(), INTERMEDIATE_PEM);
    let (not_before, _) = validity(INTERMEDIATE_PEM);
    host.set_now(not_before + 60);
    let c = config(&imported_json(INTERMEDIATE_PEM, Some(ROOT_PEM), ""));
    let chain = issue(
        &host,
        &c,
        &request(csr(&TestKey::p256(7), &["a.test"]), &["a.test"], None),
    )
    .expect("issued");
    assert_eq!(
        seconds(blocks(&chain)[0].tbs_certificate().validity().not_before),
        not_before
    );
}

#[test]
fn an_imported_rsa_root_signs_with_sha256_with_rsa_encryption() {
    let host = host_with_imported(root_key(), ROOT_PEM);
    let c = config(&imported_json(
        ROOT_PEM,
        None,
        r#""max_validity_days": 825, "default_validity_days": 825, "#,
    ));
    let chain = issue(
        &host,
        &c,
        &request(csr(&TestKey::ed25519(), &["rsa.example.test"]), &[], None),
    )
    .expect("issued");
    let certs = blocks(&chain);
    assert_eq!(certs.len(), 2, "no ca_chain_pem: leaf and root");
    let (leaf, root) = (&certs[0], &certs[1]);
    assert_eq!(root.to_der().expect("der"), pem_der(ROOT_PEM));
    assert_eq!(leaf.signature_algorithm().oid, SHA256_WITH_RSA);
    assert_eq!(
        leaf.signature_algorithm().parameters,
        Some(Any::encode_from(&Null).expect("null")),
        "RSA algorithm identifiers carry NULL parameters"
    );
    assert_eq!(leaf.tbs_certificate().signature(), leaf.signature_algorithm());
    let spki = root.tbs_certificate().subject_public_key_info().to_der().expect("spki");
    let key = <rsa::PublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&spki).expect("rsa key");
    key.verify(
        rsa::Pkcs1v15Sign::new::<Sha256>(),
        &Sha256::digest(leaf.tbs_certificate().to_der().expect("tbs")),
        leaf.signature().as_bytes().expect("signature"),
    )
    .expect("signed by the root's key");
    assert_eq!(
        leaf.tbs_certificate().issuer().to_der().expect("der"),
        root.tbs_certificate().subject().to_der().expect("der")
    );
    openssl_check(&chain, host.now_secs() + 60, "sslserver", &["DNS:rsa.example.test"]);
}

#[test]
fn an_imported_ca_key_must_be_the_certificates_key() {
    // The key under ca_key_id is another one (here: the root's, for the intermediate).
    let host = host_with_imported(root_key(), INTERMEDIATE_PEM);
    let c = config(&imported_json(INTERMEDIATE_PEM, Some(ROOT_PEM), ""));
    let good = request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None);
    let m = permanent(issue(&host, &c, &good));
    assert!(
        m.starts_with(&format!(
            "ca_key_id \"{IMPORTED_KEY_ID}\" does not match ca_certificate_pem"
        )),
        "{m}"
    );
    assert_eq!(check(&host, &c, &good).err(), Some(PluginError::Permanent(m)));

    // The same curve, another key.
    let host = host_with_imported(
        FakeKey::P256(p256::ecdsa::SigningKey::from_slice(&[3; 32]).expect("key")),
        INTERMEDIATE_PEM,
    );
    assert!(permanent(issue(&host, &c, &good)).contains("does not match ca_certificate_pem"));

    // No such key (not imported, or imported for another instance).
    let host = FakeHost::default();
    host.set_now(validity(INTERMEDIATE_PEM).0 + DAY);
    let m = permanent(issue(&host, &c, &good));
    assert!(
        m.starts_with(&format!(
            "ca_key_id \"{IMPORTED_KEY_ID}\" is not a key of this instance in the host keystore"
        )),
        "{m}"
    );
    host.assert_untouched();
}

#[test]
fn an_imported_ca_must_be_valid_now_and_outlive_the_leaf() {
    let (not_before, not_after) = validity(INTERMEDIATE_PEM);
    let c = config(&imported_json(INTERMEDIATE_PEM, Some(ROOT_PEM), ""));
    let good = request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], Some(30));
    let date = |t: u64| {
        x509_cert::der::DateTime::from_unix_duration(Duration::from_secs(t))
            .expect("date")
            .to_string()
    };

    let host = host_with_imported(intermediate_key(), INTERMEDIATE_PEM);
    host.set_now(not_after + 1);
    let m = permanent(issue(&host, &c, &good));
    assert_eq!(
        m,
        format!(
            "the CA certificate expired on {}: import a renewed CA certificate (ca_certificate_pem, and \
             ca_key_id if its key changed) or create a new issuer instance",
            date(not_after)
        )
    );
    assert_eq!(check(&host, &c, &good).err(), Some(PluginError::Permanent(m)));

    host.set_now(not_before - DAY);
    let m = permanent(issue(&host, &c, &good));
    assert!(
        m.starts_with(&format!("the CA certificate is not valid before {}", date(not_before))),
        "{m}"
    );

    host.set_now(not_after - 10 * DAY);
    let m = permanent(issue(&host, &c, &good));
    assert!(
        m.starts_with(&format!(
            "a certificate valid for 30 days would outlive the CA certificate, which expires in 10 days (on {})",
            date(not_after)
        )),
        "{m}"
    );
    assert_eq!(host.signatures.get(), 0);
    // A lifetime inside the CA's is issued.
    issue(
        &host,
        &c,
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], Some(9)),
    )
    .expect("9 days");
}

#[test]
fn imported_ca_configuration_is_checked_without_the_host() {
    use crate::LocalCa;
    let invalid = |json: &str| match LocalCa::validate_config(json) {
        Err(PluginError::InvalidConfig(m)) => m,
        other => panic!("expected invalid-config for {json}, got {other:?}"),
    };
    let pem = |s: &str| serde_json::to_string(s).expect("json");
    assert_eq!(
        LocalCa::validate_config(&imported_json(INTERMEDIATE_PEM, Some(ROOT_PEM), "")),
        Ok(())
    );
    assert_eq!(LocalCa::validate_config(&imported_json(ROOT_PEM, None, "")), Ok(()));

    // Together or not at all.
    let m = invalid(&format!(r#"{{"ca_certificate_pem": {}}}"#, pem(INTERMEDIATE_PEM)));
    assert!(
        m.starts_with("config.ca_key_id: required with ca_certificate_pem"),
        "{m}"
    );
    let m = invalid(r#"{"ca_key_id": "abc"}"#);
    assert!(
        m.starts_with("config.ca_certificate_pem: required with ca_key_id"),
        "{m}"
    );
    let m = invalid(&format!(r#"{{"ca_chain_pem": {}}}"#, pem(ROOT_PEM)));
    assert!(
        m.starts_with("config.ca_chain_pem: only with ca_certificate_pem and ca_key_id"),
        "{m}"
    );
    let m = invalid(&format!(
        r#"{{"ca_certificate_pem": {}, "ca_key_id": " "}}"#,
        pem(ROOT_PEM)
    ));
    assert!(m.starts_with("config.ca_key_id: must not be empty"), "{m}");

    // The self-signed CA's keys conflict with an imported CA.
    let m = invalid(&imported_json(
        ROOT_PEM,
        None,
        r#""path_length": 1, "ca_common_name": "x", "#,
    ));
    assert_eq!(
        m,
        "config.ca_common_name: conflicts with ca_certificate_pem: an imported CA brings its own name, lifetime, key \
         and path length, so remove the keys that configure only the self-signed CA (ca_common_name, path_length)"
    );
    for key in [r#""key_algorithm": "ecdsa-p384", "#, r#""ca_validity_days": 100, "#] {
        assert!(invalid(&imported_json(ROOT_PEM, None, key)).contains("conflicts with ca_certificate_pem"));
    }
    // ... but null is absent, and the leaf limit is no longer bound by ca_validity_days.
    assert_eq!(
        LocalCa::validate_config(&imported_json(
            ROOT_PEM,
            None,
            r#""path_length": null, "max_validity_days": 5000, "#
        )),
        Ok(())
    );

    // The certificate must be one CA certificate that may sign certificates.
    let m = invalid(&imported_json(include_str!("../testdata/not-a-ca.pem"), None, ""));
    assert_eq!(
        m,
        "config.ca_certificate_pem: not a CA certificate: it has no basicConstraints CA:TRUE"
    );
    let m = invalid(&imported_json(include_str!("../testdata/no-keycertsign.pem"), None, ""));
    assert_eq!(
        m,
        "config.ca_certificate_pem: its keyUsage does not include keyCertSign: it may not sign certificates"
    );
    let both = format!("{INTERMEDIATE_PEM}{ROOT_PEM}");
    assert!(invalid(&imported_json(&both, None, "")).starts_with("config.ca_certificate_pem: holds 2 certificates"));
    assert!(invalid(&imported_json("", None, "")).starts_with("config.ca_certificate_pem: no certificate found"));
    let broken = INTERMEDIATE_PEM.replacen("MII", "MIJ", 1);
    assert!(invalid(&imported_json(&broken, None, "")).starts_with("config.ca_certificate_pem: "));
    // A private key pasted by mistake is refused without being repeated.
    let key = include_str!("../testdata/intermediate-ca.key");
    let m = invalid(&imported_json(&format!("{INTERMEDIATE_PEM}{key}"), None, ""));
    assert!(
        m.starts_with("config.ca_certificate_pem: holds a private key: never put it in the configuration"),
        "{m}"
    );
    let key_line = key.lines().nth(1).expect("a base64 line");
    assert!(!m.contains(key_line));

    // The chain: certificates, with text around them (openssl's subject= lines, CRLF) ignored.
    let annotated = format!(
        "subject=CN = Example Test Root CA\r\n{}",
        ROOT_PEM.replace('\n', "\r\n")
    );
    assert_eq!(
        LocalCa::validate_config(&imported_json(INTERMEDIATE_PEM, Some(&annotated), "")),
        Ok(())
    );
    assert!(
        invalid(&imported_json(INTERMEDIATE_PEM, Some("none"), ""))
            .starts_with("config.ca_chain_pem: no certificate found")
    );
    let m = invalid(&imported_json(INTERMEDIATE_PEM, Some(&format!("{ROOT_PEM}{key}")), ""));
    assert!(m.starts_with("config.ca_chain_pem: holds a private key"), "{m}");
}

// --- extendedKeyUsage, e-mail addresses, CRL distribution point ----------------------------

#[test]
fn extended_key_usages_are_encoded_in_the_configured_order() {
    let host = FakeHost::default();
    let c = config(
        r#"{"extended_key_usages": ["client-auth", "code-signing", "email-protection", "server-auth", "client-auth"]}"#,
    );
    let chain = issue(
        &host,
        &c,
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None),
    )
    .expect("issued");
    let (leaf, _) = split_chain(&chain);
    let (critical, eku) = ext::<ExtendedKeyUsage>(&leaf);
    assert!(!critical);
    assert_eq!(
        eku.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "1.3.6.1.5.5.7.3.2",
            "1.3.6.1.5.5.7.3.3",
            "1.3.6.1.5.5.7.3.4",
            "1.3.6.1.5.5.7.3.1"
        ],
        "in order, the duplicate dropped"
    );
    openssl_check(
        &chain,
        NOW + 60,
        "sslclient",
        &["TLS Web Client Authentication, Code Signing, E-mail Protection, TLS Web Server Authentication"],
    );

    // Client authentication only: not a TLS server certificate.
    let chain = issue(
        &FakeHost::default(),
        &config(r#"{"extended_key_usages": ["client-auth"]}"#),
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None),
    )
    .expect("issued");
    let eku = ext::<ExtendedKeyUsage>(&split_chain(&chain).0).1;
    assert_eq!(eku.0, [crate::x509::KP_CLIENT_AUTH]);
    openssl_check(&chain, NOW + 60, "sslclient", &["TLS Web Client Authentication"]);

    let m = match crate::LocalCa::validate_config(r#"{"extended_key_usages": []}"#) {
        Err(PluginError::InvalidConfig(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(
        m.starts_with("config.extended_key_usages: must list at least one"),
        "{m}"
    );
    assert!(matches!(
        crate::LocalCa::validate_config(r#"{"extended_key_usages": ["server-auth", "ocsp-signing"]}"#),
        Err(PluginError::InvalidConfig(m)) if m.starts_with("config.extended_key_usages[1]: unknown variant `ocsp-signing`")
    ));
}

#[test]
fn e_mail_addresses_are_rfc822_names_under_allowed_names() {
    let host = FakeHost::default();
    let c = config(
        r#"{"allowed_names": ["*@example.test", "boss@other.test"], "extended_key_usages": ["email-protection", "client-auth"]}"#,
    );
    let names = ["Ops@Example.TEST", "boss@OTHER.test"];
    let chain = issue(&host, &c, &request(csr(&TestKey::p256(1), &["x.test"]), &names, None)).expect("issued");
    let (leaf, _) = split_chain(&chain);
    assert_eq!(
        cn(&leaf).as_deref(),
        Some("ops@example.test"),
        "the first address is the CN"
    );
    let san = ext::<SubjectAltName>(&leaf).1;
    let addresses: Vec<&str> = san
        .0
        .iter()
        .map(|n| match n {
            GeneralName::Rfc822Name(a) => a.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(addresses, ["ops@example.test", "boss@other.test"], "lower-cased");
    openssl_check(
        &chain,
        NOW + 60,
        "smimesign",
        &["email:ops@example.test, email:boss@other.test", "E-mail Protection"],
    );

    // Refused: an address at another domain, at a subdomain, or not allowed exactly.
    for refused in ["ops@sub.example.test", "ops@other.test", "ops@example.test.evil"] {
        let m = permanent(issue(
            &host,
            &c,
            &request(csr(&TestKey::p256(1), &["x.test"]), &[refused], None),
        ));
        assert!(
            m.starts_with(&format!("this CA may not certify {}", refused.to_ascii_lowercase())),
            "{m}"
        );
    }
    // *@domain allows addresses only, not the domain's DNS names.
    let m = permanent(issue(
        &host,
        &c,
        &request(csr(&TestKey::p256(1), &["x.test"]), &["example.test"], None),
    ));
    assert!(m.starts_with("this CA may not certify example.test"), "{m}");
    // Malformed addresses.
    for (bad, why) in [
        ("@example.test", "the part before '@' is empty"),
        ("a b@example.test", "printable ASCII"),
        ("a@@example.test", "more than one '@'"),
        ("a@*.example.test", "not a DNS name"),
        ("ops@exa_mple.test", "not a DNS name"),
    ] {
        let m = permanent(issue(
            &host,
            &c,
            &request(csr(&TestKey::p256(1), &["x.test"]), &[bad], None),
        ));
        assert!(m.starts_with("the requested name") && m.contains(why), "{bad}: {m}");
    }

    // Mixed names: the CN is the first DNS name; the CSR's rfc822Names count when the request
    // has no names.
    let chain = issue(
        &FakeHost::default(),
        &config("{}"),
        &request(
            csr(&TestKey::p256(1), &["mail:dev@example.test", "www.example.test"]),
            &[],
            None,
        ),
    )
    .expect("issued");
    let (leaf, _) = split_chain(&chain);
    assert_eq!(cn(&leaf).as_deref(), Some("www.example.test"));
    assert_eq!(ext::<SubjectAltName>(&leaf).1.0.len(), 2);
    openssl_verify(&chain, &["email:dev@example.test, DNS:www.example.test"]);
}

#[test]
fn a_crl_url_puts_a_distribution_point_in_every_leaf() {
    use x509_cert::ext::pkix::CrlDistributionPoints;
    use x509_cert::ext::pkix::name::DistributionPointName;
    let url = "https://certctl.example.test/crl/0190c0de-0000-7000-8000-0000000000aa";
    let host = FakeHost::default();
    let c = config(&format!(r#"{{"crl_url": "{url}"}}"#));
    let chain = issue(
        &host,
        &c,
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None),
    )
    .expect("issued");
    let (leaf, _) = split_chain(&chain);
    let (critical, points) = ext::<CrlDistributionPoints>(&leaf);
    assert!(!critical);
    assert_eq!(points.0.len(), 1);
    let point = &points.0[0];
    assert!(point.reasons.is_none() && point.crl_issuer.is_none());
    match &point.distribution_point {
        Some(DistributionPointName::FullName(names)) => match names.as_slice() {
            [GeneralName::UniformResourceIdentifier(uri)] => assert_eq!(uri.as_str(), url),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    openssl_verify(&chain, &["X509v3 CRL Distribution Points", &format!("URI:{url}")]);

    // None without a crl_url.
    let chain = issue(
        &host,
        &config("{}"),
        &request(csr(&TestKey::p256(1), &["a.test"]), &["a.test"], None),
    )
    .expect("issued");
    assert!(matches!(
        split_chain(&chain)
            .0
            .tbs_certificate()
            .get_extension::<CrlDistributionPoints>(),
        Ok(None)
    ));

    for (bad, why) in [
        ("ftp://x.test/crl", "is not an http:// or https:// URL"),
        ("https://", "has no host"),
        ("https:///crl", "has no host"),
        ("https://x.test/a crl", "printable ASCII"),
        ("https://user:pw@x.test/crl", "user name or password"),
    ] {
        match crate::LocalCa::validate_config(&format!(r#"{{"crl_url": "{bad}"}}"#)) {
            Err(PluginError::InvalidConfig(m)) => assert!(m.starts_with("config.crl_url: ") && m.contains(why), "{m}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert_eq!(
        crate::LocalCa::validate_config(r#"{"crl_url": "http://10.0.0.1:8443/crl/x"}"#),
        Ok(())
    );
}
