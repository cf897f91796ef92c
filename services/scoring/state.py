"""The engine's per-patient state: plain, immutable, versioned and serialisable.

`EngineState` holds one state per detector plus the newest folded date and the versions that
produced it. `to_json` (`to_json_text`) / `from_json` convert it to and from JSON-compatible dicts (what the shell
persists); a dict of an unknown `schema_version` raises `StateVersionError` rather than being
misread. Bump STATE_SCHEMA_VERSION whenever a state dataclass changes shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import TypeAdapter, ValidationError

from services.scoring.detectors.activity import ActivityState
from services.scoring.detectors.course_phase import CourseState
from services.scoring.detectors.engagement import EngagementState
from services.scoring.detectors.flare import FlareState
from services.scoring.detectors.grip import GripState
from services.scoring.detectors.plateau import PlateauState
from services.scoring.detectors.red_flag import RedFlagState
from services.scoring.detectors.regression import RegressionState
from services.scoring.detectors.spreading import SpreadingState
from services.scoring.detectors.symptoms import SymptomState

STATE_SCHEMA_VERSION = 2


class StateVersionError(ValueError):
    """A stored state this engine cannot read: unknown schema version, or not a state at all."""


@dataclass(frozen=True, slots=True)
class EngineState:
    schema_version: int
    engine_version: str
    profile_version: str
    last_date: date | None  # the newest local day folded in (None: no day yet)
    symptoms: SymptomState
    red_flag: RedFlagState
    spreading: SpreadingState
    activity: ActivityState
    grip: GripState
    flare: FlareState
    regression: RegressionState
    plateau: PlateauState
    engagement: EngagementState
    course: CourseState


_ADAPTER: TypeAdapter[EngineState] = TypeAdapter(EngineState)


def to_json(state: EngineState) -> dict[str, Any]:
    """The state as a JSON-compatible dict (dates and datetimes as RFC 3339 strings)."""
    out: dict[str, Any] = _ADAPTER.dump_python(state, mode="json")
    return out


def to_json_text(state: EngineState) -> str:
    """`to_json(state)` as JSON text (serialised in one pass, several times faster than json.dumps of it)."""
    return _ADAPTER.dump_json(state).decode()


def from_json(data: Any) -> EngineState:
    """The state of `to_json`'s output. Raises StateVersionError for another schema version or a
    malformed document (the shell then re-folds the patient's history)."""
    if not isinstance(data, dict):
        raise StateVersionError("engine state must be a JSON object")
    version = data.get("schema_version")
    if version != STATE_SCHEMA_VERSION:
        raise StateVersionError(
            f"engine state schema_version {version!r} is not supported (this engine reads {STATE_SCHEMA_VERSION})"
        )
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise StateVersionError(f"malformed engine state: {exc.error_count()} error(s)") from exc
