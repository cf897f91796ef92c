-- Operators disable a tenant (`nervewatch tenants disable`): the tenant is marked here and all its
-- keys are revoked (each revocation notifies `nervewatch_identity_keys`, migration 005).
ALTER TABLE identity.tenants ADD COLUMN IF NOT EXISTS disabled_at timestamptz;
