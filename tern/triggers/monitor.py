"""The trigger monitor's core: watch the channels of the active channel triggers over Channel Access and hand
each event to a starter, at most one run per event, rate-limited per trigger.

camonitor semantics (pyepics ``PV(..., auto_monitor=True, form="time")``, https://pyepics.github.io/pyepics/pv.html):
every update the IOC posts arrives in a callback with ``value``, ``severity`` and ``timestamp`` (the IOC's,
POSIX seconds); the first one carries the value at connection. Callbacks run in libca's threads and only hand
the update to the event loop (``call_soon_threadsafe``); detection (:class:`~tern.triggers.detect.Detector`),
the rate limit and the start happen in one asyncio task, in arrival order.

Definitions are re-read from PostgreSQL every ``triggers.poll_s``: a trigger added, changed, paused, resumed or
removed is picked up without a restart (a resumed or changed trigger starts with a fresh reference value).

Dedup: an event's run has the Workflow ID ``trigger-<name>-<channel>-<bucket>``
(:func:`~tern.triggers.detect.channel_run_id`, buckets of ``triggers.dedup_window_s`` aligned to the epoch); the
monitor skips an event whose id it started last, or that came less than a window after the event of the last run
it started (so two events 1 s apart across a bucket boundary start one run; duplicates do not use up the rate
limit), and the starter refuses an id that exists or a previous bucket's run of less than a window before (across
monitor restarts and several monitors: :func:`starters.triggers.start_triggered`). The window is measured on the
IOC's timestamps.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tern.config import TernSettings
from tern.control.ca_context import attach_thread
from tern.models.trigger import TriggerDefinition
from tern.triggers.detect import Detector, channel_run_id
from tern.triggers.ratelimit import RateLimiter
from tern.triggers.store import list_triggers

log = logging.getLogger(__name__)

Starter = Callable[[TriggerDefinition, dict[str, Any], str], Awaitable[str | None]]
"""Starts the run of ``(trigger, event, workflow id)``; returns the id, or None when that id exists already."""

READY_MESSAGE = "trigger monitor: connected to Temporal and PostgreSQL"
"""What the monitor process (``starters.trigger_monitor``) logs once connected; ``tern up`` waits for it in the
component's log instead of a fixed settle time."""


@dataclass
class MonitorCounts:
    """What the monitor did since it started (for logs and tests)."""

    updates: int = 0
    events: int = 0
    started: int = 0
    duplicate: int = 0
    rate_limited: int = 0
    failed: int = 0


@dataclass
class _Watched:
    definition: TriggerDefinition
    detector: Detector
    limiter: RateLimiter
    pv: Any = None
    last_id: str | None = None
    last_at: float | None = None  # the event time of the last run started (or being started)


@dataclass
class TriggerMonitor:
    """Watches the channel triggers of ``pool``'s ``triggers`` table; ``start`` starts a run per event.

    Args:
        settings: ``triggers.dedup_window_s``, ``triggers.max_runs_per_minute``, ``triggers.poll_s``.
        pool: the PostgreSQL pool holding the definitions.
        start: the starter (:data:`Starter`).
    """

    settings: TernSettings
    pool: asyncpg.Pool
    start: Starter
    counts: MonitorCounts = field(default_factory=MonitorCounts)
    _watched: dict[str, _Watched] = field(default_factory=dict)
    _queue: asyncio.Queue[tuple[str, TriggerDefinition, float, int, float]] | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def watching(self) -> list[str]:
        """Names of the triggers subscribed now (active channel triggers as of the last reload)."""
        return sorted(self._watched)

    async def reload(self) -> None:
        """Bring the subscriptions in line with the table: subscribe new or changed active channel triggers,
        unsubscribe removed, paused or changed ones."""
        async with self.pool.acquire() as conn:
            wanted = {d.name: d for d in await list_triggers(conn) if d.kind == "channel" and not d.paused}
        for name in [n for n, w in self._watched.items() if wanted.get(n) != w.definition]:
            gone = self._watched.pop(name)
            await asyncio.to_thread(_unsubscribe, gone.pv)
            log.info(
                "trigger %s: stopped watching %s",
                name,
                gone.definition.watch.describe() if gone.definition.watch else "",
            )
        for name, d in wanted.items():
            if name in self._watched:
                continue
            assert d.watch is not None
            w = _Watched(d, Detector(d.watch), RateLimiter(self.settings.triggers.max_runs_per_minute))
            w.pv = await asyncio.to_thread(self._subscribe, d)
            self._watched[name] = w
            log.info("trigger %s: watching %s", name, d.watch.describe())

    def _subscribe(self, d: TriggerDefinition) -> Any:
        assert d.watch is not None and self._queue is not None
        epics = attach_thread()
        loop = self._loop
        assert loop is not None
        queue = self._queue

        def callback(value: Any = None, severity: Any = None, timestamp: float | None = None, **_kw: Any) -> None:
            try:
                v = float(value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value)
            except (TypeError, ValueError, IndexError):
                return
            ts = float(timestamp) if timestamp is not None else time.time()
            loop.call_soon_threadsafe(queue.put_nowait, (d.name, d, v, int(severity or 0), ts))

        return epics.PV(d.watch.channel, form="time", auto_monitor=True, callback=callback, connection_timeout=5.0)

    async def handle(
        self, name: str, d: TriggerDefinition, value: float, severity: int, timestamp: float
    ) -> str | None:
        """Process one update of trigger ``name``; returns the Workflow ID of a run it started, else None."""
        self.counts.updates += 1
        w = self._watched.get(name)
        if w is None or w.definition is not d:  # an update from a subscription just replaced or removed
            return None
        if not w.detector.update(value, severity):
            return None
        self.counts.events += 1
        assert d.watch is not None
        window = self.settings.triggers.dedup_window_s
        wid = channel_run_id(name, d.watch.channel, timestamp, window)
        if wid == w.last_id or (w.last_at is not None and 0 <= timestamp - w.last_at < window):
            self.counts.duplicate += 1  # same bucket, or within a window of the last started event across a boundary
            return None
        if not w.limiter.allow(time.monotonic()):
            self.counts.rate_limited += 1
            log.warning("trigger %s: event at %.3f dropped by the rate limit", name, timestamp)
            return None
        event = {
            "channel": d.watch.channel,
            "condition": d.watch.condition,
            "value": value if math.isfinite(value) else None,
            "severity": severity,
            "timestamp": timestamp,
            "threshold": d.watch.threshold,
        }
        w.last_id, previous_at = wid, w.last_at
        w.last_at = timestamp
        try:
            started = await self.start(d, event, wid)
        except Exception:
            self.counts.failed += 1
            w.last_id, w.last_at = None, previous_at
            log.exception("trigger %s: could not start run %s", name, wid)
            return None
        if started is None:  # a duplicate of a run this monitor did not start: its event time is not known here
            w.last_at = previous_at
            self.counts.duplicate += 1
            return None
        self.counts.started += 1
        log.info("trigger %s: %s -> started run %s", name, d.watch.describe(), started)
        return started

    async def run(self) -> None:
        """Reload every ``triggers.poll_s`` and process updates, until cancelled (then unsubscribe all)."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        poll = self.settings.triggers.poll_s
        next_reload = 0.0
        try:
            while True:
                if time.monotonic() >= next_reload:
                    try:
                        await self.reload()
                    except (OSError, asyncpg.PostgresError):
                        log.exception("trigger definitions could not be read; retrying in %g s", poll)
                    next_reload = time.monotonic() + poll
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the item and swallows a cancel
                # that lands as the queue hands it over (CPython gh-86296), so the cancelled monitor kept running
                # and whoever awaited it hung (a 600 s CI timeout in test_trigger_channel)
                try:
                    async with asyncio.timeout(max(0.05, next_reload - time.monotonic())):
                        item = await self._queue.get()
                except TimeoutError:
                    continue
                await self.handle(*item)
        finally:
            for w in self._watched.values():
                _unsubscribe(w.pv)
            self._watched.clear()


def _unsubscribe(pv: Any) -> None:
    if pv is not None:
        pv.clear_callbacks()
        pv.disconnect()
