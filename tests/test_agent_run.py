"""AgentRunWorkflow end to end on a real Temporal dev server, PostgreSQL and Channel Access IOC."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import CancelledError
from temporalio.service import RPCError

from tern.control.channel_access import read_value
from tern.models import Decision
from tests.agent_helpers import audit_rows, ingest_demo, running_worker, start_run, wait_for_state, write_plan
from tests.conftest import STUCK_SETPOINT
from workflows.agent_run import AgentRunWorkflow


@pytest.fixture
async def worker(temporal_env, settings):
    async with running_worker(temporal_env.client, settings):
        yield temporal_env.client


async def test_happy_path_writes_once_after_approval(worker, settings) -> None:
    await ingest_demo(settings.dsn)
    channel = "SR:RF:CAVITY:02:VOLTAGE:SP"
    before = read_value(channel)
    handle = await start_run(worker, settings, write_plan(channel, before - 0.05, search=True))
    st = await wait_for_state(handle, "awaiting_approval")
    assert st.pending is not None and st.pending.write is not None
    assert st.pending.write.current_value == pytest.approx(before)
    assert st.pending.write.units == "MV"
    record = await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True, comment="ok")
    )
    assert record.decision == "approved" and record.approver == "bob"
    result = await handle.result()
    assert result.status == "completed", result.error
    assert len(result.writes) == 1
    w = result.writes[0]
    assert w.verified and w.previous_value == pytest.approx(before)
    assert w.readback == pytest.approx(before - 0.05, abs=1e-6)
    assert read_value(channel) == pytest.approx(before - 0.05, abs=1e-6)
    assert result.citations and all(c.startswith("DEMO-") for c in result.citations)
    assert f"[#{result.citations[0]}]" in result.answer
    kinds = [r["event_kind"] for r in await audit_rows(settings.dsn, result.workflow_id)]
    assert kinds == ["approval_requested", "decision", "write"]


async def test_rejection_writes_nothing(worker, settings) -> None:
    channel = "SR:RF:CAVITY:02:TUNER:SP"
    before = read_value(channel)
    handle = await start_run(worker, settings, write_plan(channel, before + 0.5))
    st = await wait_for_state(handle, "awaiting_approval")
    await handle.execute_update(
        AgentRunWorkflow.decide,
        Decision(request_id=st.pending.request_id, approver="alice", approved=False, comment="not now"),
    )
    result = await handle.result()
    assert result.status == "rejected"
    assert result.writes == []
    assert result.approvals[0].decision == "rejected" and result.approvals[0].comment == "not now"
    assert read_value(channel) == pytest.approx(before)
    rows = await audit_rows(settings.dsn, result.workflow_id)
    assert [r["event_kind"] for r in rows] == ["approval_requested", "decision"]
    assert rows[1]["decision"] == "rejected" and rows[1]["actor"] == "alice"


async def test_validator_refuses_unknown_approver_stale_request_and_second_decision(worker, settings) -> None:
    channel = "SR:MAG:SF:02:CURRENT:SP"
    before = read_value(channel)
    handle = await start_run(worker, settings, write_plan(channel, before + 1.0))
    st = await wait_for_state(handle, "awaiting_approval")
    rid = st.pending.request_id
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await handle.execute_update(
            AgentRunWorkflow.decide, Decision(request_id=rid, approver="mallory", approved=True)
        )
    assert "not an approver" in str(exc.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await handle.execute_update(
            AgentRunWorkflow.decide, Decision(request_id="stale-id", approver="bob", approved=True)
        )
    assert "stale or unknown request id" in str(exc.value.cause)
    # An invalid signal is recorded and ignored; a valid one decides.
    await handle.signal(AgentRunWorkflow.decide_signal, Decision(request_id=rid, approver="eve", approved=True))
    await handle.signal(AgentRunWorkflow.decide_signal, Decision(request_id=rid, approver="bob", approved=True))
    result = await handle.result()
    assert result.status == "completed"
    assert [a.approver for a in result.approvals] == ["bob"] and result.approvals[0].via == "signal"
    assert [(i.decision.approver, i.via) for i in result.ignored_decisions] == [
        ("mallory", "update"),
        ("bob", "update"),
        ("eve", "signal"),
    ]
    assert "eve is not an approver" in result.ignored_decisions[-1].reason
    with pytest.raises(RPCError, match="workflow execution already completed"):
        await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    kinds = [r["event_kind"] for r in await audit_rows(settings.dsn, result.workflow_id)]
    assert kinds.count("write") == 1 and kinds.count("decision_refused") == 3  # mallory, stale id, eve


@pytest.mark.parametrize(
    ("channel", "value", "violation"),
    [
        ("SR:RF:CAVITY:01:VOLTAGE:SP", 3.5, "above_max"),
        ("SR:RF:CAVITY:01:VOLTAGE:SP", -0.1, "below_min"),
        ("SR:RF:CAVITY:01:VOLTAGE:RB", 1.0, "read_only_channel"),
        ("SR:RF:CAVITY:09:VOLTAGE:SP", 1.0, "unlisted_channel"),
    ],
)
async def test_limits_refuse_before_any_approval(worker, settings, channel, value, violation) -> None:
    plan = write_plan(channel, value)
    plan.steps[0].channels = ["SR:RF:CAVITY:01:VOLTAGE:SP"]  # the read step must not fail first
    handle = await start_run(worker, settings, plan)
    result = await handle.result()
    assert result.status == "failed"
    step = next(s for s in result.steps if s.kind == "control_write")
    assert step.status == "refused" and step.check is not None and step.check.violation == violation
    assert result.approvals == [] and result.writes == []
    rows = await audit_rows(settings.dsn, result.workflow_id)
    assert [r["event_kind"] for r in rows] == ["write_refused"]


async def test_writes_disabled_refuses(temporal_env, settings) -> None:
    off = settings.model_copy(update={"control": settings.control.model_copy(update={"writes_enabled": False})})
    async with running_worker(temporal_env.client, off):
        handle = await start_run(temporal_env.client, off, write_plan("SR:RF:CAVITY:01:TUNER:SP", 5.0))
        result = await handle.result()
    assert result.status == "failed"
    assert result.steps[1].check.violation == "writes_disabled"


async def test_readback_that_does_not_follow_is_not_verified(worker, settings) -> None:
    before = read_value(STUCK_SETPOINT)
    handle = await start_run(worker, settings, write_plan(STUCK_SETPOINT, before + 1.0))
    st = await wait_for_state(handle, "awaiting_approval")
    await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
    )
    result = await handle.result()
    assert result.status == "failed"
    assert len(result.writes) == 1 and result.writes[0].verified is False
    assert "did not reach" in result.writes[0].message
    rows = await audit_rows(settings.dsn, result.workflow_id)
    assert rows[-1]["event_kind"] == "write" and rows[-1]["verified"] is False


async def test_status_query_and_search_attributes(worker, settings) -> None:
    channel = "SR:MAG:SD:03:CURRENT:SP"
    handle = await start_run(
        worker, settings, write_plan(channel, read_value(channel) + 0.5), user="carol", approvers=["carol", "dave"]
    )  # carol may not approve her own write: dave may
    await wait_for_state(handle, "awaiting_approval")
    for _ in range(50):  # visibility is eventually consistent
        found = [
            w.id
            async for w in worker.list_workflows(
                f'TernPendingApproval = "control_write" AND TernUser = "carol" AND WorkflowId = "{handle.id}"'
            )
        ]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [handle.id]
    st = await handle.query(AgentRunWorkflow.status)
    await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="carol", approved=False)
    )
    assert (await handle.result()).status == "rejected"


async def test_value_moved_since_approval_is_not_written(worker, settings) -> None:
    import epics

    channel = "SR:MAG:SHD:06:CURRENT:SP"
    before = read_value(channel)
    handle = await start_run(worker, settings, write_plan(channel, before + 1.0))
    st = await wait_for_state(handle, "awaiting_approval")
    epics.caput(channel, before - 10.0, wait=True)  # the machine changes while the request waits
    await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
    )
    result = await handle.result()
    assert result.status == "failed" and result.writes == []
    assert "moved from" in (result.error or "")
    assert read_value(channel) == pytest.approx(before - 10.0)
    rows = await audit_rows(settings.dsn, result.workflow_id)
    assert [r["event_kind"] for r in rows] == ["approval_requested", "decision", "write_refused"]


async def test_cancelling_a_waiting_run_writes_nothing_and_closes_the_request(worker, settings) -> None:
    from temporalio.client import WorkflowFailureError

    channel = "SR:MAG:SHD:07:CURRENT:SP"
    before = read_value(channel)
    handle = await start_run(worker, settings, write_plan(channel, before + 1.0))
    await wait_for_state(handle, "awaiting_approval")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as cancelled:
        await handle.result()
    assert isinstance(cancelled.value.cause, CancelledError), cancelled.value.cause  # cancelled, not failed
    assert read_value(channel) == pytest.approx(before)
    rows = await audit_rows(settings.dsn, handle.id)
    assert [r["event_kind"] for r in rows] == ["approval_requested", "approval_cancelled"]


async def test_worker_start_check_names_missing_search_attributes(temporal_env) -> None:
    from worker.main import SEARCH_ATTRIBUTE_NAMES, MissingSearchAttributes, check_search_attributes

    await check_search_attributes(temporal_env.client)  # registered on the dev server
    with pytest.raises(MissingSearchAttributes, match="search-attribute create --name TernNope"):
        await check_search_attributes(temporal_env.client, [*SEARCH_ATTRIBUTE_NAMES, "TernNope"])
