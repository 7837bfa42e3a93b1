-- certctl schema v4: ACME challenges the host presents for issuer instances. A row is written
-- before the DNS solver (or HTTP responder) is asked to publish anything, so what was presented
-- is cleaned up even after a crash. The row id is the handle plugins hold.

CREATE TABLE challenges (
    id BIGSERIAL PRIMARY KEY,
    instance_id        TEXT NOT NULL REFERENCES plugin_instances (id) ON DELETE CASCADE,
    kind               TEXT NOT NULL CHECK (kind IN ('dns-01', 'http-01')),
    identifier         TEXT NOT NULL,
    -- http-01: the token and the key authorization served for it.
    token              TEXT,
    key_authorization  TEXT,
    -- dns-01: the record and the solver instance that published it.
    zone               TEXT,
    fqdn               TEXT,
    value              TEXT,
    solver_id          TEXT,
    state              TEXT NOT NULL CHECK (state IN ('presenting', 'present', 'cleaned', 'failed')),
    last_error         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX challenges_token ON challenges (token);
CREATE INDEX challenges_state ON challenges (state, created_at);
