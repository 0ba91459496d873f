"""A per-trigger rate limit: at most N runs in any sliding minute (events beyond it are dropped, not queued:
a flapping signal must not start a storm later either)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW_S = 60.0


@dataclass
class RateLimiter:
    """Allows at most ``per_minute`` events in any ``WINDOW_S``-second window (``per_minute`` 0: none).

    Times are monotonic seconds (``time.monotonic()``) given by the caller.
    """

    per_minute: int
    _times: deque[float] = field(default_factory=deque, init=False)

    def allow(self, now: float) -> bool:
        """Whether an event at ``now`` may start a run; an allowed event is counted."""
        while self._times and now - self._times[0] >= WINDOW_S:
            self._times.popleft()
        if len(self._times) >= self.per_minute:
            return False
        self._times.append(now)
        return True

    def refund(self, now: float) -> None:
        """Give back the event counted at ``now`` by :meth:`allow` (it started nothing: a duplicate)."""
        try:
            self._times.remove(now)
        except ValueError:
            pass
