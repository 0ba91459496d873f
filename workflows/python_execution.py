"""``PythonExecutionWorkflow``: one ``python`` step of an agent run, as a child workflow.

Loop, at most ``max_attempts`` times: code (given, or generated from the objective, with the previous error
fed back) -> policy analysis (a syntax error goes back to generation) -> approval when the policy says so
for the configured mode (same gate as control writes: Update/Signal ``decide``, audited, timeout rejects) ->
sandboxed execution (heartbeating activity; cancelling the run kills the container) -> done when the code
ran and produced the expected keys. Code that fails without a generator to fix it fails the step.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType, is_cancelled_exception

from workflows.approval_gate import ApprovalGate, ApprovalHandlers, audit, run_key, set_run_state
from workflows.declined import decided_by, declined_status
from workflows.failures import error_message
from workflows.progress import Progress
from workflows.search_attributes import NO_APPROVAL

with workflow.unsafe.imports_passed_through():
    from activities.sandbox import SandboxActivities
    from tern.agent.payload import compact_attempt
    from tern.approval.render import finished_markdown, step_markdown
    from tern.models import AgentRunStatus, AuditEvent, RunState
    from tern.models.approval import CodeReview
    from tern.models.code_policy import PolicyReport
    from tern.models.execution import ExecutionResult
    from tern.models.planning import LLMUsage
    from tern.models.python_step import (
        AnalyzeInput,
        ExecuteInput,
        GenerateCodeInput,
        PythonAttempt,
        PythonRunInput,
        PythonStepOutcome,
    )

ANALYZE_TIMEOUT = timedelta(seconds=30)
GENERATE_TIMEOUT = timedelta(minutes=3)
# The sandbox's own wall-clock limit (at most 1 h) kills the code; heartbeats catch a dead worker sooner.
EXECUTE_TIMEOUT = timedelta(hours=1, minutes=2)
EXECUTE_HEARTBEAT = timedelta(seconds=20)
QUICK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
GENERATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_attempts=3, non_retryable_error_types=["NoCodeGenerator"]
)
EXECUTE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,  # 2+4+8+10 s: rides out a Docker engine restart; each re-run is recorded in the result
    non_retryable_error_types=["SandboxUnavailable"],
)


# A python step cancelled by its run (or by its run's closing: parent-close policy REQUEST_CANCEL) audits
# ``python_cancelled``; earlier cancelled children replay without that activity.
CANCEL_AUDIT_PATCH = "python-cancel-audit-1"

OutcomeStatus = Literal["completed", "rejected", "timed_out", "failed"]


def execution_failure(exc: ActivityError) -> str:
    """The step's failure message when ``execute_python`` failed for good: its error, and for a heartbeat timeout
    (the worker running the code was killed or stuck on the last attempt: Temporal's message alone says only
    "activity Heartbeat timeout") what that means for the code."""
    message = error_message(exc)
    if isinstance(exc.cause, TimeoutError) and exc.cause.type == TimeoutType.HEARTBEAT:
        return (
            f"{message}: the worker running the code stopped heartbeating on the last of the sandbox execution's "
            f"{EXECUTE_RETRY.maximum_attempts} attempts (killed or stuck); attempts before it may have run the code"
        )
    return message


@workflow.defn
class PythonExecutionWorkflow(ApprovalHandlers):
    """Runs one python step; returns ``PythonStepOutcome``. Update/Signal ``decide``, query ``status``."""

    @workflow.init
    def __init__(self, inp: PythonRunInput) -> None:
        self._inp = inp
        self._state: RunState = "running"
        self._gate = ApprovalGate(inp.user, inp.approvers, inp.approval_timeout_s, self._on_state)
        self._progress = Progress(inp.user, inp.objective or f"python step {inp.step_id}")
        self._code = inp.code
        self._report: PolicyReport | None = None
        self._execution: ExecutionResult | None = None
        self._attempts: list[PythonAttempt] = []
        self._usage: LLMUsage | None = None  # code generation (role 'code')

    def _on_state(self, state: RunState, pending: str) -> None:
        before, self._state = self._state, state
        set_run_state(state, pending)
        step = (self._inp.step_id, "python")
        if state == "awaiting_approval":
            self._progress.publish(
                "waiting", state, line="waiting for code approval", step=step, total=1, pending=self._gate.pending
            )
        elif state == "running" and before == "awaiting_approval" and self._gate.approvals:
            a = self._gate.approvals[-1]
            line = f"request {a.request_id} {a.decision} by {a.approver or a.via}"
            self._progress.publish("decided", state, line=line, step=step, total=1)
        elif state != "running":
            self._progress.publish("finished", state, line=f"finished: {state}", step=step, done=1, total=1)

    @workflow.run
    async def run(self, inp: PythonRunInput) -> PythonStepOutcome:
        """Run the step, then let every decide handler finish (a refused decision is being audited) before
        the outcome is returned."""
        self._progress.enable()
        try:
            outcome = await self._step(inp)
        except (asyncio.CancelledError, ActivityError) as exc:
            if is_cancelled_exception(exc) and workflow.patched(CANCEL_AUDIT_PATCH):
                await self._audit_cancel(inp)
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _audit_cancel(self, inp: PythonRunInput) -> None:
        """Record that the step was cancelled (audit ``python_cancelled`` under the parent run's id): its parent
        run was cancelled, or closed (terminated, timed out) and the parent-close policy REQUEST_CANCEL asked this
        child to stop. The sandbox activity in flight is cancelled with it (its container is killed)."""
        await audit(
            AuditEvent(
                event_kind="python_cancelled",
                workflow_id=inp.workflow_id,
                event_key=f"{run_key()}/python-cancelled",
                step_id=inp.step_id,
                actor=inp.user,
                comment="python step cancelled: its run was cancelled or closed (parent-close policy REQUEST_CANCEL)",
                details={"child_workflow_id": workflow.info().workflow_id, "attempts": len(self._attempts)},
            )
        )

    async def _step(self, inp: PythonRunInput) -> PythonStepOutcome:
        """The procedure: generate -> analyze -> approve -> execute, retried with the error fed back."""
        # The worker's policy: who may approve code, and the approval-mode floor (a run may only be stricter).
        rule = await self._gate.resolve("python", inp.step_id, requested_mode=inp.approval_mode)
        feedback: str | None = None
        for attempt in range(1, inp.max_attempts + 1):
            workflow.set_current_details(
                step_markdown(inp.step_id, f"python, attempt {attempt} of {inp.max_attempts}", number=1, total=1)
            )
            if self._code is None or (feedback is not None and inp.code is None):
                try:
                    self._code = await self._generate(attempt, feedback)
                except ActivityError as exc:
                    if is_cancelled_exception(exc):
                        raise  # the run was cancelled: end, do not report a failed step
                    return self._outcome("failed", f"code generation failed: {error_message(exc)}")
            code = self._code
            report = self._report = await workflow.execute_activity_method(
                SandboxActivities.analyze_code,
                AnalyzeInput(code=code),
                start_to_close_timeout=ANALYZE_TIMEOUT,
                retry_policy=QUICK_RETRY,
                summary="policy analysis",
            )
            if not report.syntax_ok:
                feedback = f"SyntaxError: {report.syntax_error}"
                self._attempts.append(
                    PythonAttempt(attempt=attempt, code=code, outcome="syntax_error", feedback=feedback)
                )
                if inp.code is not None:
                    return self._outcome("failed", f"the code does not parse: {report.syntax_error}")
                continue
            if report.needs_approval(rule.python_approval_mode):
                decision = await self._gate.request(
                    kind="python",
                    step_id=inp.step_id,
                    summary=f"run {len(code.splitlines())} lines of Python (risk {report.risk}) for step {inp.step_id}",
                    reason=inp.objective,
                    code=CodeReview(
                        code=code,
                        objective=inp.objective,
                        analysis=report.summary(),
                        risk=report.risk,
                        expected_keys=inp.expected_keys,
                        attempt=attempt,
                    ),
                    audit_details={
                        "risk": report.risk,
                        "findings": len(report.findings),
                        "approval_mode": rule.python_approval_mode,
                    },
                    resolved=rule,
                )
                if decision.decision != "approved":
                    return self._outcome(declined_status(decision), f"code {decided_by(decision)}: {decision.comment}")
            try:
                execution = self._execution = await workflow.execute_activity_method(
                    SandboxActivities.execute_python,
                    ExecuteInput(
                        workflow_id=inp.workflow_id,
                        step_id=inp.step_id,
                        attempt=attempt,
                        code=code,
                        inputs=inp.inputs,
                        files=inp.files,
                        expected_keys=inp.expected_keys,
                    ),
                    start_to_close_timeout=EXECUTE_TIMEOUT,
                    heartbeat_timeout=EXECUTE_HEARTBEAT,
                    retry_policy=EXECUTE_RETRY,
                    summary=f"run in sandbox (attempt {attempt})",
                )
            except ActivityError as exc:
                if is_cancelled_exception(exc):
                    raise  # the run was cancelled (the activity removed the container)
                return self._outcome("failed", execution_failure(exc))
            missing = [k for k in inp.expected_keys if k not in execution.results]
            if execution.ok and not missing:
                self._attempts.append(PythonAttempt(attempt=attempt, code=code, outcome="ok"))
                again = (
                    f" (the code ran {execution.reruns} time(s) before in interrupted attempts)"
                    if execution.reruns
                    else ""
                )
                return self._outcome("completed", f"ran in {execution.timings.total_s:.2f} s{again}")
            feedback = execution.feedback() if not execution.ok else f"results lacks the keys {missing}"
            self._attempts.append(
                PythonAttempt(
                    attempt=attempt,
                    code=code,
                    outcome=execution.status if not execution.ok else "missing_keys",
                    feedback=feedback,
                )
            )
            if inp.code is not None:  # given code: nothing can fix it
                return self._outcome("failed", feedback)
        return self._outcome("failed", f"no working code after {inp.max_attempts} attempts: {feedback}")

    async def _generate(self, attempt: int, feedback: str | None) -> str:
        inp = self._inp
        generated = await workflow.execute_activity_method(
            SandboxActivities.generate_code,
            GenerateCodeInput(
                workflow_id=inp.workflow_id,
                step_id=inp.step_id,
                objective=inp.objective,
                input_names=sorted([*inp.inputs, *inp.files]),
                expected_keys=inp.expected_keys,
                previous_code=self._code,
                feedback=feedback,
                attempt=attempt,
            ),
            start_to_close_timeout=GENERATE_TIMEOUT,
            retry_policy=GENERATE_RETRY,
            summary=f"generate code (attempt {attempt})",
        )
        if generated.usage is not None:
            self._usage = generated.usage if self._usage is None else self._usage.add(generated.usage)
        return generated.code

    def _outcome(self, status: OutcomeStatus, message: str) -> PythonStepOutcome:
        """The step's outcome from what the attempts so far left on the workflow."""
        self._on_state(status, NO_APPROVAL)
        workflow.set_current_details(finished_markdown(status, message, self._gate.approvals))
        return PythonStepOutcome(
            status=status,
            message=message,
            code=self._code,
            analysis=self._report,
            execution=self._execution,
            attempts=[compact_attempt(a) for a in self._attempts],  # code once (above), not once per attempt
            approvals=self._gate.approvals,
            ignored_decisions=self._gate.ignored,
            llm_usage=self._usage,
        )

    @workflow.query
    def status(self) -> AgentRunStatus:
        """Where the step is: state and the pending code approval."""
        inp = self._inp
        return AgentRunStatus(
            workflow_id=workflow.info().workflow_id,
            state=self._state,
            user=inp.user,
            query=inp.objective or f"python step {inp.step_id}",
            current_step=inp.step_id,
            current_kind="python",
            pending=self._gate.pending,
            approvals=self._gate.approvals,
            ignored_decisions=self._gate.ignored,
            started_at=workflow.info().start_time,
        )
