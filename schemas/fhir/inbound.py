"""FHIR R4 resources in -> the JSON API's check-in and activity payloads (pure; no I/O, clock injected).

One resource is one event: an `Observation` of pain severity (LOINC 72514-3) or of the NerveWatch
check-in panel, or a `QuestionnaireResponse` to the NerveWatch check-in Questionnaire, is one
check-in; an `Observation` of steps, sleep or grip strength is one wearable sample. Check-in
items other than pain (tingling, numbness, weakness, function scores, red flags, ...) are
components of a check-in Observation or answers of the QuestionnaireResponse: a check-in needs a
pain score (contract), so alone they are rejected with a clear issue, never dropped.

Every payload is then validated by `schemas.checkins.CheckIn` / `schemas.activity.ActivitySample`
(`to_contract`, with the JSON API's validation context: the clock and the patient's plausibility
floor), so the rules of the JSON API apply unchanged; their errors are reported at the FHIR element
the value came from. Issues never contain submitted values (they may be health data).

Structure: every element name of the resources, components, items and answers read here must be
an element of that R4 type (names from the `fhir.resources` models); elements NerveWatch does not
map are otherwise not validated (full model validation costs 90-190 us per resource).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.questionnaireresponse import (
    QuestionnaireResponse,
    QuestionnaireResponseItem,
    QuestionnaireResponseItemAnswer,
)
from pydantic import BaseModel, ValidationError

from schemas.activity import ActivitySample, Device
from schemas.checkins import CheckIn
from schemas.common import FLOOR_CONTEXT, NOW_CONTEXT, PATIENT_ID_PATTERN, Intensity, PainQuality, RedFlag
from schemas.fhir import codes as c

MAX_ENTRIES = 1000
MAX_ITEM_DEPTH = 4
LBF_TO_KG = 0.45359237  # UCUM [lbf_av] is the force of one avoirdupois pound; 1 kgf = 1 kg on a dynamometer
NEWTON_TO_KG = 1 / 9.80665
ACCEPTED_OBSERVATION_STATUS = frozenset({"final", "amended", "corrected"})
ACCEPTED_QR_STATUS = frozenset({"completed", "amended"})
_PATIENT_REF = re.compile(r"^Patient/([A-Za-z0-9._-]{1,64})$")
_PATIENT_ID = re.compile(PATIENT_ID_PATTERN)
_DEVICE_REF = re.compile(r"^Device/([A-Za-z0-9.-]{1,64})$")


def _names(model: type[BaseModel]) -> frozenset[str]:
    """The JSON element names of a `fhir.resources` model (with `_x` primitive extensions)."""
    out = {"resourceType"}
    for name, info in model.model_fields.items():
        if name != "fhir_comments":
            out.add(info.alias or name)
    return frozenset(out)


OBSERVATION_ELEMENTS = _names(Observation)
COMPONENT_ELEMENTS = _names(ObservationComponent)
QR_ELEMENTS = _names(QuestionnaireResponse)
QR_ITEM_ELEMENTS = _names(QuestionnaireResponseItem)
QR_ANSWER_ELEMENTS = _names(QuestionnaireResponseItemAnswer)
BUNDLE_ELEMENTS = _names(Bundle)
ENTRY_ELEMENTS = _names(BundleEntry)
REQUEST_ELEMENTS = _names(BundleEntryRequest)


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome issue. `diagnostics` is NerveWatch's own text, never submitted content."""

    code: str  # FHIR issue type: invalid, structure, required, value, code-invalid, not-supported, not-found, ...
    diagnostics: str
    expression: str
    status: int = 422

    def under(self, prefix: str) -> Issue:
        """The same issue located inside a Bundle entry (`Bundle.entry[i].resource...`)."""
        head, _, rest = self.expression.partition(".")
        expression = (
            prefix + ("." + rest if rest else "") if head in ("Observation", "QuestionnaireResponse") else prefix
        )
        return Issue(self.code, self.diagnostics, expression, self.status)


class FhirInputError(Exception):
    """A resource (or Bundle) that cannot be accepted; `status` is the HTTP status of its first issue."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__(issues[0].diagnostics if issues else "invalid")
        self.issues = issues

    @property
    def status(self) -> int:
        return self.issues[0].status


@dataclass(frozen=True, slots=True)
class MappedCheckIn:
    """A check-in payload of the JSON API, with the FHIR element each field came from."""

    resource_type: str
    patient_id: str
    payload: dict[str, Any]
    origins: dict[str, str]
    grip_side: str | None = None  # "left"/"right" when grip strength came from a sided LOINC code


@dataclass(frozen=True, slots=True)
class MappedSample:
    """An activity sample payload of the JSON API, with its device."""

    resource_type: str
    patient_id: str
    device: dict[str, str]
    payload: dict[str, Any]
    origins: dict[str, str]
    grip_side: str | None = None


Mapped = MappedCheckIn | MappedSample


@dataclass(frozen=True, slots=True)
class ParsedBundle:
    """A Bundle's type and its entries: the resource, or the issues of an entry already rejected."""

    type: str
    resources: list[Any]
    entry_issues: dict[int, list[Issue]] = field(default_factory=dict)


def _fail(code: str, diagnostics: str, expression: str, status: int = 422) -> FhirInputError:
    return FhirInputError([Issue(code, diagnostics, expression, status)])


# --- meanings of codes ----------------------------------------------------------------------------

PAIN = "pain"
PANEL = "panel"
STEPS_24H = "steps_24h"
STEPS = "steps"
GRIP_LEFT = "grip_left"
GRIP_RIGHT = "grip_right"
SLEEP = "sleep"
_FUNCTION_PREFIX = "function:"

_MEANINGS: dict[tuple[str, str], str] = {
    (c.LOINC, c.PAIN_SEVERITY): PAIN,
    (c.NERVEWATCH, c.CHECKIN_PANEL): PANEL,
    (c.LOINC, c.STEPS_24H): STEPS_24H,
    (c.LOINC, c.STEPS): STEPS,
    (c.LOINC, c.GRIP_LEFT): GRIP_LEFT,
    (c.LOINC, c.GRIP_RIGHT): GRIP_RIGHT,
    (c.LOINC, c.SLEEP_DURATION): SLEEP,
    (c.NERVEWATCH, c.PAIN_WORST_24H): c.PAIN_WORST_24H,
    (c.NERVEWATCH, c.PAIN_QUALITY): c.PAIN_QUALITY,
    (c.NERVEWATCH, c.TINGLING): c.TINGLING,
    (c.NERVEWATCH, c.NUMBNESS): c.NUMBNESS,
    (c.NERVEWATCH, c.WEAKNESS): c.WEAKNESS,
    (c.NERVEWATCH, c.NUMBNESS_SPREADING): c.NUMBNESS_SPREADING,
    (c.NERVEWATCH, c.NIGHT_WAKINGS): c.NIGHT_WAKINGS,
    (c.NERVEWATCH, c.ANALGESIC_DOSES): c.ANALGESIC_DOSES,
    (c.NERVEWATCH, c.PT_SESSION_ENDED): c.PT_SESSION_ENDED,
    (c.NERVEWATCH, c.PT_SESSION_INTENSITY): c.PT_SESSION_INTENSITY,
    (c.NERVEWATCH, c.HOME_EXERCISES): c.HOME_EXERCISES,
    (c.NERVEWATCH, c.RED_FLAG): c.RED_FLAG,
    **{key: _FUNCTION_PREFIX + instrument for key, instrument in c.FUNCTION_CODES.items()},
}
_SAMPLE_MEANINGS = frozenset({STEPS_24H, STEPS, GRIP_LEFT, GRIP_RIGHT, SLEEP})
_CHECKIN_INTEGERS = {
    c.PAIN_WORST_24H: ("pain", "worst_24h"),
    c.TINGLING: ("tingling",),
    c.NUMBNESS: ("numbness",),
    c.WEAKNESS: ("weakness",),
    c.NIGHT_WAKINGS: ("night_wakings",),
    c.ANALGESIC_DOSES: ("analgesic_doses_24h",),
}
_CHECKIN_BOOLEANS = {c.NUMBNESS_SPREADING: ("numbness_spreading",), c.HOME_EXERCISES: ("home_exercises_done",)}
_PAIN_QUALITIES = frozenset(q.value for q in PainQuality)
_RED_FLAGS = frozenset(f.value for f in RedFlag)
_INTENSITIES = frozenset(i.value for i in Intensity)


def _meaning(concept: Any, expr: str) -> str:
    """The single NerveWatch meaning of a CodeableConcept; codings of other systems are alternatives."""
    if not isinstance(concept, dict):
        raise _fail("required", "a code is required", expr)
    codings = concept.get("coding")
    if not isinstance(codings, list) or not codings:
        raise _fail("required", "the code needs a coding with system and code", expr)
    found: set[str] = set()
    for coding in codings:
        if isinstance(coding, dict):
            meaning = _MEANINGS.get((coding.get("system"), coding.get("code")))  # type: ignore[arg-type]
            if meaning is not None:
                found.add(meaning)
    if not found:
        raise _fail("code-invalid", "unknown code: no coding has a supported system and code (see docs/fhir.md)", expr)
    if len(found) > 1:
        raise _fail("code-invalid", "the codings name different supported concepts", expr)
    return found.pop()


def _answer_code(concept: Any, expr: str, allowed: frozenset[str], what: str) -> str:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list):
        raise _fail("required", f"{what} needs a coding", expr)
    for coding in codings:
        if isinstance(coding, dict) and coding.get("system") == c.NERVEWATCH and coding.get("code") in allowed:
            return str(coding["code"])
    raise _fail("code-invalid", f"unknown {what} code (NerveWatch CodeSystem)", expr)


# --- element helpers ------------------------------------------------------------------------------


def _check_elements(obj: dict[str, Any], allowed: frozenset[str], expr: str) -> None:
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        raise _fail("structure", f"{len(unknown)} element(s) are not elements of this R4 type", expr, 400)


def _value(elem: dict[str, Any], expr: str, allowed: Iterable[str]) -> tuple[str, Any]:
    """The element's single `value[x]` (name and value); it must be one of `allowed`."""
    names = [k for k in elem if k.startswith("value") and k != "valueSet"]
    if not names:
        if "dataAbsentReason" in elem:
            raise _fail("required", "a value is required; dataAbsentReason is not accepted", expr)
        raise _fail("required", "a value is required", expr)
    if len(names) > 1:
        raise _fail("structure", "more than one value[x]", expr, 400)
    allowed = tuple(allowed)
    if names[0] not in allowed:
        raise _fail("value", f"the value must be one of {', '.join(allowed)}", f"{expr}.{names[0]}")
    return names[0], elem[names[0]]


def _number(value: Any, expr: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("value", "must be a JSON number", expr)
    return value


def _integer(value: Any, expr: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("value", "must be a JSON integer", expr)
    return value


def _boolean(value: Any, expr: str) -> bool:
    if not isinstance(value, bool):
        raise _fail("value", "must be a JSON boolean", expr)
    return value


def _string(value: Any, expr: str) -> str:
    if not isinstance(value, str):
        raise _fail("value", "must be a JSON string", expr)
    return value


def _quantity_parts(q: Any, expr: str) -> tuple[int | float, str | None]:
    """A Quantity's value and UCUM code (None when it has no code). A code needs the UCUM system."""
    if not isinstance(q, dict):
        raise _fail("value", "must be a Quantity", expr)
    if "comparator" in q:
        raise _fail("not-supported", "quantities with a comparator are not accepted", f"{expr}.comparator")
    value = _number(q.get("value"), f"{expr}.value")
    code = q.get("code")
    if code is None:
        return value, None
    if not isinstance(code, str) or q.get("system") != c.UCUM:
        raise _fail("value", "unit mismatch: the unit must be a UCUM code (system http://unitsofmeasure.org)", expr)
    return value, code


def _is_dimensionless(code: str | None) -> bool:
    return code is None or code == "1" or (code.startswith("{") and code.endswith("}"))


def _score(elem: dict[str, Any], expr: str, *, integer: bool) -> int | float:
    """A 0-10 item or instrument score: valueInteger, or a unitless valueQuantity (`{score}`, `1`)."""
    names = ("valueInteger", "valueQuantity") if integer else ("valueQuantity", "valueInteger")
    name, raw = _value(elem, expr, names)
    if name == "valueInteger":
        return _integer(raw, f"{expr}.valueInteger")
    value, code = _quantity_parts(raw, f"{expr}.valueQuantity")
    if not _is_dimensionless(code):
        raise _fail("value", "unit mismatch: a score is unitless ({score} or 1)", f"{expr}.valueQuantity.code")
    return value


def _grip_kg(q: Any, expr: str) -> float:
    value, code = _quantity_parts(q, expr)
    if code == "kg":
        return float(value)
    if code == "[lbf_av]":
        return round(value * LBF_TO_KG, 3)
    if code == "N":
        return round(value * NEWTON_TO_KG, 3)
    raise _fail("value", "unit mismatch: grip strength is accepted in kg, [lbf_av] or N (UCUM)", f"{expr}.code")


def _patient_id(subject: Any, tenant_id: str, expr: str) -> str:
    if not isinstance(subject, dict):
        raise _fail("required", "subject is required: Patient/{patient_id} or the tenant's patient identifier", expr)
    ref = subject.get("reference")
    if ref is not None:
        m = _PATIENT_REF.fullmatch(ref) if isinstance(ref, str) else None
        if m is None:
            raise _fail("value", "subject.reference must be Patient/{patient_id}", f"{expr}.reference")
        return m.group(1)
    ident = subject.get("identifier")
    if isinstance(ident, dict):
        if ident.get("system") != c.patient_identifier_system(tenant_id):
            raise _fail(
                "value", "subject.identifier.system must be the tenant's patient-id system", f"{expr}.identifier"
            )
        value = ident.get("value")
        if isinstance(value, str) and _PATIENT_ID.fullmatch(value):
            return value
        raise _fail("value", "subject.identifier.value must be a patient id", f"{expr}.identifier.value")
    raise _fail("required", "subject needs a reference or an identifier", expr)


def _event_key(res: dict[str, Any], expr: str) -> str:
    """What identifies a resource across posts: its first identifier (system|value), else its id."""
    idents = res.get("identifier")
    if isinstance(idents, dict):  # QuestionnaireResponse.identifier is 0..1
        idents = [idents]
    if idents is not None and not isinstance(idents, list):
        raise _fail("structure", "identifier has the wrong shape", f"{expr}.identifier", 400)
    for ident in idents or ():
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
            system = ident.get("system")
            return f"identifier\n{system if isinstance(system, str) else ''}|{ident['value']}"
    rid = res.get("id")
    if isinstance(rid, str) and rid:
        return f"id\n{rid}"
    raise _fail(
        "required",
        "an identifier (or an id) is required: it makes a repost of the same resource harmless",
        f"{expr}.identifier",
    )


def _effective_time(res: dict[str, Any], expr: str) -> tuple[str, str]:
    """(value, element) of effectiveDateTime or effectiveInstant."""
    for name in ("effectiveDateTime", "effectiveInstant"):
        if name in res:
            return _string(res[name], f"{expr}.{name}"), f"{expr}.{name}"
    if "effectivePeriod" in res:
        raise _fail(
            "value", "this observation needs effectiveDateTime (an instant), not a period", f"{expr}.effectivePeriod"
        )
    raise _fail("required", "effectiveDateTime is required", expr)


def _effective_period(res: dict[str, Any], expr: str, *, instant_ok: bool) -> tuple[str, str, str]:
    """(start, end, element) of effectivePeriod (both bounds required), or of an instant when allowed."""
    period = res.get("effectivePeriod")
    if isinstance(period, dict):
        start, end = period.get("start"), period.get("end")
        if start is None or end is None:
            raise _fail("required", "effectivePeriod needs start and end", f"{expr}.effectivePeriod")
        return (
            _string(start, f"{expr}.effectivePeriod.start"),
            _string(end, f"{expr}.effectivePeriod.end"),
            (f"{expr}.effectivePeriod"),
        )
    if instant_ok:
        at, where = _effective_time(res, expr)
        return at, at, where
    raise _fail("required", "effectivePeriod (start and end) is required for this code", expr)


def _status(res: dict[str, Any], expr: str, accepted: frozenset[str]) -> None:
    status = res.get("status")
    if status is None:
        raise _fail("required", "status is required", f"{expr}.status")
    if status not in accepted:
        raise _fail("not-supported", f"status must be one of {', '.join(sorted(accepted))}", f"{expr}.status")


# --- check-in assembly ----------------------------------------------------------------------------


class _CheckInBuilder:
    """Collects check-in fields, each from exactly one element (a repeat of a single item is an issue)."""

    def __init__(self, resource_type: str, patient_id: str, event_id: str, recorded_at: str, at: str) -> None:
        self.resource_type = resource_type
        self.patient_id = patient_id
        self.payload: dict[str, Any] = {"event_id": event_id, "patient_id": patient_id, "recorded_at": recorded_at}
        root = at.split(".", 1)[0]
        self.origins: dict[str, str] = {"": root, "recorded_at": at, "event_id": f"{root}.identifier"}
        self.grip_side: str | None = None

    def set(self, path: tuple[str, ...], value: Any, expr: str) -> None:
        target = self.payload
        for key in path[:-1]:
            target = target.setdefault(key, {})
        if path[-1] in target:
            raise _fail("structure", "this check-in item appears more than once", expr)
        target[path[-1]] = value
        self.origins[".".join(path)] = expr

    def append(self, path: tuple[str, ...], value: str, expr: str) -> None:
        target = self.payload
        for key in path[:-1]:
            target = target.setdefault(key, {})
        items = target.setdefault(path[-1], [])
        if value in items:
            raise _fail("structure", "the same code appears more than once", expr)
        items.append(value)
        self.origins.setdefault(".".join(path), expr)

    def item(self, meaning: str, elem: dict[str, Any], expr: str, *, answer: bool = False) -> None:
        """One check-in item from an Observation component (or a QuestionnaireResponse answer)."""
        if meaning == PAIN:
            self.set(("pain", "current"), _score(elem, expr, integer=True), expr)
        elif meaning in _CHECKIN_INTEGERS:
            self.set(_CHECKIN_INTEGERS[meaning], _score(elem, expr, integer=True), expr)
        elif meaning in _CHECKIN_BOOLEANS:
            _, raw = _value(elem, expr, ("valueBoolean",))
            self.set(_CHECKIN_BOOLEANS[meaning], _boolean(raw, f"{expr}.valueBoolean"), expr)
        elif meaning in (c.PAIN_QUALITY, c.RED_FLAG, c.PT_SESSION_INTENSITY):
            name, raw = _value(elem, expr, ("valueCoding",) if answer else ("valueCodeableConcept",))
            concept = {"coding": [raw]} if answer else raw
            where = f"{expr}.{name}"
            if meaning == c.PAIN_QUALITY:
                self.append(("pain", "quality"), _answer_code(concept, where, _PAIN_QUALITIES, "pain quality"), where)
            elif meaning == c.RED_FLAG:
                self.append(("red_flags",), _answer_code(concept, where, _RED_FLAGS, "red flag"), where)
            else:
                self.set(("pt_session", "intensity"), _answer_code(concept, where, _INTENSITIES, "intensity"), where)
        elif meaning == c.PT_SESSION_ENDED:
            _, raw = _value(elem, expr, ("valueDateTime",))
            self.set(("pt_session", "ended_at"), _string(raw, f"{expr}.valueDateTime"), expr)
        elif meaning.startswith(_FUNCTION_PREFIX):
            names = ("valueDecimal", "valueInteger", "valueQuantity") if answer else ("valueQuantity", "valueInteger")
            name, raw = _value(elem, expr, names)
            if name == "valueQuantity":
                score: int | float = _score({"valueQuantity": raw}, expr, integer=False)
            else:
                score = _number(raw, f"{expr}.{name}")
            self.set(("function",), {"instrument": meaning.removeprefix(_FUNCTION_PREFIX), "score": score}, expr)
            self.origins["function.score"] = expr
        elif meaning in (GRIP_LEFT, GRIP_RIGHT):
            _, raw = _value(elem, expr, ("valueQuantity",))
            self.set(("grip_strength_kg",), _grip_kg(raw, f"{expr}.valueQuantity"), expr)
            self.grip_side = "left" if meaning == GRIP_LEFT else "right"
        else:  # steps, sleep, the panel itself
            raise _fail("not-supported", "this code is not a check-in item (send it as its own Observation)", expr)

    def notes(self, text: str, expr: str) -> None:
        self.set(("notes",), text, expr)

    def result(self) -> MappedCheckIn:
        self.payload.setdefault("pain", {})
        return MappedCheckIn(self.resource_type, self.patient_id, self.payload, self.origins, self.grip_side)


# --- Observation --------------------------------------------------------------------------------


def map_observation(res: Any, tenant_id: str, expr: str = "Observation") -> Mapped:
    """An Observation -> a check-in (pain severity or check-in panel) or an activity sample."""
    if not isinstance(res, dict) or res.get("resourceType") != "Observation":
        raise _fail("invalid", "the resource must be an Observation", expr, 400)
    _check_elements(res, OBSERVATION_ELEMENTS, expr)
    _status(res, expr, ACCEPTED_OBSERVATION_STATUS)
    meaning = _meaning(res.get("code"), f"{expr}.code")
    patient_id = _patient_id(res.get("subject"), tenant_id, f"{expr}.subject")
    event_id = str(c.derive_event_id(tenant_id, "Observation", _event_key(res, expr)))
    if meaning in (PAIN, PANEL):
        return _checkin_observation(res, meaning, tenant_id, patient_id, event_id, expr)
    if meaning in _SAMPLE_MEANINGS:
        if "component" in res:
            raise _fail("not-supported", "components are not accepted on this code", f"{expr}.component")
        return _sample_observation(res, meaning, patient_id, event_id, expr)
    raise _fail(
        "not-supported",
        "this check-in item is accepted as a component of a check-in Observation (LOINC 72514-3 or the "
        "NerveWatch check-in panel) or in the check-in QuestionnaireResponse: a check-in needs a pain score",
        f"{expr}.code",
    )


def _checkin_observation(
    res: dict[str, Any], meaning: str, tenant_id: str, patient_id: str, event_id: str, expr: str
) -> MappedCheckIn:
    recorded_at, at = _effective_time(res, expr)
    b = _CheckInBuilder("Observation", patient_id, event_id, recorded_at, at)
    if meaning == PAIN:
        b.item(PAIN, res, expr)
    elif any(k.startswith("value") for k in res):
        raise _fail("value", "the check-in panel carries its items as components, not a value", expr)
    components = res.get("component", [])
    if not isinstance(components, list):
        raise _fail("structure", "component must be a list", f"{expr}.component", 400)
    for i, comp in enumerate(components):
        where = f"{expr}.component[{i}]"
        if not isinstance(comp, dict):
            raise _fail("structure", "a component must be an object", where, 400)
        _check_elements(comp, COMPONENT_ELEMENTS, where)
        b.item(_meaning(comp.get("code"), f"{where}.code"), comp, where)
    if meaning == PANEL and "current" not in b.payload.get("pain", {}):
        raise _fail("required", "the check-in panel needs a pain severity component (LOINC 72514-3)", expr)
    texts = _note_texts(res.get("note"), f"{expr}.note")
    if texts:
        b.notes("\n\n".join(texts), f"{expr}.note")
    return b.result()


def _note_texts(notes: Any, expr: str) -> list[str]:
    if notes is None:
        return []
    if not isinstance(notes, list):
        raise _fail("structure", "note must be a list", expr, 400)
    return [_string(n.get("text") if isinstance(n, dict) else None, f"{expr}[{i}].text") for i, n in enumerate(notes)]


def _device(res: dict[str, Any], kind: str, expr: str) -> dict[str, str]:
    ref = res.get("device")
    if ref is None:
        return {"id": "fhir-unspecified", "kind": kind}
    if isinstance(ref, dict):
        if isinstance(ref.get("reference"), str):
            m = _DEVICE_REF.fullmatch(ref["reference"])
            if m:
                return {"id": m.group(1), "kind": kind}
        ident = ref.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            return {"id": ident["value"], "kind": kind}
    raise _fail("value", "device must reference Device/{id} or carry an identifier", f"{expr}.device")


def _sample_observation(res: dict[str, Any], meaning: str, patient_id: str, event_id: str, expr: str) -> MappedSample:
    origins = {"event_id": f"{expr}.identifier"}
    grip_side = None
    if meaning in (STEPS, STEPS_24H):
        start, end, where = _effective_period(res, expr, instant_ok=False)
        name, raw = _value(res, expr, ("valueQuantity", "valueInteger"))
        if name == "valueInteger":
            value: float = _integer(raw, f"{expr}.valueInteger")
        else:
            amount, code = _quantity_parts(raw, f"{expr}.valueQuantity")
            per_day = code is not None and (code in ("/d", "/(24.h)") or re.fullmatch(r"\{[^}]*\}/(d|\(24\.h\))", code))
            if not (_is_dimensionless(code) or (meaning == STEPS_24H and per_day)):
                raise _fail(
                    "value",
                    "unit mismatch: steps are a count ({steps}, 1; per day /d for 41950-7)",
                    f"{expr}.valueQuantity.code",
                )
            value = amount
        payload: dict[str, Any] = {"event_id": event_id, "type": "steps", "start": start, "end": end, "value": value}
        kind = "other"
    elif meaning == SLEEP:
        start, end, where = _effective_period(res, expr, instant_ok=False)
        _, raw = _value(res, expr, ("valueQuantity",))
        amount, code = _quantity_parts(raw, f"{expr}.valueQuantity")
        factor = {"min": 1.0, "h": 60.0, "s": 1 / 60}.get(code or "")
        if factor is None:
            raise _fail(
                "value", "unit mismatch: sleep duration is accepted in min, h or s (UCUM)", f"{expr}.valueQuantity.code"
            )
        payload = {"event_id": event_id, "type": "sleep_minutes", "start": start, "end": end, "value": amount * factor}
        kind = "other"
    else:  # grip strength, left or right
        start, end, where = _effective_period(res, expr, instant_ok=True)
        _, raw = _value(res, expr, ("valueQuantity",))
        kg = _grip_kg(raw, f"{expr}.valueQuantity")
        payload = {"event_id": event_id, "type": "grip_strength_kg", "start": start, "end": end, "value": kg}
        grip_side = "left" if meaning == GRIP_LEFT else "right"
        kind = "dynamometer"
    origins.update({"start": where, "end": where, "value": f"{expr}.value[x]", "": expr})
    return MappedSample("Observation", patient_id, _device(res, kind, expr), payload, origins, grip_side)


# --- QuestionnaireResponse -------------------------------------------------------------------------

_LINK_IDS: dict[str, str] = {
    "pain-current": PAIN,
    "grip-strength": "grip_affected",
    "odi-score": _FUNCTION_PREFIX + "odi",
    "promis-pi-score": _FUNCTION_PREFIX + "promis_pi",
    **{
        code: meaning
        for (system, code), meaning in _MEANINGS.items()
        if system == c.NERVEWATCH and meaning not in (PANEL,)
    },
    c.NOTES: c.NOTES,
}
_REPEATING_LINK_IDS = frozenset({c.PAIN_QUALITY, c.RED_FLAG})


def map_questionnaire_response(res: Any, tenant_id: str, expr: str = "QuestionnaireResponse") -> MappedCheckIn:
    """A QuestionnaireResponse to the NerveWatch check-in Questionnaire -> one check-in."""
    if not isinstance(res, dict) or res.get("resourceType") != "QuestionnaireResponse":
        raise _fail("invalid", "the resource must be a QuestionnaireResponse", expr, 400)
    _check_elements(res, QR_ELEMENTS, expr)
    questionnaire = res.get("questionnaire")
    if not isinstance(questionnaire, str) or questionnaire.split("|", 1)[0] != c.CHECKIN_QUESTIONNAIRE:
        raise _fail("code-invalid", f"questionnaire must be {c.CHECKIN_QUESTIONNAIRE}", f"{expr}.questionnaire")
    _status(res, expr, ACCEPTED_QR_STATUS)
    patient_id = _patient_id(res.get("subject"), tenant_id, f"{expr}.subject")
    event_id = str(c.derive_event_id(tenant_id, "QuestionnaireResponse", _event_key(res, expr)))
    if "authored" not in res:
        raise _fail("required", "authored is required (when the patient answered)", f"{expr}.authored")
    b = _CheckInBuilder(
        "QuestionnaireResponse", patient_id, event_id, _string(res["authored"], f"{expr}.authored"), f"{expr}.authored"
    )
    for link_id, answers, where in _leaf_items(res.get("item"), f"{expr}.item", 1):
        meaning = _LINK_IDS.get(link_id)
        if meaning is None:
            raise _fail("code-invalid", "unknown linkId (see the NerveWatch check-in Questionnaire)", f"{where}.linkId")
        if len(answers) > 1 and link_id not in _REPEATING_LINK_IDS:
            raise _fail("structure", "this question takes one answer", f"{where}.answer")
        for j, answer in enumerate(answers):
            at = f"{where}.answer[{j}]"
            if not isinstance(answer, dict):
                raise _fail("structure", "an answer must be an object", at, 400)
            _check_elements(answer, QR_ANSWER_ELEMENTS, at)
            if meaning == PAIN or meaning in _CHECKIN_INTEGERS:
                _, raw = _value(answer, at, ("valueInteger",))
                path = ("pain", "current") if meaning == PAIN else _CHECKIN_INTEGERS[meaning]
                b.set(path, _integer(raw, f"{at}.valueInteger"), at)
            elif meaning == "grip_affected":
                _, raw = _value(answer, at, ("valueQuantity",))
                b.set(("grip_strength_kg",), _grip_kg(raw, f"{at}.valueQuantity"), at)
            elif meaning == c.NOTES:
                _, raw = _value(answer, at, ("valueString",))
                b.notes(_string(raw, f"{at}.valueString"), at)
            else:
                b.item(meaning, answer, at, answer=True)
    if "current" not in b.payload.get("pain", {}):
        raise _fail("required", "the pain-current answer is required", f"{expr}.item")
    return b.result()


def _leaf_items(items: Any, expr: str, depth: int) -> Iterable[tuple[str, list[Any], str]]:
    """(linkId, answers, element) of every answered item; groups are walked (bounded depth)."""
    if items is None:
        return
    if not isinstance(items, list):
        raise _fail("structure", "item must be a list", expr, 400)
    if depth > MAX_ITEM_DEPTH:
        raise _fail("structure", f"items may nest at most {MAX_ITEM_DEPTH} levels", expr, 400)
    for i, item in enumerate(items):
        where = f"{expr}[{i}]"
        if not isinstance(item, dict):
            raise _fail("structure", "an item must be an object", where, 400)
        _check_elements(item, QR_ITEM_ELEMENTS, where)
        link_id = item.get("linkId")
        if not isinstance(link_id, str):
            raise _fail("required", "linkId is required", f"{where}.linkId")
        answers = item.get("answer", [])
        if not isinstance(answers, list):
            raise _fail("structure", "answer must be a list", f"{where}.answer", 400)
        if any(isinstance(a, dict) and "item" in a for a in answers):
            raise _fail("not-supported", "items nested under answers are not accepted", f"{where}.answer")
        if "item" in item:
            if answers:
                raise _fail("structure", "a group item carries no answer", f"{where}.answer")
            yield from _leaf_items(item["item"], f"{where}.item", depth + 1)
        elif answers:
            yield link_id, answers, where


# --- Bundle -------------------------------------------------------------------------------------

MAPPERS: dict[str, Callable[[Any, str, str], Mapped]] = {
    "Observation": map_observation,
    "QuestionnaireResponse": map_questionnaire_response,
}


def parse_bundle(body: Any) -> ParsedBundle:
    """The envelope of a `transaction` or `batch` Bundle (at most `MAX_ENTRIES` entries)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise _fail("invalid", "the body must be a Bundle", "Bundle", 400)
    _check_elements(body, BUNDLE_ELEMENTS, "Bundle")
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise _fail("not-supported", "Bundle.type must be transaction or batch", "Bundle.type", 400)
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries:
        raise _fail("required", "the Bundle has no entries", "Bundle.entry")
    if len(entries) > MAX_ENTRIES:
        raise _fail("too-costly", f"a Bundle may hold at most {MAX_ENTRIES} entries", "Bundle.entry")
    resources: list[Any] = []
    issues: dict[int, list[Issue]] = {}
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        try:
            resources.append(_entry_resource(entry, where))
        except FhirInputError as exc:
            resources.append(None)
            issues[i] = exc.issues
    return ParsedBundle(kind, resources, issues)


def _entry_resource(entry: Any, where: str) -> Any:
    if not isinstance(entry, dict):
        raise _fail("structure", "an entry must be an object", where, 400)
    _check_elements(entry, ENTRY_ELEMENTS, where)
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        raise _fail("required", "the entry has no resource", f"{where}.resource")
    rtype = resource.get("resourceType")
    if rtype not in MAPPERS:
        raise _fail("not-supported", "only Observation and QuestionnaireResponse are accepted", f"{where}.resource")
    request = entry.get("request")
    if not isinstance(request, dict):
        raise _fail("required", "entry.request is required in a transaction or batch", f"{where}.request")
    _check_elements(request, REQUEST_ELEMENTS, f"{where}.request")
    if request.get("method") != "POST":
        raise _fail("not-supported", "only POST (create) entries are accepted", f"{where}.request.method")
    if request.get("url") != rtype:
        raise _fail("value", "entry.request.url must be the resource type", f"{where}.request.url")
    return resource


def map_entry(resource: Any, tenant_id: str, index: int) -> Mapped:
    """Map one Bundle entry's resource; issues are located under `Bundle.entry[index].resource`."""
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    mapper = MAPPERS.get(rtype)  # type: ignore[arg-type]
    prefix = f"Bundle.entry[{index}].resource"
    if mapper is None:
        raise _fail("not-supported", "only Observation and QuestionnaireResponse are accepted", prefix)
    try:
        return mapper(resource, tenant_id, str(rtype))
    except FhirInputError as exc:
        raise FhirInputError([i.under(prefix) for i in exc.issues]) from None


# --- validation by the contract's models --------------------------------------------------------------


def side_issue(item: Mapped, side: str | None) -> Issue | None:
    """Grip strength of a sided code must be of the patient's affected side (enrolment `side`).

    `bilateral` and `not_applicable` patients accept both sides; a reading of the unaffected hand
    is rejected, not stored as the affected side (it would mask a grip-strength drop).
    """
    if item.grip_side is None or side not in ("left", "right") or item.grip_side == side:
        return None
    where = item.origins.get("grip_strength_kg") or item.origins.get("value") or item.resource_type
    return Issue("business-rule", "grip strength of the unaffected side is not accepted for this patient", where)


@dataclass(frozen=True, slots=True)
class ValidSample:
    """A validated wearable sample with its patient and device."""

    patient_id: str
    device: Device
    sample: ActivitySample


def to_contract(item: Mapped, context: Mapping[str, Any]) -> CheckIn | ValidSample:
    """Validate a mapped payload with the JSON API's model (same rules), issues at their FHIR elements.

    `context` is the JSON API's validation context of the item's patient (ingest builds it with
    `IngestHandlers._context`): the clock (`now`) and the plausibility floor of event times
    (`event_time_floor`). Both are required, so that no caller can drop the floor by omission:
    without them this raises `ValueError` (a programming error, not an input error).
    """
    missing = {NOW_CONTEXT, FLOOR_CONTEXT} - context.keys()
    if missing:
        raise ValueError(f"validation context lacks {sorted(missing)}")
    ctx = dict(context)
    try:
        if isinstance(item, MappedCheckIn):
            return CheckIn.model_validate(item.payload, context=ctx)
        device = Device.model_validate(item.device)
        return ValidSample(item.patient_id, device, ActivitySample.model_validate(item.payload, context=ctx))
    except ValidationError as exc:
        raise FhirInputError(contract_issues(exc, item)) from None


CONFLICT_DIAGNOSTICS = (
    "a resource with this identifier was accepted before with different content; nothing of this entry was"
    " accepted; a new observation needs a new identifier"
)


def conflict_issue(item: Mapped) -> Issue:
    """The issue of a resource whose identifier (event id) was accepted before with other content:
    `409 conflict` at the element the event id came from. Names nothing of the content."""
    return Issue("conflict", CONFLICT_DIAGNOSTICS, item.origins.get("event_id", item.resource_type), 409)


def contract_issues(exc: ValidationError, item: Mapped) -> list[Issue]:
    out = []
    for e in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in e["loc"]]
        where = item.resource_type
        for n in range(len(loc), -1, -1):
            key = ".".join(loc[:n])
            if key in item.origins:
                where = item.origins[key]
                break
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        out.append(Issue("value" if e["type"] != "missing" else "required", msg, where))
    return out
