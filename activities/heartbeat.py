"""One way for activities to heartbeat while they wait: a background beat every few seconds, so that a worker
that dies mid-activity is noticed within the activity's heartbeat timeout (set by the workflow)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from temporalio import activity


@asynccontextmanager
async def heartbeating(every_s: float, details: Callable[[], object] | None = None) -> AsyncIterator[None]:
    """Heartbeat every ``every_s`` seconds (with ``details()`` when given) while the body runs; nothing outside an
    activity (direct calls in tests). The first beat is sent at once."""

    async def beat() -> None:
        while True:
            if activity.in_activity():
                activity.heartbeat(*(() if details is None else (details(),)))
            await asyncio.sleep(every_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
