"""The one supervision loop both backends use (``tern.sandbox.supervision.Supervisor``), on a real event loop
with real futures and clocks: how a wait ends, and heartbeats while it lasts."""

from __future__ import annotations

import asyncio
import time

from tern.sandbox.supervision import Supervisor


async def test_an_execution_that_ends_by_itself_is_an_exit_and_its_future_is_left_alone() -> None:
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.2, done.set_result, 0)
    assert await Supervisor(interval_s=0.05).watch(done, timeout_s=5) == "exit"
    assert done.result() == 0


async def test_the_deadline_ends_the_wait_on_time_with_heartbeats_meanwhile() -> None:
    """Bounds a loaded machine cannot break (issue 28: no upper bound on elapsed time): the wait ends no sooner
    than its deadline, with at most one heartbeat per full interval and at least one before it ended."""
    beats: list[float] = []
    done = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    ended = await Supervisor(heartbeat=lambda: beats.append(time.monotonic()), interval_s=0.1).watch(done, 0.55)
    elapsed = time.monotonic() - started
    assert ended == "timeout"
    assert elapsed >= 0.55, elapsed  # never early
    assert 1 <= len(beats) <= 6, beats  # 0.55 s holds at most five full 0.1 s intervals and the remainder
    gaps = [b - a for a, b in zip([started, *beats], beats, strict=False)]
    assert all(g >= 0.099 for g in gaps[:-1]), gaps  # never more than one per interval (the last may be partial)
    assert not done.done(), "the backend still owns the future: the supervisor must not cancel it"


async def test_setting_the_cancel_event_ends_the_wait_before_the_next_heartbeat() -> None:
    """With a 60 s interval the wait ends by the cancel event alone: "cancel" and no heartbeat (without the event
    it would end by its 120 s deadline, "timeout", after heartbeats)."""
    cancel = asyncio.Event()
    beats: list[float] = []
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(cancel.set)
    supervisor = Supervisor(heartbeat=lambda: beats.append(time.monotonic()), cancel_event=cancel, interval_s=60)
    assert await supervisor.watch(done, timeout_s=120) == "cancel"
    assert beats == []
    assert not done.done()


async def test_when_the_code_has_ended_and_cancel_is_set_too_exit_wins() -> None:
    cancel = asyncio.Event()
    cancel.set()
    done = asyncio.get_running_loop().create_future()
    done.set_result(0)
    assert await Supervisor(cancel_event=cancel).watch(done, timeout_s=5) == "exit"
