"""Process settings, read once from the environment.

Every service reads the same `Settings`; a variable a service does not use is harmless.
Names are the public configuration surface (documented in README.md and cross-checked
against docker-compose.yml by the tests): renaming one is a breaking change.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration for all NerveWatch processes.

    `DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS` are unprefixed because that is what
    operators expect; everything else is prefixed `NERVEWATCH_`.
    """

    model_config = SettingsConfigDict(env_prefix="NERVEWATCH_", extra="ignore")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "NERVEWATCH_DATABASE_URL")
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "NERVEWATCH_KAFKA_BOOTSTRAP_SERVERS"),
    )

    host: str = "127.0.0.1"
    ingest_port: int = 8080
    scoring_port: int = 8081
    alerts_port: int = 8082
    console_port: int = 8083
    # Where the console's /v1 proxy sends each request (base URLs, no trailing path); unset means
    # http://127.0.0.1:<that service's port>. A production ingress usually routes by path instead.
    console_ingest_url: str | None = None
    console_scoring_url: str | None = None
    console_alerts_url: str | None = None

    log_level: str = "INFO"
    data_dir: Path = Path(".nervewatch")

    # Kafka
    topic_partitions: int = Field(default=6, ge=1, le=1024)
    topic_replication_factor: int = Field(default=1, ge=1, le=7)
    kafka_enable_idempotence: bool = False
    kafka_request_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_linger_ms: int = Field(default=2, ge=0)
    ingest_produce_timeout_s: float = Field(default=5.0, gt=0)
    ingest_max_in_flight: int = Field(default=256, ge=1)
    ingest_max_in_flight_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    kafka_fetch_max_wait_ms: int = Field(default=25, ge=1, le=5000)
    consumer_max_batch: int = Field(default=2000, ge=1, le=100_000)
    consumer_stall_seconds: float = Field(default=60.0, gt=0)
    # Dead-letter limit (nervewatch/deadletter_limit.py): beyond it a consumer halts, unready.
    dead_letter_max_consecutive: int = Field(default=10, ge=1)
    dead_letter_max_ratio: float = Field(default=0.5, gt=0, le=1)
    dead_letter_window: int = Field(default=200, ge=1)

    # PostgreSQL
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)

    # Development tenant created by `nervewatch run` / `nervewatch seed-dev`
    dev_api_key: str | None = None
    dev_webhook_secret: str | None = None

    # Alerts delivery
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_from: str = "alerts@nervewatch.local"
    smtp_use_tls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    webhook_connect_timeout_s: float = Field(default=3.0, gt=0)
    webhook_read_timeout_s: float = Field(default=10.0, gt=0)
    delivery_max_age_s: float = Field(default=24 * 3600.0, gt=0)
    dispatcher_poll_s: float = Field(default=1.0, gt=0)
    sweep_interval_s: float = Field(default=30.0, gt=0)
    # Scoring's data-days-at-risk sweep (docs/billing.md, "Data days at risk")
    billing_risk_interval_s: float = Field(default=300.0, gt=0)

    # Per-API-key request rate limit (token bucket per key and process); 0 disables it
    rate_limit_per_key_rps: float = Field(default=1000.0, ge=0)
    rate_limit_per_key_burst: int = Field(default=2000, ge=1)

    # Access audit retention: ingest deletes identity.access_log rows older than this (days). The
    # default, six years, is the HIPAA documentation-retention period (45 CFR 164.316(b)(2)(i)).
    access_log_retention_days: int = Field(default=2190, ge=1, le=36_500)

    # Plausibility floor of event times (recorded_at, pt_session.ended_at, sample start/end): ingest
    # rejects earlier ones (422). The floor is the earlier of this date (00:00 UTC) and one year
    # before the patient's onset_date (shared/CONTRACT.md, "Safety rules that every endpoint keeps").
    event_time_floor: date = date(2000, 1, 1)

    # Ingest keeps the content digest of every accepted event this many days (by first sighting) to
    # answer a repost with different content 409; scoring catches conflicts after that.
    event_digest_retention_days: int = Field(default=35, ge=1, le=3650)

    # Shutdown
    shutdown_timeout_s: float = Field(default=20.0, gt=0)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first call."""
    return Settings()
