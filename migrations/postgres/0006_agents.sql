-- certctl schema v6: agents at work.
-- - agents: what the heartbeat reports beyond v1 (addresses), the credential's rotation time.
-- - certificates.agent_id / deploy: the agent that holds the key and deploys the certificate,
--   and where (files, reload and check commands, verification; JSON).
-- - discoveries: certificates agents found on their nodes, for triage (claim or dismiss).

ALTER TABLE agents ADD COLUMN ips TEXT;
ALTER TABLE agents ADD COLUMN credential_rotated_at BIGINT;
ALTER TABLE certificates ADD COLUMN agent_id TEXT REFERENCES agents (id) ON DELETE SET NULL;
ALTER TABLE certificates ADD COLUMN deploy TEXT;
CREATE INDEX certificates_agent ON certificates (agent_id);

CREATE TABLE discoveries (
    id                  TEXT PRIMARY KEY,
    agent_id            TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    path                TEXT NOT NULL,
    index_in_file       INTEGER NOT NULL,
    fingerprint_sha256  TEXT NOT NULL,
    serial              TEXT NOT NULL,
    subject             TEXT NOT NULL,
    issuer              TEXT NOT NULL,
    sans                TEXT NOT NULL,
    not_before          BIGINT NOT NULL,
    not_after           BIGINT NOT NULL,
    is_ca               INTEGER NOT NULL,  -- 0 or 1
    -- new, claimed (adopted as a managed certificate) or dismissed.
    state               TEXT NOT NULL CHECK (state IN ('new', 'claimed', 'dismissed')),
    certificate_id      TEXT REFERENCES certificates (id) ON DELETE SET NULL,
    first_seen          BIGINT NOT NULL,
    last_seen           BIGINT NOT NULL,
    UNIQUE (agent_id, path, index_in_file, fingerprint_sha256)
);
CREATE INDEX discoveries_state ON discoveries (state, last_seen);
CREATE INDEX discoveries_fingerprint ON discoveries (fingerprint_sha256);
