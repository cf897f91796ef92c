-- The conflicting version of an event (a second event with a known event_id but other content,
-- e.g. after ingest's digest expired or from a write that bypassed ingest): kept so that it can be
-- listed (GET /v1/conflicts) and so that its red flags page (they join the day's red-flag
-- observations when the day is rebuilt). Rows recorded before this migration have no version data.
ALTER TABLE scoring.event_conflicts
    ADD COLUMN id bigserial,
    ADD COLUMN patient_id text,
    ADD COLUMN first_hash bytea,
    ADD COLUMN data jsonb,
    ADD COLUMN recorded_at timestamptz,
    ADD COLUMN received_at timestamptz,
    ADD COLUMN local_date date,
    ADD COLUMN red_flags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN red_flag boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX event_conflicts_id ON scoring.event_conflicts (id);
CREATE INDEX event_conflicts_newest ON scoring.event_conflicts (tenant_id, seen_at DESC, id DESC);
CREATE INDEX event_conflicts_red_flag_day ON scoring.event_conflicts (tenant_id, patient_id, local_date)
    WHERE red_flags <> '{}';
