"""Channel triggers against the simulated accelerator (real Channel Access, real PostgreSQL, the Temporal dev
server): the trigger monitor starts exactly one run for a threshold crossing, records the event in the run's
input and audit; a flapping signal (100 crossings in 10 s) starts as many runs as the rate limit or the dedup
window allow and no more; `tern sim trip` makes the demo trigger fire; an unknown channel is refused at add."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from starters.trigger_monitor import channel_starter
from tern.config import TernSettings
from tern.control.ca_context import attach_thread
from tern.db import create_pool
from tern.models import AgentRunResult, Plan
from tern.models.trigger import ChannelWatch, TriggerAction, TriggerDefinition
from tern.triggers.detect import time_bucket
from tern.triggers.monitor import TriggerMonitor
from tern.triggers.store import add_trigger, set_paused
from tests.agent_helpers import audit_rows, running_worker
from tests.trigger_helpers import READ_PLAN, cli_env, runs_with_prefix, tern, write_plan


def _put(channel: str, *values: float, period_s: float = 0.0) -> list[float]:
    """caput each value (with completion), ``period_s`` apart; returns this host's time of each put."""
    epics = attach_thread()
    times = []
    for v in values:
        times.append(time.time())
        assert epics.caput(channel, v, wait=True, timeout=5) == 1, channel
        if period_s:
            time.sleep(period_s)
    return times


def _settings(settings: TernSettings, **triggers: float) -> TernSettings:
    return settings.model_copy(update={"triggers": settings.triggers.model_copy(update={"poll_s": 0.5, **triggers})})


@dataclass
class RecordingMonitor(TriggerMonitor):
    """The real trigger monitor, keeping every update it has handled as (trigger name, value, IOC timestamp), in
    order. The monitor handles updates one at a time from one queue, starting a run before it takes the next, so
    once a value put after the others has been handled, so has everything before it (see :func:`_handled_through`):
    a test shows that nothing more happened without sleeping."""

    handled: list[tuple[str, float, float]] = field(default_factory=list)

    async def handle(
        self, name: str, d: TriggerDefinition, value: float, severity: int, timestamp: float
    ) -> str | None:
        try:
            return await super().handle(name, d, value, severity, timestamp)
        finally:
            self.handled.append((name, value, timestamp))


_SENTINELS = (11.0 + n / 1000 for n in itertools.count(1))  # below every re-arm level; drift never lands on one


async def _handled_through(mon: RecordingMonitor, channel: str, name: str) -> None:
    """Put a value of its own on ``channel`` and wait until trigger ``name`` has handled it: every update before it
    has been handled by then, and every run those could start has been started."""
    sentinel = next(_SENTINELS)
    await asyncio.to_thread(_put, channel, sentinel)
    await _until(lambda: any(n == name and v == sentinel for n, v, _t in mon.handled), 20, (sentinel, mon.counts))


@asynccontextmanager
async def monitoring(
    client, settings: TernSettings, *definitions: TriggerDefinition
) -> AsyncIterator[RecordingMonitor]:
    """The trigger monitor in this process with ``definitions`` stored, subscribed (first value seen) on entry."""
    pool = await create_pool(settings.dsn, max_size=2)
    async with pool.acquire() as conn:
        for d in definitions:
            assert await add_trigger(conn, d)
    monitor = RecordingMonitor(settings, pool, channel_starter(client, settings))
    task = asyncio.create_task(monitor.run())
    try:
        # each subscription's first callback is the reference value
        await _until(lambda: monitor.counts.updates >= len(definitions), 20, "the channels' first values")
        yield monitor
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:  # close() waits for every connection to be released: one held by a cancelled callback would hang
            await asyncio.wait_for(pool.close(), 10)
        except TimeoutError:
            pool.terminate()


def _trigger(name: str, channel: str, **watch: float | str) -> TriggerDefinition:
    return TriggerDefinition(
        name=name,
        kind="channel",
        action=TriggerAction(plan=Plan.model_validate(READ_PLAN), plan_file="read.json", user="alice"),
        watch=ChannelWatch(channel=channel, **watch),
    )


async def _until(pred: Any, within_s: float, what: object) -> None:
    """Wait until ``pred()`` is true; fail naming ``what`` after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        if pred():
            return
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def _settled_count(client, prefix: str, expected: int, within_s: float = 20) -> int:
    """The number of workflows whose id starts with ``prefix`` once visibility shows at least ``expected`` (or the
    deadline passes: then whatever it shows). Called after :func:`_handled_through`: every run the monitor
    started has been started then, so visibility only catches up with them; more than ``expected`` shows too."""
    deadline = time.monotonic() + within_s
    while True:
        found = await runs_with_prefix(client, prefix)
        if len(found) >= expected or time.monotonic() > deadline:
            return len(found)
        await asyncio.sleep(0.3)


async def test_one_threshold_crossing_starts_exactly_one_run_that_records_its_event(temporal_env, settings) -> None:
    client = temporal_env.client
    channel = "SR:RF:CAVITY:01:POWER:REV"
    name = "cross-" + uuid.uuid4().hex[:6]
    s = _settings(settings, dedup_window_s=60.0, max_runs_per_minute=10)
    await asyncio.to_thread(_put, channel, 10.0)
    async with (
        running_worker(client, s),
        monitoring(client, s, _trigger(name, channel, condition="above", threshold=40.0, hysteresis=5.0)) as mon,
    ):
        put_at = (await asyncio.to_thread(_put, channel, 45.0, 44.0, 46.0, 38.0, 47.0, period_s=0.2))[0]
        # 44, 46: still above; 38: not below 40 - 5, so 47 is no new crossing. The simulator's drift (once a
        # second, clamped to 2..20) may re-arm it in between: such an event falls in the same dedup window.
        await _until(lambda: mon.counts.started >= 1, 20, mon.counts)
        await _handled_through(mon, channel, name)  # every put above has been handled: nothing more will start
        assert mon.counts.started == 1 and mon.counts.events == 1 + mon.counts.duplicate, mon.counts
        assert await _settled_count(client, f"trigger-{name}-", 1) == 1
        (run_id,) = await runs_with_prefix(client, f"trigger-{name}-")
        result = await client.get_workflow_handle(run_id, result_type=AgentRunResult).result()
    assert result.status == "completed", result.error
    history = await client.get_workflow_handle(run_id).fetch_history()
    request = json.loads(history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data)
    trigger = request["trigger"]
    assert trigger["name"] == name and trigger["kind"] == "channel"
    event = trigger["event"]
    assert event["channel"] == channel and event["value"] == 45.0 and event["condition"] == "above"
    assert abs(event["timestamp"] - put_at) < 600  # the IOC's clock (the test IOC runs 300 s ahead)
    assert run_id == f"trigger-{name}-{channel.replace(':', '_')}-{time_bucket(event['timestamp'], 60.0)}"
    rows = [r for r in await audit_rows(s.dsn, run_id) if r["event_kind"] == "run_triggered"]
    assert len(rows) == 1 and rows[0]["channel"] == channel and rows[0]["value"] == 45.0


@pytest.mark.parametrize(
    ("window_s", "per_minute"),
    [(1.0, 4), (4.0, 1000)],
    ids=["rate-limit", "dedup-window"],
)
async def test_a_hundred_crossings_in_ten_seconds_start_no_more_runs_than_allowed(
    temporal_env, settings, window_s: float, per_minute: int
) -> None:
    """No worker: the runs stay open; only how many were started counts (by Workflow ID prefix)."""
    client = temporal_env.client
    channel = "SR:RF:CAVITY:01:POWER:REV"
    name = "flap-" + uuid.uuid4().hex[:6]
    s = _settings(settings, dedup_window_s=window_s, max_runs_per_minute=per_minute)
    await asyncio.to_thread(_put, channel, 10.0)
    async with monitoring(client, s, _trigger(name, channel, condition="above", threshold=40.0, hysteresis=5.0)) as mon:
        values = [45.0, 10.0] * 100
        await asyncio.to_thread(_put, channel, *values, period_s=0.045)
        await _until(lambda: mon.counts.events >= 100, 20, mon.counts)
        await _handled_through(mon, channel, name)
    assert mon.counts.events == 100, mon.counts
    # What to expect follows from the crossings' IOC timestamps, not from the counter compared below nor from a
    # wall-clock bound on how long the puts took (issue 28): a crossing starts a run when it comes a whole window
    # or more after the last one that did (the window is measured from the event that started the run, across
    # the epoch-aligned buckets: docs/concepts/triggers.md; one run per bucket over-counted a flap) ...
    crossings = sorted(t for n, v, t in mon.handled if n == name and v == 45.0)
    buckets = len({time_bucket(t, window_s) for t in crossings})
    assert buckets >= 2, buckets  # the crossings span several windows: the dedup window is exercised
    starts: list[float] = []
    for t in crossings:
        if not starts or t - starts[-1] >= window_s:
            starts.append(t)
    assert per_minute > 100 or len(starts) > per_minute, starts  # the rate-limit case: the limit is exercised
    if per_minute < len(starts):  # ... unless the rate limit binds first: at most per_minute in any minute
        assert max(crossings) - min(crossings) < 50, "the crossings must fall within one minute of each other"
        expected = per_minute
    else:
        expected = len(starts)
    assert mon.counts.started == expected, mon.counts
    assert await _settled_count(client, f"trigger-{name}-", expected) == expected
    ids = await runs_with_prefix(client, f"trigger-{name}-")
    assert len({i.rsplit("-", 1)[1] for i in ids}) == expected  # one run per time bucket at most
    for run_id in ids:
        await client.get_workflow_handle(run_id).terminate("test over")


async def test_sim_trip_fires_the_demo_trigger_added_from_the_cli_and_unknown_channels_are_refused(
    temporal_env, settings, tmp_path
) -> None:
    client = temporal_env.client
    s = _settings(settings, dedup_window_s=60.0, max_runs_per_minute=10)
    env = cli_env(s, client.service_client.config.target_host)
    plan = write_plan(tmp_path / "read.json", READ_PLAN)
    name = "rf-trip-" + uuid.uuid4().hex[:6]
    unknown = tern(
        env, "trigger", "add", name, "--channel", "SR:RF:CAVITY:01:NOPE", "--above", "40", "--plan", str(plan)
    )
    assert unknown.returncode == 2 and "unknown channel 'SR:RF:CAVITY:01:NOPE'" in unknown.stderr, unknown.stderr
    listed = tern(env, "trigger", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    channel = "SR:RF:CAVITY:02:POWER:REV"
    added = tern(
        env,
        "trigger",
        "add",
        name,
        "--channel",
        channel,
        "--above",
        "40",
        "--hysteresis",
        "5",
        "--plan",
        str(plan),
        "--json",
    )
    assert added.returncode == 0, added.stderr
    async with monitoring(client, s) as mon:
        await _until(lambda: mon.counts.updates >= 1, 20, mon.counts)  # the CLI's trigger, picked up by a reload
        tripped = await asyncio.to_thread(tern, env, "sim", "trip", "cavity2", "--json")
        assert tripped.returncode == 0, tripped.stderr
        assert json.loads(tripped.stdout)["channel"] == channel
        await _until(lambda: mon.counts.started >= 1, 20, mon.counts)
        # the trip decays from 45 kW to the drift band (at most 20) and never rises again: once a value below the
        # re-arm level (40 - 5) has been handled, so has every update that could have started another run
        await _until(lambda: _below_after_crossing(mon.handled, name, 40.0, 35.0), 30, mon.handled[-5:])
    assert mon.counts.started == 1, mon.counts
    (run_id,) = await runs_with_prefix(client, f"trigger-{name}-")
    await client.get_workflow_handle(run_id).terminate("test over")
    bad = await asyncio.to_thread(tern, env, "sim", "trip", "cavity0")
    assert bad.returncode == 2 and "cavity1 .. cavity9" in bad.stderr


def _below_after_crossing(handled: list[tuple[str, float, float]], name: str, above: float, below: float) -> bool:
    """Trigger ``name`` has handled a value over ``above`` and, after it, one under ``below``."""
    values = [v for n, v, _t in handled if n == name]
    first = next((i for i, v in enumerate(values) if v > above), None)
    return first is not None and any(v < below for v in values[first:])


async def test_a_paused_channel_trigger_starts_nothing_until_resumed(temporal_env, settings) -> None:
    """Pausing and resuming reach the running monitor through the table (no restart). A second trigger on the same
    channel that never fires (threshold 1000) stays subscribed: once it has handled a value put after the 45, the
    paused one would have seen the 45 too."""
    client = temporal_env.client
    channel = "SR:RF:CAVITY:01:POWER:REV"
    name = "pause-" + uuid.uuid4().hex[:6]
    s = _settings(settings, dedup_window_s=1.0, max_runs_per_minute=10)
    await asyncio.to_thread(_put, channel, 10.0)
    trigger = _trigger(name, channel, condition="above", threshold=40.0, hysteresis=5.0)
    witness = _trigger(name + "-witness", channel, condition="above", threshold=1000.0, hysteresis=5.0)
    async with monitoring(client, s, trigger, witness) as mon:
        async with mon.pool.acquire() as conn:
            assert await set_paused(conn, name, True)
        await _until(lambda: name not in mon.watching, 10, mon.watching)
        await asyncio.to_thread(_put, channel, 45.0, 10.0, period_s=0.3)
        await _handled_through(mon, channel, witness.name)
        assert (name, 45.0) not in [(n, v) for n, v, _t in mon.handled], mon.handled
        assert mon.counts.events == 0 and mon.counts.started == 0, mon.counts
        before = len(mon.handled)
        async with mon.pool.acquire() as conn:
            assert await set_paused(conn, name, False)
        # subscribed again: its first value is the new reference
        await _until(lambda: any(n == name for n, _v, _t in mon.handled[before:]), 10, mon.watching)
        await asyncio.to_thread(_put, channel, 45.0)
        await _until(lambda: mon.counts.started == 1, 20, mon.counts)
    for run_id in await runs_with_prefix(client, f"trigger-{name}-"):
        await client.get_workflow_handle(run_id).terminate("test over")


@pytest.mark.parametrize("spins", [0, 1, 2, 3])
async def test_a_cancelled_monitor_stops_even_when_the_cancel_lands_as_an_update_is_handed_over(
    settings, spins: int
) -> None:
    """The monitor stops on cancel whatever the update queue is doing. On Python 3.11 ``asyncio.wait_for``
    returned the item and swallowed a cancel that arrived while the queue handed it over (CPython gh-86296): the
    monitor ran on and ``tern triggers``' shutdown (and a CI run) hung. ``spins`` loop turns between the update
    and the cancel cover each point of the hand-over."""
    pool = await create_pool(settings.dsn, max_size=1)
    try:
        monitor = TriggerMonitor(_settings(settings), pool, _never_start)
        task = asyncio.create_task(monitor.run())
        await _until(lambda: monitor._queue is not None and not task.done(), 10, "the monitor's queue")
        await asyncio.sleep(0.05)  # the first reload done: the monitor waits on its queue
        assert monitor._queue is not None
        monitor._queue.put_nowait(
            (
                "gone",
                _trigger("gone", "SR:RF:CAVITY:01:POWER:REV", condition="above", threshold=40.0),
                1.0,
                0,
                time.time(),
            )
        )
        for _ in range(spins):
            await asyncio.sleep(0)
        task.cancel()
        done, _pending = await asyncio.wait({task}, timeout=5)
        if not done:  # stop it for the next test (a second cancel is not swallowed), then fail
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        assert done, "the monitor ignored its cancel"
        assert task.cancelled()
    finally:
        await pool.close()


async def _never_start(*_args: Any) -> str | None:
    raise AssertionError("no run is started here")
