"""The planning part of ``AgentRunWorkflow`` (deterministic): drafts through the ``plan`` activity, plan
approval through the run's ``ApprovalGate`` (kind ``plan``), and revisions after failed steps.

Every version is kept (``PlanVersion``: which version, what caused it, who). A rejected plan is revised once with
the approver's comment and asked again; a failed step may be answered by one revision of the remaining steps, at
most ``MAX_REPLANS`` per run. A revision's writes are ordinary ``control_write`` steps: limits check and approval.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

from workflows.approval_gate import ApprovalGate
from workflows.failures import error_message

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from activities.planning import PlanningActivities
    from tern.models import AgentRunRequest, ApprovalRecord, ControlWriteStep, Plan, Step, StepResult
    from tern.models.planning import LLMUsage, PlanCause, PlanFeedback, PlanInput, PlanVersion
    from tern.models.ring import PlanEffect, PlanPredictInput
    from tern.planning import REGISTRY

PLANNER_PATCH = "llm-planner"  # runs started without a plan before the planner failed with NoPlan
PLAN_TIMEOUT = timedelta(seconds=300)  # all attempts of one plan (each one LLM round trip)
PLAN_HEARTBEAT_TIMEOUT = timedelta(seconds=30)  # the activity beats every 5 s: a dead worker is retried within 30 s
PLAN_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=4,
    non_retryable_error_types=["NoPlanner", "PlanInvalid", "InvalidLimits"],
)
MAX_REPLANS = 3  # plan revisions after failed steps, per run
# A plan with several writes is predicted as the whole for its approval (issue 23); plans asked before replay
# without the predict_plan activity.
PLAN_APPROVAL_EFFECT_PATCH = "ring-plan-approval-effect-1"
PREDICT_PLAN_TIMEOUT = timedelta(seconds=60)
PREDICT_PLAN_RETRY = RetryPolicy(maximum_attempts=3)


class RunPlanner:
    """The plans of one run.

    Args:
        req: the run's request (question, user, context, channel candidates, ``plan_approval``).
        gate: the run's approval gate (plan approval is a request of kind ``plan``).
        memories: the user's notes relevant to the question, given to every planning call.
    """

    def __init__(self, req: AgentRunRequest, gate: ApprovalGate, memories: list[str] | None = None) -> None:
        self.req = req
        self.gate = gate
        self.memories = memories or []
        self.versions: list[PlanVersion] = []
        self.usage = LLMUsage()
        self.replans = 0
        self.approval_required = req.plan_approval

    async def draft(self, cause: PlanCause, by: str, feedback: PlanFeedback | None = None) -> Plan:
        """A validated plan from the ``plan`` activity, recorded as the next version. Raises ``ActivityError``."""
        req = self.req
        d = await workflow.execute_activity_method(
            PlanningActivities.plan,
            PlanInput(
                workflow_id=workflow.info().workflow_id,
                user=req.user,
                question=req.query,
                context=req.context,
                channel_candidates=req.channel_candidates,
                feedback=feedback,
                memories=self.memories,
            ),
            start_to_close_timeout=PLAN_TIMEOUT,
            heartbeat_timeout=PLAN_HEARTBEAT_TIMEOUT,
            retry_policy=PLAN_RETRY,
            summary=f"plan ({cause})",
        )
        self.usage = self.usage.add(d.usage)
        self.approval_required = self.approval_required or d.approval_required
        self.versions.append(
            PlanVersion(
                version=len(self.versions) + 1,
                cause=cause,
                by=by,
                comment=feedback.comment if feedback else "",
                plan=d.plan,
                attempts=d.attempts,
                errors=d.errors,
            )
        )
        return d.plan

    async def _ask(self, plan: Plan) -> ApprovalRecord:
        n = len(self.versions)
        return await self.gate.request(
            kind="plan",
            step_id=f"plan-v{n}",
            summary=f"plan v{n}: {len(plan.steps)} steps ({', '.join(s.kind for s in plan.steps)[:200]})",
            reason=f"question: {self.req.query}"[:2000],
            plan=plan,
            plan_effect=await self._predict(plan),
        )

    async def _predict(self, plan: Plan) -> PlanEffect | None:
        """The plan's ``control_write`` steps predicted as the whole by the ring model (``predict_plan``), for the
        approver; None for fewer than two writes (or a run from before the patch)."""
        writes: dict[str, float] = {}
        for s in plan.steps:
            if isinstance(s, ControlWriteStep):
                writes[s.channel] = s.value  # written twice: its last value
        if len(writes) < 2 or not workflow.patched(PLAN_APPROVAL_EFFECT_PATCH):
            return None
        return await workflow.execute_activity_method(
            AgentActivities.predict_plan,
            PlanPredictInput(writes=writes),
            start_to_close_timeout=PREDICT_PLAN_TIMEOUT,
            retry_policy=PREDICT_PLAN_RETRY,
            summary=f"predicted effect of the plan's {len(writes)} writes",
        )

    async def first(self) -> tuple[Plan | None, ApprovalRecord | None]:
        """The plan to run, approved when approval is asked for: ``(plan, last decision)``, or ``(None,
        decision)`` when it was rejected (after one revision with the rejection's comment), timed out or refused
        by the policy. Raises ``ActivityError`` when no valid plan comes back."""
        plan = await self.draft("question", self.req.user)
        if not self.approval_required:
            return plan, None
        decision = await self._ask(plan)
        if decision.decision == "rejected" and decision.via in ("update", "signal"):
            who = decision.approver or "approver"
            feedback = PlanFeedback(cause="plan_rejected", by=who, comment=decision.comment[:4000], previous=plan)
            plan = await self.draft("plan_rejected", who, feedback)
            decision = await self._ask(plan)
        return (plan if decision.decision == "approved" else None), decision

    async def revise(self, failed: StepResult, done: list[StepResult]) -> list[Step] | None:
        """New remaining steps after ``failed`` (``done`` includes it), or None: no revisions left, the planner
        failed, or the revised plan was not approved (when approval is asked for)."""
        if self.replans >= MAX_REPLANS:
            return None
        self.replans += 1
        feedback = PlanFeedback(
            cause="step_failed",
            by=f"step {failed.step_id}",
            comment=failed.message[:4000],
            previous=self.versions[-1].plan,
            done=[REGISTRY.summarise(r)[:2000] for r in done],
            done_ids=[r.step_id for r in done],
        )
        try:
            plan = await self.draft("step_failed", feedback.by, feedback)
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            failed.message += f"; no revised plan: {error_message(exc)}"
            return None
        if self.approval_required and (await self._ask(plan)).decision != "approved":
            failed.message += f"; revised plan v{len(self.versions)} not approved"
            return None
        return list(plan.steps)
