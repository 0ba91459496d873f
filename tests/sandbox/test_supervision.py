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
    beats: list[float] = []
    done = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    ended = await Supervisor(heartbeat=lambda: beats.append(time.monotonic()), interval_s=0.1).watch(done, 0.55)
    elapsed = time.monotonic() - started
    assert ended == "timeout"
    assert 0.55 <= elapsed < 1.5, elapsed
    assert 2 <= len(beats) <= 6, beats  # about one per interval (fewer on a loaded machine), never more
    assert not done.done(), "the backend still owns the future: the supervisor must not cancel it"


async def test_setting_the_cancel_event_ends_the_wait_before_the_next_heartbeat() -> None:
    cancel = asyncio.Event()
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    started = time.monotonic()
    assert await Supervisor(cancel_event=cancel, interval_s=10).watch(done, timeout_s=30) == "cancel"
    assert time.monotonic() - started < 2


async def test_when_the_code_has_ended_and_cancel_is_set_too_exit_wins() -> None:
    cancel = asyncio.Event()
    cancel.set()
    done = asyncio.get_running_loop().create_future()
    done.set_result(0)
    assert await Supervisor(cancel_event=cancel).watch(done, timeout_s=5) == "exit"
