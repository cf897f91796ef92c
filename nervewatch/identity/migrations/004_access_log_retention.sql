-- Retention of the access audit: the purge (nervewatch.identity.access_log.purge_access_log, run by
-- ingest) deletes rows older than NERVEWATCH_ACCESS_LOG_RETENTION_DAYS across all tenants, oldest
-- first, 10,000 rows per statement. The existing indexes lead with tenant_id; this one lets each
-- batch find the oldest rows without scanning the table.
CREATE INDEX IF NOT EXISTS access_log_at ON identity.access_log (at);
