//! JSON Web Signatures as ACME wants them (RFC 8555 §6.2, RFC 7515 flattened JSON): signed by
//! the host keystore with the account key, ES256 or RS256; the account key as a JWK and its
//! thumbprint (RFC 7638); the External Account Binding (RFC 8555 §7.3.4, HS256).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certctl_sdk::PluginError;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::Eab;
use crate::der::{self, PublicKey};
use crate::services::Services;

/// base64url without padding.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWS algorithm of an account key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

/// The account key: its keystore id, algorithm, JWK and thumbprint.
#[derive(Debug, Clone)]
pub(crate) struct AccountKey {
    key_id: String,
    alg: Alg,
    jwk: Value,
    thumbprint: String,
}

impl AccountKey {
    /// The key `key_id` of the host keystore.
    pub(crate) fn load(host: &impl Services, key_id: &str) -> Result<AccountKey, PluginError> {
        let spki = host.public_key(key_id)?;
        let key = der::public_key(&spki).map_err(PluginError::permanent)?;
        Ok(AccountKey::new(key_id, &key))
    }

    pub(crate) fn new(key_id: &str, key: &PublicKey) -> AccountKey {
        // RFC 7638: the required members only, in lexicographic order, no whitespace.
        let (alg, jwk, canonical) = match key {
            PublicKey::P256 { x, y } => {
                let (x, y) = (b64(x), b64(y));
                let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (
                    Alg::Es256,
                    json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}),
                    canonical,
                )
            }
            PublicKey::Rsa { n, e } => {
                let (n, e) = (b64(n), b64(e));
                let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                (Alg::Rs256, json!({"e": e, "kty": "RSA", "n": n}), canonical)
            }
        };
        AccountKey {
            key_id: key_id.to_string(),
            alg,
            jwk,
            thumbprint: b64(Sha256::digest(canonical.as_bytes())),
        }
    }

    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// `token.thumbprint` (RFC 8555 §8.1).
    pub(crate) fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
    }

    /// A flattened JWS of `payload` (`None`: POST-as-GET, an empty payload) for `url`, with the
    /// key as `jwk` (`kid` is `None`: newAccount) or the account URL as `kid`.
    pub(crate) fn sign(
        &self,
        host: &impl Services,
        url: &str,
        nonce: &str,
        kid: Option<&str>,
        payload: Option<&Value>,
    ) -> Result<Value, PluginError> {
        let mut header = json!({"alg": self.alg.as_str(), "nonce": nonce, "url": url});
        match kid {
            Some(kid) => header["kid"] = json!(kid),
            None => header["jwk"] = self.jwk.clone(),
        }
        let protected = b64(header.to_string());
        let payload = payload.map(|p| b64(p.to_string())).unwrap_or_default();
        let signature = host.sign(&self.key_id, format!("{protected}.{payload}").as_bytes())?;
        let signature = match self.alg {
            Alg::Es256 => der::ecdsa_raw(&signature, 32).map_err(PluginError::permanent)?,
            Alg::Rs256 => signature,
        };
        Ok(json!({"protected": protected, "payload": payload, "signature": b64(signature)}))
    }
}

/// The `externalAccountBinding` of a newAccount request: a JWS over the account's JWK, MACed
/// with the CA's key (HS256), `kid` the CA's key identifier and `url` the newAccount URL; no
/// nonce.
pub(crate) fn external_account_binding(eab: &Eab, jwk: &Value, url: &str) -> Result<Value, PluginError> {
    let protected = b64(json!({"alg": "HS256", "kid": eab.kid, "url": url}).to_string());
    let payload = b64(jwk.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(&eab.key)
        .map_err(|_| PluginError::invalid_config("config.eab_hmac_key: not usable as an HMAC key"))?;
    mac.update(format!("{protected}.{payload}").as_bytes());
    let signature = mac.finalize().into_bytes();
    Ok(json!({"protected": protected, "payload": payload, "signature": b64(signature)}))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn the_rfc_7638_thumbprint() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = PublicKey::Rsa {
            n: URL_SAFE_NO_PAD.decode(n).expect("n"),
            e: vec![1, 0, 1],
        };
        let key = AccountKey::new("k", &key);
        assert_eq!(key.thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(key.alg, Alg::Rs256);
        assert_eq!(
            key.key_authorization("tok"),
            "tok.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(key.jwk["n"], n);
    }

    #[test]
    fn ec_jwks_have_the_members_acme_expects() {
        let key = AccountKey::new(
            "k",
            &PublicKey::P256 {
                x: vec![1; 32],
                y: vec![2; 32],
            },
        );
        assert_eq!(key.alg, Alg::Es256);
        assert_eq!(
            key.jwk,
            json!({"crv": "P-256", "kty": "EC", "x": b64([1; 32]), "y": b64([2; 32])})
        );
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64([1; 32]),
            b64([2; 32])
        );
        assert_eq!(key.thumbprint, b64(Sha256::digest(canonical.as_bytes())));
    }

    #[test]
    fn the_eab_is_an_hs256_jws_over_the_jwk() {
        let eab = Eab {
            kid: "kid-1".into(),
            key: b"0123456789abcdef".to_vec(),
        };
        let jwk = json!({"crv": "P-256", "kty": "EC", "x": "AA", "y": "AQ"});
        let binding = external_account_binding(&eab, &jwk, "https://ca.test/new-account").expect("eab");
        let protected: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(binding["protected"].as_str().expect("protected"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(
            protected,
            json!({"alg": "HS256", "kid": "kid-1", "url": "https://ca.test/new-account"})
        );
        let payload: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(binding["payload"].as_str().expect("payload"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(payload, jwk);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef").expect("key");
        mac.update(
            format!(
                "{}.{}",
                binding["protected"].as_str().expect("p"),
                binding["payload"].as_str().expect("p")
            )
            .as_bytes(),
        );
        let expected = b64(mac.finalize().into_bytes());
        assert_eq!(binding["signature"], expected);
    }
}
