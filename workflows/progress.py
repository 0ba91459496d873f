"""Progress publishing for Tern workflows: the run's :class:`tern.models.progress.RunProgress` in its memo (key
``tern.progress``), upserted when something a person would want to see happens, and the ``current_progress``
Update that Update-with-Start uses to hand a chat, MCP or webhook starter its first status in one round trip.

Deterministic: ``workflow.upsert_memo`` is a command (a ``WorkflowPropertiesModified`` event), so runs started
before progress publishing replay without it: :class:`Progress` asks ``workflow.patched(PROGRESS_PATCH)`` once,
when the run starts, and publishes nothing when that says no.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tern.models import ApprovalRequest, RunState
    from tern.models.progress import PROGRESS_MEMO, PendingSummary, ProgressEvent, RunProgress, clip_line

PROGRESS_PATCH = "progress-memo-1"
"""Runs started before progress publishing replay without the memo upserts (``workflow.patched``)."""


class Progress:
    """The progress one run publishes.

    Args:
        user: who started the run.
        query: the question (clipped to one line of ``MAX_LINE_CHARS``).

    Call :meth:`enable` once at the top of the workflow's ``run`` (it asks ``workflow.patched``); until then, and
    for histories recorded before publishing existed, :meth:`publish` only keeps the latest value in memory
    (which :meth:`current` returns) and writes no memo.
    """

    def __init__(self, user: str, query: str) -> None:
        self.user = user
        self.query = clip_line(query)
        self.enabled = False
        self.latest: RunProgress | None = None

    def enable(self) -> bool:
        """Turn publishing on for runs that take the patch; returns whether it is on."""
        self.enabled = workflow.patched(PROGRESS_PATCH)
        return self.enabled

    def publish(
        self,
        event: ProgressEvent,
        state: RunState,
        *,
        line: str = "",
        step: tuple[str, str] | None = None,
        done: int = 0,
        total: int = 0,
        pending: ApprovalRequest | None = None,
    ) -> RunProgress:
        """Publish the run's progress: ``event`` with its one-line ``line``, the current ``step`` as
        ``(id, kind)``, ``done`` of ``total`` steps, the ``pending`` request (summarized). Returns the value."""
        seq = self.latest.seq + 1 if self.latest is not None else 1
        self.latest = RunProgress(
            workflow_id=workflow.info().workflow_id,
            seq=seq,
            event=event,
            state=state,
            user=self.user,
            query=self.query,
            step_id=step[0] if step else None,
            step_kind=step[1] if step else None,
            steps_done=done,
            steps_total=total,
            line=clip_line(line),
            pending=PendingSummary.of(pending) if pending is not None else None,
            updated_at=workflow.now(),
        )
        if self.enabled:
            workflow.upsert_memo({PROGRESS_MEMO: self.latest})
        return self.latest

    def current(self, state: RunState) -> RunProgress:
        """The latest value, or a ``started`` one (``seq`` 1) before anything was published."""
        if self.latest is not None:
            return self.latest
        return RunProgress(
            workflow_id=workflow.info().workflow_id,
            seq=1,
            event="started",
            state=state,
            user=self.user,
            query=self.query,
            line="started",
            updated_at=workflow.now(),
        )


class ProgressHandlers:
    """Mixin giving a workflow the ``current_progress`` Update (the run's :class:`RunProgress` now). It changes
    nothing; it exists for Update-with-Start (``TernClient.start_once``), which needs an Update to answer the start
    in the same round trip, and whose Update id makes a retried start message return the first answer."""

    _progress: Progress
    _state: RunState

    @workflow.update
    def current_progress(self) -> RunProgress:
        """The run's latest progress (a ``started`` one before anything was published)."""
        return self._progress.current(self._state)
