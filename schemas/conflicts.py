"""Conflicting event versions recorded by scoring (`GET /v1/conflicts`, scope `admin`).

A conflict is a second version of a known `event_id` with different content that reached the
pipeline anyway (ingest refuses such reposts with 409 while it keeps the first version's digest;
after the digest's retention, or for a write that bypassed ingest, scoring catches it). The first
version is kept; the conflicting one is recorded, and its red flags page. Items carry no free text
and no symptom values: only ids, digests, the time it was seen and whether a red flag is involved.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, Field

from schemas.common import UtcDatetime

MAX_CONFLICTS_LIMIT = 500


class ConflictKind(StrEnum):
    checkin = "checkin"
    activity = "activity"


class EventConflict(BaseModel):
    event_id: UUID
    kind: ConflictKind = Field(description="`checkin`, or `activity` for a wearable sample.")
    patient_id: str | None = Field(description="null only for conflicts recorded before versions were kept.")
    first_digest: str | None = Field(
        description="SHA-256 (hex) of the kept first version (schemas/digests.py); null only for conflicts "
        "recorded before versions were kept."
    )
    conflicting_digest: str = Field(description="SHA-256 (hex) of the conflicting version.")
    seen_at: UtcDatetime = Field(description="When scoring recorded the conflicting version.")
    red_flag: bool = Field(description="Whether either version reports a red flag (then it was scored and pages).")


class EventConflictPage(BaseModel):
    """Newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[EventConflict]
    next_cursor: str | None = None
