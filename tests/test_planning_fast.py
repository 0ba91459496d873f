"""The planning loop of ``AgentRunWorkflow`` on the time-skipping test server: the real workflow and the real
``plan`` and ``compose_answer`` code (the SDK client over HTTP to a scripted server, tests/llm_script.py), the
machine, PostgreSQL and the approval policy stood in for as in test_workflows_fast.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.planning import PlanningActivities
from tern.agent.compose import compose_with_llm
from tern.approval.policy import ApprovalPolicy
from tern.config import TernSettings
from tern.llm import AnthropicChat, LLMClient, OpenAIChat
from tern.models import AgentRunRequest, Decision
from tern.models.activity_io import ComposedAnswer, ComposeInput
from tern.models.execution import ExecutionResult
from tern.models.python_step import GenerateCodeInput, GeneratedCode
from tern.models.ring import PlanEffect, PlanPredictInput
from tern.planning import REGISTRY
from tern.sandbox.codegen import generate
from tests.agent_helpers import queue_workers
from tests.llm_script import ScriptedLLM, last_user_text, plan_json, scripted_llm
from tests.test_workflows_fast import Machine, pending
from workflows.agent_run import AgentRunWorkflow
from workflows.python_execution import PythonExecutionWorkflow

CAV = "SR:RF:CAVITY:01:VOLTAGE:RB"
READ = {"id": "read", "kind": "channel_read", "channels": [CAV]}
ANSWER = {"id": "answer", "kind": "respond"}


@pytest.fixture(params=["openai", "anthropic"])
async def env(request, time_skipping_env) -> AsyncIterator[tuple[Client, Machine, ScriptedLLM, str]]:
    """The worker, its stand-ins and the scripted server; once with each SDK client (``llm.provider``)."""
    machine = Machine()
    queue = f"plan-{uuid.uuid4().hex[:8]}"
    async with scripted_llm() as llm:
        llm.provider = request.param
        llm.default["answer"] = "Cavity 1 reads 1.0 MV."
        client: LLMClient = (
            OpenAIChat(f"{llm.base}/v1", "scripted", "k")
            if request.param == "openai"
            else AnthropicChat(llm.base, "scripted", "k")
        )
        planning = PlanningActivities(TernSettings(llm={"provider": "openai", "url": f"{llm.base}/v1"}), llm=client)

        @activity.defn(name="compose_answer")
        async def compose_answer(inp: ComposeInput) -> ComposedAnswer:
            machine.calls.append("compose_answer")
            return await compose_with_llm(client, inp, REGISTRY.summarise)

        @activity.defn(name="generate_code")
        async def generate_code(inp: GenerateCodeInput) -> GeneratedCode:
            return await generate(client, inp)  # the real code generator over HTTP (role 'code')

        @activity.defn(name="predict_plan")
        async def predict_plan(inp: PlanPredictInput) -> PlanEffect | None:
            """The real ring model from its design currents (the IOC's readbacks stood in for by the design)."""
            from tern.ring.model import RingModel
            from tern.ring.service import predict_plan as predict

            return predict(RingModel(), inp.writes, {}, {})[0]

        acts = [a for a in machine.activities() if a.__name__ not in ("compose_answer", "generate_code")]
        async with queue_workers(
            time_skipping_env.client,
            task_queue=queue,
            workflows=[AgentRunWorkflow, PythonExecutionWorkflow],
            activities=[*acts, compose_answer, generate_code, predict_plan, *planning.all()],
        ):
            yield time_skipping_env.client, machine, llm, queue


async def ask(client: Client, queue: str, *, plan_approval: bool = False) -> WorkflowHandle:
    req = AgentRunRequest(
        user="alice",
        query="What is RF cavity 1 doing?",
        approvers=["bob"],
        plan_approval=plan_approval,
        python_approval_mode="disabled",
    )
    return await client.start_workflow(AgentRunWorkflow.run, req, id=f"ask-{uuid.uuid4().hex[:10]}", task_queue=queue)


async def test_question_is_planned_run_and_answered(env) -> None:
    client, machine, llm, queue = env
    llm.script["planner"] = ["not json", plan_json(READ, ANSWER)]
    result = await (await ask(client, queue)).result()
    assert result.status == "completed", result.error
    assert [s.step_id for s in result.steps] == ["read", "answer"]
    assert machine.calls == ["read_channels", "compose_answer"]
    assert result.answer == "Cavity 1 reads 1.0 MV."
    [v1] = result.plan
    assert (v1.version, v1.cause, v1.by, v1.attempts) == (1, "question", "alice", 2)
    assert result.llm_usage["planner"].calls == 2 and result.llm_usage["answer"].calls == 1
    assert all(r["model"] == "scripted" for r in llm.requests)


async def test_the_planner_and_the_composer_get_the_users_notes(env) -> None:
    """The user's notes relevant to the question (the ``recall`` activity, looked up once) reach the planner's
    prompt as data (issue 11: memory as context), and the same notes go to the composer."""
    from datetime import UTC, datetime

    from tern.models.memory import Memory

    client, machine, llm, queue = env
    note = "cavity 1 runs warm since the manifold repair"
    machine.notes = [Memory(id=7, user="alice", text=note, created_at=datetime(2026, 11, 2, tzinfo=UTC))]
    llm.script["planner"] = [plan_json(READ, ANSWER)]
    result = await (await ask(client, queue)).result()
    assert result.status == "completed", result.error
    assert f"2026-11-02: {note}" in last_user_text(llm.by_role("planner")[0])
    assert note in json.dumps(llm.by_role("answer")[0])
    assert [(a.user, a.query) for a in machine.recalls] == [("alice", "What is RF cavity 1 doing?")]  # once


async def test_plan_that_never_validates_fails_the_run_naming_the_error_and_runs_nothing(env) -> None:
    client, machine, llm, queue = env
    llm.default["planner"] = plan_json({"id": "x", "kind": "channel_read", "channels": ["NO:SUCH:PV"]}, ANSWER)
    result = await (await ask(client, queue)).result()
    assert result.status == "failed" and not result.steps and not machine.calls
    assert result.error is not None and "planning failed" in result.error
    assert "unknown channel 'NO:SUCH:PV'" in result.error
    assert len(llm.by_role("planner")) == 3


async def test_plan_approval_rejected_then_revised_plan_approved(env) -> None:
    client, machine, llm, queue = env
    write = {"id": "set", "kind": "control_write", "channel": "SR:RF:CAVITY:01:VOLTAGE:SP", "value": 2.0}
    llm.script["planner"] = [plan_json(READ, write, ANSWER), plan_json(READ, ANSWER)]
    handle = await ask(client, queue, plan_approval=True)
    rid = await pending(handle)
    st = await handle.query(AgentRunWorkflow.status)
    assert st.pending is not None and st.pending.kind == "plan" and st.pending.plan is not None
    assert [s.id for s in st.pending.plan.steps] == ["read", "set", "answer"]
    await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=False, comment="no writes today")
    )
    rid2 = await pending(handle)
    assert "no writes today" in last_user_text(llm.by_role("planner")[1])
    assert not machine.calls  # nothing ran before the plan was approved
    await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid2, approver="bob", approved=True))
    result = await handle.result()
    assert result.status == "completed" and [s.step_id for s in result.steps] == ["read", "answer"]
    assert [(v.cause, v.by, v.comment) for v in result.plan] == [
        ("question", "alice", ""),
        ("plan_rejected", "bob", "no writes today"),
    ]
    assert [a.kind for a in result.approvals] == ["plan", "plan"] and "write_channel" not in machine.calls


async def test_plan_approval_carries_the_plans_writes_predicted_as_the_whole(env) -> None:
    """Issue 23: a plan with two magnet writes is predicted as the whole at its approval; the tune shift of both
    applied together matches pyAT computed here with the changes made by hand."""
    import at  # pyAT: a dependency of Tern, never skipped

    from tests.test_ring_plan import HCM14, QF11, _fresh_ring, _set_by_hand

    client, machine, llm, queue = env
    writes = {QF11: 372.0, HCM14: 4.0}
    steps = [
        {"id": f"w{n}", "kind": "control_write", "channel": ch, "value": v} for n, (ch, v) in enumerate(writes.items())
    ]
    llm.script["planner"] = [plan_json(*steps, ANSWER)]
    handle = await ask(client, queue, plan_approval=True)
    rid = await pending(handle, within_s=120)
    st = await handle.query(AgentRunWorkflow.status)
    assert st.pending is not None and st.pending.kind == "plan" and st.pending.plan_effect is not None
    pe = st.pending.plan_effect
    ring = _fresh_ring()
    q0 = ring.get_tune()
    _set_by_hand(ring, _fresh_ring(), writes)
    q1 = ring.get_tune()
    assert isinstance(ring, at.Lattice) and abs(q1[0] - q0[0]) > 1e-3
    assert abs(pe.combined.dq_x - (q1[0] - q0[0])) < 1e-4 and abs(pe.combined.dq_y - (q1[1] - q0[1])) < 1e-4
    assert list(pe.writes) == [QF11, HCM14] and set(pe.per_write) == {QF11, HCM14}
    await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=False, comment="no")
    )
    await handle.cancel()
    assert "write_channel" not in machine.calls and "check_write" not in machine.calls


async def test_plan_rejected_twice_ends_the_run_rejected(env) -> None:
    client, machine, llm, queue = env
    llm.default["planner"] = plan_json(READ, ANSWER)
    handle = await ask(client, queue, plan_approval=True)
    for _ in range(2):
        rid = await pending(handle)
        await handle.execute_update(
            AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=False, comment="no")
        )
    result = await handle.result()
    assert result.status == "rejected" and not result.steps and not machine.calls
    assert len(result.plan) == 2


async def test_failed_step_is_answered_by_one_revision(env) -> None:
    client, machine, llm, queue = env
    machine.unreachable.add(CAV)
    fwd = {"id": "read-fwd", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:POWER:FWD"]}
    llm.script["planner"] = [plan_json(READ, ANSWER), plan_json(fwd, {"id": "answer2", "kind": "respond"})]
    result = await (await ask(client, queue)).result()
    assert result.status == "completed", result.error
    assert [(s.step_id, s.status) for s in result.steps] == [
        ("read", "failed"),
        ("read-fwd", "completed"),
        ("answer2", "completed"),
    ]
    assert [(v.cause, v.by) for v in result.plan] == [("question", "alice"), ("step_failed", "step read")]
    revision_request = last_user_text(llm.by_role("planner")[1])
    assert f"{CAV} unavailable" in revision_request and "step read failed" in revision_request


async def test_revisions_stop_after_three(env) -> None:
    client, machine, llm, queue = env
    machine.unreachable.add(CAV)
    n = iter(range(100))
    llm.default["planner"] = lambda body: plan_json(
        {"id": f"read{next(n)}", "kind": "channel_read", "channels": [CAV]}, {"id": f"a{next(n)}", "kind": "respond"}
    )
    result = await (await ask(client, queue)).result()
    assert result.status == "failed"
    assert [v.cause for v in result.plan] == ["question", "step_failed", "step_failed", "step_failed"]
    assert [s.status for s in result.steps].count("failed") == 4


async def test_usage_is_counted_per_role_planner_code_answer(env) -> None:
    client, machine, llm, queue = env
    analyse = {"id": "analyse", "kind": "python", "inputs": ["read"], "objective": "mean of the readings"}
    llm.script["planner"] = [plan_json(READ, analyse, ANSWER)]
    llm.script["other"] = ["```python\nresults = {'mean': 1.0}\n```"]
    machine.policy = ApprovalPolicy(python_approval_mode="disabled")  # the worker's floor: no code approval
    machine.executions.append(ExecutionResult(status="ok", backend="process", isolation="none", results={"mean": 1.0}))
    result = await (await ask(client, queue)).result()
    assert result.status == "completed", result.error
    assert result.steps[1].python is not None and result.steps[1].python.code == "results = {'mean': 1.0}"
    usage = {role: (u.calls, u.prompt_tokens, u.completion_tokens) for role, u in result.llm_usage.items()}
    one = (1, 100, 20) if llm.provider == "openai" else (1, 90, 15)  # what each scripted API reports
    assert usage == {"planner": one, "code": one, "answer": one}


async def test_channel_read_of_channels_found_by_an_earlier_step_that_found_none_fails_and_is_revised(env) -> None:
    client, machine, llm, queue = env
    search = {"id": "search", "kind": "logbook_search", "query": "cavity"}
    found = {"id": "read", "kind": "channel_read", "channels_from": ["search"]}
    llm.script["planner"] = [
        plan_json(search, found, ANSWER),
        plan_json(READ | {"id": "read2"}, {"id": "a2", "kind": "respond"}),
    ]
    result = await (await ask(client, queue)).result()
    assert [(s.step_id, s.status) for s in result.steps][:3] == [
        ("search", "completed"),
        ("read", "failed"),
        ("read2", "completed"),
    ]
    assert result.steps[1].message == "no channels: steps search found none"
    assert machine.calls.count("read_channels") == 1  # nothing was read for the empty reference


@pytest.mark.parametrize(("status", "requests"), [(503, 4), (401, 1)])
async def test_unreachable_or_refusing_provider_fails_the_run_after_the_retry_policy(env, status, requests) -> None:
    client, machine, llm, queue = env
    llm.default["planner"] = status
    result = await (await ask(client, queue)).result()  # the test server skips the backoff
    assert result.status == "failed" and not result.steps and not machine.calls
    assert result.error is not None and f"HTTP {status}" in result.error and "planning failed" in result.error
    assert len(llm.by_role("planner")) == requests  # PLAN_RETRY: 4 attempts; a refused request (401) once


async def test_worker_setting_plan_approval_asks_even_when_the_run_did_not(time_skipping_env) -> None:
    machine = Machine()
    queue = f"plan-{uuid.uuid4().hex[:8]}"
    async with scripted_llm() as llm:
        llm.default["planner"] = plan_json(READ, ANSWER)
        client = OpenAIChat(f"{llm.base}/v1", "scripted", "k")
        settings = TernSettings(llm={"provider": "openai", "url": f"{llm.base}/v1", "plan_approval": True})
        async with Worker(
            time_skipping_env.client,
            task_queue=queue,
            workflows=[AgentRunWorkflow],
            activities=[*machine.activities(), *PlanningActivities(settings, llm=client).all()],
        ):
            handle = await ask(time_skipping_env.client, queue, plan_approval=False)
            rid = await pending(handle)
            assert not machine.calls  # nothing runs before the plan is approved
            await handle.execute_update(
                AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True)
            )
            result = await handle.result()
    assert result.status == "completed" and [a.kind for a in result.approvals] == ["plan"]
    assert machine.calls == ["read_channels", "compose_answer"]
