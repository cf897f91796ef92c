CREATE SCHEMA IF NOT EXISTS ingest;

-- Enrolled patients, as last posted by the tenant. The authoritative copy for ingest's
-- "unknown patient" check; scoring and alerts keep their own copies from the patients topic.
CREATE TABLE ingest.patients (
    tenant_id   text NOT NULL,
    patient_id  text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id)
);
