CREATE SCHEMA IF NOT EXISTS identity;

CREATE TABLE identity.tenants (
    tenant_id       text PRIMARY KEY CHECK (tenant_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name            text NOT NULL,
    webhook_secret  text NOT NULL,
    -- Allows webhook targets on private, loopback or link-local addresses (development only).
    allow_private_webhooks boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE identity.api_keys (
    key_id        text PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES identity.tenants(tenant_id),
    key_hash      bytea NOT NULL UNIQUE,           -- SHA-256 of the full key; the key itself is never stored
    prefix        text NOT NULL,                   -- first characters, to let humans tell keys apart
    scopes        text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX api_keys_tenant ON identity.api_keys (tenant_id);
