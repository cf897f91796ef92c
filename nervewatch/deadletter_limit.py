"""The dead-letter limit: when a consumer dead-letters too much, it stops instead.

A record that cannot be decoded, or whose processing keeps failing on its own, goes to the
dead-letter topic. One such record is a poison message; many in a row, or a large share of the
recent records, is a bad deploy or a bad producer, and dead-lettering on would empty a partition
into the dead-letter topic (trajectory events carrying red flags among them) where nobody is
paged. `DeadLetterLimit` is the pure bookkeeping: the consumer asks `allows_one_more()` before
each dead letter and halts (commits nothing further, becomes unready) when it says no.

Limits, both configurable (`NERVEWATCH_DEAD_LETTER_MAX_CONSECUTIVE`, `..._MAX_RATIO`,
`..._WINDOW`): at most `max_consecutive` dead letters in a row, and at most `max_ratio` of the
last `window` records, the ratio judged only once `window` records have been seen (so a handful
of poison messages on a quiet topic never halts a consumer).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class DeadLetterLimit:
    """Outcome bookkeeping of one consumer. Not thread-safe; one instance per consumer loop."""

    max_consecutive: int = 10
    max_ratio: float = 0.5
    window: int = 200
    _outcomes: deque[bool] = field(default_factory=deque, repr=False)
    _consecutive: int = 0
    _bad_in_window: int = 0

    def _push(self, bad: bool) -> None:
        self._outcomes.append(bad)
        self._bad_in_window += bad
        if len(self._outcomes) > self.window:
            self._bad_in_window -= self._outcomes.popleft()

    def processed(self, n: int = 1) -> None:
        """`n` records were handled without a dead letter."""
        for _ in range(min(n, self.window)):
            self._push(False)
        self._consecutive = 0

    def dead_lettered(self) -> None:
        """One record went to the dead-letter topic."""
        self._push(True)
        self._consecutive += 1

    def allows_one_more(self) -> bool:
        """Whether one more dead letter stays within both limits."""
        if self._consecutive + 1 > self.max_consecutive:
            return False
        seen, bad = len(self._outcomes), self._bad_in_window
        if seen >= self.window:  # the oldest outcome leaves the window
            seen, bad = seen - 1, bad - self._outcomes[0]
        seen, bad = seen + 1, bad + 1
        return not (seen >= self.window and bad / seen > self.max_ratio)

    def describe(self) -> str:
        """A short, data-free reason for logs and readiness."""
        return (
            f"{self._consecutive} consecutive dead letters, {self._bad_in_window} of the last "
            f"{len(self._outcomes)} records (limits {self.max_consecutive} and {self.max_ratio:.0%} of {self.window})"
        )
