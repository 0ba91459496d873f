"""The control-write step of ``AgentRunWorkflow``: limits check (activity) -> approval (``ApprovalGate``) ->
write (activity, once per approved request, verified; the protocol: ``tern.control.write``) -> for a ring magnet
whose effect was predicted: measured against predicted (BPMs and tunes read before the write and after the settle
time; issue 23)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.approval_gate import audit, run_key
from workflows.declined import decided_by, declined_result
from workflows.run_base import CA_RETRY, IDENTITY_PATCH, RunSteps
from workflows.search_attributes import NO_APPROVAL

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from activities.freeze import FreezeActivities
    from tern.models import AuditEvent, ControlWriteStep, LimitsCheck, RunState, StepResult
    from tern.models.activity_io import WriteCheckInput, WriteInput
    from tern.models.freeze import HoldRequest
    from tern.models.plan import OrbitCorrectStep
    from tern.models.ring import (
        MeasuredEffect,
        MeasureEffectInput,
        OrbitCorrectInput,
        PredictedEffect,
        RingSnapshot,
        RingSnapshotInput,
    )

# Writes consult the facility write freeze (tern freeze) before they execute; runs started before it replay
# without the hold_write activity.
FREEZE_PATCH = "facility-freeze-1"
HOLD_TIMEOUT = timedelta(seconds=30)
HOLD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)  # no write on doubt
FREEZE_RECHECK = timedelta(minutes=10)
WRITE_CHECK_TIMEOUT = timedelta(seconds=30)
RING_PATCH = "ring-measured-effect-1"  # runs from before issue 23 replay without the snapshot and measurement
RING_READ_TIMEOUT = timedelta(seconds=30)
RING_MEASURE_TIMEOUT = timedelta(minutes=5)  # includes ring.settle_s; heartbeats every second meanwhile
RING_MEASURE_HEARTBEAT = timedelta(seconds=10)
RING_RETRY = RetryPolicy(maximum_attempts=3)
RING_CORRECT_TIMEOUT = timedelta(minutes=2)  # a response matrix: ~33 closed-orbit searches
WRITE_TIMEOUT = timedelta(seconds=60)
# A write attempt whose worker died is retried once its heartbeat lapses; the retry settles it by reading (or puts
# once more when the channel still holds the value shown to the approver),
# no earlier than TERN_CONTROL__WRITE_SETTLE_DELAY_S after the claim (tern.control.write settles an interrupted
# write).
WRITE_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=12,  # as CA_RETRY: each attempt re-reads and re-checks before any put
    non_retryable_error_types=[
        "WritesDisabled",
        "InvalidLimits",
        "WriteRefused",
        "WriteOutcomeUnknown",
        "ValueChangedSinceApproval",
    ],
)


class WriteSteps(RunSteps):
    """Handlers of the ``control_write`` and ``orbit_correct`` step kinds."""

    async def _orbit_correct(self, step: OrbitCorrectStep) -> StepResult:
        """Corrector writes from the ring model (activity), then each as a ``control_write`` (check with its
        predicted effect -> approval -> write -> measured against predicted), in order; stops at the first that
        does not complete."""
        if self._writes_blocked:
            return StepResult(
                step_id=step.id, kind=step.kind, status="skipped", message="skipped: an earlier step did not complete"
            )
        plan = await workflow.execute_activity_method(
            AgentActivities.plan_orbit_correction,
            OrbitCorrectInput(bpms=dict(step.bpms)),
            start_to_close_timeout=RING_CORRECT_TIMEOUT,
            retry_policy=RING_RETRY,
            summary=f"orbit correction for {', '.join(step.bpms)}",
        )
        if plan.error or not plan.writes:
            why = plan.error or "the model asks for no corrector change"
            return StepResult(step_id=step.id, kind=step.kind, status="failed", message=f"no correction: {why}")
        expected = ", ".join(f"{ch} {mm:+.3f} mm" for ch, mm in plan.expected.items())
        subs: list[StepResult] = []
        for n, (channel, amps) in enumerate(plan.writes.items(), start=1):
            sub = ControlWriteStep(
                id=f"{step.id}-{n}",
                channel=channel,
                value=amps,
                reason=f"orbit correction {n}/{len(plan.writes)} (model expects {expected}): {step.reason}",
            )
            result = await self._control_write(sub)
            subs.append(result)
            if result.status != "completed":
                break
        done = sum(1 for r in subs if r.status == "completed")
        status = "completed" if done == len(plan.writes) else subs[-1].status
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status=status,
            sources=subs,
            message=f"{done} of {len(plan.writes)} corrector writes done; the model expected {expected} "
            f"(rms at the other BPMs {plan.residual_rms_mm:.3f} mm)",
        )

    _thawed_epoch: int = 0  # the latest thaw's epoch (signal facility_thawed from the freeze workflow)

    def _on_state(self, state: RunState, pending: str) -> None:
        raise NotImplementedError  # AgentRunWorkflow's

    @workflow.signal(name="facility_thawed")
    def facility_thawed(self, epoch: int) -> None:
        """The facility write freeze was thawed (epoch ``epoch``): a held write asks again and goes on."""
        self._thawed_epoch = max(self._thawed_epoch, epoch)

    async def _control_write(self, step: ControlWriteStep) -> StepResult:
        """Limits check -> approval -> write (once) with verification. Skipped after a step that did not
        complete."""
        if self._writes_blocked:
            return StepResult(
                step_id=step.id, kind=step.kind, status="skipped", message="skipped: an earlier step did not complete"
            )
        workflow_id = self._workflow_id
        check = await workflow.execute_activity_method(
            AgentActivities.check_write,
            WriteCheckInput(workflow_id=workflow_id, step_id=step.id, channel=step.channel, value=step.value),
            start_to_close_timeout=WRITE_CHECK_TIMEOUT,
            retry_policy=CA_RETRY,
            summary=f"limits check {step.channel} -> {step.value:g}",
        )
        if not check.allowed:
            await self._audit_refusal(
                "write_refused",
                step.id,
                check.message,
                {"violation": check.violation},
                channel=step.channel,
                previous_value=check.current_value,
                value=step.value,
            )
            return StepResult(
                step_id=step.id,
                kind=step.kind,
                status="refused",
                check=check,
                message=f"refused ({check.violation}): {check.message}",
            )
        units = f" {check.units}" if check.units else ""
        summary = (
            f"write {step.channel}: {check.current_value:g} -> {step.value:g}{units}"
            if check.current_value is not None
            else f"write {step.channel} = {step.value:g}{units}"
        )
        decision = await self._gate.request(
            kind="control_write", step_id=step.id, summary=summary, reason=step.reason, write=check
        )
        if decision.decision != "approved":
            return declined_result(step, decision, f"{decided_by(decision)}: {decision.comment}", check=check)
        paused = await self._wait_while_frozen(step, decision.request_id)
        start_by: timedelta | None = None
        if decision.write_by is not None and workflow.patched(IDENTITY_PATCH):
            start_by = decision.write_by + paused - workflow.now()  # the freeze paused the write-by deadline
            if start_by <= timedelta(0):
                return await self._stale_approval(step, check, decision.write_by.isoformat())
        effect = check.predicted_effect
        before: RingSnapshot | None = None
        if effect is not None and effect.predicted and effect.at_bpms and workflow.patched(RING_PATCH):
            before = await workflow.execute_activity_method(
                AgentActivities.ring_snapshot,
                RingSnapshotInput(bpms=list(effect.at_bpms)),
                start_to_close_timeout=RING_READ_TIMEOUT,
                retry_policy=RING_RETRY,
                summary="orbit and tunes before the write",
            )
        record = await workflow.execute_activity_method(
            AgentActivities.write_channel,
            WriteInput(
                workflow_id=workflow_id,
                step_id=step.id,
                idempotency_key=f"{workflow_id}/{step.id}/{decision.request_id}",
                channel=step.channel,
                value=step.value,
                request_id=decision.request_id,
                approver=", ".join(decision.approved_by) or decision.approver or "",
                approved_from=check.current_value,
            ),
            start_to_close_timeout=WRITE_TIMEOUT,
            schedule_to_start_timeout=start_by,
            heartbeat_timeout=WRITE_HEARTBEAT_TIMEOUT,
            retry_policy=WRITE_RETRY,
            summary=f"write {step.channel} = {step.value!r}",
        )
        self._writes.append(record)
        measured: MeasuredEffect | None = None
        if before is not None and effect is not None and record.verified:
            measured = await self._measure(step, check, effect, before)
        message = record.message if record.verified else f"write not verified: {record.message}"
        if measured is not None:
            message += f"; measured vs predicted: {measured.message}"
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed" if record.verified else "failed",
            check=check,
            write=record,
            measured_effect=measured,
            message=message,
        )

    async def _measure(
        self, step: ControlWriteStep, check: LimitsCheck, effect: PredictedEffect, before: RingSnapshot
    ) -> MeasuredEffect:
        """Measured against predicted after the settle time; an unexpected effect is audited
        (``effect_unexpected``) with the inverse write proposed in its details, never performed."""
        measured = await workflow.execute_activity_method(
            AgentActivities.measure_effect,
            MeasureEffectInput(
                channel=step.channel, previous_value=check.current_value, value=step.value, effect=effect, before=before
            ),
            start_to_close_timeout=RING_MEASURE_TIMEOUT,
            heartbeat_timeout=RING_MEASURE_HEARTBEAT,
            retry_policy=RING_RETRY,
            summary=f"measured vs predicted after {step.channel}",
        )
        if measured.unexpected:
            await audit(
                AuditEvent(
                    event_kind="effect_unexpected",
                    workflow_id=self._workflow_id,
                    event_key=f"effect-unexpected:{run_key()}:{step.id}",
                    step_id=step.id,
                    actor="tern",
                    channel=step.channel,
                    previous_value=check.current_value,
                    value=step.value,
                    comment=measured.message,
                    details={
                        "worst_ratio": measured.worst_ratio,
                        "proposed_inverse": list(measured.proposed_inverse) if measured.proposed_inverse else None,
                    },
                )
            )
        return measured

    async def _wait_while_frozen(self, step: ControlWriteStep, request_id: str) -> timedelta:
        """Before the write: while the facility is frozen (``tern freeze``), wait for the thaw; returns how long the
        write was held (its write-by deadline moves by as much). The ``hold_write`` activity asks the freeze
        workflow, which records and audits the write as held and signals ``facility_thawed`` at the thaw; the run
        then asks again (a re-freeze holds it again) and audits ``write_released``. A thaw signal lost to a
        restart is caught by re-asking every ``FREEZE_RECHECK``. The approval is kept throughout."""
        if not workflow.patched(FREEZE_PATCH):
            return timedelta(0)
        hold = HoldRequest(
            workflow_id=self._workflow_id,
            step_id=step.id,
            channel=step.channel,
            value=step.value,
            request_id=request_id,
        )
        paused = timedelta(0)
        while True:
            st = await workflow.execute_activity_method(
                FreezeActivities.hold_write,
                hold,
                start_to_close_timeout=HOLD_TIMEOUT,
                retry_policy=HOLD_RETRY,
                summary=f"write freeze? before writing {step.channel}",
            )
            if not st.frozen:
                break
            held_at, epoch = workflow.now(), st.epoch
            self._on_state("frozen", NO_APPROVAL)
            workflow.set_current_details(f"**Write held** (step `{step.id}`, {step.channel}): {st.describe()}")
            try:
                await workflow.wait_condition(
                    lambda e=epoch: self._thawed_epoch > e,  # type: ignore[misc]
                    timeout=FREEZE_RECHECK,
                    timeout_summary=f"re-check the write freeze (held since epoch {epoch})",
                )
            except TimeoutError:
                pass
            paused += workflow.now() - held_at
        if paused:
            self._on_state("running", NO_APPROVAL)
            await audit(
                AuditEvent(
                    event_kind="write_released",
                    workflow_id=self._workflow_id,
                    event_key=f"released:{run_key()}:{step.id}",
                    step_id=step.id,
                    request_id=request_id or None,
                    actor=self._req.user,
                    channel=step.channel,
                    value=step.value,
                    comment=f"write released by the thaw after {paused.total_seconds():.0f} s held",
                    details={"held_s": paused.total_seconds()},
                )
            )
        return paused

    async def _stale_approval(self, step: ControlWriteStep, check: LimitsCheck, write_by: str) -> StepResult:
        """The write could not start by its write-by deadline (no worker for too long): refused, audited; a new
        request must be approved."""
        message = (
            f"refused: the approval expired at {write_by} before the write could start (approval.write_by_s); "
            "request the write again"
        )
        await self._audit_refusal(
            "write_refused",
            step.id,
            message,
            {"violation": "approval_expired", "write_by": write_by},
            key_suffix=":stale",
            channel=step.channel,
            value=step.value,
        )
        return StepResult(step_id=step.id, kind=step.kind, status="refused", check=check, message=message)
