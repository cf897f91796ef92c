"""Wearable activity payloads (`POST /v1/activity`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from schemas.common import EventTime, Float, PatientId, StrictModel, Text

MAX_SAMPLES = 5000


class DeviceKind(StrEnum):
    wrist = "wrist"
    ring = "ring"
    phone = "phone"
    dynamometer = "dynamometer"
    other = "other"


class ActivityType(StrEnum):
    steps = "steps"
    active_minutes = "active_minutes"
    sleep_minutes = "sleep_minutes"
    sleep_interruptions = "sleep_interruptions"
    resting_heart_rate = "resting_heart_rate"
    grip_strength_kg = "grip_strength_kg"


# Plausibility ceilings per unit. Minutes are further bounded by the sample's own interval.
_MAX_VALUE: dict[ActivityType, float] = {
    ActivityType.steps: 150_000,
    ActivityType.active_minutes: 1440 * 31,
    ActivityType.sleep_minutes: 1440 * 31,
    ActivityType.sleep_interruptions: 500,
    ActivityType.resting_heart_rate: 250,
    ActivityType.grip_strength_kg: 100,
}


class Device(StrictModel):
    id: Text = Field(min_length=1, max_length=128)
    kind: DeviceKind


class ActivitySample(StrictModel):
    event_id: UUID
    type: ActivityType
    start: EventTime
    end: EventTime
    value: Float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _consistent(self) -> ActivitySample:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        if self.value > _MAX_VALUE[self.type]:
            raise ValueError(f"value is above the plausible maximum for {self.type.value}")
        if self.type in (ActivityType.active_minutes, ActivityType.sleep_minutes):
            span_min = (self.end - self.start).total_seconds() / 60.0
            if self.value > max(span_min, 1.0) + 1.0:
                raise ValueError("minutes must not exceed the sample's interval")
        return self


class ActivityBatch(StrictModel):
    patient_id: PatientId
    device: Device
    samples: list[ActivitySample] = Field(min_length=1, max_length=MAX_SAMPLES)


class ActivityEnvelope(StrictModel):
    """The envelope of an activity post; the samples are then validated one by one."""

    patient_id: PatientId
    device: Device
    samples: list[Any] = Field(min_length=1, max_length=MAX_SAMPLES)


class ActivityAccepted(BaseModel):
    accepted: int
