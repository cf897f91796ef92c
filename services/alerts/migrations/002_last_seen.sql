-- Processing time of the newest trajectory update per patient: disengagement is judged only on a quiet stream.
ALTER TABLE alerts.patients ADD COLUMN last_seen_at timestamptz;
