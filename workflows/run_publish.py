"""The steps of ``AgentRunWorkflow`` that hand something out: ``respond`` (compose the answer, with the user's
notes) and ``logbook_publish`` (draft -> approval -> publish once)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.declined import decided_by, declined_result
from workflows.run_base import READ_RETRY, RunSteps

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from activities.logbook import LogbookActivities
    from tern.agent.payload import for_composer
    from tern.models import LogbookPublishStep, RespondStep, StepResult, ValueMismatch
    from tern.models.activity_io import ComposeInput, LogbookDraftInput, LogbookPublishInput
    from tern.models.memory import Memory
    from tern.models.planning import LLMUsage

COMPOSE_TIMEOUT = timedelta(seconds=120)
# Runs started before the composer got the user's notes replay without the memory lookup (workflow.patched).
MEMORY_CONTEXT_PATCH = "memory-context-1"
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
# logbook_publish steps (new with this patch: no earlier history holds one) draft, ask and publish; deprecated.
LOGBOOK_PUBLISH_PATCH = "logbook-publish-1"


class PublishSteps(RunSteps):
    """Handlers of the ``respond`` and ``logbook_publish`` step kinds."""

    _answer: str
    _citations: list[str]
    _unsupported: list[str]
    _unsupported_values: list[ValueMismatch]
    _answer_usage: LLMUsage

    async def _notes_for_answer(self) -> list[Memory]:
        """The user's notes most relevant to the question, for the composer: those the planner got, or looked up
        now (none when the lookup fails)."""
        if not workflow.patched(MEMORY_CONTEXT_PATCH):
            return []
        if self._notes is None:
            self._notes = await self._user_notes()
        return self._notes

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
        # Deprecated (issue 26): the step kind came with the patch, so no history without the marker reaches here;
        # histories with it still replay. Remove once no open run carries it (docs/how-to/upgrade-workers.md).
        workflow.deprecate_patch(LOGBOOK_PUBLISH_PATCH)
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
            comment = f": {decision.comment}" if decision.comment else ""
            return declined_result(step, decision, f"logbook entry not published: {decided_by(decision)}{comment}")
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
