"""What a step becomes when its approval request was not approved: one rule for every gated step kind.

A decision that is not ``approved`` is ``rejected`` (by an approver or the policy) or ``timed_out`` (nobody decided
within the approval timeout, which rejects); the step ends with that status and a message saying who declined it.
"""

from __future__ import annotations

from typing import Any, Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tern.models import ApprovalRecord, Step, StepResult


def declined_status(decision: ApprovalRecord) -> Literal["rejected", "timed_out"]:
    """``timed_out`` for a decision that timed out, else ``rejected`` (call only for one not approved)."""
    return "timed_out" if decision.decision == "timed_out" else "rejected"


def decided_by(decision: ApprovalRecord) -> str:
    """``rejected by alice`` / ``timed_out by timeout``: the decision and who (or what) made it."""
    return f"{decision.decision} by {decision.approver or decision.via}"


def declined_result(step: Step, decision: ApprovalRecord, message: str, **fields: Any) -> StepResult:
    """The :class:`StepResult` of ``step`` whose approval ``decision`` was not approved: status
    :func:`declined_status`, ``message`` as given, and any other ``StepResult`` fields (e.g. ``check``)."""
    return StepResult(step_id=step.id, kind=step.kind, status=declined_status(decision), message=message, **fields)
