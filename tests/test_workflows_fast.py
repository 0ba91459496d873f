"""Fast workflow tests on the time-skipping test server, in the style of the Temporal samples: the real
workflows with their activities replaced by name (the approval policy and the code analysis are Tern's own
pure functions; the machine, PostgreSQL and Docker are stood in for). The end-to-end tests on real
components (test_agent_run.py, test_approval_runs.py, test_python_step.py) stay above these.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError

from tern.approval.policy import ApprovalPolicy
from tern.identity.verify import check_proof
from tern.models import AgentRunRequest, AuditEvent, ChannelReading, Decision, LimitsCheck, Plan, SearchResponse
from tern.models.activity_io import (
    ChannelReadInput,
    ComposedAnswer,
    ComposeInput,
    LogbookSearchInput,
    WriteCheckInput,
    WriteInput,
)
from tern.models.approval import ApprovalResolveInput, ResolvedApproval
from tern.models.bluesky import BlueskyCheckInput, PlanCheck
from tern.models.control import WriteRecord
from tern.models.freeze import FreezeState, HoldRequest
from tern.models.identity import IdentityMode, ProofCheck, ProofCheckInput
from tern.models.memory import Memory, MemorySearchInput
from tern.models.python_step import AnalyzeInput, ExecuteInput, GenerateCodeInput, GeneratedCode
from tern.sandbox.models import ExecutionResult
from tern.sandbox.policy import PolicyReport, analyze
from tests.agent_helpers import queue_workers
from tests.workflow_variants import QuickHeartbeatPythonExecution
from workflows.agent_run import AgentRunWorkflow
from workflows.python_execution import EXECUTE_HEARTBEAT, PythonExecutionWorkflow
from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATE

CHANNEL = "SR:MAG:QF:01:CURRENT:SP"


@dataclass
class Machine:
    """The stand-ins' shared state: what was audited, written, called; the policy; scripted code results."""

    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    audit: list[AuditEvent] = field(default_factory=list)
    writes: list[WriteInput] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    executions: list[ExecutionResult] = field(default_factory=list)
    unreachable: set[str] = field(default_factory=set)
    notes: list[Memory] = field(default_factory=list)  # what the recall stand-in returns
    recalls: list[MemorySearchInput] = field(default_factory=list)
    slow_audit: dict[str, float] = field(default_factory=dict)  # event kind -> seconds its recording takes
    audit_started: asyncio.Event = field(default_factory=asyncio.Event)
    execution_hangs: bool = False  # execute_python never heartbeats nor returns (its worker died, every attempt)
    identity: IdentityMode = "declared"  # the worker's approval.identity
    proof_uses: dict[str, str] = field(default_factory=dict)  # statement sha256 -> use key (single use)
    checks: list[ProofCheck] = field(default_factory=list)
    write_by_s: float = 900.0  # approval.write_by_s
    refusal: LimitsCheck | None = None  # what check_write answers instead of allowing the write
    plan_refusal: str | None = None  # check_bluesky_plan refuses every plan with this message (else allows it)

    def activities(self) -> list:
        m = self

        @activity.defn(name="record_audit")
        async def record_audit(event: AuditEvent) -> bool:
            if event.event_kind in m.slow_audit:
                m.audit_started.set()
                await asyncio.sleep(m.slow_audit[event.event_kind])
            if all(e.event_key != event.event_key for e in m.audit):
                m.audit.append(event)
            return True

        @activity.defn(name="resolve_approval")
        async def resolve_approval(inp: ApprovalResolveInput) -> ResolvedApproval:
            return m.policy.resolve(
                inp.kind,
                requester=inp.requester,
                requested=inp.requested_approvers,
                channel=inp.channel,
                requested_mode=inp.requested_mode,
                version="test",
                identity=m.identity,
            ).model_copy(update={"write_by_s": m.write_by_s})

        @activity.defn(name="verify_proof")
        async def verify_proof(inp: ProofCheckInput) -> ProofCheck:
            # The real check (ssh-keygen included) against the machine's policy; single use kept in memory.
            mode = m.policy.identity_mode(m.identity)
            check = await asyncio.to_thread(
                check_proof, inp, mode=mode, principals=m.policy.principals, now=datetime.now(UTC)
            )
            if check.ok and check.statement_sha256:
                if m.proof_uses.setdefault(check.statement_sha256, inp.use_key) != inp.use_key:
                    check = ProofCheck(ok=False, mode=mode, reason="this proof was already used (a replayed statement)")
            m.checks.append(check)
            return check

        @activity.defn(name="search_logbook")
        async def search_logbook(inp: LogbookSearchInput) -> SearchResponse:
            m.calls.append("search_logbook")
            return SearchResponse(query=inp.query, mode=inp.mode, mode_used="keyword")

        @activity.defn(name="read_channels")
        async def read_channels(inp: ChannelReadInput) -> list[ChannelReading]:
            m.calls.append("read_channels")
            return [
                ChannelReading(channel=c, value=None, connected=False, error="not connected")
                if c in m.unreachable
                else ChannelReading(channel=c, value=1.0)
                for c in inp.channels
            ]

        @activity.defn(name="check_write")
        async def check_write(inp: WriteCheckInput) -> LimitsCheck:
            m.calls.append("check_write")
            if m.refusal is not None:
                return m.refusal
            return LimitsCheck(channel=inp.channel, value=inp.value, allowed=True, current_value=1.0, units="A")

        @activity.defn(name="check_bluesky_plan")
        async def check_bluesky_plan(inp: BlueskyCheckInput) -> PlanCheck:
            m.calls.append("check_bluesky_plan")
            if m.plan_refusal is not None:
                raise ApplicationError(m.plan_refusal, type="PlanRefused", non_retryable=True)
            return PlanCheck(plan=inp.plan, call=inp.plan.name)

        @activity.defn(name="write_channel")
        async def write_channel(inp: WriteInput) -> WriteRecord:
            m.calls.append("write_channel")
            m.writes.append(inp)
            return WriteRecord(
                channel=inp.channel,
                previous_value=1.0,
                value=inp.value,
                readback=inp.value,
                verified=True,
                verification="readback",
                written_at=datetime.now(UTC),
            )

        @activity.defn(name="hold_write")
        async def hold_write(inp: HoldRequest) -> FreezeState:
            return FreezeState()  # the facility is not frozen (tests/test_freeze.py runs the real one)

        @activity.defn(name="recall")
        async def recall(inp: MemorySearchInput) -> list[Memory]:
            m.recalls.append(inp)
            return m.notes

        @activity.defn(name="compose_answer")
        async def compose_answer(inp: ComposeInput) -> ComposedAnswer:
            m.calls.append("compose_answer")
            return ComposedAnswer(answer=f"{len(inp.steps)} steps")

        @activity.defn(name="analyze_code")
        async def analyze_code(inp: AnalyzeInput) -> PolicyReport:
            return analyze(inp.code)

        @activity.defn(name="generate_code")
        async def generate_code(inp: GenerateCodeInput) -> GeneratedCode:
            m.calls.append(f"generate_code:{inp.attempt}:{inp.feedback or ''}")
            return GeneratedCode(code=f"results = {{'attempt': {inp.attempt}}}")

        @activity.defn(name="execute_python")
        async def execute_python(inp: ExecuteInput) -> ExecutionResult:
            m.calls.append(f"execute_python:{inp.attempt}")
            if m.execution_hangs:
                await asyncio.sleep(3600)
            return m.executions.pop(0)

        return [
            record_audit,
            resolve_approval,
            verify_proof,
            search_logbook,
            read_channels,
            check_write,
            check_bluesky_plan,
            write_channel,
            compose_answer,
            analyze_code,
            generate_code,
            execute_python,
            recall,
            hold_write,
        ]


@asynccontextmanager
async def machine_worker(client: Client) -> AsyncIterator[tuple[Client, Machine, str]]:
    """A worker for the agent-run and python-execution workflows with a fresh :class:`Machine`'s stand-ins, on a
    task queue of its own: yields ``(client, machine, queue)``."""
    machine = Machine()
    queue = f"fast-{uuid.uuid4().hex[:8]}"
    async with queue_workers(
        client,
        task_queue=queue,
        workflows=[AgentRunWorkflow, PythonExecutionWorkflow],
        activities=machine.activities(),
    ):
        yield client, machine, queue


@pytest.fixture
async def env(time_skipping_env) -> AsyncIterator[tuple[Client, Machine, str]]:
    async with machine_worker(time_skipping_env.client) as env:
        yield env


def plan(*steps: dict) -> Plan:
    return Plan.model_validate({"steps": list(steps)})


WRITE = {"id": "write", "kind": "control_write", "channel": CHANNEL, "value": 2.0, "reason": "test"}


async def start(
    client: Client,
    queue: str,
    p: Plan,
    *,
    user: str = "alice",
    approvers: list[str] | None = None,
    timeout_s: float = 3600,
) -> WorkflowHandle:
    req = AgentRunRequest(
        user=user,
        query="q",
        plan=p,
        approvers=["alice", "bob"] if approvers is None else approvers,
        approval_timeout_s=timeout_s,
        python_approval_mode="disabled",
    )
    return await client.start_workflow(AgentRunWorkflow.run, req, id=f"fast-{uuid.uuid4().hex[:10]}", task_queue=queue)


async def pending(handle: WorkflowHandle, within_s: float = 30.0) -> str:
    """The pending request's id, once the run waits for one (wall-clock bound: a loaded machine is slow)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        st = await handle.query(AgentRunWorkflow.status)
        if st.pending is not None:
            return st.pending.request_id
        await asyncio.sleep(0.02)
    raise AssertionError("nothing pending")


async def refused(handle: WorkflowHandle, d: Decision) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as exc:
        await handle.execute_update(AgentRunWorkflow.decide, d)
    return str(exc.value.cause)


async def test_gate_refuses_non_approver_stale_id_self_approval_and_second_decision(env) -> None:
    client, machine, queue = env
    handle = await start(client, queue, plan(WRITE))
    rid = await pending(handle)
    assert "not an approver" in await refused(handle, Decision(request_id=rid, approver="eve", approved=True))
    assert "stale or unknown" in await refused(handle, Decision(request_id="x", approver="bob", approved=True))
    assert "two-person rule" in await refused(handle, Decision(request_id=rid, approver="alice", approved=True))
    assert machine.writes == []
    record = await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True)
    )
    assert record.decision == "approved"
    result = await handle.result()
    assert result.status == "completed" and len(machine.writes) == 1
    assert machine.writes[0].approver == "bob"
    kinds = [e.event_kind for e in machine.audit]
    assert kinds == ["approval_requested", "decision_refused", "decision_refused", "decision_refused", "decision"]


async def test_gate_double_decision_by_signal_is_refused(env) -> None:
    client, machine, queue = env
    handle = await start(client, queue, plan(WRITE, {"id": "w2", **{k: v for k, v in WRITE.items() if k != "id"}}))
    rid = await pending(handle)
    await handle.signal(AgentRunWorkflow.decide_signal, Decision(request_id=rid, approver="bob", approved=False))
    await handle.signal(AgentRunWorkflow.decide_signal, Decision(request_id=rid, approver="bob", approved=True))
    result = await handle.result()
    assert result.status == "rejected" and machine.writes == []
    assert [i.reason for i in result.ignored_decisions] == [f"request {rid} is already decided"]
    assert [s.status for s in result.steps] == ["rejected", "skipped"]  # the second write never asks


async def test_gate_timeout_rejects(env) -> None:
    client, machine, queue = env
    handle = await start(client, queue, plan(WRITE), timeout_s=6 * 3600)
    result = await handle.result()  # the test server skips the six hours
    assert result.status == "timed_out" and machine.writes == []
    assert [e.event_kind for e in machine.audit] == ["approval_requested", "approval_timed_out"]


async def test_gate_cancel_while_waiting_closes_the_request(env) -> None:
    client, machine, queue = env
    handle = await start(client, queue, plan(WRITE))
    await pending(handle)
    # The request is pending (queryable) while its approval_requested row is still being recorded; the wait, and
    # its timer, start after that (a cancel before it: test_a_cancel_while_the_request_is_being_recorded_...).
    deadline = asyncio.get_running_loop().time() + 30
    while not any(e.HasField("timer_started_event_attributes") for e in (await handle.fetch_history()).events):
        assert asyncio.get_running_loop().time() < deadline, "the approval wait never started its timer"
        await asyncio.sleep(0.05)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as cancelled:
        await handle.result()
    assert isinstance(cancelled.value.cause, CancelledError), cancelled.value.cause  # cancelled, not failed
    assert machine.writes == []
    assert [e.event_kind for e in machine.audit] == ["approval_requested", "approval_cancelled"]
    # issue 26: the run's state says cancelled (it stayed awaiting_approval), and the approval timer has a summary
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(RUN_STATE) == "cancelled" and attrs.get(PENDING_APPROVAL) == NO_APPROVAL
    history = await handle.fetch_history()
    timers = [e for e in history.events if e.HasField("timer_started_event_attributes")]
    assert len(timers) == 1
    summary = pydantic_data_converter.payload_converter.from_payload(timers[0].user_metadata.summary, str)
    assert summary.startswith("approval timeout: control_write request ") and "rejects at expiry" in summary


async def _run_key(handle: WorkflowHandle) -> str:
    return f"{handle.id}/{(await handle.describe()).run_id}"


async def test_a_write_the_limits_refuse_is_audited_before_any_approval(env) -> None:
    """The refusal audit event, field by field (``RunSteps._audit_refusal``): its key, who, what, why."""
    client, machine, queue = env
    machine.refusal = LimitsCheck(
        channel=CHANNEL, value=2.0, allowed=False, violation="above_max", message="2 > max 1.5", current_value=1.0
    )
    handle = await start(client, queue, plan(WRITE))
    result = await handle.result()
    assert result.status == "failed" and machine.writes == [] and result.approvals == []
    assert result.steps[0].status == "refused" and result.steps[0].message == "refused (above_max): 2 > max 1.5"
    assert machine.audit == [
        AuditEvent(
            event_kind="write_refused",
            workflow_id=handle.id,
            event_key=f"write-refused:{await _run_key(handle)}:write",
            step_id="write",
            actor="alice",
            channel=CHANNEL,
            previous_value=1.0,
            value=2.0,
            comment="2 > max 1.5",
            details={"violation": "above_max"},
        )
    ]


async def test_a_bluesky_plan_the_queue_server_refuses_is_audited_before_any_approval(env) -> None:
    client, machine, queue = env
    machine.plan_refusal = "plan 'mv' is not allowed"
    handle = await start(
        client, queue, plan({"id": "scan", "kind": "bluesky_plan", "plan": "mv", "args": ["motor1", 1.0]})
    )
    result = await handle.result()
    assert result.steps[0].status == "refused" and result.approvals == []
    assert result.steps[0].message == "refused: plan 'mv' is not allowed"
    assert machine.audit == [
        AuditEvent(
            event_kind="bluesky_refused",
            workflow_id=handle.id,
            event_key=f"bluesky-refused:{await _run_key(handle)}:scan",
            step_id="scan",
            actor="alice",
            comment="plan 'mv' is not allowed",
            details={"violation": "plan_not_allowed", "plan": {"name": "mv", "args": ["motor1", 1.0], "kwargs": {}}},
        )
    ]


@pytest.fixture
async def dev_env(temporal_env) -> AsyncIterator[tuple[Client, Machine, str]]:
    """``env`` on the dev server: the time-skipping test server does not apply parent-close policies."""
    async with machine_worker(temporal_env.client) as env:
        yield env


async def test_terminating_a_run_cancels_its_python_step_and_audits_it(dev_env) -> None:
    """Parent-close policy REQUEST_CANCEL: the child waiting for code approval is asked to stop (not killed
    unrecorded by the default TERMINATE), closes its request and audits ``python_cancelled``."""
    client, machine, queue = dev_env
    machine.policy = ApprovalPolicy(python_approval_mode="all_code")
    handle = await start(client, queue, plan({"id": "calc", "kind": "python", "code": "results = {}"}))
    child = client.get_workflow_handle(AgentRunWorkflow.child_id(handle.id, "calc"))
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # wait on the condition: the child's code approval is pending
        try:
            if (await child.query(PythonExecutionWorkflow.status)).pending is not None:
                break
        except RPCError:
            pass  # not started yet
        assert asyncio.get_running_loop().time() < deadline, "the python step never asked for approval"
        await asyncio.sleep(0.02)
    await handle.terminate("operator stopped the run")
    while (status := (await child.describe()).status) == WorkflowExecutionStatus.RUNNING:
        assert asyncio.get_running_loop().time() < deadline + 30, "the python step is still running"
        await asyncio.sleep(0.05)
    assert status == WorkflowExecutionStatus.CANCELED
    cancelled = [e for e in machine.audit if e.event_kind == "python_cancelled"]
    assert [e.event_kind for e in machine.audit] == ["approval_requested", "approval_cancelled", "python_cancelled"]
    assert cancelled[0].workflow_id == handle.id and cancelled[0].step_id == "calc"


async def test_policy_two_approvals_then_write(env) -> None:
    client, machine, queue = env
    machine.policy = ApprovalPolicy.model_validate(
        {
            "rules": [
                {
                    "kinds": ["control_write"],
                    "channels": ["SR:MAG:*"],
                    "approvers": ["bob", "carol"],
                    "min_approvals": 2,
                }
            ]
        }
    )
    handle = await start(client, queue, plan(WRITE), approvers=[])
    rid = await pending(handle)
    await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    assert "already approved" in await refused(handle, Decision(request_id=rid, approver="bob", approved=True))
    assert machine.writes == []
    await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="carol", approved=True))
    result = await handle.result()
    assert result.status == "completed" and machine.writes[0].approver == "bob, carol"


async def test_steps_run_in_order_and_a_failed_read_blocks_the_write(env) -> None:
    client, machine, queue = env
    machine.unreachable = {"SR:DIAG:X"}
    handle = await start(
        client,
        queue,
        plan(
            {"id": "search", "kind": "logbook_search", "query": "trip"},
            {"id": "read", "kind": "channel_read", "channels": ["SR:DIAG:X"]},
            WRITE,
            {"id": "answer", "kind": "respond"},
        ),
    )
    result = await handle.result()
    assert machine.calls == ["search_logbook", "read_channels", "compose_answer"]
    assert [s.status for s in result.steps] == ["completed", "failed", "skipped", "completed"]
    assert result.status == "failed" and result.error.startswith("step read:")
    assert result.answer == "3 steps"  # compose saw the three steps before it


def _execution(ok: bool, **kw) -> ExecutionResult:
    return ExecutionResult(
        status="ok" if ok else "error",
        backend="process",
        isolation="none",
        error=None if ok else "ZeroDivisionError: division by zero",
        **kw,
    )


async def test_python_step_retries_generation_with_the_error_fed_back(env) -> None:
    client, machine, queue = env
    machine.policy = ApprovalPolicy(python_approval_mode="disabled")  # no code approval: the loop alone
    machine.executions = [_execution(False), _execution(True, results={"attempt": 2})]
    handle = await start(client, queue, plan({"id": "calc", "kind": "python", "objective": "a ratio"}))
    result = await handle.result()
    assert result.status == "completed", result.error
    py = result.steps[0].python
    assert [a.outcome for a in py.attempts] == ["error", "ok"]
    # issue 26: each attempt's code travels as its digest; the last code once (the stand-in's generated code)
    codes = ["results = {'attempt': 1}", "results = {'attempt': 2}"]
    assert [(a.code, a.code_sha256) for a in py.attempts] == [
        ("", hashlib.sha256(c.encode()).hexdigest()) for c in codes
    ]
    assert py.code == codes[1]
    assert machine.calls[0] == "generate_code:1:" and machine.calls[2].startswith("generate_code:2:")
    assert "ZeroDivisionError" in machine.calls[2]


async def test_python_step_says_when_its_code_ran_again(env) -> None:
    """An execution that was interrupted and retried reports its re-runs; the step's message repeats them."""
    client, machine, queue = env
    machine.policy = ApprovalPolicy(python_approval_mode="disabled")
    machine.executions = [_execution(True, results={"x": 1}, attempt=3, reruns=2)]
    handle = await start(client, queue, plan({"id": "calc", "kind": "python", "code": "results = {'x': 1}"}))
    result = await handle.result()
    assert result.status == "completed", result.error
    assert "the code ran 2 time(s) before in interrupted attempts" in result.steps[0].message


async def test_python_step_whose_worker_keeps_dying_fails_saying_so(time_skipping_env) -> None:
    """Every attempt's worker stops heartbeating (killed during the execution): the step fails after the retry
    policy's attempts with a message that says what happened, not Temporal's bare "activity Heartbeat timeout".

    The time-skipping server keeps real time while an activity runs, so the python step runs with the test's own
    heartbeat timeout and retry policy (tests/workflow_variants.py: 1 s, 3 attempts; production's 20 s x 5 took
    100 s here); the message must name the policy's attempt count, and every attempt must have started."""
    machine = Machine()
    machine.policy = ApprovalPolicy(python_approval_mode="disabled")
    machine.execution_hangs = True
    queue = f"fast-{uuid.uuid4().hex[:8]}"
    client = time_skipping_env.client
    async with queue_workers(
        client,
        task_queue=queue,
        workflows=[AgentRunWorkflow, QuickHeartbeatPythonExecution],
        activities=machine.activities(),
    ):
        handle = await start(client, queue, plan({"id": "calc", "kind": "python", "code": "results = {}"}))
        result = await handle.result()
    attempts = QuickHeartbeatPythonExecution.execute_retry.maximum_attempts
    assert attempts == 3 and QuickHeartbeatPythonExecution.execute_heartbeat < EXECUTE_HEARTBEAT
    assert result.status == "failed"
    assert f"stopped heartbeating on the last of the sandbox execution's {attempts} attempts" in (result.error or "")
    # one python attempt of the step, its sandbox activity started once per retry attempt
    assert machine.calls.count("execute_python:1") == attempts


async def test_python_step_proposed_write_is_approved_like_any_other(env) -> None:
    client, machine, queue = env
    machine.policy = ApprovalPolicy(python_approval_mode="disabled")
    machine.executions = [
        _execution(
            True,
            proposed_writes=[{"id": "p", "kind": "control_write", "channel": CHANNEL, "value": 1.5, "reason": "lower"}],
        )
    ]
    handle = await start(client, queue, plan({"id": "calc", "kind": "python", "code": "results = {}"}))
    rid = await pending(handle)
    await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    result = await handle.result()
    assert [s.step_id for s in result.steps] == ["calc", "calc#write-1"]
    assert result.writes[0].value == 1.5 and machine.writes[0].approver == "bob"


async def test_a_proposed_write_never_shares_its_id_with_a_plan_step(env) -> None:
    """A plan step named like the old derived id ('calc-write-1') next to python step 'calc' that proposes a
    write: two approvals, two writes, two distinct step ids (the old '<step>-write-<n>' gave both the same id,
    hence the same audit keys and results)."""
    client, machine, queue = env
    machine.policy = ApprovalPolicy(python_approval_mode="disabled")
    machine.executions = [_execution(True, proposed_writes=[{"channel": CHANNEL, "value": 1.5, "reason": "lower"}])]
    p = plan(
        {"id": "calc", "kind": "python", "code": "results = {}"},
        {**WRITE, "id": "calc-write-1"},
    )
    handle = await start(client, queue, p)
    decided: set[str] = set()
    for _ in range(2):
        rid = await pending(handle)
        while rid in decided:  # the first decision is still being taken in
            await asyncio.sleep(0.02)
            rid = await pending(handle)
        await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
        decided.add(rid)
    result = await handle.result()
    assert result.status == "completed", result.error
    assert [s.step_id for s in result.steps] == ["calc", "calc#write-1", "calc-write-1"]
    assert [w.step_id for w in machine.writes] == ["calc#write-1", "calc-write-1"]
    assert len({w.idempotency_key for w in machine.writes}) == 2
    requested = [e.step_id for e in machine.audit if e.event_kind == "approval_requested"]
    assert requested == ["calc#write-1", "calc-write-1"]


async def test_one_of_two_approvals_then_timeout_writes_nothing(env) -> None:
    client, machine, queue = env
    machine.policy = ApprovalPolicy.model_validate(
        {"rules": [{"kinds": ["control_write"], "approvers": ["bob", "carol"], "min_approvals": 2}]}
    )
    handle = await start(client, queue, plan(WRITE), approvers=[], timeout_s=3600)
    rid = await pending(handle)
    await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    result = await handle.result()  # the test server skips the hour
    assert result.status == "timed_out" and machine.writes == []
    final = result.approvals[-1]
    assert final.decision == "timed_out" and final.approved_by == ["bob"] and "1 of 2 approvals" in final.comment
    assert [e.event_kind for e in machine.audit] == ["approval_requested", "decision", "approval_timed_out"]


async def test_an_approver_may_retract_by_rejecting(env) -> None:
    client, machine, queue = env
    machine.policy = ApprovalPolicy.model_validate(
        {"rules": [{"kinds": ["control_write"], "approvers": ["bob", "carol"], "min_approvals": 2}]}
    )
    handle = await start(client, queue, plan(WRITE), approvers=[])
    rid = await pending(handle)
    await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=False))
    assert "already decided" in await refused(handle, Decision(request_id=rid, approver="carol", approved=True))
    result = await handle.result()
    assert result.status == "rejected" and machine.writes == []


async def test_a_cancel_during_the_decision_audit_still_records_it(env) -> None:
    client, machine, queue = env
    machine.slow_audit = {"decision": 1.0}
    handle = await start(client, queue, plan(WRITE))
    rid = await pending(handle)
    await handle.signal(AgentRunWorkflow.decide_signal, Decision(request_id=rid, approver="bob", approved=True))
    await asyncio.wait_for(machine.audit_started.wait(), 10)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as cancelled:
        await handle.result()
    assert isinstance(cancelled.value.cause, CancelledError), cancelled.value.cause  # cancelled, not failed
    assert [e.event_kind for e in machine.audit] == ["approval_requested", "decision"] and machine.writes == []


async def test_a_cancel_while_the_request_is_being_recorded_closes_it_in_the_audit(env) -> None:
    """The request is visible (queries, approvers' lists) while its ``approval_requested`` row is being recorded: a
    cancel landing then records the row and closes it (``approval_cancelled``), as a cancel during the wait does.
    Before patch ``request-cancel-audit-1`` the request stayed open in the audit (seen under load in a parallel
    run of the python-step cancel test)."""
    client, machine, queue = env
    machine.slow_audit = {"approval_requested": 1.0}
    handle = await start(client, queue, plan(WRITE))
    await asyncio.wait_for(machine.audit_started.wait(), 10)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as cancelled:
        await handle.result()
    assert isinstance(cancelled.value.cause, CancelledError), cancelled.value.cause
    assert [e.event_kind for e in machine.audit] == ["approval_requested", "approval_cancelled"]
    assert machine.writes == []
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(RUN_STATE) == "cancelled" and attrs.get(PENDING_APPROVAL) == NO_APPROVAL


async def test_a_flood_of_refused_decisions_is_audited_but_kept_bounded(env) -> None:
    from workflows.approval_gate import MAX_KEPT_REFUSALS

    client, machine, queue = env
    handle = await start(client, queue, plan(WRITE))
    rid = await pending(handle)
    flood = MAX_KEPT_REFUSALS + 5
    for n in range(flood):
        await handle.signal(
            AgentRunWorkflow.decide_signal, Decision(request_id=rid, approver=f"stranger-{n}", approved=True)
        )
    # a name with surrounding blanks is the same approver: "bob " approves as bob
    await handle.signal(AgentRunWorkflow.decide_signal, Decision(request_id=rid, approver="bob ", approved=True))
    result = await handle.result()
    assert result.status == "completed" and machine.writes[0].approver == "bob"
    assert result.ignored_decisions_total == flood and len(result.ignored_decisions) == MAX_KEPT_REFUSALS
    assert result.ignored_decisions[-1].decision.approver == f"stranger-{flood - 1}"
    assert sum(e.event_kind == "decision_refused" for e in machine.audit) == flood
