-- certctl schema v5: what ACME needs beyond RFC 8555.
-- - certificates.profile: the issuer profile a certificate asks for (an ACME profile).
-- - certificates.ari_*: the CA's suggested renewal window (RFC 9773) and when to ask again.
-- - plugin_instances.paused_until: an issuer the CA told to slow down; its jobs wait until then.
-- - challenges: dns-persist-01 records, which wait for the operator's approval before the host
--   publishes them.

ALTER TABLE certificates ADD COLUMN profile TEXT;
ALTER TABLE certificates ADD COLUMN ari_window_start BIGINT;
ALTER TABLE certificates ADD COLUMN ari_window_end BIGINT;
ALTER TABLE certificates ADD COLUMN ari_explanation_url TEXT;
ALTER TABLE certificates ADD COLUMN ari_next_check BIGINT;
CREATE INDEX certificates_ari_next_check ON certificates (ari_next_check);

ALTER TABLE plugin_instances ADD COLUMN paused_until BIGINT;
ALTER TABLE plugin_instances ADD COLUMN paused_reason TEXT;

ALTER TABLE challenges DROP CONSTRAINT challenges_kind_check;
ALTER TABLE challenges ADD CONSTRAINT challenges_kind_check CHECK (kind IN ('dns-01', 'http-01', 'dns-persist-01'));
ALTER TABLE challenges DROP CONSTRAINT challenges_state_check;
ALTER TABLE challenges ADD CONSTRAINT challenges_state_check
    CHECK (state IN ('presenting', 'present', 'cleaned', 'failed', 'awaiting_approval'));
-- dns-persist-01: what the record must say (JSON: issuer_domain_names, account_uri, wildcard).
ALTER TABLE challenges ADD COLUMN detail TEXT;
CREATE INDEX challenges_kind ON challenges (kind, state);
