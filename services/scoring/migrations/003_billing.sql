-- Remote therapeutic monitoring (RTM) billing (docs/billing.md). Data days come from
-- scoring.checkins / scoring.activity (local_date); what is stored here is management time, its
-- audit trail, the tenant's settings and the recorded figures of closed device-supply periods.

-- A tenant's billing settings (JSON of BillingSettingsOut); defaults apply when absent.
CREATE TABLE scoring.billing_settings (
    tenant_id   text PRIMARY KEY,
    settings    jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Management time. A deleted entry keeps its row (deleted_at) for the audit trail and counts
-- nowhere. ended_at = started_at + minutes, written by the service.
CREATE TABLE scoring.time_entries (
    tenant_id    text NOT NULL,
    id           text NOT NULL,
    patient_id   text NOT NULL,
    member_id    text NOT NULL,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz NOT NULL,
    minutes      integer NOT NULL CHECK (minutes BETWEEN 1 AND 240),
    activity     text NOT NULL,
    interactive  boolean NOT NULL,
    note         text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    deleted_at   timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK (ended_at > started_at)
);
-- A member's entries may not overlap: the service checks under a transaction-scoped advisory lock
-- per (tenant, member) (services/scoring/billing/store.py `lock_member`), so no extension is needed.
CREATE INDEX time_entries_member ON scoring.time_entries (tenant_id, member_id, started_at)
    WHERE deleted_at IS NULL;
CREATE INDEX time_entries_patient ON scoring.time_entries (tenant_id, patient_id, started_at)
    WHERE deleted_at IS NULL;
CREATE INDEX time_entries_month ON scoring.time_entries (tenant_id, started_at) WHERE deleted_at IS NULL;

-- Audit trail of time entries: who (member id and API key), when, which fields, values before and
-- after. Never the note's text: a note change is only named in `fields`.
CREATE TABLE scoring.time_entry_audit (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL,
    patient_id  text NOT NULL,
    entry_id    text NOT NULL,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    key_id      text,
    action      text NOT NULL,
    fields      text[] NOT NULL,
    changes     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX time_entry_audit_entry ON scoring.time_entry_audit (tenant_id, entry_id, id);

-- The frozen start of a patient's device-supply periods: set when the first period closes, so that
-- a later backfill cannot shift periods whose figures were already recorded.
CREATE TABLE scoring.billing_anchors (
    tenant_id           text NOT NULL,
    patient_id          text NOT NULL,
    monitoring_started  date NOT NULL,
    frozen_at           timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, patient_id)
);

-- Recorded figures of closed device-supply periods. A change (late data, settings, time zone)
-- adds version n+1; rows are never updated or deleted.
CREATE TABLE scoring.billing_period_versions (
    tenant_id       text NOT NULL,
    patient_id      text NOT NULL,
    period_start    date NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    data_dates      date[] NOT NULL,
    supply_code     text,
    reason          text NOT NULL,
    data_days_from  text NOT NULL,
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, patient_id, period_start, version)
);
