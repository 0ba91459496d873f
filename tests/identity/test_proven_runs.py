"""Proven identity in the workflows (time-skipping server, activities replaced by name, the real check_proof and
ssh-keygen): who starts a run and who decides are principals, the two-person rule counts principals, a proof
for one request decides no other, and an approved write that cannot start in time is refused."""

from __future__ import annotations

import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from tern.approval.policy import ApprovalPolicy
from tern.identity.prove import decision_statement, ssh_proof, start_statement
from tern.models import AgentRunRequest, Decision
from tests.identity.keys import public
from tests.test_workflows_fast import WRITE, Machine, env, pending, plan, refused  # noqa: F401 (env: fixture)
from workflows.agent_run import AgentRunWorkflow


def proven_policy(keys: dict[str, Path], **rule: object) -> ApprovalPolicy:
    return ApprovalPolicy.model_validate(
        {
            "identity": "proven",
            "rules": [{"kinds": ["control_write"], "approvers": ["alice", "bob", "carol"], **rule}],
            "principals": {n: {"ssh_keys": [public(keys[n])]} for n in ("alice", "bob", "carol")},
        }
    )


async def start_signed(
    client: Client, queue: str, keys: dict[str, Path], *, user: str, signer: str | None, steps: list[dict]
) -> WorkflowHandle:
    workflow_id = f"fast-{uuid.uuid4().hex[:10]}"
    req = AgentRunRequest(user=user, query="q", plan=plan(*steps), python_approval_mode="disabled")
    if signer is not None:
        req.proof = ssh_proof(start_statement(workflow_id, req, signer), keys[signer])
    return await client.start_workflow(AgentRunWorkflow.run, req, id=workflow_id, task_queue=queue)


async def signed(
    handle: WorkflowHandle, keys: dict[str, Path], who: str, approved: bool = True, key: str = ""
) -> Decision:
    st = await handle.query(AgentRunWorkflow.status)
    assert st.pending is not None
    proof = ssh_proof(decision_statement(handle.id, st.pending, approved, who), keys[key or who])
    return Decision(request_id=st.pending.request_id, approver=who, approved=approved, surface="cli", proof=proof)


async def test_only_a_second_proven_person_can_approve_a_write(env, keys: dict[str, Path]) -> None:  # noqa: F811
    client, machine, queue = env
    machine.policy = proven_policy(keys)
    handle = await start_signed(client, queue, keys, user="alice", signer="alice", steps=[WRITE])
    rid = await pending(handle)
    assert "two-person rule" in await refused(handle, await signed(handle, keys, "alice"))  # her own write
    assert "a proof of identity is required" in await refused(
        handle,
        Decision(request_id=rid, approver="bob", approved=True),  # a raw Update naming bob
    )
    posing = await signed(handle, keys, "alice")
    posing.approver = "bob"  # alice's proof, bob's name
    assert "the proof stands for 'alice'" in await refused(handle, posing)
    record = await handle.execute_update(AgentRunWorkflow.decide, await signed(handle, keys, "bob"))
    assert record.decision == "approved" and record.approver == "bob" and record.proven
    result = await handle.result()
    assert result.status == "completed" and len(machine.writes) == 1 and machine.writes[0].approver == "bob"
    started = next(e for e in machine.audit if e.event_kind == "run_started")
    assert started.actor == "alice" and started.details["proof"]["scheme"] == "ssh"  # type: ignore[index]
    decision = next(e for e in machine.audit if e.event_kind == "decision")
    assert decision.details["proof"]["principal"] == "bob" and "write_by" in decision.details  # type: ignore[index]
    refusals = [e for e in machine.audit if e.event_kind == "decision_refused"]
    assert len(refusals) == 3 and all(e.details.get("identity") == "proven" for e in refusals)


async def test_a_start_must_be_proven_and_as_the_signer(env, keys: dict[str, Path]) -> None:  # noqa: F811
    client, machine, queue = env
    machine.policy = proven_policy(keys)
    as_bot = await start_signed(client, queue, keys, user="rf-bot", signer="alice", steps=[WRITE])
    result = await as_bot.result()
    assert result.status == "failed" and "start refused" in (result.error or "")
    assert "proof stands for 'alice'" in (result.error or "") and machine.writes == []
    unsigned = await start_signed(client, queue, keys, user="alice", signer=None, steps=[WRITE])
    assert "a proof of identity is required" in ((await unsigned.result()).error or "")
    assert [e.event_kind for e in machine.audit] == ["start_refused", "start_refused"]


async def test_two_approvals_need_two_principals_and_a_proof_decides_only_its_request(
    env,  # noqa: F811
    keys: dict[str, Path],
) -> None:
    client, machine, queue = env
    machine.policy = proven_policy(keys, min_approvals=2)
    second = {**WRITE, "id": "w2", "value": 3.0}
    handle = await start_signed(client, queue, keys, user="alice", signer="alice", steps=[WRITE, second])
    rid = await pending(handle)
    bob = await signed(handle, keys, "bob")
    await handle.execute_update(AgentRunWorkflow.decide, bob)
    again = await signed(handle, keys, "bob")
    assert "already approved" in await refused(handle, again)
    await handle.execute_update(AgentRunWorkflow.decide, await signed(handle, keys, "carol"))
    rid2 = await pending_other(handle, rid)
    replayed = bob.model_copy(update={"request_id": rid2})  # bob's proof for the first request, on the second
    assert "the proof is for request_id" in await refused(handle, replayed)
    await handle.execute_update(AgentRunWorkflow.decide, await signed(handle, keys, "bob", approved=False))
    result = await handle.result()
    assert [s.status for s in result.steps] == ["completed", "rejected"] and len(machine.writes) == 1


async def pending_other(handle: WorkflowHandle, previous: str) -> str:
    """The id of the next pending request after ``previous``."""
    for _ in range(500):
        rid = await pending(handle)
        if rid != previous:
            return rid
    raise AssertionError("no second request")


async def test_an_approval_that_cannot_start_its_write_in_time_is_refused(env, keys: dict[str, Path]) -> None:  # noqa: F811
    client, machine, queue = env
    machine.policy = proven_policy(keys)
    machine.write_by_s = 1e-6  # the write-by deadline passes while the decision is audited
    handle = await start_signed(client, queue, keys, user="alice", signer="alice", steps=[WRITE])
    await pending(handle)
    await handle.execute_update(AgentRunWorkflow.decide, await signed(handle, keys, "bob"))
    result = await handle.result()
    assert machine.writes == [] and result.steps[0].status == "refused"
    assert "approval expired" in result.steps[0].message
    stale = [e for e in machine.audit if e.event_kind == "write_refused"]
    assert stale and stale[0].details["violation"] == "approval_expired"  # type: ignore[index]


async def test_declared_mode_keeps_names_as_typed(env) -> None:  # noqa: F811
    client, machine, queue = env
    machine.policy = ApprovalPolicy.model_validate({"rules": [{"kinds": ["control_write"], "approvers": ["bob"]}]})
    req = AgentRunRequest(user="alice", query="q", plan=plan(WRITE), python_approval_mode="disabled")
    handle = await client.start_workflow(AgentRunWorkflow.run, req, id=f"fast-{uuid.uuid4().hex[:8]}", task_queue=queue)
    rid = await pending(handle)
    await handle.execute_update(AgentRunWorkflow.decide, Decision(request_id=rid, approver="bob", approved=True))
    assert (await handle.result()).status == "completed"
    assert not any(c.scheme != "declared" for c in machine.checks)  # the start was checked, as declared
