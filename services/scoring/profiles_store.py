"""Tenant clinical-profile overrides: validation of an admin's override, storage of every version.

A tenant overrides the default profile of one (condition, treatment) pair with a JSON object of
`ClinicalProfile` fields. Every PUT stores version n+1 in `scoring.profile_versions` (never
updated in place); the newest version per (tenant, condition, treatment) is current. The pure
part (`check_override`, `override_of`, `effective`) has no I/O; the async functions run one
statement each on the caller's connection and never commit on their own (the caller's
transaction, if any, decides).

Versions: the profile version recorded on states, assessments and trajectories is
`ClinicalProfile.version`, a content hash of the effective profile. Two tenants (or versions)
with the same effective thresholds share it; a tenant version that changes anything gets a new
one. `scoring.profile_versions.profile_version` maps each tenant version to its hash, so a
trajectory's profile version names the thresholds that produced it and where they came from.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from schemas.common import Condition, Treatment
from services.scoring.model import PatientProfile
from services.scoring.profile import ClinicalProfile, ProfileOverride, ProfileRule, profile_for

log = logging.getLogger(__name__)

CONDITIONS: frozenset[str] = frozenset(c.value for c in Condition)
TREATMENTS: frozenset[str] = frozenset(t.value for t in Treatment)
FIELDS: frozenset[str] = frozenset(ClinicalProfile.model_fields)
_INSTRUMENT_FIELDS = ("function_mcids", "function_pass")
_INSTRUMENTS = frozenset({"quickdash", "bctq_sss", "bctq_fss", "lefs", "odi", "psfs", "promis_pi"})
MAX_OVERRIDE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class FieldError:
    """One rejected field: `loc` names only known field names (never request text), `msg` is fixed text."""

    loc: tuple[str | int, ...]
    msg: str
    type: str


class OverrideRejected(ValueError):
    """A tenant override that is not a valid set of profile values; `errors` name every problem."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} field(s) rejected")


def _safe_loc(loc: Iterable[int | str]) -> tuple[str | int, ...]:
    """A pydantic error location with anything that is not a known field name replaced."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int) or part in FIELDS or part in _INSTRUMENTS:
            out.append(part)
        else:
            out.append("<unknown>")
    return tuple(out)


def check_override(condition: str, treatment: str, data: Any) -> dict[str, Any]:
    """Validate a tenant's override of the (condition, treatment) profile; return it normalised.

    Strict: `data` must be a JSON object whose keys are `ClinicalProfile` fields; values are
    checked as JSON in pydantic strict mode (no strings for numbers, no booleans for integers),
    against each field's range, and the effective profile (defaults + override) must be
    consistent as a whole. Raises `OverrideRejected` naming every bad field; error messages and
    locations never contain request text (an unknown key is reported as `<unknown>`).
    `condition`/`treatment` must be known (the caller answers 404 otherwise: ValueError).
    """
    if condition not in CONDITIONS or treatment not in TREATMENTS:
        raise ValueError("unknown condition or treatment")
    if not isinstance(data, dict):
        raise OverrideRejected([FieldError((), "the override must be a JSON object of profile fields", "dict_type")])
    errors: list[FieldError] = []
    unknown = [k for k in data if k not in FIELDS]
    errors.extend(FieldError(("<unknown>",), "unknown profile field", "extra_forbidden") for _ in unknown)
    for name in _INSTRUMENT_FIELDS:
        value = data.get(name)
        if isinstance(value, dict):
            errors.extend(
                FieldError((name, "<unknown>"), "unknown instrument", "extra_forbidden")
                for k in value
                if k not in _INSTRUMENTS
            )
    if errors:
        raise OverrideRejected(errors)
    base = profile_for(condition, treatment).model_dump(mode="json")
    try:
        profile = ClinicalProfile.model_validate_json(json.dumps({**base, **data}), strict=True)
    except ValidationError as exc:
        raise OverrideRejected(
            [
                FieldError(_safe_loc(e["loc"]), _message(e["msg"], e["type"]), e["type"])
                for e in exc.errors(include_input=False, include_url=False)
            ]
        ) from None
    # Normalised: the values as the profile holds them (e.g. 5 -> 5.0 for a float field).
    dumped = profile.model_dump(mode="json")
    return {k: dumped[k] for k in data}


def _message(msg: str, kind: str) -> str:
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg


def override_of(rows: Iterable[tuple[str, str, Mapping[str, Any]]]) -> ProfileOverride | None:
    """The tenant's `ProfileOverride` from its current (condition, treatment, override) rows, or
    None when it has none (or only empty ones). Rows are expected valid (stored by
    `check_override`); one that no longer is (defaults changed since) is skipped with a warning,
    so that pair falls back to the defaults rather than stopping scoring."""
    rules: list[ProfileRule] = []
    for condition, treatment, values in sorted(rows, key=lambda r: (r[0], r[1])):
        if not values:
            continue
        try:
            check_override(condition, treatment, dict(values))
        except (OverrideRejected, ValueError):
            log.warning("stored clinical-profile override no longer valid; defaults apply for this pair")
            continue
        rules.append(ProfileRule(condition=condition, treatment=treatment, set=dict(values)))
    return ProfileOverride(rules=tuple(rules)) if rules else None


def effective(patient: PatientProfile, override: ProfileOverride | None) -> ClinicalProfile:
    """The clinical profile scoring uses for `patient` under the tenant's override."""
    return profile_for(patient.condition, patient.treatment, override)


def load_override_file(text: str) -> ProfileOverride:
    """A profile override given to `rescore --profile FILE` (JSON): either
    `{"<condition>/<treatment>": {field: value}, ...}` (the admin endpoint's bodies keyed by pair)
    or `{"rules": [{"condition", "treatment", "set"}]}` (the `ProfileOverride` shape). Raises
    ValueError with a message naming the bad pair or field."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the profile file must hold a JSON object")
    if "rules" in data:
        from services.scoring.profile import ProfileError, validate_override

        try:
            return validate_override(data)
        except ProfileError as exc:
            raise ValueError(str(exc)) from None
    rows: list[tuple[str, str, Mapping[str, Any]]] = []
    for pair, values in data.items():
        condition, _, treatment = str(pair).partition("/")
        try:
            rows.append((condition, treatment, check_override(condition, treatment, values)))
        except OverrideRejected as exc:
            where = "; ".join(".".join(str(p) for p in e.loc) + f": {e.msg}" for e in exc.errors)
            raise ValueError(f"{condition}/{treatment}: {where}") from None
        except ValueError:
            raise ValueError("keys must be '<condition>/<treatment>' with a known condition and treatment") from None
    return ProfileOverride(rules=tuple(ProfileRule(condition=c, treatment=t, set=dict(v)) for c, t, v in rows if v))


# --- storage ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredVersion:
    tenant_id: str
    condition: str
    treatment: str
    version: int
    override: dict[str, Any]
    profile_version: str
    created_at: datetime
    created_by: str


def _json(value: Any) -> dict[str, Any]:
    out = json.loads(value) if isinstance(value, str) else value
    return dict(out) if isinstance(out, dict) else {}


def _stored(r: asyncpg.Record) -> StoredVersion:
    return StoredVersion(
        r["tenant_id"],
        r["condition"],
        r["treatment"],
        r["version"],
        _json(r["override"]),
        r["profile_version"],
        r["created_at"],
        r["created_by"],
    )


_COLS = "tenant_id, condition, treatment, version, override, profile_version, created_at, created_by"


async def current_overrides(conn: asyncpg.Connection, tenant_ids: Iterable[str]) -> dict[str, ProfileOverride]:
    """The current override of each tenant that has one (one query for the whole batch).

    Tenants without stored versions (or whose current versions are all empty) are absent:
    `profile_for(..., override=None)` gives them the defaults."""
    tenants = sorted(set(tenant_ids))
    if not tenants:
        return {}
    rows = await conn.fetch(
        """SELECT DISTINCT ON (tenant_id, condition, treatment) tenant_id, condition, treatment, override
           FROM scoring.profile_versions WHERE tenant_id = ANY($1::text[])
           ORDER BY tenant_id, condition, treatment, version DESC""",
        tenants,
    )
    by_tenant: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for r in rows:
        by_tenant.setdefault(r["tenant_id"], []).append((r["condition"], r["treatment"], _json(r["override"])))
    out: dict[str, ProfileOverride] = {}
    for tenant, pairs in by_tenant.items():
        override = override_of(pairs)
        if override is not None:
            out[tenant] = override
    return out


async def current_versions(conn: asyncpg.Connection, tenant_id: str) -> list[StoredVersion]:
    """The tenant's current version of every pair it has overridden, by condition and treatment."""
    rows = await conn.fetch(
        f"""SELECT DISTINCT ON (condition, treatment) {_COLS} FROM scoring.profile_versions
            WHERE tenant_id = $1 ORDER BY condition, treatment, version DESC""",
        tenant_id,
    )
    return [_stored(r) for r in rows]


async def history(conn: asyncpg.Connection, tenant_id: str, condition: str, treatment: str) -> list[StoredVersion]:
    """Every version of the tenant's override of one pair, newest first."""
    rows = await conn.fetch(
        f"""SELECT {_COLS} FROM scoring.profile_versions
            WHERE tenant_id = $1 AND condition = $2 AND treatment = $3 ORDER BY version DESC""",
        tenant_id,
        condition,
        treatment,
    )
    return [_stored(r) for r in rows]


async def add_version(
    conn: asyncpg.Connection,
    tenant_id: str,
    condition: str,
    treatment: str,
    override: Mapping[str, Any],
    created_by: str,
) -> StoredVersion:
    """Store `override` (already checked by `check_override`) as the pair's next version.

    Concurrent writers of one pair are serialised by a transaction-scoped advisory lock; call it
    inside a transaction (the lock is held until that transaction ends)."""
    pv = profile_for(condition, treatment, override_of([(condition, treatment, override)])).version
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('scoring.profile_versions'), hashtext($1 || '/' || $2 || '/' || $3))",
        tenant_id,
        condition,
        treatment,
    )
    row = await conn.fetchrow(
        f"""INSERT INTO scoring.profile_versions
              (tenant_id, condition, treatment, version, override, profile_version, created_by)
            SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4::text::jsonb, $5, $6
            FROM scoring.profile_versions WHERE tenant_id = $1 AND condition = $2 AND treatment = $3
            RETURNING {_COLS}""",
        tenant_id,
        condition,
        treatment,
        json.dumps(dict(override), sort_keys=True),
        pv,
        created_by,
    )
    assert row is not None
    return _stored(row)
