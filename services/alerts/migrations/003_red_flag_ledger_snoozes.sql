-- Red flags page per observation (docs/safety.md, H1). Each alert remembers the red flags it has
-- paged and when it last paged as new (escalation counts from then); each patient keeps a ledger
-- of the red-flag observations already handled: {"<event id>": {"at": "<recorded_at>", "flags": [...]}}.
ALTER TABLE alerts.alerts
    ADD COLUMN paged_flags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN paged_at    timestamptz;
UPDATE alerts.alerts SET paged_at = opened_at WHERE NOT retrospective;
-- Open red-flag alerts raised before this migration: the flags they paged are named in their reasons
-- ("red flag reported: fever, foot_drop (...)"), so that the next update does not page them again.
UPDATE alerts.alerts a SET paged_flags = coalesce((
        SELECT array_agg(DISTINCT trim(f))
        FROM jsonb_array_elements(a.reasons) r,
             regexp_split_to_table(substring(r->>'detail' from 'red flag reported: ([a-z_, ]+) \('), ',') f
        WHERE r->>'code' = 'red_flag_reported'), '{}')
    WHERE a.kind = 'red_flag' AND a.status <> 'resolved' AND NOT a.retrospective;
ALTER TABLE alerts.patients ADD COLUMN red_flags_seen jsonb NOT NULL DEFAULT '{}';

-- Snoozes get ids, can be ended early, and keep their history.
ALTER TABLE alerts.snoozes DROP CONSTRAINT snoozes_pkey;
ALTER TABLE alerts.snoozes
    ADD COLUMN id        text,
    ADD COLUMN ended_at  timestamptz,
    ADD COLUMN ended_by  text;
UPDATE alerts.snoozes SET id = 'sn_' || substr(md5(tenant_id || '/' || patient_id || '/' || kind), 1, 24);
ALTER TABLE alerts.snoozes ALTER COLUMN id SET NOT NULL, ADD PRIMARY KEY (id);
-- At most one snooze per patient and kind that has not been ended (a new one ends the previous).
CREATE UNIQUE INDEX snoozes_one_current ON alerts.snoozes (tenant_id, patient_id, kind) WHERE ended_at IS NULL;

-- Patient-level alert audit: snoozes created and ended (alert-level entries stay in alerts.audit).
CREATE TABLE alerts.patient_audit (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL,
    patient_id  text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX patient_audit_patient ON alerts.patient_audit (tenant_id, patient_id, id);
