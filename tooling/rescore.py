"""`nervewatch rescore`: replay a tenant's stored series through the current engine and a profile.

    nervewatch rescore --tenant T [--since DATE] [--profile FILE] [--dry-run] [--json]

The pure part (`alert_diff`, `Summary`) compares each patient's stored trajectory with the
re-scored one: trajectory states from -> to, and the alerts the change implies (derived from the
signals with the alert rules' own signal -> kind mapping and default severities,
`services.alerts.rules`): kinds that would open, close (never red flags: a person resolves those)
or change kind (a patient losing one kind and gaining another). It is a derivation from signals:
whether an alert would really open also depends on the patient's alert book (already resolved,
snoozed, inhibited by a paging red flag), which the alerts service decides.

`run` is the shell: it records the run in `scoring.rescore_runs` (committed before anything
else), replays page by page (`services.scoring.rescore`), and in a real run writes each page's
trajectories and retrospective events in one transaction per page; a dry run writes nothing but
its audit row. The summary is logged at info level without patient ids.
"""

from __future__ import annotations

import getpass
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from schemas.alerts import DEFAULT_SEVERITY, AlertKind
from schemas.trajectory import Signal, TrajectoryState
from services.alerts.rules import KIND_ORDER, collect_evidence
from services.scoring import profiles_store
from services.scoring import rescore as core
from services.scoring.profile import ENGINE_VERSION, ProfileOverride

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlertDiff:
    opened: tuple[AlertKind, ...] = ()
    closed: tuple[AlertKind, ...] = ()
    changed: tuple[tuple[AlertKind, AlertKind], ...] = ()


def _kinds(signals: Sequence[Signal]) -> list[AlertKind]:
    found = collect_evidence(signals)
    return [k for k in KIND_ORDER if k in found]


def alert_diff(old: Sequence[Signal], new: Sequence[Signal]) -> AlertDiff:
    """The alert consequences of replacing signals `old` by `new` for one patient.

    Kinds raised by `new` only open, kinds of `old` only close (red flags never close by
    themselves); when a patient both loses and gains kinds, they pair up, most severe first
    (`KIND_ORDER`), as changes of kind; the rest open or close. Pure."""
    before, after = _kinds(old), _kinds(new)
    gone = [k for k in before if k not in after and k is not AlertKind.red_flag]
    came = [k for k in after if k not in before]
    pairs = tuple(zip(gone, came, strict=False))
    n = len(pairs)
    return AlertDiff(opened=tuple(came[n:]), closed=tuple(gone[n:]), changed=pairs)


def _state(s: TrajectoryState | None) -> str:
    return s.value if s is not None else "none"


@dataclass
class Summary:
    """Aggregate outcome of a run: counts only, never patient ids."""

    patients: int = 0
    days: int = 0
    changed: int = 0
    events: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    opened: Counter[tuple[str, str]] = field(default_factory=Counter)
    closed: Counter[tuple[str, str]] = field(default_factory=Counter)
    kind_changes: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(
        self,
        old_state: TrajectoryState | None,
        new_state: TrajectoryState,
        old_signals: Sequence[Signal],
        new_signals: Sequence[Signal],
        days: int,
    ) -> AlertDiff:
        """Count one re-scored patient; returns its alert diff."""
        self.patients += 1
        self.days += days
        diff = alert_diff(old_signals, new_signals)
        if old_state != new_state:
            self.transitions[(_state(old_state), new_state.value)] += 1
        for k in diff.opened:
            self.opened[(k.value, DEFAULT_SEVERITY[k].value)] += 1
        for k in diff.closed:
            self.closed[(k.value, DEFAULT_SEVERITY[k].value)] += 1
        for a, b in diff.changed:
            self.kind_changes[(a.value, b.value)] += 1
        if old_state != new_state or diff != AlertDiff():
            self.changed += 1
        return diff

    def to_json(self) -> dict[str, Any]:
        def rows(c: Counter[tuple[str, str]], a: str, b: str) -> list[dict[str, Any]]:
            return [{a: x, b: y, "count": n} for (x, y), n in sorted(c.items())]

        return {
            "patients": self.patients,
            "days": self.days,
            "changed_patients": self.changed,
            "events": self.events,
            "transitions": rows(self.transitions, "from", "to"),
            "alerts_open": rows(self.opened, "kind", "severity"),
            "alerts_close": rows(self.closed, "kind", "severity"),
            "alerts_change_kind": rows(self.kind_changes, "from", "to"),
        }

    def lines(self) -> list[str]:
        """The human-readable report (what `rescore` prints)."""
        out = [f"{self.patients} patient(s), {self.days} stored day(s) replayed, {self.changed} would change"]
        sections = (
            ("trajectory states (from -> to)", self.transitions, " -> "),
            ("alerts that would open (kind, severity)", self.opened, " "),
            ("alerts that would close (kind, severity)", self.closed, " "),
            ("alerts that would change kind (from -> to)", self.kind_changes, " -> "),
        )
        for title, counter, sep in sections:
            out.append(f"{title}:" + ("" if counter else " none"))
            out.extend(f"  {a}{sep}{b}: {n}" for (a, b), n in sorted(counter.items()))
        return out


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    dry_run: bool
    profile_source: str
    profile_version: str
    summary: Summary
    seconds: float


class RescoreError(ValueError):
    """An operator error (bad file, refused combination): one line for stderr."""


def override_version(override: ProfileOverride | None) -> str:
    return override.version if override is not None else "defaults"


async def run(
    pool: asyncpg.Pool,
    tenant_id: str,
    *,
    since: date | None = None,
    profile_text: str | None = None,
    dry_run: bool = False,
    run_by: str | None = None,
    page: int = core.PAGE,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RunResult:
    """Re-score the tenant (see the module docstring). `profile_text` is the JSON of a profile
    file (dry runs only: a real run always uses the tenant's current profile, since live
    scoring does). Raises RescoreError for operator errors, before anything is recorded."""
    if profile_text is not None and not dry_run:
        raise RescoreError(
            "--profile is for dry runs only: store the profile (PUT /v1/admin/clinical-profiles/...) and re-run "
            "without --profile to write"
        )
    override: ProfileOverride | None
    if profile_text is not None:
        try:
            override = profiles_store.load_override_file(profile_text)
        except (ValueError, json.JSONDecodeError) as exc:
            raise RescoreError(f"profile file rejected: {exc}") from None
        source = "file"
    else:
        async with pool.acquire() as conn:
            override = (await profiles_store.current_overrides(conn, [tenant_id])).get(tenant_id)
        source = "tenant-current"
    version = override_version(override)
    run_id = "rs-" + uuid.uuid4().hex[:16]
    who = run_by or getpass.getuser()
    started = time.perf_counter()
    async with pool.acquire() as conn:
        await core.start_run(conn, run_id, tenant_id, since, source, version, dry_run, who, clock())
    summary = Summary()
    try:
        async with pool.acquire() as reader, pool.acquire() as writer:
            async for batch in core.pages(reader, tenant_id, since, page):
                rescored = [r for r in (core.replay(p, override) for p in batch) if r is not None]
                for r in rescored:
                    summary.add(
                        r.stored.state, r.assessment.state, r.stored.signals, r.assessment.signals, len(r.stored.days)
                    )
                if not dry_run:
                    async with writer.transaction():
                        summary.events += await core.write(writer, tenant_id, run_id, rescored, clock())
    except BaseException as exc:
        # The pages committed so far stay written; the audit row says how far the run got.
        async with pool.acquire() as conn:
            await core.finish_run(conn, run_id, {**summary.to_json(), "error": type(exc).__name__}, clock())
        raise
    seconds = time.perf_counter() - started
    counts = summary.to_json()
    async with pool.acquire() as conn:
        await core.finish_run(conn, run_id, counts, clock())
    log.info(
        "rescore run %s finished",
        run_id,
        extra={
            "run_id": run_id,
            "tenant_id": tenant_id,
            "dry_run": dry_run,
            "profile_version": version,
            "engine_version": ENGINE_VERSION,
            "patients": summary.patients,
            "days": summary.days,
            "changed_patients": summary.changed,
            "events": summary.events,
            "seconds": round(seconds, 3),
        },
    )
    return RunResult(run_id, dry_run, source, version, summary, seconds)


def report(result: RunResult, tenant_id: str) -> str:
    mode = "dry run" if result.dry_run else "real run"
    head = (
        f"rescore {result.run_id} ({mode}) tenant {tenant_id}: engine {ENGINE_VERSION}, "
        f"profile {result.profile_version} ({result.profile_source})"
    )
    tail = (
        "dry run: nothing written (audit row only)"
        if result.dry_run
        else f"written; {result.summary.events} retrospective update(s) queued for alerts (pages nobody)"
    )
    return "\n".join([head, *result.summary.lines(), tail])
