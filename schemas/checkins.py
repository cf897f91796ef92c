"""Telehealth check-in payloads (`POST /v1/checkins`, `POST /v1/checkins/batch`)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, Field, Strict, model_validator

from schemas.common import (
    MAX_FUTURE_SKEW,
    Bool,
    EventTime,
    Float,
    FunctionScore,
    Intensity,
    PainQuality,
    PatientId,
    RedFlag,
    Score0to10,
    StrictModel,
    Text,
    integer,
)

MAX_BATCH = 500
MAX_NOTES = 2000

NightWakings = Annotated[Annotated[int, Strict(), Field(ge=0, le=20)], BeforeValidator(integer)]
DailyDoses = Annotated[Annotated[int, Strict(), Field(ge=0, le=50)], BeforeValidator(integer)]


class PainReport(StrictModel):
    current: Score0to10
    worst_24h: Score0to10 | None = None
    quality: list[PainQuality] = Field(default_factory=list, max_length=len(PainQuality))


class PtSession(StrictModel):
    """A physical-therapy session since the last check-in."""

    ended_at: EventTime
    intensity: Intensity = Intensity.moderate


class CheckIn(StrictModel):
    event_id: UUID
    patient_id: PatientId
    recorded_at: EventTime
    pain: PainReport
    tingling: Score0to10 | None = None
    numbness: Score0to10 | None = None
    weakness: Score0to10 | None = None
    numbness_spreading: Bool | None = None
    night_wakings: NightWakings | None = None
    grip_strength_kg: Float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    function: FunctionScore | None = None
    analgesic_doses_24h: DailyDoses | None = None
    pt_session: PtSession | None = None
    home_exercises_done: Bool | None = None
    red_flags: list[RedFlag] = Field(default_factory=list, max_length=len(RedFlag))
    notes: Text | None = Field(default=None, max_length=MAX_NOTES)

    @model_validator(mode="after")
    def _consistent(self) -> CheckIn:
        if self.pt_session is not None and self.pt_session.ended_at - self.recorded_at > MAX_FUTURE_SKEW:
            raise ValueError("pt_session.ended_at must not be after recorded_at")
        if self.pain.worst_24h is not None and self.pain.worst_24h < self.pain.current:
            raise ValueError("pain.worst_24h must not be lower than pain.current")
        return self


class CheckInBatch(BaseModel):
    """Envelope of a batch; items are validated one by one so one bad item does not sink the rest."""

    items: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


class ItemError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class RejectedItem(BaseModel):
    index: int
    event_id: str | None = None
    errors: list[ItemError]


class CheckInAccepted(BaseModel):
    event_id: UUID
    status: str = "accepted"


class BatchResult(BaseModel):
    """`202` body of a batch: which items were accepted and which were rejected, by index."""

    accepted: int
    rejected: int
    accepted_event_ids: list[UUID]
    errors: list[RejectedItem]
