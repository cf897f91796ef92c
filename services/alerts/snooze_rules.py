"""Pure snooze rules: which holds a care-team member may place on a patient's alerts.

A snooze holds back the *opening* of one alert kind for one patient until `until` (processing
time); `rules.evaluate` ignores a snooze once `until <= now`, so a snooze never outlives its
`until`. Red flags are never snoozed, and a hold is bounded so that it cannot become a permanent
mute of a high-severity kind (docs/safety.md, H8).
"""

from __future__ import annotations

from datetime import datetime

from schemas.alerts import AlertKind
from services.alerts.model import AlertPolicy
from services.alerts.rules import require_aware


def check(kind: AlertKind, until: datetime, policy: AlertPolicy, now: datetime) -> str | None:
    """None when the snooze is allowed, else the reason it is not (a sentence for a 422)."""
    require_aware(until, "until")
    require_aware(now, "now")
    if kind is AlertKind.red_flag:
        return "red flags are never snoozed"
    if until <= now:
        return "until must be in the future"
    if until - now > policy.max_snooze:
        days = policy.max_snooze.total_seconds() / 86400
        return f"until must be at most {days:g} days ahead (max_snooze_days)"
    return None
