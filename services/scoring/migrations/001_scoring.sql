CREATE SCHEMA IF NOT EXISTS scoring;

-- Patient profiles, from the patients topic. latest_event_at is the newest event time seen.
CREATE TABLE scoring.patients (
    tenant_id        text NOT NULL,
    patient_id       text NOT NULL,
    profile          jsonb,
    timezone         text,
    latest_event_at  timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id)
);

-- Every check-in, once per event_id. local_date is NULL while the patient is not enrolled yet
-- (the event is held, and scored when the enrolment arrives).
CREATE TABLE scoring.checkins (
    tenant_id     text NOT NULL,
    event_id      uuid NOT NULL,
    patient_id    text NOT NULL,
    recorded_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL,
    local_date    date,
    content_hash  bytea NOT NULL,
    data          jsonb NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX checkins_patient_day ON scoring.checkins (tenant_id, patient_id, local_date);

CREATE TABLE scoring.activity (
    tenant_id     text NOT NULL,
    event_id      uuid NOT NULL,
    patient_id    text NOT NULL,
    device_id     text NOT NULL,
    type          text NOT NULL,
    start_at      timestamptz NOT NULL,
    end_at        timestamptz NOT NULL,
    value         double precision NOT NULL,
    received_at   timestamptz NOT NULL,
    local_date    date,
    content_hash  bytea NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX activity_patient_day ON scoring.activity (tenant_id, patient_id, local_date);

-- The per-patient daily series in the patient's local calendar (event time).
CREATE TABLE scoring.daily (
    tenant_id   text NOT NULL,
    patient_id  text NOT NULL,
    day         date NOT NULL,
    data        jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id, day)
);

-- The current trajectory per patient.
CREATE TABLE scoring.trajectories (
    tenant_id        text NOT NULL,
    patient_id       text NOT NULL,
    state            text NOT NULL,
    as_of            timestamptz NOT NULL,
    data             jsonb NOT NULL,
    signals          jsonb NOT NULL,
    last_checkin_at  timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id)
);

-- A second event with a known event_id but different content: the first is kept, this is counted.
CREATE TABLE scoring.event_conflicts (
    tenant_id   text NOT NULL,
    event_id    uuid NOT NULL,
    kind        text NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    other_hash  bytea NOT NULL,
    PRIMARY KEY (tenant_id, event_id, other_hash)
);

-- Transactional outbox of events to publish (trajectory updates).
CREATE TABLE scoring.outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    key         bytea NOT NULL,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
