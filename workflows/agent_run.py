"""``AgentRunWorkflow``: one operator question, answered by running a plan's steps as activities.

Deterministic orchestration only. Every ``control_write`` step goes: limits check (activity) -> approval
request (audited) -> wait for a decision (Update ``decide`` with a validator, or Signal ``decide_signal``
checked the same way) with a durable timeout (expiry rejects) -> decision audited -> write (activity, once per
approved request). Any write that is not approved, refused or unverified stops later writes; the answer is
still composed.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATUS, RUN_USER

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from tern.models import (
        AgentRunRequest,
        AgentRunResult,
        AgentRunStatus,
        ApprovalRecord,
        ApprovalRequest,
        AuditEvent,
        ChannelReadStep,
        ControlWriteStep,
        Decision,
        IgnoredDecision,
        LogbookSearchStep,
        RespondStep,
        RunState,
        StepResult,
        WriteRecord,
    )
    from tern.models.activity_io import (
        ChannelReadInput,
        ComposeInput,
        LogbookSearchInput,
        WriteCheckInput,
        WriteInput,
    )

# Timeouts and retry policies (named, next to the workflow that uses them).
LOGBOOK_SEARCH_TIMEOUT = timedelta(seconds=60)
CHANNEL_READ_TIMEOUT = timedelta(seconds=30)
WRITE_CHECK_TIMEOUT = timedelta(seconds=30)
WRITE_TIMEOUT = timedelta(seconds=60)
AUDIT_TIMEOUT = timedelta(seconds=30)
COMPOSE_TIMEOUT = timedelta(seconds=120)
READ_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10),
                         maximum_attempts=5)
WRITE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=10),
                          maximum_attempts=3,
                          non_retryable_error_types=["WritesDisabled", "InvalidLimits", "WriteRefused",
                                                     "WriteOutcomeUnknown", "ValueChangedSinceApproval"])
# The audit must eventually be written: no write happens before its decision is recorded.
AUDIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60))


def _error_message(exc: BaseException) -> str:
    cause = exc.cause if isinstance(exc, ActivityError) and exc.cause else exc
    return str(getattr(cause, "message", None) or cause)


@workflow.defn
class AgentRunWorkflow:
    """Runs ``AgentRunRequest.plan``; returns ``AgentRunResult``. Update/Signal ``decide``, query ``status``."""

    @workflow.init
    def __init__(self, req: AgentRunRequest) -> None:
        self._req = req
        self._state: RunState = "running"
        self._current: str | None = None
        self._steps: list[StepResult] = []
        self._pending: ApprovalRequest | None = None
        self._decision: ApprovalRecord | None = None
        self._recorded: set[str] = set()  # request ids whose decision is in the audit table
        self._approvals: list[ApprovalRecord] = []
        self._ignored: list[IgnoredDecision] = []

    # -- run -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, req: AgentRunRequest) -> AgentRunResult:
        run_id = workflow.info().workflow_id
        workflow.upsert_search_attributes(
            [RUN_STATUS.value_set("running"), PENDING_APPROVAL.value_set(NO_APPROVAL), RUN_USER.value_set(req.user)]
        )
        if req.plan is None:
            raise ApplicationError("no plan given and no planner is configured; pass an explicit plan",
                                   type="NoPlan", non_retryable=True)
        status: str = "completed"
        error: str | None = None
        answer, citations = "", []
        writes: list[WriteRecord] = []
        writes_blocked = False
        for step in req.plan.steps:
            self._current = step.id
            workflow.set_current_details(f"step {step.id} ({step.kind})")
            try:
                if isinstance(step, LogbookSearchStep):
                    found = await workflow.execute_activity_method(
                        AgentActivities.search_logbook, LogbookSearchInput(
                            run_id=run_id, step_id=step.id, query=step.query, limit=step.limit, mode=step.mode),
                        start_to_close_timeout=LOGBOOK_SEARCH_TIMEOUT, retry_policy=READ_RETRY,
                        summary=f"logbook search ({step.mode}): {step.query[:80]}")
                    note = f" ({found.notice})" if found.notice else ""
                    result = StepResult(step_id=step.id, kind=step.kind, status="completed", hits=found.hits,
                                        message=f"{len(found.hits)} entries{note}")
                elif isinstance(step, ChannelReadStep):
                    readings = await workflow.execute_activity_method(
                        AgentActivities.read_channels, ChannelReadInput(
                            run_id=run_id, step_id=step.id, channels=step.channels),
                        start_to_close_timeout=CHANNEL_READ_TIMEOUT, retry_policy=READ_RETRY,
                        summary=f"read {', '.join(step.channels)[:100]}")
                    bad = [r.channel for r in readings if r.error]
                    result = StepResult(step_id=step.id, kind=step.kind,
                                        status="failed" if bad else "completed", readings=readings,
                                        message=f"unavailable: {', '.join(bad)}" if bad else
                                        f"{len(readings)} channels read")
                elif isinstance(step, ControlWriteStep):
                    if writes_blocked:
                        result = StepResult(step_id=step.id, kind=step.kind, status="skipped",
                                            message="skipped: an earlier step did not complete")
                    else:
                        result = await self._control_write(run_id, step)
                        if result.write is not None:
                            writes.append(result.write)
                elif isinstance(step, RespondStep):
                    composed = await workflow.execute_activity_method(
                        AgentActivities.compose_answer, ComposeInput(
                            run_id=run_id, user=req.user, query=req.query, instructions=step.instructions,
                            steps=self._steps),
                        start_to_close_timeout=COMPOSE_TIMEOUT, retry_policy=READ_RETRY,
                        summary="compose the answer")
                    answer, citations = composed.answer, composed.citations
                    result = StepResult(step_id=step.id, kind=step.kind, status="completed", answer=answer)
            except ActivityError as exc:
                result = StepResult(step_id=step.id, kind=step.kind, status="failed", message=_error_message(exc))
            self._steps.append(result)
            if result.status not in ("completed", "skipped"):
                writes_blocked = True
                if status == "completed":
                    status = {"rejected": "rejected", "timed_out": "timed_out"}.get(result.status, "failed")
                    error = f"step {step.id}: {result.message}"
        self._current = None
        self._set_state(status)  # type: ignore[arg-type]
        await workflow.wait_condition(workflow.all_handlers_finished)
        return AgentRunResult(
            run_id=run_id, status=status, query=req.query, user=req.user,
            steps=self._steps, writes=writes, approvals=self._approvals, ignored_decisions=self._ignored,
            answer=answer, citations=citations, error=error,
        )

    async def _control_write(self, run_id: str, step: ControlWriteStep) -> StepResult:
        req = self._req
        check = await workflow.execute_activity_method(
            AgentActivities.check_write, WriteCheckInput(
                run_id=run_id, step_id=step.id, channel=step.channel, value=step.value),
            start_to_close_timeout=WRITE_CHECK_TIMEOUT, retry_policy=READ_RETRY,
            summary=f"limits check {step.channel} -> {step.value:g}")
        if not check.allowed:
            await self._audit(AuditEvent(
                event_kind="write_refused", run_id=run_id, event_key=f"refused:{run_id}:{step.id}",
                step_id=step.id, actor=req.user, channel=step.channel, previous_value=check.current_value,
                value=step.value, comment=check.message, details={"violation": check.violation}))
            return StepResult(step_id=step.id, kind=step.kind, status="refused", check=check,
                              message=f"refused ({check.violation}): {check.message}")

        request_id = str(workflow.uuid4())
        now = workflow.now()
        timeout = timedelta(seconds=req.approval_timeout_s)
        units = f" {check.units}" if check.units else ""
        self._pending = ApprovalRequest(
            request_id=request_id, kind="control_write", step_id=step.id,
            summary=f"write {step.channel}: {check.current_value:g} -> {step.value:g}{units}"
            if check.current_value is not None else f"write {step.channel} = {step.value:g}{units}",
            requested_by=req.user, approvers=req.approvers, requested_at=now, expires_at=now + timeout,
            write=check, reason=step.reason)
        self._decision = None
        await self._audit(AuditEvent(
            event_kind="approval_requested", run_id=run_id, event_key=f"requested:{request_id}",
            step_id=step.id, request_id=request_id, actor=req.user, channel=step.channel,
            previous_value=check.current_value, value=step.value, comment=step.reason,
            details={"approvers": req.approvers, "expires_at": self._pending.expires_at.isoformat()}))
        self._set_state("awaiting_approval", pending="control_write")
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=timeout)
        except TimeoutError:
            self._decision = ApprovalRecord(request_id=request_id, kind="control_write", step_id=step.id,
                                            decision="timed_out", decided_at=workflow.now(), via="timeout",
                                            comment=f"no decision within {req.approval_timeout_s:g} s")
        decision = self._decision
        assert decision is not None
        self._pending = None
        await self._audit(AuditEvent(
            event_kind="approval_timed_out" if decision.decision == "timed_out" else "decision",
            run_id=run_id, event_key=f"decision:{request_id}", step_id=step.id, request_id=request_id,
            actor=decision.approver, decision=decision.decision, channel=step.channel, value=step.value,
            comment=decision.comment, details={"via": decision.via}))
        self._recorded.add(request_id)
        self._approvals.append(decision)
        self._set_state("running")
        if decision.decision != "approved":
            status = "timed_out" if decision.decision == "timed_out" else "rejected"
            return StepResult(step_id=step.id, kind=step.kind, status=status, check=check,
                              message=f"{decision.decision} by {decision.approver or 'timeout'}: {decision.comment}")
        record = await workflow.execute_activity_method(
            AgentActivities.write_channel, WriteInput(
                run_id=run_id, step_id=step.id, idempotency_key=f"{run_id}/{step.id}/{request_id}",
                channel=step.channel, value=step.value, request_id=request_id,
                approver=decision.approver or "", approved_from=check.current_value),
            start_to_close_timeout=WRITE_TIMEOUT, retry_policy=WRITE_RETRY,
            summary=f"write {step.channel} = {step.value:g}")
        return StepResult(step_id=step.id, kind=step.kind, status="completed" if record.verified else "failed",
                          check=check, write=record,
                          message=record.message if record.verified else f"write not verified: {record.message}")

    async def _audit(self, event: AuditEvent) -> None:
        await workflow.execute_activity_method(
            AgentActivities.record_audit, event, start_to_close_timeout=AUDIT_TIMEOUT, retry_policy=AUDIT_RETRY,
            summary=f"audit {event.event_kind}")

    def _set_state(self, state: RunState, pending: str = NO_APPROVAL) -> None:
        self._state = state
        workflow.upsert_search_attributes([RUN_STATUS.value_set(state), PENDING_APPROVAL.value_set(pending)])

    # -- decisions ---------------------------------------------------------------------------------------
    def _invalid_reason(self, d: Decision) -> str | None:
        pending = self._pending
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

    def _accept(self, d: Decision, via: str) -> ApprovalRecord:
        assert self._pending is not None
        self._decision = ApprovalRecord(
            request_id=d.request_id, kind=self._pending.kind, step_id=self._pending.step_id,
            decision="approved" if d.approved else "rejected", approver=d.approver, comment=d.comment,
            decided_at=workflow.now(), via=via)
        return self._decision

    @workflow.update
    async def decide(self, d: Decision) -> ApprovalRecord:
        """Decide the pending approval; returns once the decision is in the audit table."""
        record = self._accept(d, "update")
        await workflow.wait_condition(lambda: d.request_id in self._recorded)
        return record

    @decide.validator
    def _validate_decide(self, d: Decision) -> None:
        reason = self._invalid_reason(d)
        if reason:
            raise ValueError(reason)

    @workflow.signal
    async def decide_signal(self, d: Decision) -> None:
        """Same as ``decide`` for senders that cannot wait; an invalid decision is recorded and ignored."""
        reason = self._invalid_reason(d)
        if reason is None:
            self._accept(d, "signal")
            return
        ignored = IgnoredDecision(decision=d, reason=reason, received_at=workflow.now())
        self._ignored.append(ignored)
        run_id = workflow.info().workflow_id
        await self._audit(AuditEvent(
            event_kind="decision_ignored", run_id=run_id,
            event_key=f"ignored:{run_id}:{len(self._ignored)}", request_id=d.request_id, actor=d.approver,
            decision="approved" if d.approved else "rejected", comment=reason, details={"comment": d.comment}))

    @workflow.query
    def status(self) -> AgentRunStatus:
        """Where the run is now: state, current step, the pending approval request."""
        req = self._req
        return AgentRunStatus(
            run_id=workflow.info().workflow_id, state=self._state, user=req.user, query=req.query,
            current_step=self._current, steps_done=len(self._steps),
            steps_total=len(req.plan.steps) if req.plan else 0, pending=self._pending,
            approvals=self._approvals, ignored_decisions=self._ignored, started_at=workflow.info().start_time)
