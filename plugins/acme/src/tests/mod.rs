//! Whole issuances, natively: a fake host (host-kv, a keystore that really signs with P-256 or
//! RSA keys, host-challenge that records what was presented) and a Pebble-like fake CA behind
//! the SDK's `MockHttp` that verifies every JWS.

mod ari;
mod fake_ca;
mod flows;
mod persist;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use certctl_sdk::testkit::MockHttp;
use certctl_sdk::{IssueRequest, PluginError, Progress};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};

use crate::config::{self, AccountKeyType, Config};
use crate::services::Services;
use fake_ca::FakeCa;

/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;
const RSA_KEY: &str = include_str!("../../testdata/rsa-2048.pem");

/// RFC 9773 Appendix A: the example certificate of ACME Renewal Information.
pub const RFC_9773_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt
cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS
BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu
7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf
qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B
yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb
+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK
-----END CERTIFICATE-----
";

#[derive(Clone)]
pub enum FakeKey {
    P256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::PrivateKey>),
}

/// A challenge the plugin asked the host to present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// `http-01`, `dns-01` or `dns-persist-01`.
    pub kind: &'static str,
    /// The token (http-01) or the identifier (dns-01, dns-persist-01).
    pub name: String,
    /// The key authorization (http-01, dns-01), or the TXT value of the `_validation-persist`
    /// record (dns-persist-01), as the host writes it.
    pub value: String,
    /// The plugin cleaned it up. A dns-persist-01 record stays all the same: the host only
    /// closes its handle.
    pub cleaned: bool,
}

/// The arguments of one `present_persist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistCall {
    pub identifier: String,
    pub issuer_domain_names: Vec<String>,
    pub account_uri: String,
    pub wildcard: bool,
}

/// The host services, in memory. Handles are indexes into `presented`, plus one.
#[derive(Default)]
pub struct FakeHost {
    pub kv: RefCell<BTreeMap<String, Vec<u8>>>,
    pub keys: Rc<RefCell<BTreeMap<String, FakeKey>>>,
    pub presented: Rc<RefCell<Vec<Presented>>>,
    pub persist_calls: RefCell<Vec<PersistCall>>,
    /// `ready` answers false this many times before true.
    pub not_ready: Cell<u32>,
    pub ready_calls: Cell<u32>,
    pub generated: Cell<u32>,
    pub kv_writes: Cell<u32>,
    pub signatures: Cell<u32>,
    /// Flip a bit of every signature (still DER): the CA must refuse them.
    pub corrupt_signatures: Cell<bool>,
}

impl FakeHost {
    fn present(&self, kind: &'static str, name: &str, value: &str) -> u64 {
        let mut presented = self.presented.borrow_mut();
        presented.push(Presented {
            kind,
            name: name.to_string(),
            value: value.to_string(),
            cleaned: false,
        });
        presented.len() as u64
    }

    fn handle(&self, handle: u64) -> Result<usize, PluginError> {
        let i = usize::try_from(handle).expect("handle") - 1;
        if i < self.presented.borrow().len() {
            Ok(i)
        } else {
            Err(PluginError::not_found(format!("no challenge {handle}")))
        }
    }

    /// Every presented challenge was cleaned up.
    pub fn all_cleaned(&self) -> bool {
        self.presented.borrow().iter().all(|p| p.cleaned)
    }

    pub fn kv_keys(&self) -> Vec<String> {
        self.kv.borrow().keys().cloned().collect()
    }

    pub fn kv_json(&self, key: &str) -> serde_json::Value {
        serde_json::from_slice(self.kv.borrow().get(key).expect("kv entry")).expect("json")
    }
}

impl Services for FakeHost {
    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.kv.borrow().get(key).cloned()
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), PluginError> {
        assert!(key.len() <= 256 && value.len() <= 64 * 1024, "host-kv limits");
        self.kv_writes.set(self.kv_writes.get() + 1);
        self.kv.borrow_mut().insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&self, key: &str) {
        self.kv.borrow_mut().remove(key);
    }

    fn generate_key(&self, algorithm: AccountKeyType) -> Result<String, PluginError> {
        let n = self.generated.get() + 1;
        self.generated.set(n);
        let key = match algorithm {
            AccountKeyType::EcdsaP256 => {
                FakeKey::P256(p256::ecdsa::SigningKey::from_slice(&[0x30 + n as u8; 32]).expect("key"))
            }
            AccountKeyType::Rsa2048 => {
                use rsa::pkcs8::DecodePrivateKey;
                let der = crate::der::pem_blocks(RSA_KEY, "PRIVATE KEY").expect("pem").remove(0);
                FakeKey::Rsa(Box::new(rsa::PrivateKey::from_pkcs8_der(&der).expect("rsa key")))
            }
        };
        let id = format!("key-{n}");
        self.keys.borrow_mut().insert(id.clone(), key);
        Ok(id)
    }

    fn public_key(&self, key_id: &str) -> Result<Vec<u8>, PluginError> {
        match self.keys.borrow().get(key_id) {
            Some(FakeKey::P256(k)) => Ok(p256::PublicKey::from(k.verifying_key())
                .to_public_key_der()
                .expect("spki")
                .into_vec()),
            Some(FakeKey::Rsa(k)) => Ok(rsa::PublicKey::from(k.as_ref())
                .to_public_key_der()
                .expect("spki")
                .into_vec()),
            None => Err(PluginError::not_found(format!("no key {key_id}"))),
        }
    }

    fn sign(&self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.signatures.set(self.signatures.get() + 1);
        // As the host keystore: SHA-256, DER ECDSA or PKCS#1 v1.5.
        let signature = match self.keys.borrow().get(key_id) {
            Some(FakeKey::P256(k)) => Ok(Signer::<p256::ecdsa::Signature>::sign(k, data)
                .to_der()
                .as_bytes()
                .to_vec()),
            Some(FakeKey::Rsa(k)) => Ok(k
                .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data))
                .expect("rsa sign")),
            None => Err(PluginError::not_found(format!("no key {key_id}"))),
        };
        signature.map(|mut s| {
            if self.corrupt_signatures.get()
                && let Some(last) = s.last_mut()
            {
                *last ^= 1;
            }
            s
        })
    }

    fn present_dns(&self, identifier: &str, key_authorization: &str) -> Result<u64, PluginError> {
        Ok(self.present("dns-01", identifier, key_authorization))
    }

    fn present_http(&self, token: &str, key_authorization: &str) -> Result<u64, PluginError> {
        Ok(self.present("http-01", token, key_authorization))
    }

    /// As the host: the record names the first issuer domain name.
    fn present_persist(
        &self,
        identifier: &str,
        issuer_domain_names: &[String],
        account_uri: &str,
        wildcard: bool,
    ) -> Result<u64, PluginError> {
        self.persist_calls.borrow_mut().push(PersistCall {
            identifier: identifier.to_string(),
            issuer_domain_names: issuer_domain_names.to_vec(),
            account_uri: account_uri.to_string(),
            wildcard,
        });
        let Some(issuer) = issuer_domain_names.first() else {
            return Err(PluginError::permanent(format!(
                "dns-persist-01 for {identifier}: the CA listed no issuer domain names"
            )));
        };
        let mut value = format!("{issuer}; accounturi={account_uri}");
        if wildcard {
            value.push_str("; policy=wildcard");
        }
        Ok(self.present("dns-persist-01", identifier, &value))
    }

    fn ready(&self, handle: u64) -> Result<bool, PluginError> {
        let i = self.handle(handle)?;
        assert!(!self.presented.borrow()[i].cleaned, "ready on a cleaned-up challenge");
        self.ready_calls.set(self.ready_calls.get() + 1);
        match self.not_ready.get() {
            0 => Ok(true),
            n => {
                self.not_ready.set(n - 1);
                Ok(false)
            }
        }
    }

    fn cleanup(&self, handle: u64) -> Result<(), PluginError> {
        let i = self.handle(handle)?;
        self.presented.borrow_mut()[i].cleaned = true;
        Ok(())
    }

    fn now(&self) -> u64 {
        NOW
    }
}

/// A fake host, the fake CA on a `MockHttp`, and a configuration.
pub struct Harness {
    pub host: FakeHost,
    pub ca: FakeCa,
    pub config: Config,
    // Dropped last: it checks that nothing unexpected was sent.
    pub mock: MockHttp,
}

/// The configuration JSON for the fake CA, with more keys.
pub fn config_json(extra: &str) -> String {
    format!(r#"{{"directory_url": "{}"{extra}}}"#, fake_ca::DIRECTORY)
}

pub fn parse_config(json: &str) -> Result<Config, PluginError> {
    let config: Config = certctl_sdk::config(json)?;
    config::check(&config)?;
    Ok(config)
}

pub const CSR: &[u8] = b"0\x82 a DER CSR, as far as the plugin cares";

pub fn request(names: &[&str]) -> IssueRequest {
    IssueRequest {
        csr: CSR.to_vec(),
        names: names.iter().map(|n| n.to_string()).collect(),
        validity_days: None,
        profile: None,
        replaces: None,
    }
}

impl Harness {
    /// `extra`: more configuration keys, `, "challenge": "dns-01", ...`.
    pub fn new(extra: &str) -> Harness {
        let host = FakeHost::default();
        let mock = MockHttp::install();
        let ca = FakeCa::install(&mock, &host);
        Harness {
            host,
            ca,
            config: parse_config(&config_json(extra)).expect("valid configuration"),
            mock,
        }
    }

    pub fn begin(&self, names: &[&str]) -> Result<Progress, PluginError> {
        crate::order::begin(&self.host, &self.config, &request(names))
    }

    pub fn resume(&self, state: &[u8]) -> Result<Progress, PluginError> {
        crate::order::resume(&self.host, &self.config, state)
    }

    /// Resumes until issued or failed; the waits asked for along the way.
    pub fn finish(&self, mut progress: Progress) -> (Result<String, PluginError>, Vec<u32>) {
        let mut waits = Vec::new();
        for _ in 0..30 {
            match progress {
                Progress::Issued(chain) => return (Ok(chain), waits),
                Progress::Pending { after_ms, state } => {
                    waits.push(after_ms);
                    progress = match self.resume(&state) {
                        Ok(p) => p,
                        Err(e) => return (Err(e), waits),
                    };
                }
            }
        }
        panic!("no end after 30 resumes");
    }

    /// begin and resume until the end.
    pub fn issue(&self, names: &[&str]) -> Result<String, PluginError> {
        let progress = self.begin(names)?;
        self.finish(progress).0
    }
}

/// The state of a pending progress.
pub fn state_of(progress: &Progress) -> crate::order::State {
    match progress {
        Progress::Pending { state, .. } => serde_json::from_slice(state).expect("state"),
        Progress::Issued(_) => panic!("issued, pending expected"),
    }
}

pub fn state_bytes(progress: &Progress) -> Vec<u8> {
    match progress {
        Progress::Pending { state, .. } => state.clone(),
        Progress::Issued(_) => panic!("issued, pending expected"),
    }
}
