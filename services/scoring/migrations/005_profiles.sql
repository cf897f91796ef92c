-- Tenant clinical-profile overrides per (condition, treatment), every version kept. A PUT adds
-- version n+1; rows are never updated or deleted; the newest version is the current one.
-- `override` is the JSON object of ClinicalProfile fields the tenant sets (validated by the
-- service); `profile_version` is the content hash (ClinicalProfile.version) of the effective
-- profile (defaults + override) it produces: the value trajectories record.
CREATE TABLE scoring.profile_versions (
    tenant_id        text NOT NULL,
    condition        text NOT NULL,
    treatment        text NOT NULL,
    version          integer NOT NULL CHECK (version >= 1),
    override         jsonb NOT NULL,
    profile_version  text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL,
    PRIMARY KEY (tenant_id, condition, treatment, version)
);

-- Re-scoring runs (`nervewatch rescore`): one row per run, dry runs included. `counts` holds the
-- aggregate summary (no patient ids).
CREATE TABLE scoring.rescore_runs (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL,
    since            date,
    profile_source   text NOT NULL,
    profile_version  text NOT NULL,
    engine_version   text NOT NULL,
    dry_run          boolean NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    counts           jsonb NOT NULL DEFAULT '{}',
    run_by           text NOT NULL
);
CREATE INDEX rescore_runs_tenant ON scoring.rescore_runs (tenant_id, started_at DESC);

-- The engine and profile version that produced each stored trajectory (NULL: written before this
-- migration, or by a writer that does not record it yet).
ALTER TABLE scoring.trajectories
    ADD COLUMN IF NOT EXISTS engine_version text,
    ADD COLUMN IF NOT EXISTS profile_version text,
    ADD COLUMN IF NOT EXISTS rescore_run text;
