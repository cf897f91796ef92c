"""Tenant administration payloads of the ingest service (scope `admin`): API keys, webhook secret, access audit.

Request models forbid unknown fields. Response models are what `services/ingest/admin.py` sends,
field for field (every field is always present; `null` where the value is unset). Raw keys and
webhook secrets appear only in the responses that create them (`NewApiKey`, `RotatedApiKey`,
`WebhookSecret`); `ApiKey` never carries a key or its hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from schemas.common import Float, integer

MAX_OVERLAP_HOURS = 720.0  # 30 days
MAX_EXPIRES_DAYS = 3650
ACCESS_LOG_MAX_LIMIT = 1000
KEY_ID_PATTERN = r"^key_[0-9a-f]{16}$"

Scope = Literal["ingest", "care", "admin"]
ExpiresDays = Annotated[Annotated[int, Strict(), Field(ge=1, le=MAX_EXPIRES_DAYS)], BeforeValidator(integer)]


# -- requests -----------------------------------------------------------------------------------------


class KeyCreate(BaseModel):
    """Body of `POST /v1/admin/keys`."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] = Field(min_length=1, max_length=3, description="Scopes of the new key.")
    expires_in_days: ExpiresDays | None = Field(default=None, description="Lifetime in days; no expiry when absent.")


class KeyRotate(BaseModel):
    """Body of `POST /v1/admin/keys/{key_id}/rotate` (optional: an absent body means `{}`)."""

    model_config = ConfigDict(extra="forbid")

    overlap_hours: Float = Field(
        default=24.0,
        ge=0,
        le=MAX_OVERLAP_HOURS,
        allow_inf_nan=False,
        description="How long the old key keeps working; 0 ends it at once.",
    )
    expires_in_days: ExpiresDays | None = Field(
        default=None,
        description="Lifetime of the successor in days; else the old key's lifetime (none if it had none).",
    )


class SecretRotate(BaseModel):
    """Body of `POST /v1/admin/webhook-secret/rotate` (optional: an absent body means `{}`)."""

    model_config = ConfigDict(extra="forbid")

    overlap_hours: Float = Field(
        default=24.0,
        ge=0,
        le=MAX_OVERLAP_HOURS,
        allow_inf_nan=False,
        description="How long webhooks are also signed with the old secret; 0 drops it at once.",
    )


# -- responses ----------------------------------------------------------------------------------------


class ApiKey(BaseModel):
    """What may be shown about a key: never the key itself, never its hash."""

    key_id: str = Field(description="`key_` and 16 hex digits.")
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute per key and process.")
    rotated_from: str | None = Field(description="The key this one succeeded, if it was made by a rotation.")


class NewApiKey(ApiKey):
    """`201` of `POST /v1/admin/keys`: the description plus the raw key, shown this once."""

    key: str = Field(description="The API key; it is never shown again.")


class PreviousKey(BaseModel):
    key_id: str
    expires_at: datetime = Field(description="When the rotated key stops working (now + overlap_hours at most).")


class RotatedApiKey(NewApiKey):
    """`201` of `POST /v1/admin/keys/{key_id}/rotate`: the successor (raw key shown once) and the old key's end."""

    previous_key: PreviousKey


class ApiKeyList(BaseModel):
    """`200` of `GET /v1/admin/keys`: every key of the tenant, oldest first (revoked and expired ones too)."""

    items: list[ApiKey]


class WebhookSecret(BaseModel):
    """`200` of `POST /v1/admin/webhook-secret/rotate`: the new secret, shown this once."""

    webhook_secret: str
    previous_secret_expires_at: datetime | None = Field(
        description="Until when webhooks are also signed with the old secret; null without overlap."
    )


class AccessLogEntry(BaseModel):
    """One successful care-scope request (docs/security.md, access audit)."""

    id: int
    at: datetime
    key_id: str
    method: str
    route: str = Field(description="The route template, e.g. `/v1/alerts/{alert_id}`.")
    patient_id: str | None
    alert_id: str | None
    status: int


class AccessLogPage(BaseModel):
    """`200` of `GET /v1/admin/access-log`: oldest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[AccessLogEntry]
    next_cursor: str | None
