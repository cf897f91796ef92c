"""Per-day cost of the incremental scoring engine by length of prior history (a script, not a test).

Usage: `.venv/bin/python -m tests.perf.engine_step_cost [--days 30,180,720] [--measure 120]`.

For each history length N it folds N days of a synthetic patient (noisy daily check-ins, PT every
third day, daily steps, weekly grip and function scores), then times stepping (and stepping plus
assessing) the next `--measure` days, best of 5 runs, in process CPU time (the machine is shared). The cost
must not grow with N.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, date, datetime, timedelta

from services.scoring.engine import Engine
from services.scoring.model import Baseline, DayRecord, PatientProfile

START = date(2024, 1, 1)


def synthetic_days(n: int, seed: int = 7) -> list[DayRecord]:
    rng = random.Random(seed)
    out: list[DayRecord] = []
    for k in range(n):
        d = START + timedelta(days=k)
        if rng.random() < 0.1:
            continue
        at = datetime(d.year, d.month, d.day, 8, 30, tzinfo=UTC)
        level = 3.0 + 2.0 * (1 + ((k // 40) % 2)) * rng.random()

        def item(base: float = level) -> float:
            return float(max(0, min(10, round(base + rng.choice((-2, -1, 0, 1, 2))))))

        pt = k % 3 == 0
        out.append(
            DayRecord(
                date=d,
                checkins=1,
                pain=item(),
                tingling=item(),
                numbness=item(),
                weakness=item(level - 1),
                pt_session=pt,
                pt_session_ended_at=at - timedelta(hours=16) if pt else None,
                steps=int(6000 * (0.7 + 0.6 * rng.random())),
                grip_strength_kg=18.0 + rng.gauss(0, 1.5) if k % 7 == 0 else None,
                function_instrument="quickdash" if k % 7 == 3 else None,
                function_score=40.0 + rng.gauss(0, 5) if k % 7 == 3 else None,
                last_event_id=f"e{k}",
                last_recorded_at=at,
                last_received_at=at,
                last_sample_end=at,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", default="30,180,720")
    parser.add_argument("--measure", type=int, default=120)
    args = parser.parse_args()
    profile = PatientProfile(
        patient_id="perf",
        condition="carpal_tunnel",
        side="right",
        treatment="conservative",
        timezone="Europe/London",
        baseline=Baseline(pain=6, tingling=5, numbness=5, weakness=3, grip_strength_kg=18.0, daily_steps=6000),
    )
    eng = Engine.of(profile)
    print("| prior days | step us/day | step+assess us/day |")
    print("|---:|---:|---:|")
    for n in (int(x) for x in args.days.split(",")):
        days = synthetic_days(n + args.measure)
        cut = START + timedelta(days=n)
        prior = [d for d in days if d.date < cut]
        later = [d for d in days if d.date >= cut]
        base = eng.fold(eng.initial(), prior)
        best_step = best_both = float("inf")
        for _ in range(5):
            t0 = time.process_time()
            s = base
            for d in later:
                s = eng.step(s, d)
            t1 = time.process_time()
            s = base
            for d in later:
                s = eng.step(s, d)
                eng.assess(s, d.last_recorded_at or datetime.combine(d.date, datetime.min.time(), UTC))
            t2 = time.process_time()
            best_step = min(best_step, (t1 - t0) / len(later))
            best_both = min(best_both, (t2 - t1) / len(later))
        print(f"| {n} | {best_step * 1e6:.1f} | {best_both * 1e6:.1f} |")


if __name__ == "__main__":
    main()
