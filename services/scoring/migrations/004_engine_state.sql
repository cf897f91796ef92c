-- Per-patient persisted state of the incremental engine (services/scoring/engine.py). One row per
-- patient, rewritten by every batch that touches the patient, in the batch's transaction:
--   state       the EngineState after the newest folded day (services.scoring.state.to_json);
--   snapshots   bounded per-day states to rewind to on late data, oldest first, the newest state
--               (`state`) not repeated: each the JSON text of to_json (text, not jsonb, so that a
--               batch passes the unchanged ones through without decoding them), with its local day
--               in snapshot_dates and the newest check-in time as of it in snapshot_checkins;
--   last_date   the state's newest folded local day; as_of the newest event time of the patient's
--               dated observations (what the trajectory is assessed as of);
--   engine_version / profile_version  what produced the state: another version re-folds the
--               patient's stored series (scoring.daily) lazily, on its next batch.
-- A patient without a row (enrolled before this migration) is re-folded on its next batch.
CREATE TABLE scoring.engine_states (
    tenant_id        text NOT NULL,
    patient_id       text NOT NULL,
    engine_version   text NOT NULL,
    profile_version  text NOT NULL,
    last_date        date,
    as_of            timestamptz,
    last_checkin_at  timestamptz,
    state            jsonb NOT NULL,
    snapshots        text[] NOT NULL DEFAULT '{}',
    snapshot_dates   date[] NOT NULL DEFAULT '{}',
    snapshot_checkins timestamptz[] NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id)
);

-- The engine and clinical profile versions that produced each trajectory (NULL for rows written
-- before this migration).
ALTER TABLE scoring.trajectories
    ADD COLUMN engine_version text,
    ADD COLUMN profile_version text;
