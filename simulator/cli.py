"""`nervewatch simulate`: generate a labelled synthetic cohort, replay it, evaluate detection.

Wiring: the main CLI calls `add_arguments(subparser)` and `await run(args)`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import ValidationError

from simulator.archetypes import ALL_ARCHETYPES, SimPatient, generate_cohort, parse_archetypes, validate_patient
from simulator.client import ApiClient, PostStats, replay
from simulator.evaluate import (
    check_targets,
    evaluate,
    render_markdown,
    to_dict,
    truths_from_cohort,
    wait_for_settle,
)

log = logging.getLogger(__name__)

REPORT_BEGIN = "<!-- simulate:report:begin -->"
REPORT_END = "<!-- simulate:report:end -->"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ingest-url", default="http://127.0.0.1:8080", help="ingest service base URL")
    parser.add_argument("--alerts-url", default="http://127.0.0.1:8082", help="alerts service base URL")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("NERVEWATCH_DEV_API_KEY"),
        help="API key with ingest and care scopes (default: $NERVEWATCH_DEV_API_KEY)",
    )
    parser.add_argument("--per-archetype", type=int, default=50, help="patients per archetype (default 50)")
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (default: a fresh one, printed); part of every patient id"
    )
    parser.add_argument("--archetypes", default=None, help=f"comma-separated subset of: {', '.join(ALL_ARCHETYPES)}")
    parser.add_argument(
        "--end", default=None, help="RFC 3339 end of the simulated histories (default: now); must not be in the future"
    )
    parser.add_argument("--webhook-url", default=None, help="care-team webhook for every simulated patient")
    parser.add_argument("--evaluate", action="store_true", help="after posting, evaluate alerts and print a report")
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="write the markdown report here (implies --evaluate); in an existing file only the "
        f"part between {REPORT_BEGIN} and {REPORT_END} is replaced",
    )
    parser.add_argument(
        "--json", dest="json_path", type=Path, default=None, help="also write the evaluation as JSON here"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP requests (default 16)")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=15.0,
        help="alerts must be unchanged this long before evaluating (default 15)",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=600.0,
        help="give up waiting for alerts to settle after this many seconds (default 600)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a detection target fails")
    parser.add_argument("--dry-run", action="store_true", help="generate and print counts only; no HTTP")


def _parse_end(value: str | None, now: datetime) -> datetime:
    if not value:
        return now.replace(microsecond=0)
    end = datetime.fromisoformat(value)
    if end.tzinfo is None:
        raise ValueError("--end needs an offset, e.g. 2026-11-20T13:30:00Z")
    if end > now + timedelta(minutes=5):
        raise ValueError("--end must not be in the future (ingest rejects future event times)")
    return end.astimezone(UTC)


def cohort_summary(cohort: list[SimPatient]) -> str:
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    expected: dict[str, str] = {}
    for p in cohort:
        c = rows[p.label.archetype]
        c["patients"] += 1
        c["checkins"] += sum(1 for x in p.posts if x.kind == "checkin")
        c["activity_posts"] += sum(1 for x in p.posts if x.kind == "activity")
        c["samples"] += sum(len(x.payload["samples"]) for x in p.posts if x.kind == "activity")
        c["late_uploads"] += int(p.label.detail.get("late_uploads", 0))
        c["history_days"] += p.label.history_days
        expected[p.label.archetype] = ", ".join(sorted(p.label.expected_alert_kinds)) or "none"
    lines = [
        "| Archetype | Patients | Check-ins | Late uploads | Activity posts | Samples | Patient-months | Expected |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    total: Counter[str] = Counter()
    for arch, c in rows.items():
        total.update(c)
        lines.append(
            f"| {arch} | {c['patients']} | {c['checkins']} | {c['late_uploads']} | "
            f"{c['activity_posts']} | {c['samples']} | {c['history_days'] / 30:.1f} | {expected[arch]} |"
        )
    lines.append(
        f"| **total** | {total['patients']} | {total['checkins']} | {total['late_uploads']} | "
        f"{total['activity_posts']} | {total['samples']} | {total['history_days'] / 30:.1f} | |"
    )
    return "\n".join(lines)


def write_report(path: Path, report: str) -> None:
    """Replace the generated section of an existing document, or write the report as a new file."""
    block = f"{REPORT_BEGIN}\n{report.rstrip()}\n{REPORT_END}"
    if path.exists():
        text = path.read_text(encoding="utf-8")
        start, stop = text.find(REPORT_BEGIN), text.find(REPORT_END)
        if 0 <= start < stop:
            path.write_text(text[:start] + block + text[stop + len(REPORT_END) :], encoding="utf-8")
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# NerveWatch detection quality\n\n{block}\n", encoding="utf-8")


def _validate(cohort: list[SimPatient], now: datetime) -> int:
    bad = 0
    for p in cohort:
        try:
            validate_patient(p, now)
        except ValidationError as exc:
            bad += 1
            log.debug("generated payload failed validation: %s", exc.errors(include_input=False)[:3])
    return bad


async def run(args: argparse.Namespace) -> int:
    try:
        archetypes = parse_archetypes(args.archetypes)
        now = datetime.now(UTC)
        end = _parse_end(args.end, now)
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if args.per_archetype < 1:
        print("simulate: --per-archetype must be at least 1", file=sys.stderr)
        return 2
    seed: int = args.seed if args.seed is not None else secrets.randbelow(1_000_000_000)
    cohort = generate_cohort(args.per_archetype, seed, end, archetypes, webhook_url=args.webhook_url)
    print(
        f"simulate: seed={seed} end={end.isoformat()} patients={len(cohort)} (patient ids sim-<archetype>-<nnn>-{seed})"
    )
    print(cohort_summary(cohort))
    bad = _validate(cohort, datetime.now(UTC))
    if bad:
        print(f"simulate: {bad} generated patients failed schema validation (bug in the simulator)", file=sys.stderr)
        return 1
    if args.dry_run:
        return 0
    if not args.api_key:
        print("simulate: an API key is required (--api-key or NERVEWATCH_DEV_API_KEY)", file=sys.stderr)
        return 2

    stats = await replay(cohort, args.ingest_url, args.api_key, concurrency=args.concurrency)
    print("simulate: posted " + json.dumps(stats.as_dict()))
    if stats.enrolled == 0:
        print("simulate: no patient could be enrolled; is ingest running and the key valid?", file=sys.stderr)
        return 3
    if not (args.evaluate or args.report or args.json_path):
        return 0
    return await _evaluate(args, cohort, seed, end, stats)


async def _evaluate(
    args: argparse.Namespace, cohort: list[SimPatient], seed: int, end: datetime, stats: PostStats
) -> int:
    ids = {p.patient_id for p in cohort}
    timeout = aiohttp.ClientTimeout(total=120, connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = ApiClient(session, args.alerts_url, args.api_key, PostStats())
        try:
            alerts, settled = await wait_for_settle(
                api, ids, stable_for=args.settle_seconds, timeout_s=args.settle_timeout
            )
        except RuntimeError as exc:
            print(f"simulate: cannot read alerts: {exc}", file=sys.stderr)
            return 3
    ev = evaluate(truths_from_cohort(cohort), alerts)
    targets = check_targets(ev)
    run_info: dict[str, Any] = {
        "seed": seed,
        "patients": len(cohort),
        "per archetype": args.per_archetype,
        "histories end": end.isoformat(),
        "items posted / accepted / rejected": f"{stats.posted} / {stats.accepted} / {stats.rejected}",
        "retries": stats.retries,
        "replay seconds": f"{stats.seconds:.1f}",
        "alerts settled": "yes" if settled else "no (timeout)",
        "generated at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    report = render_markdown(ev, targets, run_info)
    print(report)
    if args.report:
        write_report(args.report, report)
        print(f"simulate: report written to {args.report}")
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(
            json.dumps(to_dict(ev, targets, run_info), indent=2, default=str) + "\n", encoding="utf-8"
        )
    failed = [t for t in targets if not t.passed]
    print(f"simulate: {len(targets) - len(failed)}/{len(targets)} targets pass")
    return 1 if (args.strict and failed) else 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (`python -m simulator.cli`) until the main CLI wires the subcommand."""
    import asyncio

    parser = argparse.ArgumentParser(prog="nervewatch simulate", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
