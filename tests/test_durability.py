"""Durability: SIGKILL the worker process while a run waits for approval; a new worker finishes it,
with exactly one write in the audit table."""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import pytest

from tern.control.channel_access import read_value
from tern.models import Decision
from tests.agent_helpers import audit_rows, spawn_worker, start_run, wait_for_state, write_plan
from tests.workflow_variants import ShortHeartbeatPythonExecution
from workflows.agent_run import AgentRunWorkflow

QUICK = "tests.quick_worker"  # workers whose workflows have test-sized heartbeat timeouts (tests/workflow_variants.py)


async def test_worker_sigkill_while_waiting_for_approval(temporal_env, settings, tmp_path) -> None:
    client = temporal_env.client
    address = client.service_client.config.target_host
    channel = "SR:MAG:QD:05:CURRENT:SP"
    before = read_value(channel)
    log = tmp_path / "worker.log"
    first = spawn_worker(settings, address, log, TERN_CONTROL__READBACK_TIMEOUT_S="2")
    second = None
    try:
        handle = await start_run(client, settings, write_plan(channel, before + 2.0))
        st = await wait_for_state(handle, "awaiting_approval", within_s=60)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        second = spawn_worker(settings, address, log, TERN_CONTROL__READBACK_TIMEOUT_S="2")
        record = await asyncio.wait_for(
            handle.execute_update(
                AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
            ),
            timeout=90,
        )
        assert record.decision == "approved"
        result = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
    assert result.status == "completed", (result.error, log.read_text()[-3000:])
    assert read_value(channel) == pytest.approx(before + 2.0, abs=1e-6)
    rows = await audit_rows(settings.dsn, result.workflow_id)
    assert [r["event_kind"] for r in rows].count("write") == 1
    conn = await asyncpg.connect(settings.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM write_ledger WHERE run_id = $1", result.workflow_id) == 1
    finally:
        await conn.close()


async def test_worker_sigkill_during_sandbox_execution(temporal_env, settings, docker_backend, tmp_path) -> None:
    """The execution activity's heartbeat lapses, a new worker retries it (removing the dead attempt's
    container first), the run completes, and no container of the run is left. The workers are
    ``tests.quick_worker`` (a 5 s sandbox heartbeat timeout, production 20 s: the lapse is waited out in real
    time); the child's history shows that timeout and the second attempt."""
    import uuid

    from tern.models import AgentRunRequest, Plan
    from tern.sandbox.docker_backend import LABEL
    from workflows.agent_run import AgentRunWorkflow

    client = temporal_env.client
    address = client.service_client.config.target_host
    settings = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"python_mode": "disabled"})}
    )  # the worker's floor
    code = "import time\ntime.sleep(6)\nresults = {'done': True}"
    plan = Plan.model_validate({"steps": [{"id": "slow", "kind": "python", "code": code}]})
    req = AgentRunRequest(
        user="alice", query="slow analysis", plan=plan, approvers=["alice"], python_approval_mode="disabled"
    )
    workflow_id = f"run-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    labels = {"label": [f"{LABEL}=1", f"tern.run_id={workflow_id}"]}
    first = spawn_worker(settings, address, log, module=QUICK, TERN_CONTROL__READBACK_TIMEOUT_S="2")
    second = None
    try:
        handle = await client.start_workflow(
            AgentRunWorkflow.run, req, id=workflow_id, task_queue=settings.temporal.task_queue
        )
        for _ in range(300):
            if docker_backend.client.api.containers(filters=labels):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the sandbox container never started: " + log.read_text()[-2000:])
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = spawn_worker(settings, address, log, module=QUICK, TERN_CONTROL__READBACK_TIMEOUT_S="2")
        result = await asyncio.wait_for(handle.result(), timeout=120)
        child = client.get_workflow_handle(AgentRunWorkflow.child_id(workflow_id, "slow"))
        events = (await child.fetch_history()).events
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
    assert result.status == "completed", (result.error, log.read_text()[-3000:])
    assert result.steps[0].python.execution.results == {"done": True}
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    execute = [a for a in scheduled if a.activity_type.name == "execute_python"]
    assert [a.heartbeat_timeout.ToTimedelta() for a in execute] == [ShortHeartbeatPythonExecution.execute_heartbeat]
    started = [
        e.activity_task_started_event_attributes for e in events if e.HasField("activity_task_started_event_attributes")
    ]
    assert any(a.attempt >= 2 for a in started)  # the execution was retried on the second worker
    assert docker_backend.client.api.containers(all=True, filters=labels) == []
