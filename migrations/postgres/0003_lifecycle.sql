-- certctl schema v3: issuance, renewal, revocation, CRLs and notification routing.

-- The current version's validity, and when the scheduler renews the certificate (NULL: not
-- issued, or auto-renew off). Kept in step with the renewal policy by the server, so the
-- renewal scan is one indexed range query.
ALTER TABLE certificates ADD COLUMN not_before BIGINT;
ALTER TABLE certificates ADD COLUMN renew_at BIGINT;
ALTER TABLE certificates ADD COLUMN current_version_id TEXT;
CREATE INDEX certificates_renew_at ON certificates (renew_at);

-- Server-generated keys live in the keystore (owner certificate:<id>), not in this table.
ALTER TABLE certificate_versions DROP COLUMN private_key;
ALTER TABLE certificate_versions ADD COLUMN issuer_id TEXT;
ALTER TABLE certificate_versions ADD COLUMN key_id TEXT;
ALTER TABLE certificate_versions ADD COLUMN revoked_at BIGINT;
ALTER TABLE certificate_versions ADD COLUMN revocation_reason BIGINT;
CREATE INDEX certificate_versions_revoked ON certificate_versions (issuer_id, revoked_at);

-- Jobs that must not be created twice (one alert per certificate, threshold and notifier)
-- carry a dedup key. At most one issuance or renewal per certificate is open at a time.
ALTER TABLE jobs ADD COLUMN dedup_key TEXT;
CREATE UNIQUE INDEX jobs_dedup_key ON jobs (dedup_key);
CREATE UNIQUE INDEX jobs_one_open_issuance ON jobs (certificate_id)
    WHERE kind IN ('issuance', 'renewal') AND state IN ('pending', 'running', 'awaiting_csr', 'awaiting_approval');
CREATE INDEX jobs_kind_state ON jobs (kind, state);

-- Which events go to which notifier instance.
CREATE TABLE notification_routes (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    notifier_id   TEXT NOT NULL REFERENCES plugin_instances (id) ON DELETE CASCADE,
    events        TEXT NOT NULL,
    min_severity  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- The newest CRL of each issuer instance whose CA key is in the keystore.
CREATE TABLE crls (
    issuer_id    TEXT PRIMARY KEY REFERENCES plugin_instances (id) ON DELETE CASCADE,
    number       BIGINT NOT NULL,
    this_update  BIGINT NOT NULL,
    next_update  BIGINT NOT NULL,
    der          BYTEA NOT NULL
);
