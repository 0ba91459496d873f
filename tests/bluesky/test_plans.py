"""Bluesky plans through a real queue server (issue 24): checked against its allowed plans and devices before
anything is queued, submitted once under an idempotency key, followed to the end, and never submitted twice when
the follower is SIGKILLed mid-plan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tern.bluesky.plans import KEY_FIELD, PlanRefused, PlanRequest, check_plan, follow, submit_once

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def api(queue_server):
    from bluesky_queueserver_api.zmq.aio import REManagerAPI

    client = REManagerAPI(zmq_control_addr=queue_server.control_addr, zmq_info_addr=queue_server.info_addr)
    yield client
    await client.close()


async def _items_with_key(api, key: str) -> int:
    queue, history = await api.queue_get(), await api.history_get()
    items = [queue.get("running_item") or {}, *queue.get("items", []), *history.get("items", [])]
    return sum(1 for i in items if (i.get("meta") or {}).get(KEY_FIELD) == key)


async def test_check_shows_the_plan_and_refuses_what_is_not_allowed(api) -> None:
    check = await check_plan(api, PlanRequest(name="count", args=[["det1", "det2"]], kwargs={"num": 2}))
    assert check.call == "count(['det1', 'det2'], num=2)"
    assert check.description.startswith("Take one or more readings from detectors")
    assert check.parameters[:3] == ["detectors", "num", "delay"]
    before = (await api.queue_get())["items"]
    with pytest.raises(PlanRefused, match=r"plan 'mv' is not allowed .*allowed: count, list_scan, rel_scan, scan"):
        await check_plan(api, PlanRequest(name="mv", args=["motor1", 1.0]))
    with pytest.raises(PlanRefused, match=r"names devices .*: not_a_device \(allowed: det, det1"):
        await check_plan(api, PlanRequest(name="count", args=[["not_a_device"]]))
    with pytest.raises(PlanRefused):
        await check_plan(api, PlanRequest(name="count", args=[["det1"]], kwargs={"no_such_parameter": 1}))
    assert (await api.queue_get())["items"] == before  # nothing was queued by a check


async def test_submit_once_and_follow_to_the_end(api) -> None:
    key = f"test-{uuid.uuid4().hex}"
    plan = PlanRequest(name="scan", args=[["det1"], "motor1", -1.0, 1.0, 5])
    uid, added = await submit_once(api, plan, key)
    assert added
    again, added_again = await submit_once(api, plan, key)
    assert (again, added_again) == (uid, False)
    beats: list[int] = []
    outcome = await follow(api, uid, beat=lambda: beats.append(1))
    assert outcome.exit_status == "completed", outcome.message
    assert len(outcome.run_uids) == 1 and beats
    assert (await submit_once(api, plan, key)) == (uid, False)  # found in the history now
    assert await _items_with_key(api, key) == 1


async def test_follower_killed_mid_plan_resumes_and_never_submits_twice(api, queue_server) -> None:
    from tests.bluesky.follow_plan import SLOW_PLAN

    key = f"kill-{uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, read line by line below
        [sys.executable, "-m", "tests.bluesky.follow_plan", queue_server.control_addr, queue_server.info_addr, key],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()  # blocks until the item was added
        assert line.startswith("submitted "), line
        uid = line.split()[1]
        while (await api.queue_get()).get("running_item", {}).get("item_uid") != uid:  # wait until it runs
            assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    again, added = await submit_once(api, SLOW_PLAN, key)  # the retry: finds the item, does not add another
    assert (again, added) == (uid, False)
    outcome = await follow(api, uid)
    assert outcome.exit_status == "completed" and len(outcome.run_uids) == 1, outcome
    assert await _items_with_key(api, key) == 1
