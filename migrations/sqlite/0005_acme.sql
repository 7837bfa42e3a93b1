-- certctl schema v5: what ACME needs beyond RFC 8555.
-- - certificates.profile: the issuer profile a certificate asks for (an ACME profile).
-- - certificates.ari_*: the CA's suggested renewal window (RFC 9773) and when to ask again.
-- - plugin_instances.paused_until: an issuer the CA told to slow down; its jobs wait until then.
-- - challenges: dns-persist-01 records, which wait for the operator's approval before the host
--   publishes them (SQLite cannot change a CHECK constraint in place: the table is rebuilt).

ALTER TABLE certificates ADD COLUMN profile TEXT;
ALTER TABLE certificates ADD COLUMN ari_window_start BIGINT;
ALTER TABLE certificates ADD COLUMN ari_window_end BIGINT;
ALTER TABLE certificates ADD COLUMN ari_explanation_url TEXT;
ALTER TABLE certificates ADD COLUMN ari_next_check BIGINT;
CREATE INDEX certificates_ari_next_check ON certificates (ari_next_check);

ALTER TABLE plugin_instances ADD COLUMN paused_until BIGINT;
ALTER TABLE plugin_instances ADD COLUMN paused_reason TEXT;

CREATE TABLE challenges_v5 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id        TEXT NOT NULL REFERENCES plugin_instances (id) ON DELETE CASCADE,
    kind               TEXT NOT NULL CHECK (kind IN ('dns-01', 'http-01', 'dns-persist-01')),
    identifier         TEXT NOT NULL,
    token              TEXT,
    key_authorization  TEXT,
    zone               TEXT,
    fqdn               TEXT,
    value              TEXT,
    solver_id          TEXT,
    -- dns-persist-01: what the record must say (JSON: issuer_domain_names, account_uri, wildcard).
    detail             TEXT,
    state              TEXT NOT NULL CHECK (state IN ('presenting', 'present', 'cleaned', 'failed', 'awaiting_approval')),
    last_error         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
INSERT INTO challenges_v5 SELECT id, instance_id, kind, identifier, token, key_authorization, zone, fqdn, value,
    solver_id, NULL, state, last_error, created_at, updated_at FROM challenges;
DROP TABLE challenges;
ALTER TABLE challenges_v5 RENAME TO challenges;
CREATE INDEX challenges_token ON challenges (token);
CREATE INDEX challenges_state ON challenges (state, created_at);
CREATE INDEX challenges_kind ON challenges (kind, state);
