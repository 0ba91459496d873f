"""The approval gate shared by Tern workflows: one pending request at a time, decided by the ``decide``
Update (validated) or Signal (checked the same way; invalid ones recorded and audited), expiring after a
durable timeout (expiry rejects), every request and decision written to the audit table before the workflow
goes on. Workflow code only: deterministic, all I/O through activities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATUS

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from tern.models import (
        ApprovalKind,
        ApprovalRecord,
        ApprovalRequest,
        AuditEvent,
        Decision,
        IgnoredDecision,
        LimitsCheck,
        RunState,
    )
    from tern.models.approval import CodeReview

AUDIT_TIMEOUT = timedelta(seconds=30)
# The audit must eventually be written: nothing happens after a request or decision before it is recorded.
AUDIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60))


async def audit(event: AuditEvent) -> None:
    """Record ``event`` through the ``record_audit`` activity (idempotent by ``event_key``)."""
    await workflow.execute_activity_method(
        AgentActivities.record_audit, event, start_to_close_timeout=AUDIT_TIMEOUT, retry_policy=AUDIT_RETRY,
        summary=f"audit {event.event_kind}")


class ApprovalGate:
    """Approval state of one workflow. The workflow's ``decide`` handlers delegate here.

    Args:
        requester: the user who started the run.
        approvers: who may decide (non-empty).
        timeout_s: how long a request waits before it is rejected as ``timed_out``, seconds.
        on_state: called with ``(state, pending_kind)`` when the run starts or stops waiting.
    """

    def __init__(self, requester: str, approvers: list[str], timeout_s: float,
                 on_state: Callable[[RunState, str], None]) -> None:
        self.requester = requester
        self.approvers = approvers
        self.timeout = timedelta(seconds=timeout_s)
        self.on_state = on_state
        self.pending: ApprovalRequest | None = None
        self._decision: ApprovalRecord | None = None
        self._recorded: set[str] = set()
        self.approvals: list[ApprovalRecord] = []
        self.ignored: list[IgnoredDecision] = []

    async def request(self, *, kind: ApprovalKind, step_id: str, summary: str, reason: str = "",
                      write: LimitsCheck | None = None, code: CodeReview | None = None,
                      audit_details: dict[str, object] | None = None) -> ApprovalRecord:
        """Ask for a decision and wait for it (or for the timeout). Returns the audited decision."""
        run_id = workflow.info().workflow_id
        request_id = str(workflow.uuid4())
        now = workflow.now()
        self.pending = ApprovalRequest(
            request_id=request_id, kind=kind, step_id=step_id, summary=summary, requested_by=self.requester,
            approvers=self.approvers, requested_at=now, expires_at=now + self.timeout, write=write, code=code,
            reason=reason)
        self._decision = None
        await audit(AuditEvent(
            event_kind="approval_requested", run_id=run_id, event_key=f"requested:{request_id}", step_id=step_id,
            request_id=request_id, actor=self.requester, comment=reason or summary,
            channel=write.channel if write else None, previous_value=write.current_value if write else None,
            value=write.value if write else None,
            details={"kind": kind, "approvers": self.approvers, "expires_at": self.pending.expires_at.isoformat(),
                     **(audit_details or {})}))
        self.on_state("awaiting_approval", kind)
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=self.timeout)
        except asyncio.CancelledError:  # the run was cancelled while waiting: close the request in the audit
            self.pending = None
            await audit(AuditEvent(
                event_kind="approval_cancelled", run_id=run_id, event_key=f"cancelled:{request_id}",
                step_id=step_id, request_id=request_id, actor=self.requester, comment="run cancelled",
                details={"kind": kind}))
            raise
        except TimeoutError:
            self._decision = ApprovalRecord(
                request_id=request_id, kind=kind, step_id=step_id, decision="timed_out", decided_at=workflow.now(),
                via="timeout", comment=f"no decision within {self.timeout.total_seconds():g} s")
        decision = self._decision
        assert decision is not None
        self.pending = None
        await audit(AuditEvent(
            event_kind="approval_timed_out" if decision.decision == "timed_out" else "decision",
            run_id=run_id, event_key=f"decision:{request_id}", step_id=step_id, request_id=request_id,
            actor=decision.approver, decision=decision.decision, channel=write.channel if write else None,
            value=write.value if write else None, comment=decision.comment,
            details={"kind": kind, "via": decision.via}))
        self._recorded.add(request_id)
        self.approvals.append(decision)
        self.on_state("running", NO_APPROVAL)
        return decision

    def invalid_reason(self, d: Decision) -> str | None:
        """Why ``d`` cannot decide the pending request, or None when it can."""
        pending = self.pending
        if d.request_id in self._recorded or (self._decision and self._decision.request_id == d.request_id):
            return f"request {d.request_id} is already decided"
        if pending is None:
            return "the run is not waiting for an approval"
        if d.request_id != pending.request_id:
            return f"stale or unknown request id {d.request_id} (pending request: {pending.request_id})"
        if d.approver not in pending.approvers:
            return f"{d.approver} is not an approver of this run (approvers: {', '.join(pending.approvers)})"
        if self._decision is not None:
            return f"request {d.request_id} is already decided"
        return None

    def validate(self, d: Decision) -> None:
        """The Update validator: raises ``ValueError`` (the decision never enters history)."""
        reason = self.invalid_reason(d)
        if reason:
            raise ValueError(reason)

    def _accept(self, d: Decision, via: Literal["update", "signal"]) -> ApprovalRecord:
        assert self.pending is not None
        self._decision = ApprovalRecord(
            request_id=d.request_id, kind=self.pending.kind, step_id=self.pending.step_id,
            decision="approved" if d.approved else "rejected", approver=d.approver, comment=d.comment,
            decided_at=workflow.now(), via=via)
        return self._decision

    async def decide_update(self, d: Decision) -> ApprovalRecord:
        """The Update handler: accept, then return once the decision is in the audit table."""
        record = self._accept(d, "update")
        await workflow.wait_condition(lambda: d.request_id in self._recorded)
        return record

    async def decide_signal(self, d: Decision) -> None:
        """The Signal handler: accept a valid decision; record and audit an invalid one as ignored."""
        reason = self.invalid_reason(d)
        if reason is None:
            self._accept(d, "signal")
            return
        self.ignored.append(IgnoredDecision(decision=d, reason=reason, received_at=workflow.now()))
        run_id = workflow.info().workflow_id
        await audit(AuditEvent(
            event_kind="decision_ignored", run_id=run_id, event_key=f"ignored:{run_id}:{len(self.ignored)}",
            request_id=d.request_id, actor=d.approver, decision="approved" if d.approved else "rejected",
            comment=reason, details={"comment": d.comment}))


def set_run_state(state: RunState, pending: str) -> None:
    """Upsert the run-status and pending-approval search attributes."""
    workflow.upsert_search_attributes([RUN_STATUS.value_set(state), PENDING_APPROVAL.value_set(pending)])


class ApprovalHandlers:
    """Mixin giving a workflow the ``decide`` Update (validated) and the ``decide_signal`` Signal, both
    delegating to ``self._gate``. One definition for every workflow that asks for approvals, so chat bots and
    the CLI send the same message to any of them."""

    _gate: ApprovalGate

    @workflow.update
    async def decide(self, d: Decision) -> ApprovalRecord:
        """Decide the pending approval; returns once the decision is in the audit table."""
        return await self._gate.decide_update(d)

    @decide.validator
    def _validate_decide(self, d: Decision) -> None:
        self._gate.validate(d)

    @workflow.signal
    async def decide_signal(self, d: Decision) -> None:
        """Same as ``decide`` for senders that cannot wait; an invalid decision is recorded and ignored."""
        await self._gate.decide_signal(d)
