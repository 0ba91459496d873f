"""The worker-side approval policy enforced on real runs (Temporal dev server, PostgreSQL, Channel Access IOC).

Regression tests for issue 16, defect 1: a requester could name themselves the approver and approve a write.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from tern.control.channel_access import read_value
from tern.models import Decision, Plan
from tests.agent_helpers import audit_rows, running_worker, start_run, wait_for_state, write_plan
from workflows.agent_run import AgentRunWorkflow


async def decide(handle, approver: str, approved: bool = True):
    st = await handle.query(AgentRunWorkflow.status)
    assert st.pending is not None, st.state
    return await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver=approver, approved=approved)
    )


async def test_requester_cannot_name_themselves_approver_when_the_worker_names_approvers(
    temporal_env, settings
) -> None:
    """TERN_APPROVAL__APPROVERS=["alice"] on the worker; mallory starts a run naming only herself: nobody may approve
    it, the write request is refused at once and audited, nothing is written."""
    worker_settings = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"approvers": ["alice"]})}
    )
    channel = "SR:MAG:QF:03:CURRENT:SP"
    before = read_value(channel)
    async with running_worker(temporal_env.client, worker_settings):
        handle = await start_run(
            temporal_env.client, settings, write_plan(channel, before + 1.0), user="mallory", approvers=["mallory"]
        )
        result = await handle.result()
    assert result.status == "rejected" and result.writes == []
    assert result.approvals[0].via == "policy" and "no one can approve" in result.approvals[0].comment
    assert read_value(channel) == pytest.approx(before)
    rows = await audit_rows(settings.dsn, result.workflow_id)
    assert [r["event_kind"] for r in rows] == ["approval_refused"]
    assert json.loads(rows[0]["details"])["policy_rule"] == "default_approvers"


async def test_requester_may_not_approve_own_write_and_the_refusal_is_audited(temporal_env, settings) -> None:
    """Worker approvers alice and mallory; mallory's run names both. Her own approval is refused (two-person
    rule), by Update and by Signal, and both attempts are in the audit; alice's approval writes."""
    worker_settings = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"approvers": ["alice", "mallory"]})}
    )
    channel = "SR:MAG:QF:04:CURRENT:SP"
    before = read_value(channel)
    async with running_worker(temporal_env.client, worker_settings):
        handle = await start_run(
            temporal_env.client,
            settings,
            write_plan(channel, before + 1.0),
            user="mallory",
            approvers=["mallory", "alice"],
        )
        st = await wait_for_state(handle, "awaiting_approval")
        assert st.pending is not None and not st.pending.allow_self_approval
        with pytest.raises(WorkflowUpdateFailedError) as exc:
            await decide(handle, "mallory")
        assert "two-person rule" in str(exc.value.cause)
        await handle.signal(
            AgentRunWorkflow.decide_signal,
            Decision(request_id=st.pending.request_id, approver="mallory", approved=True),
        )
        with pytest.raises(WorkflowUpdateFailedError) as exc:  # a stranger, by Update
            await decide(handle, "eve")
        assert "not an approver" in str(exc.value.cause)
        assert (await handle.query(AgentRunWorkflow.status)).state == "awaiting_approval"
        await decide(handle, "alice")
        result = await handle.result()
    assert result.status == "completed", result.error
    assert read_value(channel) == pytest.approx(before + 1.0, abs=1e-6)
    assert [(i.decision.approver, i.via) for i in result.ignored_decisions] == [
        ("mallory", "update"),
        ("mallory", "signal"),
        ("eve", "update"),
    ]
    rows = await audit_rows(settings.dsn, result.workflow_id)
    kinds = [r["event_kind"] for r in rows]
    assert kinds == [
        "approval_requested",
        "decision_refused",
        "decision_refused",
        "decision_refused",
        "decision",
        "write",
    ]
    refused = [r for r in rows if r["event_kind"] == "decision_refused"]
    assert [r["actor"] for r in refused] == ["mallory", "mallory", "eve"]
    assert all(r["comment"] for r in refused)
    assert rows[-1]["actor"] == "alice"


async def test_the_requester_may_withdraw_by_rejecting(temporal_env, settings) -> None:
    channel = "SR:MAG:QF:05:CURRENT:SP"
    before = read_value(channel)
    async with running_worker(
        temporal_env.client,
        settings.model_copy(update={"approval": settings.approval.model_copy(update={"approvers": ["alice"]})}),
    ):
        handle = await start_run(
            temporal_env.client, settings, write_plan(channel, before + 1.0), user="mallory", approvers=[]
        )
        await wait_for_state(handle, "awaiting_approval")
        await decide(handle, "mallory", approved=False)
        result = await handle.result()
    assert result.status == "rejected" and read_value(channel) == pytest.approx(before)


async def test_policy_file_two_approvals_per_channel_pattern_and_hot_reload(temporal_env, settings, tmp_path) -> None:
    """SR:RF:* needs two different people of the RF group; the same person twice is refused. Then the file
    changes (the worker keeps running) and the next run follows the new version; both versions are audited."""
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps(
            {
                "groups": {"rf": ["alice", "dave"]},
                "rules": [
                    {"kinds": ["control_write"], "channels": ["SR:RF:*"], "approvers": ["group:rf"], "min_approvals": 2}
                ],
                "default_approvers": ["bob"],
            }
        )
    )
    worker_settings = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"policy_path": path})}
    )
    channel = "SR:RF:KLYSTRON:02:VOLTAGE:SP"
    before = read_value(channel)
    async with running_worker(temporal_env.client, worker_settings):
        handle = await start_run(
            temporal_env.client, settings, write_plan(channel, before + 2.0), user="erin", approvers=[]
        )
        st = await wait_for_state(handle, "awaiting_approval")
        assert st.pending.approvers == ["alice", "dave"] and st.pending.min_approvals == 2
        with pytest.raises(WorkflowUpdateFailedError) as exc:
            await decide(handle, "bob")
        assert "not an approver" in str(exc.value.cause)
        first = await decide(handle, "alice")
        assert first.decision == "approved"
        st = await handle.query(AgentRunWorkflow.status)
        assert st.state == "awaiting_approval" and st.pending.approved_by == ["alice"]
        with pytest.raises(WorkflowUpdateFailedError) as exc:
            await decide(handle, "alice")
        assert "already approved" in str(exc.value.cause)
        assert read_value(channel) == pytest.approx(before)  # nothing written on one approval
        final = await decide(handle, "dave")
        assert final.approved_by == ["alice", "dave"]
        result = await handle.result()
        assert result.status == "completed", result.error
        assert read_value(channel) == pytest.approx(before + 2.0, abs=1e-6)
        rows = await audit_rows(settings.dsn, result.workflow_id)
        assert [r["event_kind"] for r in rows] == [
            "approval_requested",
            "decision_refused",
            "decision",
            "decision_refused",
            "decision",
            "write",
        ]
        assert rows[-1]["actor"] == "alice, dave"

        # hot reload: bob alone for everything now
        path.write_text(json.dumps({"default_approvers": ["bob"]}))
        os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
        handle = await start_run(temporal_env.client, settings, write_plan(channel, before), user="erin", approvers=[])
        st = await wait_for_state(handle, "awaiting_approval")
        assert st.pending.approvers == ["bob"] and st.pending.min_approvals == 1
        await decide(handle, "bob")
        assert (await handle.result()).status == "completed"
    versions = await audit_rows(settings.dsn, "approval-policy")
    assert len({r["event_key"] for r in versions}) >= 2
    assert {json.loads(r["details"])["path"] for r in versions} == {str(path)}


async def test_invalid_policy_file_blocks_every_approval(temporal_env, settings, tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"rules": [{"kinds": ["control_write"], "approvers": ["group:missing"]}]}')
    # a corrector outside the ring model: a mapped magnet is refused earlier, by the effect check, which needs
    # the policy's effect limits (tests/test_ring_runs.py)
    channel = "SR:MAG:VCM:50:CURRENT:SP"
    before = read_value(channel)
    async with running_worker(
        temporal_env.client,
        settings.model_copy(update={"approval": settings.approval.model_copy(update={"policy_path": path})}),
    ):
        result = await (await start_run(temporal_env.client, settings, write_plan(channel, before + 1.0))).result()
    assert result.status == "rejected" and "unknown group" in result.approvals[0].comment
    assert read_value(channel) == pytest.approx(before)


async def test_python_approval_mode_cannot_be_weakened_by_the_run(temporal_env, settings, docker_backend) -> None:
    """The worker's floor is all_code; the run asks for 'disabled': the code still waits for a decision."""
    from tern.models import AgentRunRequest

    plan = Plan.model_validate({"steps": [{"id": "calc", "kind": "python", "code": "results = {'x': 1}"}]})
    req = AgentRunRequest(user="alice", query="q", plan=plan, approvers=["bob"], python_approval_mode="disabled")
    async with running_worker(temporal_env.client, settings):
        handle = await temporal_env.client.start_workflow(
            AgentRunWorkflow.run, req, id=f"run-floor-{os.getpid()}-{id(req)}", task_queue=settings.temporal.task_queue
        )
        child = temporal_env.client.get_workflow_handle(AgentRunWorkflow.child_id(handle.id, "calc"))
        for _ in range(200):
            try:
                st = await child.query(AgentRunWorkflow.status)
                if st.pending is not None:
                    break
            except RPCError:  # the child has not started yet
                pass
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the code never waited for approval")
        assert st.pending.kind == "python" and st.pending.approvers == ["bob"]
        await decide(child, "bob")
        result = await handle.result()
    assert result.status == "completed", result.error
