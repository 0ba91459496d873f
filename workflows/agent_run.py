"""``AgentRunWorkflow``: one operator question, answered by running a plan's steps as activities.

Deterministic orchestration only. ``run`` is the procedure: without a given plan, plan (the ``plan`` activity,
an LLM) and maybe ask an approver for the plan (``workflows.planning``); then each step in order through the
handler of its kind, a failed step of a planned run answered by one revision of the remaining steps.
Every ``control_write`` step goes: limits check (activity) -> approval (``ApprovalGate``: the worker's approval
policy, audited request, Update ``decide`` or Signal ``decide_signal``, durable timeout that rejects, audited
decision) -> write (activity, once per approved request). A ``python`` step runs as the child workflow
``PythonExecutionWorkflow`` (id ``<run id>.<step id>``); the writes its code proposes are inserted after it as
``control_write`` steps, checked and approved like any other. Any step that does not complete (and is not
answered by a revision) stops later writes; the answer is still composed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
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
from workflows.failures import error_message, failure_chain
from workflows.planning import PLANNER_PATCH, RunPlanner
from workflows.python_execution import PythonExecutionWorkflow
from workflows.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_STATE, RUN_USER

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from activities.approval import ApprovalActivities
    from activities.archiver import ArchiverActivities
    from activities.channels import ChannelActivities
    from activities.logbook import LogbookActivities
    from activities.memory import MemoryActivities
    from tern.agent.payload import for_composer, for_result
    from tern.approval.render import finished_markdown, step_markdown
    from tern.identity.statement import start_digest
    from tern.models import (
        AgentRunRequest,
        AgentRunResult,
        AgentRunStatus,
        ApprovalRecord,
        ArchiverReadStep,
        AuditEvent,
        ChannelFindStep,
        ChannelReadStep,
        ControlWriteStep,
        FinalRunState,
        GatherStep,
        LimitsCheck,
        LogbookPublishStep,
        LogbookSearchStep,
        MemoryStep,
        PythonStep,
        RespondStep,
        RunState,
        Step,
        StepResult,
        ValueMismatch,
        WriteRecord,
    )
    from tern.models.activity_io import (
        ChannelFindInput,
        ChannelReadInput,
        ComposeInput,
        LogbookDraftInput,
        LogbookPublishInput,
        LogbookSearchInput,
        WriteCheckInput,
        WriteInput,
    )
    from tern.models.archiver import ArchiverReadInput
    from tern.models.identity import ProofCheckInput
    from tern.models.memory import Memory, MemoryAddInput, MemorySearchInput
    from tern.models.plan import derived_write_id, input_name
    from tern.models.planning import LLMUsage
    from tern.models.python_step import PythonRunInput
    from tern.models.trigger import RunTrigger

# Timeouts and retry policies (named, next to the workflow that uses them).
LOGBOOK_SEARCH_TIMEOUT = timedelta(seconds=60)
CHANNEL_FIND_TIMEOUT = timedelta(minutes=5)  # the first semantic find embeds every channel description
CHANNEL_READ_TIMEOUT = timedelta(seconds=30)
# One archiver_read step: every channel fetched concurrently, each request retried by the client
# (archiver_attempts, archiver_timeout_s); the samples go to the artifact store, only summaries come back.
ARCHIVER_READ_TIMEOUT = timedelta(minutes=5)
WRITE_CHECK_TIMEOUT = timedelta(seconds=30)
WRITE_TIMEOUT = timedelta(seconds=60)
# A write attempt whose worker died is retried once its heartbeat lapses; the retry settles it by reading (or puts
# once more when the channel still holds the value shown to the approver),
# no earlier than TERN_WRITE_SETTLE_DELAY_S after the claim (activities.agent.AgentActivities._resume).
WRITE_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
COMPOSE_TIMEOUT = timedelta(seconds=120)
READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=5
)
# Channel Access activities ride out an IOC that stops answering for a minute or two (a reboot, a gateway restart):
# ~2 minutes of attempts (waits 1, 2, 4, 8, then 10 s) before the step fails naming the unreachable channels.
CA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=12
)
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
ARCHIVER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=3,
    non_retryable_error_types=["BadArchiverRequest"],
)
MEMORY_TIMEOUT = timedelta(seconds=60)
# Runs started before the composer got the user's notes replay without the memory lookup (workflow.patched).
MEMORY_CONTEXT_PATCH = "memory-context-1"
# Planned runs started before the planner got the user's notes replay without that lookup (workflow.patched).
PLANNER_MEMORY_PATCH = "planner-memory-1"
# Writes a python step proposes are '<step>#write-<n>' (tern.models.plan.derived_write_id; '#' is refused in plan
# ids). Runs that derived them before replay with the old '<step>-write-<n>', which a plan step could be named too.
DERIVED_WRITE_ID_PATCH = "derived-write-id-1"
# Runs a trigger started record the trigger and its event in the audit table first (runs without a trigger
# take no new command; the patch marks the histories that do).
TRIGGER_AUDIT_PATCH = "trigger-audit-1"
LOGBOOK_DRAFT_TIMEOUT = timedelta(seconds=30)
LOGBOOK_PUBLISH_TIMEOUT = timedelta(minutes=2)  # embedding the entry, or a facility logbook's submit
# Publishing is idempotent per run and step (logbook_publications); what retrying cannot change is not retried.
LOGBOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
    non_retryable_error_types=[
        "PublishNotSupported",
        "LogbookDraftInvalid",
        "PublishRejected",
        "PublishOutcomeUnknown",
    ],
)
# logbook_publish steps (new with this patch: no earlier history holds one) draft, ask and publish.
LOGBOOK_PUBLISH_PATCH = "logbook-publish-1"
# Runs check who starts them (verify_proof) and approved writes must start by their write-by deadline; runs started
# before proven identity replay without either.
IDENTITY_PATCH = "proven-identity-1"
SERIES_INPUT_SUFFIX = "_series"  # a python step gets an archiver_read step's samples as input '<name>_series'
MAX_PROPOSED_WRITES = 10  # writes one python step may propose
MAX_READ_CHANNELS = 500  # channels one channel_read step reads, named and found by earlier steps together


STEP_OUTCOME_TO_RUN: dict[str, FinalRunState] = {"rejected": "rejected", "timed_out": "timed_out"}


def _legacy_write_id(step_id: str, n: int) -> str:
    """The id runs started before ``DERIVED_WRITE_ID_PATCH`` gave the ``n``-th write python step ``step_id``
    proposed (kept for replay only)."""
    return f"{step_id}-write-{n}"


@workflow.defn
class AgentRunWorkflow(ApprovalHandlers):
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
            "logbook_publish": self._logbook_publish,
            "respond": self._respond,
        }

    def _on_state(self, state: RunState, pending: str) -> None:
        self._state = state
        set_run_state(state, pending)

    # -- run -------------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, req: AgentRunRequest) -> AgentRunResult:
        """The procedure: each step in order through its handler; a step that does not complete blocks later
        writes and sets the run's status; the answer is still composed."""
        workflow.upsert_search_attributes(
            [RUN_STATE.value_set("running"), PENDING_APPROVAL.value_set(NO_APPROVAL), RUN_USER.value_set(req.user)]
        )
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
            try:
                result = await self._handlers[step.kind](step)
            except (ActivityError, ChildWorkflowError) as exc:
                if is_cancelled_exception(exc):
                    raise  # a cancelled run ends here: no later step (and no write) runs
                result = StepResult(step_id=step.id, kind=step.kind, status="failed", message=error_message(exc))
            if result.status == "failed" and await self._revise(result):
                self._steps.append(result)  # answered by a revised plan: the run goes on with its steps
                continue
            self._record(step, result)
        return await self._finish(req)

    async def _check_start(self, req: AgentRunRequest) -> bool:
        """Who starts the run (``verify_proof``): in ``proven`` mode the proof must name this workflow and this
        request and stand for ``req.user``; False (audited ``start_refused``, the run ends failed) otherwise."""
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

    @property
    def _workflow_id(self) -> str:
        return workflow.info().workflow_id

    async def _logbook(self, step: LogbookSearchStep, limit: timedelta | None = None) -> StepResult:
        found = await workflow.execute_activity_method(
            AgentActivities.search_logbook,
            LogbookSearchInput(
                workflow_id=self._workflow_id, step_id=step.id, query=step.query, limit=step.limit, mode=step.mode
            ),
            start_to_close_timeout=min(LOGBOOK_SEARCH_TIMEOUT, limit or LOGBOOK_SEARCH_TIMEOUT),
            schedule_to_close_timeout=limit,
            retry_policy=READ_RETRY,
            summary=f"logbook search ({step.mode}): {step.query[:80]}",
        )
        note = f" ({found.notice})" if found.notice else ""
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed",
            hits=found.hits,
            message=f"{len(found.hits)} entries{note}",
            search_mode_used=found.mode_used,
            embedding_model=found.embedding_model or None,
        )

    async def _find_channels(self, step: ChannelFindStep) -> StepResult:
        found = await workflow.execute_activity_method(
            ChannelActivities.find_channels,
            ChannelFindInput(
                workflow_id=self._workflow_id, step_id=step.id, query=step.query, limit=step.limit, mode=step.mode
            ),
            start_to_close_timeout=CHANNEL_FIND_TIMEOUT,
            retry_policy=READ_RETRY,
            summary=f"find channels ({step.mode}): {step.query[:80]}",
        )
        note = f" ({found.notice})" if found.notice else ""
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed",
            channels=found.hits,
            message=f"{len(found.hits)} channels{note}",
        )

    async def _read(self, step: ChannelReadStep, limit: timedelta | None = None) -> StepResult:
        found = [c.name for s in self._steps if s.step_id in step.channels_from for c in s.channels or []]
        channels = list(dict.fromkeys([*step.channels, *found]))[:MAX_READ_CHANNELS]
        if not channels:
            return StepResult(
                step_id=step.id,
                kind=step.kind,
                status="failed",
                message=f"no channels: steps {', '.join(step.channels_from)} found none",
            )
        readings = await workflow.execute_activity_method(
            AgentActivities.read_channels,
            ChannelReadInput(workflow_id=self._workflow_id, step_id=step.id, channels=channels),
            start_to_close_timeout=min(CHANNEL_READ_TIMEOUT, limit or CHANNEL_READ_TIMEOUT),
            schedule_to_close_timeout=limit,
            retry_policy=CA_RETRY,
            summary=f"read {', '.join(channels)[:100]}",
        )
        bad = [r.channel for r in readings if r.error]
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="failed" if bad else "completed",
            readings=readings,
            message=f"unavailable: {', '.join(bad)}" if bad else f"{len(readings)} channels read",
        )

    async def _archiver(self, step: ArchiverReadStep, limit: timedelta | None = None) -> StepResult:
        """Archived history: the activity stores the samples as an artifact and returns summaries only. The step
        fails when no channel has data; channels without data are named in the message."""
        out = await workflow.execute_activity_method(
            ArchiverActivities.read_archiver,
            ArchiverReadInput(
                workflow_id=self._workflow_id,
                step_id=step.id,
                channels=step.channels,
                range=step.range,
                start=step.start,
                end=step.end,
                binning=step.binning,
                now=workflow.now(),
            ),
            start_to_close_timeout=min(ARCHIVER_READ_TIMEOUT, limit or ARCHIVER_READ_TIMEOUT),
            schedule_to_close_timeout=limit,
            retry_policy=ARCHIVER_RETRY,
            summary=f"archiver {', '.join(step.channels)[:80]} ({step.range or step.start})",
        )
        missing = "; ".join(f"{s.channel}: {s.error}" for s in out.failed)
        if len(out.failed) == len(out.series):
            return StepResult(
                step_id=step.id, kind=step.kind, status="failed", archived=out, message=f"no archived data: {missing}"
            )
        message = (
            f"{len(out.series) - len(out.failed)} channels, {out.samples} samples ({out.binning or 'raw'}) from "
            f"{out.start:%Y-%m-%d %H:%M} to {out.end:%Y-%m-%d %H:%M} UTC"
        )
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed",
            archived=out,
            message=f"{message}; no data: {missing}" if missing else message,
        )

    async def _gather(self, step: GatherStep) -> StepResult:
        """Every source as its own activity, all at once, each within ``step.timeout_s`` (retries included); a
        source that fails is named and the others are kept (Osprey's data-source manager). Fails only when every
        source fails. A cancelled run cancels every source."""
        limit = timedelta(seconds=step.timeout_s) if step.timeout_s else None

        async def fetch(src: LogbookSearchStep | ChannelReadStep | ArchiverReadStep) -> StepResult:
            if isinstance(src, LogbookSearchStep):
                return await self._logbook(src, limit)
            if isinstance(src, ChannelReadStep):
                return await self._read(src, limit)
            return await self._archiver(src, limit)

        async def one(src: LogbookSearchStep | ChannelReadStep | ArchiverReadStep) -> StepResult:
            try:
                return await fetch(src)
            except (ActivityError, ChildWorkflowError) as exc:
                if is_cancelled_exception(exc):
                    raise
                within = f" (time limit {step.timeout_s:g} s)" if step.timeout_s else ""
                return StepResult(step_id=src.id, kind=src.kind, status="failed", message=failure_chain(exc) + within)

        results = list(await asyncio.gather(*(one(src) for src in step.sources)))
        failed = [r for r in results if r.status != "completed"]
        message = f"{len(results) - len(failed)} of {len(results)} sources"
        if failed:
            message += "; failed: " + "; ".join(f"{r.step_id} ({r.kind}): {r.message}" for r in failed)
        status = "failed" if len(failed) == len(results) else "completed"
        return StepResult(step_id=step.id, kind=step.kind, status=status, sources=results, message=message)

    def _series_files(self, step_ids: list[str]) -> dict[str, str]:
        """Input name ``<id>_series`` -> artifact id for the archived series of the steps ``step_ids`` (and of
        the sources of gather steps among them)."""
        files: dict[str, str] = {}
        for s in self._steps:
            if s.step_id not in step_ids:
                continue
            for r in [s, *(s.sources or [])]:
                if r.archived and r.archived.artifact_id:
                    files[input_name(r.step_id) + SERIES_INPUT_SUFFIX] = r.archived.artifact_id
        return files

    async def _python(self, step: PythonStep) -> StepResult:
        """Run the step as the child workflow; the writes its code proposes become the next steps."""
        req, workflow_id = self._req, self._workflow_id
        inputs: dict[str, Any] = {
            input_name(s.step_id): s.model_dump(mode="json", exclude_none=True)
            for s in self._steps
            if s.step_id in step.inputs
        }
        files = self._series_files(step.inputs)  # by reference; the sandbox activity mounts them read-only
        outcome = await workflow.execute_child_workflow(
            PythonExecutionWorkflow.run,
            PythonRunInput(
                workflow_id=workflow_id,
                step_id=step.id,
                user=req.user,
                approvers=req.approvers,
                approval_timeout_s=req.approval_timeout_s,
                approval_mode=req.python_approval_mode,
                code=step.code,
                objective=step.objective,
                inputs=inputs,
                files=files,
                expected_keys=step.expected_keys,
                max_attempts=step.max_attempts,
            ),
            id=self.child_id(workflow_id, step.id),
            # A run that is terminated or times out asks its python step to stop (its sandbox container is
            # killed) and the step audits the cancel; the default, TERMINATE, killed it with no record.
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            static_summary=f"python step {step.id} of {workflow_id}",
        )
        result = StepResult(
            step_id=step.id, kind=step.kind, status=outcome.status, python=outcome, message=outcome.message
        )
        if outcome.status != "completed" or outcome.execution is None:
            return result
        proposed = outcome.execution.proposed_writes
        derived = derived_write_id if proposed and workflow.patched(DERIVED_WRITE_ID_PATCH) else _legacy_write_id
        self._queue[0:0] = [
            ControlWriteStep(
                id=derived(step.id, n),
                channel=w.channel,
                value=w.value,
                reason=w.reason or f"proposed by python step {step.id}",
            )
            for n, w in enumerate(proposed[:MAX_PROPOSED_WRITES], start=1)
        ]
        self._total += min(len(proposed), MAX_PROPOSED_WRITES)
        if len(proposed) > MAX_PROPOSED_WRITES:
            result.message += f"; only the first {MAX_PROPOSED_WRITES} proposed writes are considered"
        return result

    async def _memory(self, step: MemoryStep) -> StepResult:
        """recall: the user's relevant notes. remember: the worker's memory approval mode, then (when it says
        'always') the approval gate, then the note is stored once (idempotent under run/step)."""
        req, workflow_id = self._req, self._workflow_id
        if step.action == "recall":
            found = await workflow.execute_activity_method(
                MemoryActivities.recall,
                MemorySearchInput(user=req.user, query=step.query or "", limit=step.limit),
                start_to_close_timeout=MEMORY_TIMEOUT,
                retry_policy=READ_RETRY,
                summary=f"recall notes of {req.user}",
            )
            return StepResult(
                step_id=step.id, kind=step.kind, status="completed", memories=found, message=f"{len(found)} notes"
            )
        text = step.text or ""
        policy = await workflow.execute_activity_method(
            MemoryActivities.memory_policy, start_to_close_timeout=MEMORY_TIMEOUT, retry_policy=READ_RETRY
        )
        if policy.approval_mode == "always":
            decision = await self._gate.request(
                kind="memory", step_id=step.id, summary=f"remember for {req.user}: {text[:300]}", reason=text
            )
            if decision.decision != "approved":
                status = "timed_out" if decision.decision == "timed_out" else "rejected"
                return StepResult(
                    step_id=step.id,
                    kind=step.kind,
                    status=status,
                    message=f"note not stored: {decision.decision} by {decision.approver or decision.via}",
                )
        note = await workflow.execute_activity_method(
            MemoryActivities.remember,
            MemoryAddInput(
                user=req.user,
                text=text,
                source=f"run {workflow_id} step {step.id}",
                idem_key=f"{workflow_id}/{step.id}",
                workflow_id=workflow_id,
                step_id=step.id,
            ),
            start_to_close_timeout=MEMORY_TIMEOUT,
            retry_policy=READ_RETRY,
            summary=f"remember a note of {req.user}",
        )
        return StepResult(
            step_id=step.id, kind=step.kind, status="completed", memories=[note], message=f"note {note.id} stored"
        )

    async def _notes_for_answer(self) -> list[Memory]:
        """The user's notes most relevant to the question, for the composer: those the planner got, or looked up
        now (none when the lookup fails)."""
        if not workflow.patched(MEMORY_CONTEXT_PATCH):
            return []
        if self._notes is None:
            self._notes = await self._user_notes()
        return self._notes

    async def _user_notes(self) -> list[Memory]:
        """The user's notes most relevant to the question (``recall`` activity); none when the lookup fails."""
        try:
            return await workflow.execute_activity_method(
                MemoryActivities.recall,
                MemorySearchInput(user=self._req.user, query=self._req.query[:2000], limit=None),
                start_to_close_timeout=MEMORY_TIMEOUT,
                retry_policy=READ_RETRY,
                summary="notes relevant to the question",
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            return []

    async def _respond(self, step: RespondStep) -> StepResult:
        req = self._req
        notes = await self._notes_for_answer()
        composed = await workflow.execute_activity_method(
            AgentActivities.compose_answer,
            ComposeInput(
                workflow_id=self._workflow_id,
                user=req.user,
                query=req.query,
                instructions=step.instructions,
                steps=[for_composer(s) for s in self._steps],  # python attempts' code as digests
                memories=notes,
            ),
            start_to_close_timeout=COMPOSE_TIMEOUT,
            retry_policy=READ_RETRY,
            summary="compose the answer",
        )
        self._answer, self._citations = composed.answer, composed.citations
        self._unsupported = composed.unsupported_citations
        self._unsupported_values = composed.unsupported_values
        if composed.usage is not None:
            self._answer_usage = self._answer_usage.add(composed.usage)
        return StepResult(step_id=step.id, kind=step.kind, status="completed", answer=composed.answer)

    async def _logbook_publish(self, step: LogbookPublishStep) -> StepResult:
        """Draft the entry (activity: checks the target and the attachments) -> approval (kind ``logbook``, the draft
        shown) -> publish once (activity). A rejected or expired request publishes nothing and says so."""
        if not workflow.patched(LOGBOOK_PUBLISH_PATCH):
            return StepResult(
                step_id=step.id, kind=step.kind, status="failed", message="this worker cannot publish logbook entries"
            )
        req, workflow_id = self._req, self._workflow_id
        inputs = [s for s in self._steps if s.step_id in step.inputs]
        figures = [
            f.artifact_id
            for s in (inputs if step.attach_figures else [])
            if s.python and s.python.execution
            for f in s.python.execution.figures
            if f.artifact_id
        ]
        draft = await workflow.execute_activity_method(
            LogbookActivities.draft_logbook_entry,
            LogbookDraftInput(
                workflow_id=workflow_id,
                step_id=step.id,
                user=req.user,
                title=step.title,
                text=step.text,
                tags=step.tags,
                inputs=inputs,
                attachments=[*step.attachments, *figures],
            ),
            start_to_close_timeout=LOGBOOK_DRAFT_TIMEOUT,
            retry_policy=LOGBOOK_RETRY,
            summary=f"draft logbook entry: {step.title[:80]}",
        )
        files = f", {len(draft.attachments)} attachments" if draft.attachments else ""
        decision = await self._gate.request(
            kind="logbook",
            step_id=step.id,
            summary=f"publish to the {draft.target} logbook: {draft.title}{files}",
            reason=draft.text,
            entry=draft,
            audit_details={"target": draft.target, "title": draft.title},
        )
        if decision.decision != "approved":
            status = "timed_out" if decision.decision == "timed_out" else "rejected"
            comment = f": {decision.comment}" if decision.comment else ""
            return StepResult(
                step_id=step.id,
                kind=step.kind,
                status=status,
                message=f"logbook entry not published: {decision.decision} by "
                f"{decision.approver or decision.via}{comment}",
            )
        published = await workflow.execute_activity_method(
            LogbookActivities.publish_logbook_entry,
            LogbookPublishInput(
                draft=draft,
                approver=", ".join(decision.approved_by) or decision.approver or "",
                request_id=decision.request_id,
            ),
            start_to_close_timeout=LOGBOOK_PUBLISH_TIMEOUT,
            retry_policy=LOGBOOK_RETRY,
            summary=f"publish logbook entry to {draft.target}: {step.title[:80]}",
        )
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed",
            logbook=published,
            message=f"published to the {published.target} logbook as {published.entry_id}"
            f"{f' ({published.url})' if published.url else ''}{files}",
        )

    @staticmethod
    def child_id(workflow_id: str, step_id: str) -> str:
        """Workflow id of the child that runs python step ``step_id``."""
        return f"{workflow_id}.{step_id}"

    async def _control_write(self, step: ControlWriteStep) -> StepResult:
        """Limits check -> approval -> write (once) with verification. Skipped after a step that did not
        complete."""
        if self._writes_blocked:
            return StepResult(
                step_id=step.id, kind=step.kind, status="skipped", message="skipped: an earlier step did not complete"
            )
        req, workflow_id = self._req, self._workflow_id
        check = await workflow.execute_activity_method(
            AgentActivities.check_write,
            WriteCheckInput(workflow_id=workflow_id, step_id=step.id, channel=step.channel, value=step.value),
            start_to_close_timeout=WRITE_CHECK_TIMEOUT,
            retry_policy=CA_RETRY,
            summary=f"limits check {step.channel} -> {step.value:g}",
        )
        if not check.allowed:
            await audit(
                AuditEvent(
                    event_kind="write_refused",
                    workflow_id=workflow_id,
                    event_key=f"write-refused:{run_key()}:{step.id}",
                    step_id=step.id,
                    actor=req.user,
                    channel=step.channel,
                    previous_value=check.current_value,
                    value=step.value,
                    comment=check.message,
                    details={"violation": check.violation},
                )
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
            status = "timed_out" if decision.decision == "timed_out" else "rejected"
            return StepResult(
                step_id=step.id,
                kind=step.kind,
                status=status,
                check=check,
                message=f"{decision.decision} by {decision.approver or decision.via}: {decision.comment}",
            )
        start_by: timedelta | None = None
        if decision.write_by is not None and workflow.patched(IDENTITY_PATCH):
            start_by = decision.write_by - workflow.now()
            if start_by <= timedelta(0):
                return await self._stale_approval(step, check, decision.write_by.isoformat())
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
        return StepResult(
            step_id=step.id,
            kind=step.kind,
            status="completed" if record.verified else "failed",
            check=check,
            write=record,
            message=record.message if record.verified else f"write not verified: {record.message}",
        )

    async def _stale_approval(self, step: ControlWriteStep, check: LimitsCheck, write_by: str) -> StepResult:
        """The write could not start by its write-by deadline (no worker for too long): refused, audited; a new
        request must be approved."""
        message = (
            f"refused: the approval expired at {write_by} before the write could start (approval.write_by_s); "
            "request the write again"
        )
        await audit(
            AuditEvent(
                event_kind="write_refused",
                workflow_id=self._workflow_id,
                event_key=f"write-refused:{run_key()}:{step.id}:stale",
                step_id=step.id,
                actor=self._req.user,
                channel=step.channel,
                value=step.value,
                comment=message,
                details={"violation": "approval_expired", "write_by": write_by},
            )
        )
        return StepResult(step_id=step.id, kind=step.kind, status="refused", check=check, message=message)

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
