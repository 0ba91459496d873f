"""Separate activity slots for long work (issue 26): python steps' children (their sandbox runs) go to the long-work
queue, whose slots they may fill without starving a run's write path on the main queue.

Real servers: the Temporal dev server, the Tern worker (both of its Temporal workers, in this process), PostgreSQL,
the simulated IOC over Channel Access. Only the sandbox activity ``execute_python`` is replaced (by name, as LLM
activities are in other tests) with one that holds its slot until the test lets it go, so "all sandbox slots busy"
is a state the test reaches and holds, not a timing. Each worker gets two activity slots: before the long-work
queue, two busy sandbox runs held both of the only queue's slots and the write below never started.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle

from starters.client import TernClient
from tern.control.channel_access import read_value
from tern.db import create_pool
from tern.models import AgentRunRequest, Decision, Plan
from tern.models.execution import ExecutionResult
from tern.models.python_step import ExecuteInput
from tests.agent_helpers import running_worker, start_run, wait_for_state, write_plan
from worker.main import build_worker
from workflows.agent_run import AgentRunWorkflow
from workflows.queues import long_queue

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]


async def _pending(client: Client, handles: list[WorkflowHandle]) -> dict[str, list[str]]:
    """Each run's pending activities (name, state, task queue is the run's): what a stuck run waits for."""
    out: dict[str, list[str]] = {}
    for h in handles:
        d = await client.get_workflow_handle(h.id).describe()
        key = f"{h.id}@{d.task_queue}"
        out[key] = [f"{a.activity_type.name}:{a.state}" for a in d.raw_description.pending_activities] + [
            f"child:{c.workflow_id}" for c in d.raw_description.pending_children
        ]
        hist = await client.get_workflow_handle(h.id).fetch_history()
        out[key] += [str(e.event_type) for e in hist.events][-6:]
    return out


async def test_a_write_starts_while_every_sandbox_slot_is_busy(temporal_env, settings) -> None:
    client = temporal_env.client
    s = settings.model_copy(update={"approval": settings.approval.model_copy(update={"python_mode": "disabled"})})
    running: list[str] = []
    release = asyncio.Event()
    both_busy = asyncio.Event()

    @activity.defn(name="execute_python")
    async def held_sandbox(inp: ExecuteInput) -> ExecutionResult:
        running.append(activity.info().task_queue)
        if len(running) >= 2:
            both_busy.set()
        while not release.is_set():  # hold the slot, heartbeating as the real one does
            activity.heartbeat()
            try:
                await asyncio.wait_for(release.wait(), 1.0)
            except TimeoutError:
                pass
        return ExecutionResult(status="ok", results={"n": len(inp.code)}, backend="process", isolation="none")

    python = Plan.model_validate({"steps": [{"id": "calc", "kind": "python", "code": "results = {'n': 1}"}]})
    channel = "SR:RF:CAVITY:02:TUNER:SP"  # not a ring magnet: no effect check in the way
    before = read_value(channel)
    pool = await create_pool(s.dsn)
    try:
        worker = build_worker(
            client, s, pool, {"execute_python": held_sandbox}, activity_slots=2, long_activity_slots=2
        )
        async with worker:
            analyses = [
                await client.start_workflow(
                    AgentRunWorkflow.run,
                    AgentRunRequest(
                        user="alice",
                        query=f"analysis {n}",
                        plan=python,
                        approvers=["alice"],
                        python_approval_mode="disabled",
                    ),
                    id=f"run-{uuid.uuid4().hex[:10]}",
                    task_queue=s.temporal.task_queue,
                )
                for n in range(3)
            ]

            await asyncio.wait_for(both_busy.wait(), 60)  # both sandbox slots taken; the third analysis waits
            assert running == [long_queue(s.temporal.task_queue)] * 2

            h = await start_run(client, s, write_plan(channel, before + 0.25))  # alice asks, bob approves
            try:
                st = await wait_for_state(h, "awaiting_approval", within_s=60)
            except TimeoutError:
                stuck = await _pending(client, [h, *analyses])
                raise AssertionError(f"the write run did not ask for approval: {stuck}") from None
            assert st.pending is not None
            await h.execute_update(
                AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
            )
            result = await asyncio.wait_for(h.result(), 60)
            assert result.status == "completed", result
            assert read_value(channel) == pytest.approx(before + 0.25)
            assert len(running) == 2 and not release.is_set()  # the sandbox slots stayed full all along

            release.set()
            done = [await asyncio.wait_for(a.result(), 60) for a in analyses]
            assert [r.status for r in done] == ["completed"] * 3, [r.error for r in done]
            assert len(running) == 3
    finally:
        await pool.close()


async def test_pending_lists_a_python_step_waiting_on_the_long_queue(temporal_env, settings) -> None:
    """A python step's approval request is listed by ``TernClient.pending`` (one visibility call filtered by task
    queue) although its child workflow runs on the long-work queue, and a decision through the client reaches it."""
    client = temporal_env.client
    tern = TernClient(client, settings)
    python = Plan.model_validate({"steps": [{"id": "calc", "kind": "python", "code": "results = {'n': 1}"}]})
    async with running_worker(client, settings):
        h = await client.start_workflow(
            AgentRunWorkflow.run,
            AgentRunRequest(
                user="alice", query="analysis", plan=python, approvers=["alice", "bob"], python_approval_mode="all_code"
            ),
            id=f"run-{uuid.uuid4().hex[:10]}",
            task_queue=settings.temporal.task_queue,
        )
        child = f"{h.id}.calc"

        async def listed() -> list[str]:
            while True:  # visibility is eventually consistent: wait until the request is indexed
                ids = [p.workflow_id for p in await tern.pending(h.id)]
                if ids:
                    return ids
                await asyncio.sleep(0.2)

        assert await asyncio.wait_for(listed(), 60) == [child]
        d = await client.get_workflow_handle(child).describe()
        assert d.task_queue == long_queue(settings.temporal.task_queue)
        await tern.decide(child, "bob", False, "not now")
        result = await asyncio.wait_for(h.result(), 60)
    assert result.status == "rejected", result
    py = result.steps[0].python
    assert py is not None and py.status == "rejected" and py.execution is None
