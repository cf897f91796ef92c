"""Lifecycle deliveries (`services.alerts.lifecycle`): who gets the informational webhooks of an
acknowledged or resolved alert, and what `change` each delivery reports; the stream notices."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from services.alerts import lifecycle
from services.alerts.apply import NOTIFY_PAYLOAD_BYTES, _chunks
from services.alerts.lifecycle import LifecycleWebhook, Notified

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def row(
    member: str, channel: str = "webhook", reason: str = "initial", status: str = "delivered", **kw: object
) -> Notified:
    target = str(kw.get("target", f"https://{member}.example.org/hook" if channel == "webhook" else f"{member}@x.org"))
    at = kw.get("at", NOW - timedelta(minutes=5))
    assert isinstance(at, datetime)
    return Notified(member, channel, target, reason, status, at)


def test_only_acknowledged_and_resolved_inform() -> None:
    assert lifecycle.informs("acknowledged") and lifecycle.informs("resolved")
    for action in ("opened", "updated", "repaged", "escalated"):
        assert not lifecycle.informs(action)  # a re-page is itself a page; the others inform nobody


def test_members_whose_webhook_was_paged_once_each_never_email() -> None:
    notified = [
        row("pt-7"),
        row("pt-7", channel="email"),
        row("oncall", reason="escalation", status="retrying", at=NOW - timedelta(seconds=1)),
        row("pt-7", reason="repaged"),
        row("nurse", channel="email"),
        row("late", reason="reminder", status="suppressed"),  # never sent
        row("pt-7", reason="acknowledged"),  # an earlier lifecycle webhook is not a page
        row("ghost", reason="acknowledged"),
    ]
    got = lifecycle.recipients(notified, NOW)
    assert got == [
        LifecycleWebhook("pt-7", "https://pt-7.example.org/hook", NOW),
        LifecycleWebhook("oncall", "https://oncall.example.org/hook", NOW),
    ]


def test_a_page_still_to_come_is_not_overtaken() -> None:
    deferred = NOW + timedelta(hours=7)  # a medium alert's page held by quiet hours
    got = lifecycle.recipients([row("pt-7", status="pending", at=deferred)], NOW)
    assert got == [LifecycleWebhook("pt-7", "https://pt-7.example.org/hook", deferred)]
    # a failed page does not hold anything back
    assert lifecycle.recipients([row("pt-7", status="failed", at=deferred)], NOW)[0].not_before == NOW


def test_nobody_paged_nobody_informed() -> None:
    assert lifecycle.recipients([], NOW) == []
    assert lifecycle.recipients([row("nurse", channel="email")], NOW) == []


def test_every_delivery_names_its_change() -> None:
    assert {r: lifecycle.change_of(r) for r in ("initial", "repaged", "severity_raised", "escalation", "reminder")} == {
        "initial": "opened",
        "repaged": "repaged",
        "severity_raised": "updated",
        "escalation": "escalated",
        "reminder": "reminded",
    }
    assert lifecycle.change_of("acknowledged") == "acknowledged" and lifecycle.change_of("resolved") == "resolved"


def test_stream_notices_carry_the_change_and_stay_under_the_payload_limit() -> None:
    changes = [("tenant-a", f"al_{i:024d}", "acknowledged" if i % 2 else "opened") for i in range(1000)]
    chunks = _chunks(changes)
    assert [c for chunk in chunks for c in chunk] == changes
    for chunk in chunks:
        payload = json.dumps(chunk)
        assert len(payload.encode()) < NOTIFY_PAYLOAD_BYTES
        assert all(len(item) == 3 for item in json.loads(payload))
