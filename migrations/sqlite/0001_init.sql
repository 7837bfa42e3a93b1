-- certctl schema v1 (SQLite). Times are Unix seconds (UTC). Ids are UUIDv7 text.
-- Never edit a migration once released: add a new file.

CREATE TABLE plugin_instances (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('issuer', 'dns-solver', 'notifier')),
    name        TEXT NOT NULL,
    plugin      TEXT NOT NULL,
    config      TEXT NOT NULL,
    secrets     BLOB,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (kind, name)
);

CREATE TABLE certificates (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    common_name     TEXT NOT NULL,
    sans            TEXT NOT NULL,
    key_type        TEXT NOT NULL,
    key_generation  TEXT NOT NULL,
    issuer_id       TEXT REFERENCES plugin_instances (id) ON DELETE RESTRICT,
    state           TEXT NOT NULL,
    renewal         TEXT NOT NULL,
    labels          TEXT NOT NULL,
    not_after       BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX certificates_state_not_after ON certificates (state, not_after);
CREATE INDEX certificates_issuer ON certificates (issuer_id);

CREATE TABLE certificate_versions (
    id                  TEXT PRIMARY KEY,
    certificate_id      TEXT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    serial              TEXT NOT NULL,
    fingerprint_sha256  TEXT NOT NULL,
    not_before          BIGINT NOT NULL,
    not_after           BIGINT NOT NULL,
    chain_pem           TEXT NOT NULL,
    private_key         BLOB,
    created_at          BIGINT NOT NULL
);
CREATE INDEX certificate_versions_cert ON certificate_versions (certificate_id, created_at);

CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    hostname        TEXT,
    os              TEXT,
    arch            TEXT,
    version         TEXT,
    credential_hash TEXT UNIQUE,
    last_heartbeat  BIGINT,
    retired_at      BIGINT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    state             TEXT NOT NULL,
    certificate_id    TEXT REFERENCES certificates (id) ON DELETE CASCADE,
    payload           TEXT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    max_attempts      BIGINT NOT NULL,
    run_after         BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    error_class       TEXT,
    error_message     TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX jobs_state_run_after ON jobs (state, run_after);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    key_hash    TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX audit_events_target ON audit_events (target_type, target_id);

CREATE TABLE plugin_kv (
    instance_id  TEXT NOT NULL REFERENCES plugin_instances (id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    value        BLOB NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (instance_id, key)
);
