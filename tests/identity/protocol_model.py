"""A model check of the approval protocol under proven identity (Hypothesis ``RuleBasedStateMachine``).

Random interleavings of run starts, decisions (valid, forged with another's key, replayed, stale, declared-only,
meant for another request; by Update and by Signal, from each principal), approval timeouts (the time-skipping
server skips the hours), cancellations, worker restarts (a new worker replays the histories) and policy reloads
(``min_approvals`` 1 or 2) drive :class:`~workflows.agent_run.AgentRunWorkflow` on the time-skipping test server,
with the activities replaced by name (``tests.test_workflows_fast.Machine``: the real ``check_proof`` and
ssh-keygen). After every step:

1. no write without the required number of distinct proven principals, none of them the requester;
2. no proof counted twice (each accepted statement once);
3. no decision counted for a request other than the one its statement names;
4. every refused Update is audited (one ``decision_refused`` row each);
5. the audit has no duplicate event key (the audit is idempotent by key).

Used by ``tests/identity/test_protocol_model.py`` (a bounded run in the suite) and
``benchmarks/identity_model_check.py`` (a longer profile; figures in benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from temporalio.client import (
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tern.approval.policy import ApprovalPolicy
from tern.identity.prove import decision_statement, ssh_proof, start_statement
from tern.identity.statement import make_statement, request_digest, sha256_hex
from tern.models import AgentRunRequest, Decision
from tests.identity.keys import public
from tests.test_workflows_fast import WRITE, Machine, plan
from workflows.agent_run import AgentRunWorkflow
from workflows.python_execution import PythonExecutionWorkflow

log = logging.getLogger(__name__)
PEOPLE = ("alice", "bob", "carol")
TIMEOUT_S = 3600.0
RARE = 6
RPC_TIMEOUT = timedelta(seconds=15)  # a call no worker answers (a closed run, a restart) gives up, not hangs


@dataclass
class Harness:
    """What the state machine drives: the test's event loop (running in the main thread while the machine runs in
    another), the time-skipping server, a worker, the activity stand-ins."""

    loop: asyncio.AbstractEventLoop
    env: WorkflowEnvironment
    keys: dict[str, Path]
    machine: Machine = field(default_factory=Machine)
    queue: str = field(default_factory=lambda: f"model-{uuid.uuid4().hex[:8]}")
    worker: Worker | None = None
    task: asyncio.Task[None] | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the harness's loop (the test's running loop, where the worker polls) from the thread the
        state machine runs in, and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def start_worker_here(self) -> None:
        """Start a worker on the harness's loop; call from that loop (the test itself)."""
        self.worker = Worker(
            self.env.client,
            task_queue=self.queue,
            workflows=[AgentRunWorkflow, PythonExecutionWorkflow],
            activities=self.machine.activities(),
            # No cache, so no sticky queue: every workflow task replays the history (as after a worker kill), and
            # a restarted worker is not waited for on the sticky queue of the one it replaces.
            max_cached_workflows=0,
        )
        self.task = asyncio.get_running_loop().create_task(self.worker.run())

    async def stop_worker_here(self) -> None:
        """Stop the worker; await from the harness's loop."""
        if self.worker is not None:
            await self.worker.shutdown()
        if self.task is not None:
            await self.task
        self.worker = self.task = None

    def restart_worker(self) -> None:
        """Stop the worker and start a new one (from the state machine's thread)."""

        async def restart() -> None:
            await self.stop_worker_here()
            self.start_worker_here()

        self.run(restart())

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1


def policy(keys: dict[str, Path], min_approvals: int) -> ApprovalPolicy:
    return ApprovalPolicy.model_validate(
        {
            "identity": "proven",
            "rules": [{"kinds": ["control_write"], "approvers": list(PEOPLE), "min_approvals": min_approvals}],
            "principals": {n: {"ssh_keys": [public(keys[n])]} for n in PEOPLE},
        }
    )


class ApprovalProtocol(RuleBasedStateMachine):
    """The state machine; bind a :class:`Harness` with :meth:`bind` before Hypothesis runs it."""

    harness: Harness

    @classmethod
    def bind(cls, harness: Harness) -> type[ApprovalProtocol]:
        return type("BoundApprovalProtocol", (cls,), {"harness": harness})

    def __init__(self) -> None:
        super().__init__()
        self.h = self.harness
        self.m = self.h.machine
        self.handle: WorkflowHandle | None = None
        self.requester = "alice"
        self.sent: list[Decision] = []  # every decision sent, for replays
        self.statements: dict[str, Any] = {}  # statement sha256 -> the statement (parsed) we signed
        self.refused_updates = 0
        self.audit_start = len(self.m.audit)
        self.writes_start = len(self.m.writes)
        # The runs this example started: a run of an earlier example, terminated at its teardown, may still have a
        # record_audit activity in flight (a Signal's decision), whose row then lands in this example's window of
        # the shared audit list (seen once under a parallel run's load: a proof this example never signed).
        self.run_ids: set[str] = set()
        # Something was sent that the worker handles after the call returns (a Signal, a cancel, a skipped hour,
        # an unanswered Update, a start): the invariants wait for a query first. An answered Update needs none: it
        # returns after its handler (and the audit of a refusal) ran. Each query replays the whole history (no
        # cache): querying only when needed halves the queries, the bulk of this check's time.
        self.unsettled = False

    # --- helpers ---------------------------------------------------------------------------------------------
    def _audit(self) -> list[Any]:
        """This example's audit rows: since it started, and of the runs it started (:attr:`run_ids`)."""
        return [e for e in self.m.audit[self.audit_start :] if e.workflow_id in self.run_ids]

    def _pending(self) -> Any:
        if self.handle is None:
            return None
        try:
            pending = self.h.run(self.handle.query(AgentRunWorkflow.status, rpc_timeout=RPC_TIMEOUT)).pending
            self.unsettled = False
            return pending
        except (RPCError, WorkflowQueryFailedError):
            self.h.count("queries unanswered")
            return None

    def _sign(self, who: str, pending: Any, approved: bool, key_of: str | None = None, **kw: Any) -> Decision:
        assert self.handle is not None
        st_ = decision_statement(self.handle.id, pending, approved, who, **kw)
        proof = ssh_proof(st_, self.h.keys[key_of or who])
        self.statements[sha256_hex(proof.statement)] = st_
        return Decision(request_id=pending.request_id, approver=who, approved=approved, surface="cli", proof=proof)

    def _send(self, d: Decision, via: str) -> None:
        log.debug("send %s %s approved=%s proof=%s", via, d.approver, d.approved, d.proof is not None)
        assert self.handle is not None
        self.sent.append(d)
        if via == "signal":
            self.h.count("signals")
            self.unsettled = True
            try:
                self.h.run(self.handle.signal(AgentRunWorkflow.decide_signal, d))
            except RPCError:
                pass  # the run closed meanwhile
            return
        try:
            self.h.run(self.handle.execute_update(AgentRunWorkflow.decide, d, rpc_timeout=RPC_TIMEOUT))
            self.h.count("updates accepted")
        except WorkflowUpdateFailedError:
            self.refused_updates += 1
            self.h.count("updates refused")
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError):
            self.unsettled = True
            self.h.count("updates unanswered")  # the run closed meanwhile, or no worker answered in time

    def _settle(self) -> None:
        """Let the worker process what was sent (signals are asynchronous): a query answers after them. Only when
        something asynchronous was sent since the last answered query (``unsettled``)."""
        if self.unsettled:
            self._pending()

    # --- rules -----------------------------------------------------------------------------------------------
    @initialize(min_approvals=st.integers(1, 2), requester=st.sampled_from(PEOPLE))
    def start(self, min_approvals: int, requester: str) -> None:
        self.m.identity = "proven"
        self.m.policy = policy(self.h.keys, min_approvals)
        self.requester = requester
        self._start_run()

    def _start_run(self) -> None:
        workflow_id = f"model-{uuid.uuid4().hex[:10]}"
        second = {**WRITE, "id": "w2", "value": 3.0}
        req = AgentRunRequest(
            user=self.requester,
            query="q",
            plan=plan(WRITE, second),
            python_approval_mode="disabled",
            approval_timeout_s=TIMEOUT_S,
        )
        req.proof = ssh_proof(start_statement(workflow_id, req, self.requester), self.h.keys[self.requester])
        self.run_ids.add(workflow_id)
        self.handle = self.h.run(
            self.h.env.client.start_workflow(AgentRunWorkflow.run, req, id=workflow_id, task_queue=self.h.queue)
        )
        self.unsettled = True
        self.h.count("runs")

    @rule(who=st.sampled_from(PEOPLE), approved=st.booleans(), via=st.sampled_from(["update", "signal"]))
    def valid_decision(self, who: str, approved: bool, via: str) -> None:
        pending = self._pending()
        if pending is not None:
            self._send(self._sign(who, pending, approved), via)

    @rule(who=st.sampled_from(PEOPLE))
    def valid_approval(self, who: str) -> None:
        pending = self._pending()
        if pending is not None:
            self._send(self._sign(who, pending, True), "update")

    @rule(who=st.sampled_from(PEOPLE), key_of=st.sampled_from([*PEOPLE, "mallory"]))
    def forged(self, who: str, key_of: str) -> None:
        pending = self._pending()
        if pending is not None and key_of != who:
            self._send(self._sign(who, pending, True, key_of=key_of), "update")

    @precondition(lambda self: bool(self.sent))
    @rule(n=st.integers(0, 1000), via=st.sampled_from(["update", "signal"]))
    def replayed(self, n: int, via: str) -> None:
        self._send(self.sent[n % len(self.sent)], via)

    @rule(who=st.sampled_from(PEOPLE))
    def stale(self, who: str) -> None:
        pending = self._pending()
        if pending is None or self.handle is None:
            return
        old = make_statement(
            purpose="decision",
            workflow_id=self.handle.id,
            request_id=pending.request_id,
            action="approve",
            digest=request_digest(pending),
            signer=who,
            now=datetime.now(UTC) - timedelta(hours=2),
        )
        d = Decision(request_id=pending.request_id, approver=who, approved=True, proof=ssh_proof(old, self.h.keys[who]))
        self._send(d, "update")

    @rule(who=st.sampled_from(PEOPLE), via=st.sampled_from(["update", "signal"]))
    def declared_only(self, who: str, via: str) -> None:
        pending = self._pending()
        if pending is not None:
            self._send(Decision(request_id=pending.request_id, approver=who, approved=True), via)

    @rule(who=st.sampled_from(PEOPLE))
    def for_another_request(self, who: str) -> None:
        pending = self._pending()
        if pending is None:
            return
        d = self._sign(who, pending, True)
        other = pending.model_copy(update={"request_id": str(uuid.uuid4())})
        moved = self._sign(who, other, True)  # a valid proof for a request that is not pending
        self._send(d.model_copy(update={"proof": moved.proof}), "update")

    # Rare events (one draw in RARE): a run that is cancelled or times out at once checks little.
    @rule(draw=st.integers(0, RARE - 1))
    def time_out(self, draw: int) -> None:
        if draw == 0 and self._pending() is not None:
            self.unsettled = True
            try:
                self.h.run(self.h.env.sleep(timedelta(seconds=TIMEOUT_S + 60)))
                self.h.count("timeouts")
            except RPCError:  # the test server did not skip in time (a worker restarting): no timeout this step
                self.h.count("sleeps unanswered")

    @rule(draw=st.integers(0, RARE - 1))
    def cancel(self, draw: int) -> None:
        if draw == 0 and self.handle is not None:
            self.unsettled = True
            try:
                self.h.run(self.handle.cancel())
                self.h.count("cancels")
            except RPCError:
                pass

    @rule(draw=st.integers(0, RARE - 1))
    def restart_worker(self, draw: int) -> None:
        if draw > 1:
            return
        self.h.restart_worker()
        self.h.count("worker restarts")

    @rule(min_approvals=st.integers(1, 2))
    def reload_policy(self, min_approvals: int) -> None:
        self.m.policy = policy(self.h.keys, min_approvals)
        self.h.count("policy reloads")

    @rule(requester=st.sampled_from(PEOPLE))
    def new_run(self, requester: str) -> None:
        if self.handle is not None:
            desc = self.h.run(self.handle.describe())
            if desc.status is not None and desc.status.name == "RUNNING":
                return
        self.requester = requester
        self._start_run()

    # --- invariants ------------------------------------------------------------------------------------------
    @invariant()
    def no_write_without_enough_proven_principals(self) -> None:
        self._settle()
        audit = self.m.audit
        for w in self.m.writes[self.writes_start :]:
            asked = next(e for e in audit if e.event_kind == "approval_requested" and e.request_id == w.request_id)
            need = int(asked.details["min_approvals"])
            approvals = [
                e
                for e in audit
                if e.event_kind == "decision" and e.request_id == w.request_id and e.decision == "approved"
            ]
            proofs = [e.details.get("proof") for e in approvals]
            assert all(isinstance(p, dict) and p["scheme"] == "ssh" for p in proofs), proofs
            principals = {p["principal"] for p in proofs}  # type: ignore[index]
            assert len(principals) >= need, (w.request_id, principals, need)
            requester = asked.actor
            assert requester not in principals, (requester, principals)

    @invariant()
    def proofs_count_once_and_only_for_their_request(self) -> None:
        seen: set[str] = set()
        for e in self._audit():
            proof = e.details.get("proof") if e.event_kind == "decision" else None
            if not isinstance(proof, dict):
                continue
            sha = str(proof["statement_sha256"])
            assert sha not in seen, f"proof {sha} counted twice"
            seen.add(sha)
            statement = self.statements.get(sha)
            assert statement is not None and statement.request_id == e.request_id, (sha, e.request_id)

    @invariant()
    def every_refused_update_is_audited(self) -> None:
        refused = [e for e in self._audit() if e.event_kind == "decision_refused" and e.details.get("via") == "update"]
        assert len(refused) == self.refused_updates, (len(refused), self.refused_updates)

    @invariant()
    def audit_keys_are_unique(self) -> None:
        keys = [e.event_key for e in self.m.audit]
        assert len(keys) == len(set(keys))

    def teardown(self) -> None:
        if self.handle is not None:
            try:
                self.h.run(self.handle.terminate("model check done"))
            except RPCError:
                pass
        self.h.count("states checked")
