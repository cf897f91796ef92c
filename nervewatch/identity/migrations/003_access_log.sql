-- Audit of data access by care-team keys (scope `care`): who read or acted on which patient or
-- alert, when, through which route, with which outcome. Written asynchronously in batches.
-- Patient and alert ids are stored here on purpose (it is an access audit); they never go to
-- logs or metric labels. No foreign keys: an audit write must never fail because of them.
CREATE TABLE identity.access_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    tenant_id   text NOT NULL,
    key_id      text NOT NULL,
    method      text NOT NULL,
    route       text NOT NULL,
    patient_id  text,
    alert_id    text,
    status      smallint NOT NULL
);
CREATE INDEX access_log_tenant_at ON identity.access_log (tenant_id, at, id);
CREATE INDEX access_log_tenant_patient ON identity.access_log (tenant_id, patient_id, at) WHERE patient_id IS NOT NULL;
