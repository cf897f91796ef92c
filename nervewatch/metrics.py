"""Every Prometheus metric NerveWatch exports, defined once.

Conventions: `nervewatch_` prefix, base units in the name, `_total` on counters. Labels never
carry patient identifiers or secrets; `topic`, `route`, `kind` and similar are bounded sets.
Each process exports only what it touches (unused metrics export no samples).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Event-time ages span seconds (live) to days (backfill).
AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400)

HTTP_REQUESTS = Counter(
    "nervewatch_http_requests_total", "HTTP requests served", ["service", "route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "nervewatch_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "route", "method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("nervewatch_http_requests_in_flight", "HTTP requests being served", ["service"])
VALIDATION_REJECTIONS = Counter(
    "nervewatch_validation_rejections_total", "Rejected inputs by reason", ["endpoint", "reason"]
)
INGEST_ACCEPTED = Counter("nervewatch_ingest_events_accepted_total", "Events accepted into the log", ["kind"])
INGEST_UNAVAILABLE = Counter(
    "nervewatch_ingest_unavailable_total", "Requests answered 503 because the log could not take them", ["kind"]
)

EVENTS_PRODUCED = Counter("nervewatch_events_produced_total", "Events produced", ["topic"])
PRODUCE_FAILURES = Counter("nervewatch_produce_failures_total", "Produce calls that failed", ["topic"])
EVENTS_CONSUMED = Counter("nervewatch_events_consumed_total", "Events consumed", ["group", "topic"])
CONSUMER_LAG = Gauge(
    "nervewatch_consumer_lag_messages", "Messages behind the partition end", ["group", "topic", "partition"]
)
CONSUMER_LAST_PROGRESS = Gauge(
    "nervewatch_consumer_last_progress_timestamp_seconds", "Unix time of the last committed batch", ["group"]
)
CONSUMER_STALLED = Gauge(
    "nervewatch_consumer_stalled", "1 while the consumer holds lag but makes no progress", ["group"]
)
CONSUMER_HALTED = Gauge(
    "nervewatch_consumer_halted", "1 while the consumer is halted by its dead-letter limit", ["group"]
)
CONSUMER_BATCH_SIZE = Histogram(
    "nervewatch_consumer_batch_messages",
    "Messages per processed batch",
    ["group"],
    buckets=(1, 5, 10, 50, 100, 500, 1000, 5000),
)
PROCESSING_LATENCY = Histogram(
    "nervewatch_processing_duration_seconds",
    "Time to process one consumed batch, database commit included",
    ["group"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END_LATENCY = Histogram(
    "nervewatch_end_to_end_latency_seconds",
    "Age of an event when it reached a stage; origin is recorded_at (event time) or received_at (arrival)",
    ["stage", "origin"],
    buckets=AGE_BUCKETS,
)
DEAD_LETTERS = Counter("nervewatch_dead_letters_total", "Messages sent to the dead-letter topic", ["topic", "reason"])

EVENT_CONFLICTS = Counter(
    "nervewatch_event_conflicts_total", "Duplicate event_id with different content (first kept)", ["kind"]
)
INGEST_EVENT_CONFLICTS = Counter(
    "nervewatch_ingest_event_conflicts_total",
    "Events refused with 409: the event_id was accepted before with different content",
    ["kind"],
)
DIGESTS_PURGED = Counter("nervewatch_ingest_event_digests_purged_total", "Event digests deleted by the retention purge")
DIGESTS_RELEASED = Counter(
    "nervewatch_ingest_event_digests_released_total", "Event digests deleted again because publishing failed"
)
HELD_EVENTS = Gauge("nervewatch_scoring_held_events", "Observations held for a patient not yet enrolled")
SCORING_RESCORES = Counter(
    "nervewatch_scoring_rescores_total",
    "Patients re-scored, by how the engine state was reached: forward (new days stepped onto the stored "
    "state), rewind (late or changed day, replayed from a snapshot) or refold (whole stored series)",
    ["path"],
)
SCORING_DAYS_FOLDED = Counter(
    "nervewatch_scoring_days_folded_total", "Local days folded by the scoring engine, by re-scoring path", ["path"]
)
TRAJECTORY_STATES = Counter("nervewatch_trajectory_state_changes_total", "Trajectory state changes", ["state"])

ALERTS_OPENED = Counter("nervewatch_alerts_opened_total", "Alerts opened", ["kind", "severity"])
ALERTS_RESOLVED = Counter("nervewatch_alerts_resolved_total", "Alerts resolved", ["kind", "resolution"])
ALERTS_SUPPRESSED = Counter("nervewatch_alerts_suppressed_total", "Alert openings held back", ["kind", "why"])
ESCALATIONS = Counter("nervewatch_escalations_total", "Escalations of unacknowledged alerts", ["severity"])
SNOOZES = Counter("nervewatch_snoozes_total", "Snoozes created and ended early, by alert kind", ["action", "kind"])
RED_FLAG_REPAGES = Counter("nervewatch_red_flag_repages_total", "Open red-flag alerts paged again for new flags")
NOTIFICATIONS = Counter(
    "nervewatch_notifications_total", "Notification delivery attempts by outcome", ["channel", "outcome"]
)
OUTBOX_BACKLOG = Gauge("nervewatch_outbox_backlog", "Undelivered outbox rows", ["outbox"])
OUTBOX_OLDEST_AGE = Gauge(
    "nervewatch_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox row", ["outbox"]
)

DB_POOL = Gauge("nervewatch_db_pool_connections", "Database pool connections", ["state"])
READY = Gauge("nervewatch_ready", "1 when broker and database are reachable", ["service"])

ACCESS_LOG_WRITTEN = Counter("nervewatch_access_log_written_total", "Access-audit rows written")
ACCESS_LOG_DROPPED = Counter(
    "nervewatch_access_log_dropped_total", "Access-audit rows dropped (queue_full, write_failed)", ["reason"]
)
ACCESS_LOG_PURGED = Counter(
    "nervewatch_access_log_purged_total", "Access-audit rows deleted by the retention purge (older than the retention)"
)

BILLING_TIME_ENTRIES = Counter(
    "nervewatch_billing_time_entries_total", "Time entries recorded, corrected and deleted", ["action"]
)
BILLING_TIME_ENTRY_REJECTIONS = Counter(
    "nervewatch_billing_time_entry_rejections_total",
    "Time entry writes refused (invalid, overlap, month_closed)",
    ["reason"],
)
BILLING_PERIOD_VERSIONS = Counter(
    "nervewatch_billing_period_versions_total",
    "Versions of closed device-supply periods recorded (initial, late_data, recomputed)",
    ["reason"],
)
BILLING_RECOMPUTES = Counter(
    "nervewatch_billing_recomputes_total", "Billing computations redone because a concurrent reader recorded first"
)
BILLING_AT_RISK = Counter(
    "nervewatch_billing_at_risk_total",
    "Data-days-at-risk raises (outcome raised) and their ends (period_closed, reached, on_track, unreachable, "
    "not_judged) queued by scoring's sweep",
    ["outcome"],
)
BILLING_COMPUTE_LATENCY = Histogram(
    "nervewatch_billing_compute_duration_seconds",
    "Time to compute billing figures (patient, report), database reads and writes included",
    ["scope"],
    buckets=LATENCY_BUCKETS,
)
