"""``FacilityFreezeWorkflow``: the facility write freeze, held in Temporal (``tern freeze`` / ``tern thaw``).

One execution per facility with a fixed id (``control.freeze_workflow_id``, default ``tern-facility-freeze``),
started by the first ``tern freeze`` (Update-with-Start) and never ending: it continues as new when Temporal
suggests it, carrying its state. Why a workflow: every worker sees the same state at once (it is Temporal's, not a
worker setting such as ``writes_enabled``, which needs a restart and refuses instead of holding), it survives worker
and server restarts like any run, and the thaw *pushes* to the held runs (a Signal to each) instead of each run
polling. Its task queue is that of the client that started it: every worker of the facility polls it.

- Update ``freeze`` / ``thaw`` (:class:`~tern.models.freeze.FreezeChange`): the validator refuses a freeze while
  frozen and a thaw while not frozen; the handler checks who asks (``authorize_freeze``: the proof in proven
  identity, and for a thaw the policy's ``freeze_thaw``), audits ``facility_frozen`` / ``facility_thawed`` (or
  ``freeze_refused``), and on a thaw signals ``facility_thawed`` to every run holding a write.
- Update ``hold`` (:class:`~tern.models.freeze.HoldRequest`, from the ``hold_write`` activity of a write step):
  while frozen the write is recorded as held and audited ``write_held`` under its run's id; returns the state.
- Query ``state``: the :class:`~tern.models.freeze.FreezeState` (``tern freeze --status``, ``tern status``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.approval_gate import AUDIT_RETRY, audit, run_key

with workflow.unsafe.imports_passed_through():
    from activities.freeze import FreezeActivities
    from tern.models import AuditEvent
    from tern.models.freeze import (
        FreezeAuthInput,
        FreezeChange,
        FreezeState,
        HeldWrite,
        HoldRequest,
    )

AUTHORIZE_TIMEOUT = timedelta(seconds=30)
THAWED_SIGNAL = "facility_thawed"
"""Signal a thaw sends to each run holding a write (``AgentRunWorkflow.facility_thawed``), with the new epoch."""


@workflow.defn
class FacilityFreezeWorkflow:
    """Holds the facility's write freeze (see the module docstring)."""

    @workflow.init
    def __init__(self, state: FreezeState | None = None) -> None:
        self._state = state or FreezeState()
        self._lock = asyncio.Lock()  # one change at a time: checks, audit, state

    @workflow.run
    async def run(self, state: FreezeState | None = None) -> None:
        """Wait until Temporal suggests continuing as new (history size), then carry the state over."""
        await workflow.wait_condition(
            lambda: workflow.info().is_continue_as_new_suggested() and workflow.all_handlers_finished()
        )
        workflow.continue_as_new(self._state)

    @workflow.query
    def state(self) -> FreezeState:
        """The freeze state now."""
        return self._state

    @workflow.update
    async def freeze(self, change: FreezeChange) -> FreezeState:
        """Freeze every control write (audited ``facility_frozen``); returns the new state."""
        async with self._lock:
            self._valid(change, "freeze")
            await self._authorize(change)
            now = workflow.now()
            self._state = FreezeState(
                frozen=True, by=change.by, reason=change.reason, since=now, epoch=self._state.epoch + 1
            )
            await self._audit_change(change, "facility_frozen")
            workflow.set_current_details(
                f"**Frozen** by {change.by} since {now:%Y-%m-%d %H:%M:%S} UTC: {change.reason}"
            )
            return self._state

    @freeze.validator
    def _validate_freeze(self, change: FreezeChange) -> None:
        self._valid(change, "freeze")

    @workflow.update
    async def thaw(self, change: FreezeChange) -> FreezeState:
        """Thaw (audited ``facility_thawed``), then signal each held run once; returns the new state."""
        async with self._lock:
            self._valid(change, "thaw")
            await self._authorize(change)
            held = self._state.held
            self._state = FreezeState(frozen=False, epoch=self._state.epoch + 1)
            await self._audit_change(change, "facility_thawed", released=len(held))
            workflow.set_current_details(f"Not frozen (thawed by {change.by}: {change.reason})")
            for h in held:
                try:
                    await workflow.get_external_workflow_handle(h.workflow_id).signal(THAWED_SIGNAL, self._state.epoch)
                except Exception:
                    workflow.logger.warning("thaw: run %s no longer waits", h.workflow_id)
            return self._state

    @thaw.validator
    def _validate_thaw(self, change: FreezeChange) -> None:
        self._valid(change, "thaw")

    @workflow.update
    async def hold(self, req: HoldRequest) -> FreezeState:
        """A write about to execute: while frozen, record it as held (audited ``write_held`` once per write and
        freeze) so the thaw releases it; returns the state (the caller waits when ``frozen``)."""
        async with self._lock:
            st = self._state
            if not st.frozen:
                return st
            if not any(h.workflow_id == req.workflow_id and h.step_id == req.step_id for h in st.held):
                st.held.append(HeldWrite(**req.model_dump(), held_at=workflow.now()))
                await audit(
                    AuditEvent(
                        event_kind="write_held",
                        workflow_id=req.workflow_id,
                        event_key=f"held:{req.workflow_id}:{req.step_id}:{run_key()}:{st.epoch}",
                        step_id=req.step_id,
                        request_id=req.request_id or None,
                        actor=st.by,
                        channel=req.channel,
                        value=req.value,
                        comment=f"write held: facility frozen by {st.by}: {st.reason}",
                        details={"epoch": st.epoch, "since": st.since.isoformat() if st.since else None},
                    )
                )
            return st

    def _valid(self, change: FreezeChange, action: str) -> None:
        """Raise (ApplicationError: it fails the Update, in the validator and again in the handler after another
        change got in first) when ``change`` does not fit the state."""
        reason = None
        if change.action != action:
            reason = f"a {change.action} change sent as {action}"
        elif action == "freeze" and self._state.frozen:
            reason = f"already {self._state.describe()}"
        elif action == "thaw" and not self._state.frozen:
            reason = "not frozen: nothing to thaw"
        if reason is not None:
            raise ApplicationError(reason, type="FreezeStateConflict", non_retryable=True)

    async def _authorize(self, change: FreezeChange) -> None:
        check = await workflow.execute_activity_method(
            FreezeActivities.authorize_freeze,
            FreezeAuthInput(
                change=change, workflow_id=workflow.info().workflow_id, use_key=f"{run_key()}:{change.change_id}"
            ),
            start_to_close_timeout=AUTHORIZE_TIMEOUT,
            retry_policy=AUDIT_RETRY,
            summary=f"who may {change.action}: {change.by}",
        )
        if check.ok:
            if check.principal and check.principal != change.by:
                change.by = check.principal
            return
        await audit(
            AuditEvent(
                event_kind="freeze_refused",
                workflow_id=workflow.info().workflow_id,
                event_key=f"freeze-refused:{run_key()}:{change.change_id}",
                actor=change.by,
                comment=f"{change.action} refused: {check.reason}",
                details={"action": change.action, "reason": change.reason, "identity": check.mode},
            )
        )
        raise ApplicationError(f"{change.action} refused: {check.reason}", type="FreezeRefused", non_retryable=True)

    async def _audit_change(
        self, change: FreezeChange, kind: Literal["facility_frozen", "facility_thawed"], released: int = 0
    ) -> None:
        await audit(
            AuditEvent(
                event_kind=kind,
                workflow_id=workflow.info().workflow_id,
                event_key=f"{kind}:{run_key()}:{change.change_id}",
                actor=change.by,
                comment=change.reason,
                details={"epoch": self._state.epoch, "surface": change.surface, "released": released},
            )
        )
