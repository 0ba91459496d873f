"""Progress without polling (issue 26, part 2): a run publishes its progress and pending request in its memo;
``TernClient.follow`` reads it from a long poll on the history, ``TernClient.pending`` from one visibility list,
``TernClient.start_once`` starts with Update-with-Start once per message. Real dev server (the time-skipping
server does not skip time after Update-with-Start), real worker, PostgreSQL and simulated IOC.

RPCs are counted by a wrapper around a second client's service client (the worker polls through the first, so
its calls do not mix in)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from starters.client import TernClient, run_id_for
from tern.models import AgentRunRequest
from tern.models.progress import RunProgress
from tests.agent_helpers import running_worker, start_run, write_plan
from workflows.agent_run import AgentRunWorkflow

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "SR:RF:CAVITY:01:VOLTAGE:SP"
IDLE_S = 3.0
"""How long the follower is watched while the run waits: six ticks of the old 0.5 s poller (30 RPCs)."""


async def counted_client(temporal_env: Any) -> tuple[Client, Counter[str]]:
    """A client of its own on the dev server whose every RPC is counted by name."""
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        data_converter=pydantic_data_converter,
    )
    calls: Counter[str] = Counter()
    service = client.service_client
    rpc = service._rpc_call  # type: ignore[attr-defined]

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls[kwargs.get("rpc", args[0] if args else "?")] += 1
        return await rpc(*args, **kwargs)

    service._rpc_call = counting  # type: ignore[attr-defined]
    return client, calls


async def quiescent(handle: Any) -> None:
    """Return once the run has no activity and no workflow task pending (its history stops growing)."""
    while True:
        raw = (await handle.describe()).raw_description
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            return
        await asyncio.sleep(0.1)


async def test_follow_costs_calls_per_change_not_per_tick_and_pending_reads_the_memo(temporal_env, settings) -> None:
    """A write run followed from start to end: every publication arrives once and in order (read started/done,
    write started, waiting, decided, write done, answer started/done, finished); while the run waits ``IDLE_S``
    the follower makes at most one call (its long poll in flight), it never queries the run nor describes a task
    queue, and its history calls stay within the run's event count. ``pending`` lists the waiting run from one list
    call with the request the worker's ``status`` query reports."""
    counted, calls = await counted_client(temporal_env)
    follower = TernClient(counted, settings)
    other = TernClient(temporal_env.client, settings)
    async with running_worker(temporal_env.client, settings):
        handle = await start_run(temporal_env.client, settings, write_plan(CHANNEL, 1.45))
        seen: list[RunProgress] = []
        waiting = asyncio.Event()

        async def follow() -> None:
            async for p in follower.follow(handle.id):
                seen.append(p)
                if p.event == "waiting":
                    waiting.set()

        task = asyncio.ensure_future(follow())
        await asyncio.wait_for(waiting.wait(), 60)
        await asyncio.wait_for(quiescent(handle), 60)  # notify_approvers done: nothing happens until a decision
        before = sum(calls.values())

        st = await handle.query(AgentRunWorkflow.status)  # the worker's answer, to compare the memo with
        assert st.pending is not None
        loop = asyncio.get_running_loop()
        t0, lists = loop.time(), 0
        while loop.time() - t0 < IDLE_S:  # the run waits; the test reads the pending list meanwhile
            listed = await other.pending()
            lists += 1
            assert [p.workflow_id for p in listed] == [handle.id]
        idle_calls = sum(calls.values()) - before
        p = listed[0].pending
        assert p is not None and p.request_id == st.pending.request_id and p.kind == "control_write"
        assert p.approvers == st.pending.approvers and p.requested_by == "alice"
        assert p.expires_at - p.requested_at == timedelta(seconds=600)
        assert p.write is not None and p.write.channel == CHANNEL and p.write.value == 1.45
        assert listed[0].state == "awaiting_approval" and listed[0].step_id == "write"
        assert idle_calls <= 1, (idle_calls, calls)  # the 0.5 s poller made ~5 calls a tick, 6+ ticks here

        await other.decide(handle.id, "bob", True, "ok")
        await asyncio.wait_for(task, 60)
        result = await handle.result()
    assert result.status == "completed"

    events = [(p.event, p.step_id) for p in seen]
    assert events == [
        ("started", None),
        ("step_started", "read"),
        ("step_done", "read"),
        ("step_started", "write"),
        ("waiting", "write"),
        ("decided", "write"),
        ("step_done", "write"),
        ("step_started", "answer"),
        ("step_done", "answer"),
        ("finished", None),
    ], events
    assert [p.seq for p in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].state == "completed" and seen[-1].steps_done == seen[-1].steps_total == 3
    assert "approved by bob" in seen[5].line

    history = [e async for e in temporal_env.client.get_workflow_handle(handle.id).fetch_history_events()]
    modified = [e for e in history if e.event_type == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED]
    assert len(modified) == len(seen)  # one history event per publication
    assert calls["query_workflow"] == 0 and calls["describe_task_queue"] == 0, calls
    assert calls["describe_workflow_execution"] == 1, calls
    assert 1 <= calls["get_workflow_execution_history"] <= len(history) + 1, (calls, len(history))
    assert lists >= 2  # the idle window held real work, not a sleep


async def test_a_retried_message_starts_one_run_and_gets_the_first_answer(temporal_env, settings) -> None:
    """``start_once`` with the same message key: one run, and the second call gets the first Update's answer
    (the same publication, though the run moved on); once the run closed, the key starts nothing new."""
    client = TernClient(temporal_env.client, settings)
    key = f"matrix:!room:$event-{uuid.uuid4().hex}"
    req = AgentRunRequest(user="alice", query="retried", plan=write_plan(CHANNEL, 1.45), approvers=["alice", "bob"])
    async with running_worker(temporal_env.client, settings):
        run_id, first = await client.start_once(req, key)
        assert run_id == run_id_for(key) and first is not None
        assert first.workflow_id == run_id and first.seq == 1 and first.user == "alice"
        async for p in client.follow(run_id):
            if p.event == "waiting":
                break  # the run moved on: several publications since the first answer
        again_id, again = await client.start_once(req, key)
        assert again_id == run_id and again == first
        runs = [wf async for wf in temporal_env.client.list_workflows(f'WorkflowId = "{run_id}"')]
        assert len(runs) == 1, runs
        handle = temporal_env.client.get_workflow_handle(run_id)
        await handle.terminate("test over")
    late_id, late = await client.start_once(req, key)
    # the server answers with the first Update's outcome (its id is in the closed run's history) or, where it no
    # longer holds it, the reuse policy refuses the start: either way no second run
    assert late_id == run_id and late in (first, None)
    runs = [wf async for wf in temporal_env.client.list_workflows(f'WorkflowId = "{run_id}"')]
    assert len(runs) == 1, runs


async def test_tern_follow_prints_json_lines_live(temporal_env, settings, tmp_path) -> None:
    """``tern follow RUN --json`` as a process: a progress line per publication as it happens (the waiting line
    arrives while the run waits, before anyone decides), then the result line; exit 1 for a rejected run."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TERN_DATA_DIR": str(tmp_path),
        "TERN_DATABASE__URL": settings.dsn,
        "TERN_TEMPORAL__ADDRESS": temporal_env.client.service_client.config.target_host,
        "TERN_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
    }
    async with running_worker(temporal_env.client, settings):
        handle = await start_run(temporal_env.client, settings, write_plan(CHANNEL, 1.45))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "starters.cli", "follow", handle.id, "--json",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        lines: list[dict[str, Any]] = []
        while not lines or lines[-1].get("progress", {}).get("event") != "waiting":
            raw = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert raw, (lines, await proc.stderr.read() if proc.stderr else b"")
            lines.append(json.loads(raw))
        await TernClient(temporal_env.client, settings).decide(handle.id, "bob", False, "not now")
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines += [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == 1, err.decode()
    progress = [line["progress"] for line in lines[:-1]]
    after = [(p["event"], p["step_id"]) for p in progress if p["seq"] >= progress[-1]["seq"] - 5]
    assert after == [
        ("waiting", "write"),
        ("decided", "write"),
        ("step_done", "write"),  # rejected; the answer is still composed
        ("step_started", "answer"),
        ("step_done", "answer"),
        ("finished", None),
    ], progress
    assert [p["seq"] for p in progress] == list(range(progress[0]["seq"], progress[-1]["seq"] + 1))
    assert "rejected" in progress[-4]["line"] and progress[-1]["state"] == "rejected"
    assert lines[-1]["result"]["status"] == "rejected" and lines[-1]["result"]["workflow_id"] == handle.id
