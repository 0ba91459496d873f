"""Python steps of agent runs on the real Docker sandbox, Temporal dev server, PostgreSQL and IOC."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from temporalio import activity

from tern.control.channel_access import read_value
from tern.models import Decision, Plan
from tern.models.python_step import GenerateCodeInput, GeneratedCode
from tests.agent_helpers import audit_rows, running_worker, start_run
from workflows.agent_run import AgentRunWorkflow
from workflows.python_execution import PythonExecutionWorkflow

ANALYSIS = """
import matplotlib.pyplot as plt
values = {r["channel"]: r["value"] for r in inputs["read"]["readings"]}
sp = values["CHANNEL"]
fig, ax = plt.subplots()
ax.bar(range(len(values)), list(values.values()))
ax.set_title("readings")
results = {"setpoint": sp, "n": len(values),
           "proposed_writes": [{"channel": "CHANNEL", "value": round(sp + DELTA, 4), "reason": "analysis"}]}
"""


def analysis_plan(channel: str, delta: float) -> Plan:
    return Plan.model_validate(
        {
            "steps": [
                {"id": "read", "kind": "channel_read", "channels": [channel]},
                {
                    "id": "analyse",
                    "kind": "python",
                    "inputs": ["read"],
                    "expected_keys": ["setpoint"],
                    "code": ANALYSIS.replace("CHANNEL", channel).replace("DELTA", repr(delta)),
                },
                {"id": "answer", "kind": "respond"},
            ]
        }
    )


async def approve_next(client, workflow_id: str, approver: str = "bob", approved: bool = True, within_s: float = 60):
    """Approve whatever the run (or its python step) waits for next; returns the pending request."""

    async def find():
        while True:
            st = await client.get_workflow_handle(workflow_id).query(AgentRunWorkflow.status)
            if st.pending is not None:
                return workflow_id, st.pending
            if st.child_workflow_id:
                try:
                    cst = await client.get_workflow_handle(st.child_workflow_id).query(PythonExecutionWorkflow.status)
                    if cst.pending is not None:
                        return st.child_workflow_id, cst.pending
                except Exception:
                    pass
            await asyncio.sleep(0.2)

    wf_id, pending = await asyncio.wait_for(find(), within_s)
    await client.get_workflow_handle(wf_id).execute_update(
        AgentRunWorkflow.decide, Decision(request_id=pending.request_id, approver=approver, approved=approved)
    )
    return pending


async def test_analysis_code_approved_then_its_proposed_write_approved(temporal_env, settings, docker_backend) -> None:
    channel = "SR:MAG:SF:09:CURRENT:SP"
    before = read_value(channel)
    async with running_worker(temporal_env.client, settings):
        handle = await start_run(temporal_env.client, settings, analysis_plan(channel, 1.5))
        code_req = await approve_next(temporal_env.client, handle.id)
        assert code_req.kind == "python" and code_req.code is not None
        assert "proposed_writes" in code_req.code.code and code_req.code.risk in ("low", "medium")
        write_req = await approve_next(temporal_env.client, handle.id)
        assert write_req.kind == "control_write" and write_req.step_id == "analyse#write-1"
        assert write_req.write.value == pytest.approx(before + 1.5, abs=1e-3)
        result = await handle.result()
    assert result.status == "completed", result.error
    py = next(s for s in result.steps if s.kind == "python").python
    assert py.execution.results["setpoint"] == pytest.approx(before)
    assert py.execution.isolation == "container"
    assert len(py.execution.figures) == 1 and py.execution.figures[0].artifact_id
    assert [a.kind for a in result.approvals] == ["python", "control_write"]
    assert len(result.writes) == 1 and result.writes[0].verified
    assert read_value(channel) == pytest.approx(before + 1.5, abs=1e-3)
    conn = await asyncpg.connect(settings.dsn)
    try:
        png = await conn.fetchval("SELECT content FROM artifacts WHERE id = $1", py.execution.figures[0].artifact_id)
    finally:
        await conn.close()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    child_rows = await audit_rows(settings.dsn, AgentRunWorkflow.child_id(result.workflow_id, "analyse"))
    assert [r["event_kind"] for r in child_rows] == ["approval_requested", "decision"]


async def test_rejected_code_never_runs_and_nothing_is_written(temporal_env, settings, docker_backend) -> None:
    channel = "SR:MAG:SF:10:CURRENT:SP"
    before = read_value(channel)
    async with running_worker(temporal_env.client, settings):
        handle = await start_run(temporal_env.client, settings, analysis_plan(channel, 2.0))
        await approve_next(temporal_env.client, handle.id, approved=False)
        result = await handle.result()
    assert result.status == "rejected"
    py = result.steps[1].python
    assert py.status == "rejected" and py.execution is None
    assert result.writes == [] and read_value(channel) == pytest.approx(before)


async def test_generated_code_is_retried_with_the_error_fed_back(temporal_env, settings, docker_backend) -> None:
    prompts: list[GenerateCodeInput] = []

    @activity.defn(name="generate_code")
    async def scripted(inp: GenerateCodeInput) -> GeneratedCode:
        prompts.append(inp)
        if inp.attempt == 1:
            return GeneratedCode(code="results = {'ratio': 1 / 0}")
        return GeneratedCode(code="results = {'ratio': 0.5}")

    plan = Plan.model_validate(
        {"steps": [{"id": "calc", "kind": "python", "objective": "compute a ratio", "expected_keys": ["ratio"]}]}
    )
    async with running_worker(temporal_env.client, settings, overrides={"generate_code": scripted}):
        req_handle = await start_run(temporal_env.client, settings, plan)
        await approve_next(temporal_env.client, req_handle.id)  # attempt 1 (all_code mode)
        await approve_next(temporal_env.client, req_handle.id)  # attempt 2
        result = await req_handle.result()
    assert result.status == "completed", result.error
    py = result.steps[0].python
    assert [a.outcome for a in py.attempts] == ["error", "ok"]
    assert py.execution.results == {"ratio": 0.5}
    assert prompts[1].previous_code == "results = {'ratio': 1 / 0}"
    assert "ZeroDivisionError" in (prompts[1].feedback or "")


async def test_no_code_generator_fails_the_step_clearly(temporal_env, settings, docker_backend) -> None:
    plan = Plan.model_validate({"steps": [{"id": "calc", "kind": "python", "objective": "compute"}]})
    async with running_worker(temporal_env.client, settings):
        result = await (await start_run(temporal_env.client, settings, plan)).result()
    assert result.status == "failed"
    assert "no code generator is configured" in result.steps[0].message


async def test_sandboxed_code_cannot_reach_the_accelerator(temporal_env, settings, docker_backend) -> None:
    """Channel Access from inside the sandbox: pyepics under an alias, and raw UDP/TCP to the IOC's port."""
    channel = "SR:MAG:SF:11:CURRENT:SP"
    before = read_value(channel)
    code = f'''
outcomes = {{}}
try:
    from epics import caput as _w
    _w("{channel}", 1.0)
    outcomes["pyepics"] = "wrote"
except Exception as exc:
    outcomes["pyepics"] = type(exc).__name__
import socket
for host in ("127.0.0.1", "172.17.0.1", "10.0.2.2"):
    try:
        s = socket.create_connection((host, {settings.control.ca_server_port}), timeout=2)
        outcomes[host] = "connected"
    except OSError as exc:
        outcomes[host] = type(exc).__name__
results = {{"outcomes": outcomes}}
'''
    plan = Plan.model_validate({"steps": [{"id": "probe", "kind": "python", "code": code}]})
    req_settings = settings
    async with running_worker(temporal_env.client, req_settings):
        handle = await start_run(temporal_env.client, settings, plan)
        pending = await approve_next(temporal_env.client, handle.id)
        result = await handle.result()
    assert "control" in pending.code.analysis.lower() or "epics" in pending.code.analysis.lower()
    outcomes = result.steps[0].python.execution.results["outcomes"]
    assert "wrote" not in outcomes.values() and "connected" not in outcomes.values(), outcomes
    assert read_value(channel) == pytest.approx(before)


async def test_cancelling_the_run_removes_the_container(temporal_env, settings, docker_backend) -> None:
    import uuid

    from temporalio.client import WorkflowFailureError

    from tern.models import AgentRunRequest
    from tern.sandbox.docker_backend import LABEL

    plan = Plan.model_validate(
        {"steps": [{"id": "long", "kind": "python", "code": "import time\ntime.sleep(120)\nresults = {}"}]}
    )
    req = AgentRunRequest(
        user="alice", query="long analysis", plan=plan, approvers=["alice"], python_approval_mode="disabled"
    )
    workflow_id = f"run-{uuid.uuid4().hex[:10]}"
    labels = {"label": [f"{LABEL}=1", f"tern.run_id={workflow_id}"]}
    no_code_approval = settings.model_copy(
        update={"approval": settings.approval.model_copy(update={"python_mode": "disabled"})}
    )  # the worker's floor
    async with running_worker(temporal_env.client, no_code_approval):
        handle = await temporal_env.client.start_workflow(
            AgentRunWorkflow.run, req, id=workflow_id, task_queue=settings.temporal.task_queue
        )
        for _ in range(300):
            if docker_backend.client.api.containers(filters=labels):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the sandbox container never started")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as exc:
            await handle.result()
        assert "cancel" in str(exc.value.cause).lower()
        for _ in range(300):  # the activity learns of the cancellation on its next heartbeat
            if not docker_backend.client.api.containers(all=True, filters=labels):
                break
            await asyncio.sleep(0.1)
    assert docker_backend.client.api.containers(all=True, filters=labels) == []
