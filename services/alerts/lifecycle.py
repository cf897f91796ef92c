"""Who hears of an alert's lifecycle changes beyond the page itself (contract v1.1: webhooks and
the stream carry `acknowledged`, `resolved` and `repaged` changes, not only openings). Pure.

- The live stream: every published change (`book.Publish`), with its `change`.
- Webhooks: an `acknowledged` or `resolved` change goes to every member whose **webhook** was paged
  about the alert (any page reason; a page row counts whatever its delivery status, except
  `suppressed`, which was never sent), once per (member, URL). These deliveries are informational
  and never page: webhook channel only (no e-mail), never escalated or reminded (timers look at
  the alert, not at these rows), not held by quiet hours, and not counted in the alert's
  `notifications` summary, which stays the summary of its pages. Each is sent no earlier than
  the page it follows is next due (a page deferred by quiet hours is not overtaken).
- `repaged` needs nothing extra: a re-page is itself a page (`rules.route`, reason `repaged`).

Every webhook body is the alert (as it is when sent) plus `change`: which change this delivery
reports (`CHANGE_OF_REASON`), additive to the contract's alert object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.alerts.book import ESCALATION, INITIAL, REMINDER, REPAGED, SEVERITY_RAISED

ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
#: Notification reasons of informational (lifecycle) webhooks; the alert's changes of the same name.
LIFECYCLE_REASONS = frozenset({ACKNOWLEDGED, RESOLVED})
#: Notification reasons that are pages.
PAGE_REASONS = frozenset({INITIAL, REPAGED, SEVERITY_RAISED, ESCALATION, REMINDER})
#: The `change` a delivery of each notification reason reports.
CHANGE_OF_REASON = {
    INITIAL: "opened",
    REPAGED: "repaged",
    SEVERITY_RAISED: "updated",
    ESCALATION: "escalated",
    REMINDER: "reminded",
    ACKNOWLEDGED: ACKNOWLEDGED,
    RESOLVED: RESOLVED,
}


@dataclass(frozen=True, slots=True)
class Notified:
    """One stored notification row of an alert, as far as this module needs it."""

    member_id: str
    channel: str
    target: str
    reason: str
    status: str
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class LifecycleWebhook:
    member_id: str
    target: str
    not_before: datetime


def informs(action: str) -> bool:
    """Whether a published change of this action is sent as an informational webhook."""
    return action in LIFECYCLE_REASONS


def change_of(reason: str) -> str:
    """The `change` reported by a delivery of notification `reason` (unknown reasons as they are)."""
    return CHANGE_OF_REASON.get(reason, reason)


def recipients(notified: Sequence[Notified], now: datetime) -> list[LifecycleWebhook]:
    """The lifecycle webhooks of one change of an alert whose notification rows are `notified`
    (in the order they were queued): one per (member, webhook URL) that was paged, in first-paged
    order, each not before `now` nor before that target's next pending page attempt."""
    out: dict[tuple[str, str], LifecycleWebhook] = {}
    for n in notified:
        if n.channel != "webhook" or n.reason not in PAGE_REASONS or n.status == "suppressed":
            continue
        key = (n.member_id, n.target)
        pending = n.next_attempt_at if n.status in ("pending", "retrying") else now
        prior = out.get(key)
        not_before = max(now, pending, prior.not_before if prior else now)
        out[key] = LifecycleWebhook(n.member_id, n.target, not_before)
    return list(out.values())
