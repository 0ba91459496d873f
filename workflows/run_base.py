"""What every step family of ``AgentRunWorkflow`` shares: the run's state as the step handlers see it, and the
retry policies of the reads (the handlers are mixins: ``workflows.run_reads``, ``run_python``, ``run_writes``,
``run_publish``; ``workflows.agent_run`` runs them in order).

Deterministic workflow code only (no I/O, no clocks): the handlers call activities and child workflows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

from workflows.approval_gate import ApprovalGate, audit, run_key

with workflow.unsafe.imports_passed_through():
    from activities.memory import MemoryActivities
    from tern.models import AgentRunRequest, AuditEvent, AuditKind, Step, StepResult, WriteRecord
    from tern.models.memory import Memory, MemorySearchInput

READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=5
)
# Channel Access activities ride out an IOC that stops answering for a minute or two (a reboot, a gateway restart):
# ~2 minutes of attempts (waits 1, 2, 4, 8, then 10 s) before the step fails naming the unreachable channels.
CA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=12
)
MEMORY_TIMEOUT = timedelta(seconds=60)
# Runs check who starts them (verify_proof) and approved writes must start by their write-by deadline; runs started
# before proven identity replay without either.
IDENTITY_PATCH = "proven-identity-1"


class RunSteps:
    """The state of one agent run that the step handlers read and change (set by ``AgentRunWorkflow.__init__``)."""

    _req: AgentRunRequest
    _gate: ApprovalGate
    _queue: list[Step]
    _steps: list[StepResult]
    _total: int
    _writes: list[WriteRecord]
    _writes_blocked: bool
    _notes: list[Memory] | None

    @property
    def _workflow_id(self) -> str:
        return workflow.info().workflow_id

    @staticmethod
    def child_id(workflow_id: str, step_id: str) -> str:
        """Workflow id of the child that runs python step ``step_id``."""
        return f"{workflow_id}.{step_id}"

    async def _audit_refusal(
        self,
        event_kind: AuditKind,
        step_id: str,
        comment: str,
        details: dict[str, Any],
        *,
        key_suffix: str = "",
        channel: str | None = None,
        previous_value: float | None = None,
        value: float | None = None,
    ) -> None:
        """Audit a step refused without asking for approval (``write_refused``, ``bluesky_refused``), by the run's
        user, through the ``record_audit`` activity (:func:`workflows.approval_gate.audit`).

        Args:
            event_kind: the audit kind; the event key is that kind with ``-`` for ``_``, then the run key
                (:func:`~workflows.approval_gate.run_key`), the step id and ``key_suffix`` (e.g. ``":stale"`` for a
                second refusal kind of the same step), ``:``-separated.
            step_id: the refused step; ``comment`` why (the check's message); ``details`` its violation and data.
            channel, previous_value, value: the write refused, when it is one (engineering units).
        """
        await audit(
            AuditEvent(
                event_kind=event_kind,
                workflow_id=self._workflow_id,
                event_key=f"{event_kind.replace('_', '-')}:{run_key()}:{step_id}{key_suffix}",
                step_id=step_id,
                actor=self._req.user,
                channel=channel,
                previous_value=previous_value,
                value=value,
                comment=comment,
                details=details,
            )
        )

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
