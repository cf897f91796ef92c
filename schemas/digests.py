"""Content digests of ingested events: what "the same content" means for a repeated `event_id`.

Ingest compares them to refuse a repost with different content (409) and to let an identical one
through (202); scoring compares them (`content_hash`) to detect a conflict that reached the log
anyway. Both use these functions, so the two never disagree.

A digest is SHA-256 over a canonical form of the *validated* event, so encodings of the same
observation digest alike: date-times are instants in UTC (`08:30:00-05:00` equals `13:30:00Z`),
numbers are parsed (`17` equals `17.0`), fields left at their default are omitted (absent equals
`null` equals the default), and the set-valued lists (`red_flags`, `pain.quality`) are sorted and
de-duplicated. Anything else that differs, free text included, is different content. Pure functions.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence

from schemas.activity import ActivitySample
from schemas.checkins import CheckIn

CHECKIN_FORM = "checkin/1"
SAMPLE_FORM = "sample/1"


def _sorted_unique(values: Sequence[str]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def checkin_digest(checkin: CheckIn) -> bytes:
    """The 32-byte digest of a validated check-in (patient, times, every reported value, notes).

    The canonical form is pydantic's JSON of the model with its defaults omitted, fields in
    declaration order (part of the form `checkin/1`: reordering the model's fields needs a new form)
    and the set-valued lists sorted and de-duplicated. About 9 µs; the lists are copied only when
    they are not already in that order."""
    if not (_sorted_unique(checkin.red_flags) and _sorted_unique(checkin.pain.quality)):
        pain = checkin.pain.model_copy(update={"quality": sorted(set(checkin.pain.quality))})
        checkin = checkin.model_copy(update={"red_flags": sorted(set(checkin.red_flags)), "pain": pain})
    return hashlib.sha256(
        CHECKIN_FORM.encode() + b"\n" + checkin.model_dump_json(exclude_defaults=True).encode()
    ).digest()


def sample_digest(sample: ActivitySample, patient_id: str, device_id: str) -> bytes:
    """The 32-byte digest of a validated wearable sample, with its patient and device.

    Form `sample/1`: one line per part; the device id (free text) JSON-encoded so that the parts
    cannot run into each other."""
    text = (
        f"{SAMPLE_FORM}\n{patient_id}\n{json.dumps(device_id)}\n{sample.event_id}\n{sample.type.value}\n"
        f"{sample.start.isoformat()}\n{sample.end.isoformat()}\n{sample.value!r}"
    )
    return hashlib.sha256(text.encode()).digest()
