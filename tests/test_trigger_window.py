"""Issue 26: webhook starts with Update-with-Start, and trigger dedup "within ``dedup_window_s`` of the first"
across an epoch-aligned bucket boundary.

Real servers: Tern's webhook API under uvicorn, PostgreSQL, the Temporal dev server (the time-skipping server does
not skip time after Update-with-Start), a real worker, the simulated IOC over Channel Access. The API's clock is
injected (``create_app(clock=...)``) and the monitor's events carry chosen timestamps, so the posts fall half a
second either side of a bucket boundary on every run: before, the same body 1 s apart across a boundary started
two runs (CI met it about once in 60 runs).
"""

from __future__ import annotations

import json
import math
import time
import uuid

import httpx
from temporalio.client import WorkflowExecutionStatus

from starters.approvals_api import create_app
from starters.trigger_monitor import channel_starter
from tern.chat.signing import signed_headers
from tern.triggers.detect import channel_run_id, time_bucket, webhook_run_id
from tests.agent_helpers import running_worker
from tests.test_chat_webhook import serving
from tests.test_trigger_channel import _settled_count, _trigger, monitoring
from tests.trigger_helpers import WEBHOOK_SECRETS, runs_with_prefix, webhook_trigger

WINDOW = 60.0


def _boundary() -> float:
    """A bucket boundary of ``WINDOW`` a little ahead of now (the injected clock straddles it)."""
    return (math.floor(time.time() / WINDOW) + 2) * WINDOW


async def test_webhook_gets_first_status_in_the_start_and_dedups_within_a_window_across_a_boundary(
    temporal_env, settings
) -> None:
    client = temporal_env.client
    s, name = await webhook_trigger(
        settings,
        client.service_client.config.target_host,
        "hookw",
        dedup_window_s=WINDOW,
        max_runs_per_minute=10,
    )
    boundary = _boundary()
    clock = [boundary - 0.5]
    body = json.dumps({"alert": "vacuum sector 3 high", "value": 2.1e-8}).encode()
    signed: list[float] = []

    async def post(http: httpx.AsyncClient, at: float) -> httpx.Response:
        clock[0] = at
        # a signature of its own each: whole seconds apart from one start (time.time() - n could land on the
        # first post's second when that post took a second, and the API refuses the reused signature as a replay)
        signed.append((signed[0] if signed else time.time()) - 2 * len(signed))
        headers = signed_headers(
            "ops-bot", WEBHOOK_SECRETS["ops-bot"], body, target=f"/triggers/{name}", now=signed[-1]
        )
        return await http.post(f"/triggers/{name}", content=body, headers=headers)

    async with (
        running_worker(client, s),
        serving(create_app(s, clock=lambda: clock[0])) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        first = await post(http, boundary - 0.5)
        assert first.status_code == 202, first.text
        run_id = first.json()["workflow_id"]
        assert run_id == webhook_run_id(name, body, boundary - 0.5, WINDOW)
        # Update-with-Start: the run's first status came back with the start (a worker answered the Update)
        progress = first.json()["progress"]
        assert progress is not None and progress["workflow_id"] == run_id and progress["seq"] >= 1, first.json()
        await client.get_workflow_handle(run_id).result()  # the read plan finishes: dedup holds after close too

        # one second later, in the next epoch-aligned bucket: a duplicate of the first run, not a second run
        again = await post(http, boundary + 0.5)
        assert time_bucket(boundary + 0.5, WINDOW) == time_bucket(boundary - 0.5, WINDOW) + 1
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "duplicate" and again.json()["workflow_id"] == run_id
        assert again.json()["progress"]["workflow_id"] == run_id  # the existing run's published progress

        # 60.1 s after the first post (same bucket as the duplicate): outside the window, a new run
        later = await post(http, boundary - 0.5 + WINDOW + 0.1)
        assert later.status_code == 202, later.text
        later_id = later.json()["workflow_id"]
        assert later_id == webhook_run_id(name, body, boundary + 0.5, WINDOW) != run_id
        await client.get_workflow_handle(later_id).result()
    assert await _settled_count(client, f"trigger-{name}-", 2) == 2  # visibility lags a start by a moment
    assert sorted(await runs_with_prefix(client, f"trigger-{name}-")) == sorted([run_id, later_id])


async def test_channel_events_within_a_window_across_a_boundary_start_one_run(temporal_env, settings) -> None:
    """The monitor (in memory) and the starter (in Temporal: a restarted monitor) both measure the window from the
    event that started the run, on the event's timestamp."""
    client = temporal_env.client
    s = settings.model_copy(
        update={"triggers": settings.triggers.model_copy(update={"poll_s": 0.5, "dedup_window_s": WINDOW})}
    )
    name = "chw-" + uuid.uuid4().hex[:6]
    channel = "SR:RF:CAVITY:01:VOLTAGE:RB"
    high = 1.0e6  # above anything the IOC serves: only the injected updates cross it
    boundary = _boundary()
    async with monitoring(client, s, _trigger(name, channel, condition="above", threshold=high, hysteresis=1.0)) as mon:
        d = mon._watched[name].definition

        async def cross(at: float) -> str | None:
            started = await mon.handle(name, d, high + 1, 0, at)
            assert await mon.handle(name, d, 0.0, 0, at + 0.01) is None  # re-arm
            return started

        first = await cross(boundary - 0.5)
        assert first == channel_run_id(name, channel, boundary - 0.5, WINDOW)
        assert await cross(boundary + 0.5) is None  # next bucket, 1 s later: a duplicate
        assert mon.counts.duplicate == 1 and mon.counts.started == 1
        later = await cross(boundary - 0.5 + WINDOW + 0.1)
        assert later == channel_run_id(name, channel, boundary + 0.5, WINDOW) != first
        assert mon.counts.started == 2

    # a monitor that restarted knows nothing: the starter's check in Temporal finds the previous bucket's run
    other = "chr-" + uuid.uuid4().hex[:6]
    start = channel_starter(client, s)
    d2 = _trigger(other, channel, condition="above", threshold=high, hysteresis=1.0)

    def event(at: float) -> dict[str, object]:
        return {"channel": channel, "condition": "above", "value": high + 1, "timestamp": at, "threshold": high}

    first2 = channel_run_id(other, channel, boundary - 0.5, WINDOW)
    assert await start(d2, event(boundary - 0.5), first2) == first2
    assert await start(d2, event(boundary + 0.5), channel_run_id(other, channel, boundary + 0.5, WINDOW)) is None
    late = boundary - 0.5 + WINDOW + 0.1
    assert await start(d2, event(late), channel_run_id(other, channel, late, WINDOW)) is not None
    ids = [first, later, first2, channel_run_id(other, channel, late, WINDOW)]
    for wid in ids:
        handle = client.get_workflow_handle(wid)
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test over")
    assert (
        await _settled_count(client, f"trigger-{name}-", 2) == 2
        and await _settled_count(client, f"trigger-{other}-", 2) == 2
    )
    assert sorted(await runs_with_prefix(client, f"trigger-{name}-")) == sorted(ids[:2])
    assert sorted(await runs_with_prefix(client, f"trigger-{other}-")) == sorted(ids[2:])
