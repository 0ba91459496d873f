"""The ``bluesky_plan`` step of ``AgentRunWorkflow``: check against the queue server (activity) -> approval
(``ApprovalGate``, kind ``bluesky``) -> submit once and follow to the end (activity, heartbeating)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.approval_gate import audit
from workflows.declined import decided_by, declined_result
from workflows.run_base import RunSteps

with workflow.unsafe.imports_passed_through():
    from activities.bluesky import BlueskyActivities
    from tern.models import AuditEvent, BlueskyPlanStep, StepResult
    from tern.models.bluesky import BlueskyCheckInput, BlueskyRunInput, PlanRequest

BLUESKY_CHECK_TIMEOUT = timedelta(seconds=30)
BLUESKY_RUN_TIMEOUT = timedelta(hours=12)  # a plan may scan for hours; the heartbeat notices a dead worker
BLUESKY_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
BLUESKY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=20,  # each attempt finds the item by its key before adding: never a second submission
    non_retryable_error_types=["PlanRefused", "BlueskyUnavailable"],
)


class BlueskySteps(RunSteps):
    """Handler of the ``bluesky_plan`` step kind."""

    async def _bluesky_plan(self, step: BlueskyPlanStep) -> StepResult:
        """Check -> approval -> run once, followed to its end. A plan the queue server does not allow is refused
        before any approval is asked; skipped after a step that did not complete."""
        if self._writes_blocked:
            return StepResult(
                step_id=step.id, kind=step.kind, status="skipped", message="skipped: an earlier step did not complete"
            )
        workflow_id = self._workflow_id
        plan = PlanRequest(name=step.plan, args=step.args, kwargs=step.kwargs)
        try:
            check = await workflow.execute_activity_method(
                BlueskyActivities.check_bluesky_plan,
                BlueskyCheckInput(workflow_id=workflow_id, step_id=step.id, plan=plan),
                start_to_close_timeout=BLUESKY_CHECK_TIMEOUT,
                retry_policy=BLUESKY_RETRY,
                summary=f"check Bluesky plan {step.plan}",
            )
        except ActivityError as exc:
            cause = exc.cause
            if not (isinstance(cause, ApplicationError) and cause.type == "PlanRefused"):
                raise
            await self._audit_refusal(
                "bluesky_refused",
                step.id,
                cause.message,
                {"violation": "plan_not_allowed", "plan": plan.model_dump(mode="json")},
            )
            return StepResult(step_id=step.id, kind=step.kind, status="refused", message=f"refused: {cause.message}")
        reason = "\n".join(
            x
            for x in (
                step.reason,
                f"Plan {check.call}: {check.description}",
                f"Parameters: {', '.join(check.parameters)}" if check.parameters else "",
            )
            if x
        )
        decision = await self._gate.request(
            kind="bluesky", step_id=step.id, summary=f"Bluesky plan {check.call}", reason=reason
        )
        if decision.decision != "approved":
            return declined_result(step, decision, f"{decided_by(decision)}: {decision.comment}")
        outcome = await workflow.execute_activity_method(
            BlueskyActivities.run_bluesky_plan,
            BlueskyRunInput(
                workflow_id=workflow_id,
                step_id=step.id,
                idempotency_key=f"{workflow_id}/{step.id}/{decision.request_id}",
                plan=plan,
                approver=", ".join(decision.approved_by) or decision.approver or "",
            ),
            start_to_close_timeout=BLUESKY_RUN_TIMEOUT,
            heartbeat_timeout=BLUESKY_HEARTBEAT_TIMEOUT,
            retry_policy=BLUESKY_RETRY,
            summary=f"run Bluesky plan {check.call}",
        )
        await audit(
            AuditEvent(
                event_kind="bluesky_plan",
                workflow_id=workflow_id,
                event_key=f"bluesky:{workflow_id}/{step.id}/{decision.request_id}",
                step_id=step.id,
                request_id=decision.request_id,
                actor=", ".join(decision.approved_by) or decision.approver or "",
                comment=f"{check.call}: {outcome.exit_status}",
                details=outcome.model_dump(mode="json") | {"plan": plan.model_dump(mode="json")},
            )
        )
        ok = outcome.exit_status == "completed"
        runs = ", ".join(outcome.run_uids) or "none"
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed" if ok else "failed",
            bluesky=outcome,
            message=f"Bluesky plan {check.call}: {outcome.exit_status}; runs {runs}"
            + (f"; {outcome.message}" if outcome.message else ""),
        )
