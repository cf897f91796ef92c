-- Content digests of the events ingest accepted, so that reposting an event_id with different
-- content is refused (409) while an identical repost stays harmless (202). Bounded: rows older than
-- NERVEWATCH_EVENT_DIGEST_RETENTION_DAYS (first_seen) are purged by ingest in batches; a conflict
-- after that is still caught, recorded and scored by scoring (scoring.event_conflicts).
-- kind: 'checkin' or 'sample'. The digest is over the canonical validated event (schemas/digests.py).
CREATE TABLE ingest.event_digests (
    tenant_id   text NOT NULL,
    event_id    uuid NOT NULL,
    kind        text NOT NULL,
    digest      bytea NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX event_digests_first_seen ON ingest.event_digests (first_seen);
