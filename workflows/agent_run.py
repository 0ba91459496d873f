"""``AgentRunWorkflow``: one operator question, answered by running a plan's steps as activities.

Deterministic orchestration only. ``run`` is the procedure: without a given plan, plan (the ``plan`` activity,
an LLM) and maybe ask an approver for the plan (``workflows.planning``); then each step in order through the
handler of its kind (one mixin per step family: ``workflows.run_reads``, ``run_python``, ``run_writes``,
``run_publish``), a failed step of a planned run answered by one revision of the remaining steps.
Every ``control_write`` step goes: limits check (activity) -> approval (``ApprovalGate``: the worker's approval
policy, audited request, Update ``decide`` or Signal ``decide_signal``, durable timeout that rejects, audited
decision) -> write (activity, once per approved request). A ``python`` step runs as the child workflow
``PythonExecutionWorkflow`` (id ``<run id>.<step id>``); the writes its code proposes are inserted after it as
``control_write`` steps, checked and approved like any other. Any step that does not complete (and is not
answered by a revision) stops later writes; the answer is still composed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception

from workflows.approval_gate import (
    VERIFY_RETRY,
    VERIFY_TIMEOUT,
    ApprovalGate,
    ApprovalHandlers,
    audit,
    run_key,
    set_run_state,
)
from workflows.failures import error_message
from workflows.planning import PLANNER_PATCH, RunPlanner
from workflows.progress import Progress, ProgressHandlers
from workflows.run_base import IDENTITY_PATCH
from workflows.run_bluesky import BlueskySteps
from workflows.run_publish import PublishSteps
from workflows.run_python import DERIVED_WRITE_ID_PATCH as DERIVED_WRITE_ID_PATCH
from workflows.run_python import PythonSteps
from workflows.run_reads import ReadSteps
from workflows.run_writes import WRITE_HEARTBEAT_TIMEOUT as WRITE_HEARTBEAT_TIMEOUT
from workflows.run_writes import WriteSteps
from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATE, RUN_USER

with workflow.unsafe.imports_passed_through():
    from activities.approval import ApprovalActivities
    from tern.agent.payload import for_result
    from tern.approval.render import finished_markdown, step_markdown
    from tern.identity.statement import start_digest
    from tern.models import (
        AgentRunRequest,
        AgentRunResult,
        AgentRunStatus,
        ApprovalRecord,
        AuditEvent,
        FinalRunState,
        PythonStep,
        RunState,
        Step,
        StepResult,
        ValueMismatch,
        WriteRecord,
    )
    from tern.models.identity import ProofCheckInput
    from tern.models.memory import Memory
    from tern.models.planning import LLMUsage
    from tern.models.progress import ProgressEvent
    from tern.models.trigger import RunTrigger

# Planned runs started before the planner got the user's notes replay without that lookup (workflow.patched).
PLANNER_MEMORY_PATCH = "planner-memory-1"
# Runs a trigger started record the trigger and its event in the audit table first (runs without a trigger
# take no new command; the patch marks the histories that do).
TRIGGER_AUDIT_PATCH = "trigger-audit-1"


STEP_OUTCOME_TO_RUN: dict[str, FinalRunState] = {"rejected": "rejected", "timed_out": "timed_out"}


@workflow.defn
class AgentRunWorkflow(
    ReadSteps, PythonSteps, WriteSteps, PublishSteps, BlueskySteps, ApprovalHandlers, ProgressHandlers
):
    """Runs ``AgentRunRequest.plan``; returns ``AgentRunResult``. Update/Signal ``decide``, query ``status``."""

    @workflow.init
    def __init__(self, req: AgentRunRequest) -> None:
        self._req = req
        self._state: RunState = "running"
        self._status: FinalRunState = "completed"
        self._error: str | None = None
        self._queue: list[Step] = list(req.plan.steps) if req.plan else []
        self._current: Step | None = None
        self._steps: list[StepResult] = []
        self._total = len(self._queue)
        self._writes: list[WriteRecord] = []
        self._writes_blocked = False
        self._answer = ""
        self._citations: list[str] = []
        self._unsupported: list[str] = []
        self._unsupported_values: list[ValueMismatch] = []
        self._answer_usage = LLMUsage()
        self._gate = ApprovalGate(req.user, req.approvers, req.approval_timeout_s, self._on_state)
        self._progress = Progress(req.user, req.query)  # published in the memo (workflows.progress)
        self._planner: RunPlanner | None = None  # set for runs started without a plan
        self._notes: list[Memory] | None = None  # the user's notes for the question, once looked up
        self._handlers: dict[str, Callable[[Any], Awaitable[StepResult]]] = {
            "logbook_search": self._logbook,
            "channel_find": self._find_channels,
            "channel_read": self._read,
            "archiver_read": self._archiver,
            "gather": self._gather,
            "memory": self._memory,
            "python": self._python,
            "control_write": self._control_write,
            "orbit_correct": self._orbit_correct,
            "logbook_publish": self._logbook_publish,
            "bluesky_plan": self._bluesky_plan,
            "respond": self._respond,
        }

    def _on_state(self, state: RunState, pending: str) -> None:
        before, self._state = self._state, state
        set_run_state(state, pending)
        if state == "awaiting_approval":
            self._progress_event("waiting", "waiting for approval", pending=self._gate.pending)
        elif state == "running" and before == "awaiting_approval" and self._gate.approvals:
            a = self._gate.approvals[-1]
            self._progress_event("decided", f"request {a.request_id} {a.decision} by {a.approver or a.via}")

    def _progress_event(self, event: ProgressEvent, line: str, pending: Any = None) -> None:
        """Publish the run's progress (``workflows.progress``): ``event`` with its line, the current step."""
        cur = self._current
        self._progress.publish(
            event,
            self._state,
            line=line,
            step=(cur.id, cur.kind) if cur else None,
            done=len(self._steps),
            total=self._total,
            pending=pending,
        )

    # -- run -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, req: AgentRunRequest) -> AgentRunResult:
        """The procedure: each step in order through its handler; a step that does not complete blocks later
        writes and sets the run's status; the answer is still composed."""
        workflow.upsert_search_attributes(
            [RUN_STATE.value_set("running"), PENDING_APPROVAL.value_set(NO_APPROVAL), RUN_USER.value_set(req.user)]
        )
        if self._progress.enable():
            self._progress_event("started", f"started for {req.user}")
        if workflow.patched(IDENTITY_PATCH) and not await self._check_start(req):
            return await self._finish(req)
        if req.trigger is not None and workflow.patched(TRIGGER_AUDIT_PATCH):
            await self._audit_trigger(req.trigger)
        if req.plan is None:
            if not workflow.patched(PLANNER_PATCH):
                raise ApplicationError(
                    "no plan given and no planner is configured; pass an explicit plan",
                    type="NoPlan",
                    non_retryable=True,
                )
            if not await self._plan():
                return await self._finish(req)
        while self._queue:
            step = self._current = self._queue.pop(0)
            child = self.child_id(self._workflow_id, step.id) if step.kind == "python" else None
            workflow.set_current_details(
                step_markdown(
                    step.id,
                    step.kind,
                    number=len(self._steps) + 1,
                    total=self._total,
                    child=(workflow.info().namespace, child) if child else None,
                )
            )
            self._progress_event("step_started", f"step {step.id} ({step.kind}) started")
            try:
                result = await self._handlers[step.kind](step)
            except (ActivityError, ChildWorkflowError) as exc:
                if is_cancelled_exception(exc):
                    raise  # a cancelled run ends here: no later step (and no write) runs
                result = StepResult(step_id=step.id, kind=step.kind, status="failed", message=error_message(exc))
            if result.status == "failed" and await self._revise(result):
                self._steps.append(result)  # answered by a revised plan: the run goes on with its steps
                self._progress_event("plan_revised", f"step {step.id} failed ({result.message}); plan revised")
                continue
            self._record(step, result)
            self._progress_event("step_done", f"step {step.id} ({step.kind}) {result.status}: {result.message}")
        return await self._finish(req)

    async def _check_start(self, req: AgentRunRequest) -> bool:
        """Who starts the run (``verify_proof``): in ``proven`` mode the proof must name this workflow and this
        request and stand for ``req.user``; False (audited ``start_refused``, the run ends failed) otherwise. A run
        started by its parent run to propose an inverse write (``req.proposed_by`` = the parent, as the server records
        it: no client can set a parent) needs no proof: it only asks, and its write waits for a proven approval."""
        parent = workflow.info().parent
        if req.proposed_by is not None and parent is not None and parent.workflow_id == req.proposed_by:
            await audit(
                AuditEvent(
                    event_kind="run_started",
                    workflow_id=self._workflow_id,
                    event_key=f"{run_key()}/started",
                    actor="tern",
                    comment=req.query[:500],
                    details={"proposed_by": req.proposed_by, "for": req.user},
                )
            )
            return True
        check = await workflow.execute_activity_method(
            ApprovalActivities.verify_proof,
            ProofCheckInput(
                proof=req.proof,
                purpose="start",
                workflow_id=self._workflow_id,
                action="start",
                digest=start_digest(req),
                declared=req.user,
                use_key=f"{run_key()}:start",
            ),
            start_to_close_timeout=VERIFY_TIMEOUT,
            retry_policy=VERIFY_RETRY,
            summary=f"verify who starts: {req.user}",
        )
        if check.ok:
            if check.scheme != "declared":
                await audit(
                    AuditEvent(
                        event_kind="run_started",
                        workflow_id=self._workflow_id,
                        event_key=f"{run_key()}/started",
                        actor=check.principal,
                        comment=req.query[:500],
                        details=check.audit_details(),
                    )
                )
            return True
        await audit(
            AuditEvent(
                event_kind="start_refused",
                workflow_id=self._workflow_id,
                event_key=f"{run_key()}/start-refused",
                actor=req.user,
                comment=check.reason,
                details={"identity": check.mode, "query": req.query[:500]},
            )
        )
        self._status, self._error = "failed", f"start refused: {check.reason}"
        return False

    async def _audit_trigger(self, trigger: RunTrigger) -> None:
        """Record which trigger started this run, and its event (audit row ``run_triggered``)."""
        event = trigger.event
        value = event.get("value")
        await audit(
            AuditEvent(
                event_kind="run_triggered",
                workflow_id=self._workflow_id,
                event_key=f"{run_key()}/triggered",
                actor=f"trigger:{trigger.name}",
                channel=event.get("channel") if isinstance(event.get("channel"), str) else None,
                value=float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
                comment=f"{trigger.kind} trigger {trigger.name}",
                details={"trigger": trigger.name, "kind": trigger.kind, "event": event, "source": trigger.source},
            )
        )

    async def _plan(self) -> bool:
        """Plan the question (and have the plan approved when asked); False when the run ends here."""
        notes: list[Memory] = []
        if workflow.patched(PLANNER_MEMORY_PATCH):
            notes = self._notes = await self._user_notes()
        memories = [f"{n.created_at:%Y-%m-%d}: {n.text}" for n in notes]
        self._planner = planner = RunPlanner(self._req, self._gate, memories)
        try:
            plan, decision = await planner.first()
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            self._status, self._error = "failed", f"planning failed: {error_message(exc)}"
            return False
        if plan is None:
            assert decision is not None
            self._status = STEP_OUTCOME_TO_RUN.get(decision.decision, "rejected")
            self._error = f"plan {decision.decision} by {decision.approver or decision.via}: {decision.comment}"
            return False
        self._queue, self._total = list(plan.steps), len(plan.steps)
        self._progress_event("planned", f"planned {len(plan.steps)} steps: {', '.join(s.id for s in plan.steps)}")
        return True

    async def _revise(self, failed: StepResult) -> bool:
        """Ask the planner to revise the remaining steps after ``failed`` (planned runs only)."""
        if self._planner is None:
            return False
        steps = await self._planner.revise(failed, [*self._steps, failed])
        if steps is None:
            return False
        self._queue = steps
        self._total = len(self._steps) + 1 + len(steps)
        return True

    async def _finish(self, req: AgentRunRequest) -> AgentRunResult:
        self._current = None
        self._on_state(self._status, NO_APPROVAL)
        self._progress_event("finished", f"finished: {self._status}" + (f": {self._error}" if self._error else ""))
        workflow.set_current_details(finished_markdown(self._status, self._error or "", self._all_approvals()))
        await workflow.wait_condition(workflow.all_handlers_finished)
        usage = {"planner": self._planner.usage} if self._planner else {}
        code = [s.python.llm_usage for s in self._steps if s.python and s.python.llm_usage]
        if code:
            usage["code"] = sum(code[1:], start=code[0])
        if self._answer_usage.calls:
            usage["answer"] = self._answer_usage
        return AgentRunResult(
            workflow_id=workflow.info().workflow_id,
            status=self._status,
            query=req.query,
            user=req.user,
            steps=[for_result(s) for s in self._steps],  # attempts' code as digests, readings capped
            writes=self._writes,
            approvals=self._all_approvals(),
            ignored_decisions=self._gate.ignored,
            ignored_decisions_total=self._gate.refused_total,
            answer=self._answer,
            citations=self._citations,
            unsupported_citations=self._unsupported,
            unsupported_values=self._unsupported_values,
            plan=self._planner.versions if self._planner else [],
            llm_usage=usage,
            error=self._error,
        )

    def _record(self, step: Step, result: StepResult) -> None:
        self._steps.append(result)
        if result.status in ("completed", "skipped"):
            return
        self._writes_blocked = True
        if self._status == "completed":
            self._status = STEP_OUTCOME_TO_RUN.get(result.status, "failed")
            self._error = f"step {step.id}: {result.message}"

    def _all_approvals(self) -> list[ApprovalRecord]:
        child = [a for s in self._steps if s.python for a in s.python.approvals]
        return sorted([*self._gate.approvals, *child], key=lambda a: a.decided_at)

    # -- decisions and status -------------------------------------------------------------------------------
    @workflow.query
    def status(self) -> AgentRunStatus:
        """Where the run is now: state, current step (a python step runs as ``child_workflow_id``), pending request."""
        req = self._req
        workflow_id = workflow.info().workflow_id
        cur = self._current
        return AgentRunStatus(
            workflow_id=workflow_id,
            state=self._state,
            user=req.user,
            query=req.query,
            current_step=cur.id if cur else None,
            current_kind=cur.kind if cur else None,
            child_workflow_id=self.child_id(workflow_id, cur.id) if isinstance(cur, PythonStep) else None,
            steps_done=len(self._steps),
            steps_total=self._total,
            pending=self._gate.pending,
            approvals=self._all_approvals(),
            ignored_decisions=self._gate.ignored,
            ignored_decisions_total=self._gate.refused_total,
            started_at=workflow.info().start_time,
        )
