"""``tern approve`` while no worker polls the run's task queue: it says so and exits 1 after a bounded wait
(nothing decided), or with ``--wait`` says it waits and decides once a worker is back. Real dev server, real
PostgreSQL and IOC; the worker runs in this process and is stopped for the test. `tern pending` lists the run all
the same (it reads the run's progress memo, not a query)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from starters.client import QUERY_RPC_TIMEOUT, WORKER_WAIT_S
from tests.agent_helpers import running_worker, start_run, wait_for_state, write_plan
from workflows.agent_run import AgentRunWorkflow

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "SR:RF:CAVITY:01:VOLTAGE:SP"
BOUND_S = WORKER_WAIT_S + QUERY_RPC_TIMEOUT.total_seconds() + 20  # the waits, plus the CLI's start-up


def cli_env(temporal_env, settings, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TERN_DATA_DIR": str(tmp_path),
        "TERN_DATABASE__URL": settings.dsn,
        "TERN_TEMPORAL__ADDRESS": temporal_env.client.service_client.config.target_host,
        "TERN_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
    }


def tern_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "starters.cli", *args]


async def test_approve_without_a_worker_says_so_and_exits_1(temporal_env, settings, tmp_path) -> None:
    client = temporal_env.client
    async with running_worker(client, settings):
        handle = await start_run(client, settings, write_plan(CHANNEL, 1.45), user="alice")
        await wait_for_state(handle, "awaiting_approval")
    # the worker is gone, but it polled a moment ago: the query's deadline bounds the wait (the subprocess timeout
    # fails a CLI that waits on; no upper bound on elapsed time, which a loaded machine breaks: issue 28)
    env = cli_env(temporal_env, settings, tmp_path)
    proc = await asyncio.to_thread(
        subprocess.run,
        tern_cmd("approve", handle.id, "--as", "bob"),
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND_S + 60,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"no worker is polling task queue '{settings.temporal.task_queue}'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # the pending list reads what the run published (its memo): no worker needed
    listed = await asyncio.to_thread(
        subprocess.run, tern_cmd("pending", "--json"), env=env, capture_output=True, text=True, timeout=BOUND_S + 60
    )
    assert listed.returncode == 0, listed.stderr
    [waiting] = json.loads(listed.stdout)
    assert waiting["run_id"] == handle.id and waiting["pending"]["write"]["channel"] == CHANNEL
    # nothing was decided: a worker coming back finds the request still pending
    async with running_worker(client, settings):
        st = await handle.query(AgentRunWorkflow.status)
        assert st.state == "awaiting_approval" and not st.approvals
        await handle.cancel()


async def test_approve_on_a_queue_no_worker_ever_polled_answers_within_the_bound(
    temporal_env, settings, tmp_path
) -> None:
    """DescribeTaskQueue lists no poller at all: refused after WORKER_WAIT_S, without waiting on a query."""
    lonely = settings.model_copy(
        update={"temporal": settings.temporal.model_copy(update={"task_queue": "tq-nobody-" + uuid.uuid4().hex[:8]})}
    )
    handle = await start_run(temporal_env.client, lonely, write_plan(CHANNEL, 1.45), user="alice")
    env = cli_env(temporal_env, lonely, tmp_path)
    proc = await asyncio.to_thread(
        subprocess.run,
        tern_cmd("reject", handle.id, "--as", "alice"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"no worker is polling task queue '{lonely.temporal.task_queue}'" in proc.stderr, proc.stderr
    assert "did not answer" not in proc.stderr  # refused by the poller check, not by a query timeout
    await handle.terminate("test over")


async def test_approve_wait_says_it_waits_and_decides_when_a_worker_returns(temporal_env, settings, tmp_path) -> None:
    client = temporal_env.client
    async with running_worker(client, settings):
        handle = await start_run(client, settings, write_plan(CHANNEL, 1.45), user="alice")
        await wait_for_state(handle, "awaiting_approval")
    env = cli_env(temporal_env, settings, tmp_path)
    proc = await asyncio.create_subprocess_exec(
        *tern_cmd("approve", handle.id, "--as", "bob", "--wait", "--json"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), BOUND_S)).decode()
        assert "waiting for a worker" in line, line
        assert proc.returncode is None  # still waiting
        async with running_worker(client, settings):
            out, rest = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, line + rest.decode()
            assert json.loads(out)["decision"] == "approved"
            result = await handle.result()
        assert result.status == "completed" and [a.decision for a in result.approvals] == ["approved"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
