"""A flood of refused Updates cannot grow a run's history without bound: past MAX_HISTORY_REFUSALS audited
refusals, the Update validator turns invalid decisions away before they enter history (a validator's rejection
is not recorded), while valid decisions still count. The bound is lowered for the test (unsandboxed worker, so
the patched module constant is the one the workflow reads). On the dev server: a validator's rejection runs in a
speculative workflow task that leaves no events (Temporal 1.21+); the time-skipping test server records it."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import UnsandboxedWorkflowRunner

import workflows.approval_gate as gate
from tern.models import AgentRunRequest, Decision
from tests.agent_helpers import queue_workers
from tests.test_workflows_fast import WRITE, Machine, pending, plan
from workflows.agent_run import AgentRunWorkflow
from workflows.python_execution import PythonExecutionWorkflow


async def history_events(handle) -> int:  # type: ignore[no-untyped-def]
    return len((await handle.fetch_history()).events)


async def test_refused_updates_past_the_bound_leave_no_history(temporal_env, monkeypatch) -> None:
    monkeypatch.setattr(gate, "MAX_HISTORY_REFUSALS", 3)
    machine, queue = Machine(), f"flood-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with queue_workers(
        client,
        task_queue=queue,
        workflows=[AgentRunWorkflow, PythonExecutionWorkflow],
        activities=machine.activities(),
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        req = AgentRunRequest(
            user="alice", query="q", plan=plan(WRITE), approvers=["alice", "bob"], python_approval_mode="disabled"
        )
        handle = await client.start_workflow(
            AgentRunWorkflow.run, req, id=f"flood-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        rid = await pending(handle)
        eve = Decision(request_id=rid, approver="eve", approved=True)
        for _ in range(3):  # audited, and in history
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update(AgentRunWorkflow.decide, eve)
        before = await history_events(handle)
        for _ in range(20):  # turned away by the validator: nothing recorded
            with pytest.raises(WorkflowUpdateFailedError) as exc:
                await handle.execute_update(AgentRunWorkflow.decide, eve)
            assert "turned away without being recorded" in str(exc.value.cause)
        assert await history_events(handle) == before
        refused = [e for e in machine.audit if e.event_kind == "decision_refused"]
        assert len(refused) == 3
        await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
        assert (await handle.result()).status == "completed" and len(machine.writes) == 1
