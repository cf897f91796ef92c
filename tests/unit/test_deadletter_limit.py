"""The dead-letter limit's bookkeeping (pure)."""

from __future__ import annotations

from nervewatch.deadletter_limit import DeadLetterLimit


def test_consecutive_dead_letters_beyond_the_limit_are_refused() -> None:
    limit = DeadLetterLimit(max_consecutive=3, max_ratio=1.0, window=1000)
    for _ in range(3):
        assert limit.allows_one_more()
        limit.dead_lettered()
    assert not limit.allows_one_more()
    limit.processed()
    assert limit.allows_one_more()


def test_the_ratio_is_judged_only_over_a_full_window() -> None:
    limit = DeadLetterLimit(max_consecutive=1000, max_ratio=0.5, window=10)
    for _ in range(4):  # 4 of 4: above the ratio, but the window is not full yet
        limit.dead_lettered()
    assert limit.allows_one_more()
    limit.dead_lettered()
    limit.processed(4)  # 5 bad of 9
    assert not limit.allows_one_more()  # 6 of 10 would exceed 50%
    limit.processed(1)  # 5 of 10, the oldest bad one leaves with the next push
    assert limit.allows_one_more()  # 5 of 10 after the push: at the ratio, not above


def test_a_few_poison_messages_on_a_quiet_topic_never_halt() -> None:
    limit = DeadLetterLimit()
    for _ in range(3):
        assert limit.allows_one_more()
        limit.dead_lettered()
        limit.processed()
