-- Keys held by the host keystore. The private key is PKCS#8 DER sealed with AES-256-GCM under
-- CERTCTL_CONFIG_ENCRYPTION_KEY (12-byte nonce, then ciphertext and tag; the key id is the
-- associated data, so a sealed key cannot be moved to another row).

CREATE TABLE keys (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    public_key   BLOB NOT NULL,
    private_key  BLOB NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX keys_owner ON keys (owner);
