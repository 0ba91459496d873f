"""A completed run's status is answered from its result (``AgentRunStatus.of_result``), not by a worker replaying
its history: the same answer as the ``status`` query, and given while no worker runs (Temporal dev server,
PostgreSQL, the simulated IOC, a Tern worker in this process for the runs themselves)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError

from starters.client import TernClient, TernUnavailable
from tern.control.channel_access import read_value
from tern.models import AgentRunStatus, Decision, Plan
from tests.agent_helpers import running_worker, start_run, wait_for_state, write_plan
from workflows.agent_run import AgentRunWorkflow

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]


async def _decide(handle, approver: str, approved: bool) -> None:
    st = await wait_for_state(handle, "awaiting_approval")
    assert st.pending is not None
    await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver=approver, approved=approved)
    )


async def test_completed_runs_answer_status_from_their_result_without_a_worker(temporal_env, settings) -> None:
    client = temporal_env.client
    channel = "SR:MAG:QF:07:CURRENT:SP"
    before = read_value(channel)
    read_only = Plan.model_validate(
        {"steps": [{"id": "read", "kind": "channel_read", "channels": [channel]}, {"id": "answer", "kind": "respond"}]}
    )
    async with running_worker(client, settings):
        reading = await start_run(client, settings, read_only)
        approved = await start_run(client, settings, write_plan(channel, before + 0.5), user="alice")
        st = await wait_for_state(approved, "awaiting_approval")
        assert st.pending is not None
        with pytest.raises(WorkflowUpdateFailedError):  # the requester's own approval: refused, counted
            await approved.execute_update(
                AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="alice", approved=True)
            )
        await _decide(approved, "bob", True)
        rejected = await start_run(client, settings, write_plan(channel, before + 1.0), user="alice")
        await _decide(rejected, "bob", False)
        failed = await start_run(client, settings, write_plan("SR:MAG:QF:07:CURRENT:RB", 1.0))  # a readback
        handles = [reading, approved, rejected, failed]
        results = [await h.result() for h in handles]
        assert [r.status for r in results] == ["completed", "completed", "rejected", "failed"], results
        queried = [await h.query(AgentRunWorkflow.status) for h in handles]

    assert queried[1].ignored_decisions_total == 1 and len(queried[1].approvals) == 1
    tern = TernClient(client, settings)
    for handle, result, by_query in zip(handles, results, queried, strict=True):
        started = (await handle.describe()).start_time
        from_result = AgentRunStatus.of_result(result, started)
        # started_at: the query gives the first workflow task's start (workflow.info().start_time), the result
        # path the execution's start (DescribeWorkflowExecution): the same run start, a few ms apart
        assert from_result.model_dump(exclude={"started_at"}) == by_query.model_dump(exclude={"started_at"})
        assert from_result.started_at is not None and by_query.started_at is not None
        assert 0 <= (by_query.started_at - from_result.started_at).total_seconds() < 5
        # no worker polls the task queue now: the query would fail, the result still answers
        assert await tern.status(handle.id) == from_result

    # a run still open needs its worker: no answer from a result, the error names the task queue
    waiting = await start_run(client, settings, write_plan(channel, before + 0.5))
    with pytest.raises(TernUnavailable, match=settings.temporal.task_queue):
        await tern.status(waiting.id)
    await waiting.terminate("test over")
