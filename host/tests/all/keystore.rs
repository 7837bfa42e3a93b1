//! The keystore on both databases: every key type signs verifiably, keys are sealed at rest
//! and bound to their row.

use certctl::config::EncryptionKey;
use certctl::keystore::{Keystore, KeystoreError, encryption_key};
use certctl::model::KeyType;
use ring::signature::{self, UnparsedPublicKey};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::common::{Backend, TestDb};

fn verify(kind: KeyType, spki: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let (_, info) = SubjectPublicKeyInfo::from_der(spki).expect("SPKI");
    let raw = info.subject_public_key.data.to_vec();
    let alg: &dyn signature::VerificationAlgorithm = match kind {
        KeyType::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
        KeyType::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1,
        KeyType::Ed25519 => &signature::ED25519,
        _ => &signature::RSA_PKCS1_2048_8192_SHA256,
    };
    UnparsedPublicKey::new(alg, raw).verify(msg, sig).is_ok()
}

async fn every_key_type_signs_verifiably(backend: Backend) {
    let db = TestDb::new(backend).await;
    let ks = Keystore::new(db.store().await, &EncryptionKey([7; 32])).expect("keystore");
    for kind in [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
    ] {
        let key = ks.generate("instance:test", kind).await.expect("generate");
        let sig = ks.sign(&key.id, b"to be signed").await.expect("sign");
        assert!(
            verify(kind, &key.public_key, b"to be signed", &sig),
            "{kind} signature verifies"
        );
        assert!(
            !verify(kind, &key.public_key, b"something else", &sig),
            "{kind} binds the message"
        );
        assert_eq!(ks.info(&key.id).await.expect("info").algorithm, kind);
    }
    assert!(matches!(
        ks.sign("no-such-key", b"x").await,
        Err(KeystoreError::NotFound(_))
    ));
}

async fn keys_are_sealed_under_the_encryption_key(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let ks = Keystore::new(store.clone(), &EncryptionKey([1; 32])).expect("keystore");
    let key = ks
        .generate("certificate:web", KeyType::EcdsaP256)
        .await
        .expect("generate");
    let row = store.get_key(&key.id).await.expect("row").expect("exists");
    let pkcs8 = certctl::keystore::generate_pkcs8(KeyType::EcdsaP256).expect("pkcs8");
    assert!(
        row.sealed_private_key.len() >= pkcs8.len() + 12 + 16,
        "nonce + ciphertext + tag"
    );
    let wrong = Keystore::new(store.clone(), &EncryptionKey([2; 32])).expect("keystore");
    assert!(
        matches!(wrong.sign(&key.id, b"x").await, Err(KeystoreError::Sealed(_))),
        "another key cannot open it"
    );
    // A sealed key copied onto another row does not open there (the id is associated data).
    let moved_id = "00000000-0000-7000-8000-000000000000";
    store.insert_key(moved_id, &row).await.expect("copy row");
    assert!(matches!(ks.sign(moved_id, b"x").await, Err(KeystoreError::Sealed(_))));
}

crate::on_both_backends!(
    every_key_type_signs_verifiably,
    keys_are_sealed_under_the_encryption_key
);

#[test]
fn the_embedded_default_generates_a_private_key_file_and_postgres_requires_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = encryption_key(None, dir.path(), false).expect("generated");
    let again = encryption_key(None, dir.path(), false).expect("reused");
    assert_eq!(first.0, again.0);
    let mode = std::fs::metadata(dir.path().join("encryption.key"))
        .expect("file")
        .permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077, 0);
    let err = encryption_key(None, dir.path(), true)
        .expect_err("shared database")
        .to_string();
    assert!(err.contains("CERTCTL_CONFIG_ENCRYPTION_KEY"), "{err}");
    let configured = EncryptionKey([9; 32]);
    assert_eq!(
        encryption_key(Some(&configured), dir.path(), true)
            .expect("configured")
            .0,
        [9; 32]
    );
}
