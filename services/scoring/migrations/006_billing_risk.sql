-- Data days at risk (docs/billing.md): one row per patient and device-supply period whose risk
-- was raised (an event on nervewatch.billing.v1 went to the outbox in the same transaction).
-- A period is raised at most once; `ended_at` is set, once, when the raise ended (the period
-- closed, reached 16 data days, or the risk otherwise ended) and its end event was queued.
CREATE TABLE scoring.billing_risk (
    tenant_id           text NOT NULL,
    patient_id          text NOT NULL,
    period_start        date NOT NULL,
    period_end          date NOT NULL,
    raised_at           timestamptz NOT NULL,
    data_days           integer NOT NULL,
    data_days_possible  integer NOT NULL,
    needed              integer NOT NULL,
    ended_at            timestamptz,
    end_reason          text,
    PRIMARY KEY (tenant_id, patient_id, period_start),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX billing_risk_unended ON scoring.billing_risk (tenant_id, patient_id) WHERE ended_at IS NULL;
