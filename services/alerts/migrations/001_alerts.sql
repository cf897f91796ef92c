CREATE SCHEMA IF NOT EXISTS alerts;

-- Care teams and time zones, from the patients topic.
CREATE TABLE alerts.patients (
    tenant_id        text NOT NULL,
    patient_id       text NOT NULL,
    care_team        jsonb NOT NULL,
    timezone         text NOT NULL,
    version_at       timestamptz NOT NULL,
    last_checkin_at  timestamptz,
    PRIMARY KEY (tenant_id, patient_id)
);
CREATE INDEX patients_last_checkin ON alerts.patients (last_checkin_at);

-- Per-tenant alerting policy (escalation chain, quiet hours, repeat interval...); defaults apply when absent.
CREATE TABLE alerts.tenant_config (
    tenant_id   text PRIMARY KEY,
    policy      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts.alerts (
    id                text PRIMARY KEY,
    tenant_id         text NOT NULL,
    patient_id        text NOT NULL,
    kind              text NOT NULL,
    severity          text NOT NULL,
    status            text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    summary           text NOT NULL,
    reasons           jsonb NOT NULL,
    trajectory_state  text,
    event_time        timestamptz NOT NULL,
    opened_at         timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    retrospective     boolean NOT NULL DEFAULT false,
    acknowledged_by   text,
    acknowledged_at   timestamptz,
    resolved_at       timestamptz,
    resolution        text,
    escalation_level  integer NOT NULL DEFAULT 0,
    last_notified_at  timestamptz,
    clear_since       timestamptz
);
-- At most one unresolved alert per patient and kind.
CREATE UNIQUE INDEX alerts_one_active ON alerts.alerts (tenant_id, patient_id, kind) WHERE status <> 'resolved';
CREATE INDEX alerts_list ON alerts.alerts (tenant_id, opened_at DESC, id DESC);
CREATE INDEX alerts_open ON alerts.alerts (status, opened_at) WHERE status = 'open';

CREATE TABLE alerts.audit (
    id        bigserial PRIMARY KEY,
    alert_id  text NOT NULL REFERENCES alerts.alerts(id),
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor     text NOT NULL,
    action    text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_alert ON alerts.audit (alert_id, id);

-- The notification outbox: written with the alert change, sent by the dispatcher.
CREATE TABLE alerts.notifications (
    id               bigserial PRIMARY KEY,
    delivery_id      uuid NOT NULL UNIQUE,
    alert_id         text NOT NULL REFERENCES alerts.alerts(id),
    tenant_id        text NOT NULL,
    member_id        text NOT NULL,
    channel          text NOT NULL,
    target           text NOT NULL,
    reason           text NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text
);
CREATE INDEX notifications_due ON alerts.notifications (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX notifications_alert ON alerts.notifications (alert_id);

CREATE TABLE alerts.snoozes (
    tenant_id   text NOT NULL,
    patient_id  text NOT NULL,
    kind        text NOT NULL,
    until       timestamptz NOT NULL,
    by          text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id, kind)
);

-- Transactional outbox of alert lifecycle events.
CREATE TABLE alerts.outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    key         bytea NOT NULL,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
