-- Single-use tickets that open the alert stream without an Authorization header (a browser's
-- EventSource cannot send one). Only the SHA-256 of a ticket is stored; redeeming deletes the row,
-- so a ticket opens at most one stream, in whichever alerts process it is presented to.
CREATE TABLE alerts.stream_tickets (
    ticket_hash bytea PRIMARY KEY,
    tenant_id   text NOT NULL,
    key_id      text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX stream_tickets_expiry ON alerts.stream_tickets (expires_at);
