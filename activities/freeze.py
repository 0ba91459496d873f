"""Activities of the facility write freeze (``workflows/facility_freeze.py``, ``tern freeze``/``tern thaw``).

``authorize_freeze`` checks who asks (the proof, as a decision's: :meth:`ApprovalActivities.verify_proof`) and,
for a thaw, whether the approval policy lets that principal thaw (:meth:`ApprovalPolicy.may_thaw`).
``hold_write`` is how a write step consults the freeze: the Update ``hold`` on the freeze workflow (id
``control.freeze_workflow_id``), through the worker's own Temporal client
(``temporalio.activity.client()``); it registers the write as held when frozen, so the thaw signals it back.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.approval import ApprovalActivities
from tern.approval.policy import ApprovalPolicyError
from tern.models.freeze import FreezeAuthInput, FreezeState, HoldRequest, change_digest
from tern.models.identity import ProofCheck, ProofCheckInput

HOLD_UPDATE = "hold"
"""Name of the freeze workflow's Update a write step sends (activities do not import workflows)."""


class FreezeActivities:
    """The freeze's activities; ``approvals`` gives the policy and the proof check."""

    def __init__(self, approvals: ApprovalActivities) -> None:
        self.approvals = approvals

    def all(self) -> list:
        """The activity callables to register on a worker."""
        return [self.authorize_freeze, self.hold_write]

    @activity.defn(name="authorize_freeze")
    async def authorize_freeze(self, inp: FreezeAuthInput) -> ProofCheck:
        """Who freezes or thaws: the proof (declared mode: the name as typed) stating this change (statement
        purpose ``decision``, the freeze workflow's id, request id ``change_id``, action ``freeze`` or
        ``thaw``, digest :func:`~tern.models.freeze.change_digest`); a thaw also needs
        :meth:`ApprovalPolicy.may_thaw`. A refusal is a result (``ok`` False, ``reason``), never an error; an
        invalid policy file refuses every thaw (fail closed) but never a freeze."""
        c = inp.change
        check = await self.approvals.verify_proof(
            ProofCheckInput(
                proof=c.proof,
                purpose="decision",
                workflow_id=inp.workflow_id,
                request_id=c.change_id,
                action=c.action,
                digest=change_digest(c),
                declared=c.by,
                surface=c.surface,
                use_key=inp.use_key,
            )
        )
        if not check.ok or c.action == "freeze":
            return check
        try:
            policy, _ = await self.approvals.current()
        except ApprovalPolicyError as exc:
            return ProofCheck(ok=False, mode=check.mode, reason=f"thaw refused: {exc}")
        if not policy.may_thaw(check.principal or ""):
            who = ", ".join(policy.freeze_thaw) or "the policy's approvers"
            return ProofCheck(ok=False, mode=check.mode, reason=f"{check.principal} may not thaw (may: {who})")
        return check

    @activity.defn(name="hold_write")
    async def hold_write(self, inp: HoldRequest) -> FreezeState:
        """The freeze state for a write about to execute; when frozen the freeze workflow has recorded (and
        audited) the write as held and will signal its run at the thaw. No freeze workflow (never frozen, or
        closed): not frozen.
        Any other failure raises (the activity is retried: no write executes on doubt)."""
        handle = activity.client().get_workflow_handle(self.approvals.settings.control.freeze_workflow_id)
        try:
            return await handle.execute_update(HOLD_UPDATE, inp, result_type=FreezeState)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return FreezeState()
            raise
        except WorkflowUpdateFailedError as exc:
            raise ApplicationError(f"the freeze workflow refused the hold: {exc.cause}") from exc
