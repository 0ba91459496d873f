"""Following one execution while it runs: the wall-clock deadline, heartbeats and cancellation, for every
backend alike.

A backend starts the code, hands ``Supervisor.watch`` a future that completes when the code ends by itself
(the engine's ``wait``, the subprocess's ``wait``), and learns how the wait ended: ``exit``, ``timeout``
or ``cancel``. Killing, collecting the output and cleaning up stay with the backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

HEARTBEAT_INTERVAL_S = 1.0
"""Default time between two heartbeats while the code runs, seconds."""


@dataclass(frozen=True)
class Supervisor:
    """How the caller follows one execution.

    Attributes:
        heartbeat: called about every ``interval_s`` seconds, from the calling event loop, while the code
            runs (pass ``activity.heartbeat``); None for no heartbeats.
        cancel_event: setting it stops the wait with ``cancel`` (the backend then kills the code).
        interval_s: seconds between heartbeats (> 0).
    """

    heartbeat: Callable[[], None] | None = None
    cancel_event: asyncio.Event | None = None
    interval_s: float = HEARTBEAT_INTERVAL_S

    def beat(self) -> None:
        """Heartbeat once (nothing when there is no ``heartbeat``)."""
        if self.heartbeat is not None:
            self.heartbeat()

    async def watch(self, done: asyncio.Future[Any], timeout_s: float) -> Literal["exit", "timeout", "cancel"]:
        """Wait until ``done`` completes (``exit``), ``timeout_s`` seconds have passed (``timeout``, measured
        on the monotonic clock from this call) or ``cancel_event`` is set (``cancel``), heartbeating meanwhile.

        ``done`` is never cancelled or awaited for its result here: the backend still owns it (it waits for
        it again after killing the code). When both ``done`` and the cancellation are ready, ``exit`` wins.
        Cancelling the calling task raises ``CancelledError`` as usual.
        """
        deadline = time.monotonic() + timeout_s
        cancelled = asyncio.ensure_future(self.cancel_event.wait()) if self.cancel_event is not None else None
        waiters: set[asyncio.Future[Any]] = {done} if cancelled is None else {done, cancelled}
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                finished, _ = await asyncio.wait(
                    waiters, timeout=min(self.interval_s, remaining), return_when=asyncio.FIRST_COMPLETED
                )
                if done in finished:
                    return "exit"
                if cancelled is not None and cancelled in finished:
                    return "cancel"
                self.beat()
        finally:
            if cancelled is not None:
                cancelled.cancel()
