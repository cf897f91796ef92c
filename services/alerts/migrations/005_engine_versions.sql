-- The scoring engine and clinical-profile version of the trajectory update that opened each alert
-- (`TrajectoryUpdated.trajectory.engine_version` / `profile_version`). Written once, at opening;
-- NULL for alerts opened before this migration, by timers (disengagement) or by billing events.
ALTER TABLE alerts.alerts
    ADD COLUMN engine_version  text,
    ADD COLUMN profile_version text;
