-- Key lifecycle: rotation lineage and a change timestamp that lets every process evict cached
-- lookups of keys revoked or shortened elsewhere (see IdentityStore._poll_changes).
ALTER TABLE identity.api_keys
    ADD COLUMN updated_at   timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN rotated_from text REFERENCES identity.api_keys(key_id);
CREATE INDEX api_keys_updated ON identity.api_keys (updated_at);

-- Webhook secret rotation: during the overlap the dispatcher signs with both secrets.
ALTER TABLE identity.tenants
    ADD COLUMN previous_webhook_secret    text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN webhook_secret_rotated_at  timestamptz;
