"""Approval requests, decisions and their records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from tern.models.control import LimitsCheck
from tern.models.identity import IdentityMode, Proof
from tern.models.ids import WorkflowId
from tern.models.limits import MAX_COMMENT_CHARS, UserName
from tern.models.logbook import LogbookDraft
from tern.models.modes import ApprovalMode
from tern.models.plan import Plan
from tern.models.ring import PlanEffect

ApprovalKind = Literal["control_write", "python", "plan", "memory", "logbook", "bluesky"]
APPROVAL_KINDS: tuple[str, ...] = get_args(ApprovalKind)
_MODE_ORDER: tuple[str, ...] = get_args(ApprovalMode)


def stricter_mode(a: ApprovalMode, b: ApprovalMode) -> ApprovalMode:
    """The stricter of two python approval modes (``disabled`` < ``control_writes`` < ``all_code``)."""
    return a if _MODE_ORDER.index(a) >= _MODE_ORDER.index(b) else b


class CodeReview(BaseModel):
    """For ``python`` approvals: the code and what the policy analysis found, shown to the approver."""

    code: str
    objective: str = ""
    analysis: str = Field("", description="Policy analysis summary: findings and risk level.")
    risk: str = "low"
    expected_keys: list[str] = []
    attempt: int = 1


class ApprovalRequest(BaseModel):
    """What the approver is asked to decide. ``request_id`` binds the decision to this request."""

    request_id: str
    kind: ApprovalKind
    step_id: str
    summary: str
    requested_by: str
    approvers: list[str]
    requested_at: datetime
    expires_at: datetime
    write: LimitsCheck | None = Field(None, description="For control writes: the checked proposal.")
    code: CodeReview | None = Field(None, description="For python steps: the code and its analysis.")
    plan: Plan | None = Field(None, description="For plan approval: the steps the run will take.")
    plan_effect: PlanEffect | None = Field(
        None, description="For plan approval with several magnet writes: their predicted effect as the whole."
    )
    entry: LogbookDraft | None = Field(None, description="For logbook approvals: the drafted entry to publish.")
    reason: str = ""
    min_approvals: int = Field(1, description="Different approvers who must approve (policy).")
    approved_by: list[str] = Field([], description="Approvers who approved so far (when more than one is needed).")
    allow_self_approval: bool = Field(True, description="Whether the requester may approve (policy).")
    policy_version: str = Field("", description="Version of the approval policy that named the approvers.")
    policy_rule: str = Field("", description="Which part of the policy matched (e.g. 'rule 2').")
    identity: IdentityMode = Field("declared", description="declared: names as typed; proven: decisions need a proof.")
    surfaces: list[str] = Field([], description="Where the request may be decided; empty: any surface.")
    digest: str = Field(
        "", description="SHA-256 of what the approver is shown (tern.identity.statement.request_digest)."
    )


class NotifyApproversInput(BaseModel):
    """Input of the ``notify_approvers`` activity: the request that now waits, and the workflow that waits."""

    workflow_id: WorkflowId  # of the waiting run (an agent run or its python step)
    request: ApprovalRequest


class ApprovalResolveInput(BaseModel):
    """Input of the ``resolve_approval`` activity: what is about to be asked, and of whom the run asked it."""

    workflow_id: WorkflowId
    step_id: str
    kind: ApprovalKind
    requester: str
    requested_approvers: list[str] = []
    channel: str | None = None
    requested_mode: ApprovalMode = "all_code"


class ResolvedApproval(BaseModel):
    """The worker's approval policy applied to one request (recorded in history as an activity result).

    ``refusal`` is set when no one can approve the request under the policy; the request is then refused
    without waiting.
    """

    approvers: list[str]
    min_approvals: int = 1
    allow_self_approval: bool = True
    python_approval_mode: ApprovalMode = "all_code"
    policy_version: str = ""
    rule: str = ""
    refusal: str | None = None
    identity: IdentityMode = "declared"
    surfaces: list[str] = Field([], description="Where the request may be decided (a rule's surfaces); empty: any.")
    write_by_s: float = Field(900.0, description="A write must start within this many seconds of its last approval.")


class Decision(BaseModel):
    """An approver's decision, sent as the ``decide`` update or signal.

    JSON body (e.g. the Web UI's "Send an Update" dialog): ``{"request_id": "...", "approver": "name",
    "approved": true, "comment": "why"}``; unknown fields are refused (``extra="forbid"``), so a body with a typo
    cannot decode and never reaches the workflow's handler.
    """

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1)
    approver: UserName
    approved: bool
    comment: str = Field("", max_length=MAX_COMMENT_CHARS)
    surface: str | None = Field(
        None,
        max_length=40,
        pattern=r"^[a-z][a-z0-9_.-]*$",
        description="Which front end sent the decision ('cli', 'chat', ...); self-declared, like ``approver``. "
        "Optional so a Web UI or raw-client body may omit it; the audit then says "
        "'unspecified (Web UI or raw client)'.",
    )
    proof: Proof | None = Field(
        None, description="A signed statement proving who decides (tern.identity); required when identity is proven."
    )


UNSPECIFIED_SURFACE = "unspecified (Web UI or raw client)"
"""What the audit records as the surface of a decision that did not name one."""


class ApprovalRecord(BaseModel):
    """A decided (or expired) approval as it stands in the run result and the audit table."""

    request_id: str
    kind: ApprovalKind
    step_id: str
    decision: Literal["approved", "rejected", "timed_out"]
    approver: str | None = None
    comment: str = ""
    decided_at: datetime
    via: Literal["update", "signal", "timeout", "policy"] = "update"
    approved_by: list[str] = Field([], description="Everyone who approved, when the policy needs more than one.")
    proven: bool = Field(False, description="Whether every approval counted was proven (identity proven).")
    write_by: datetime | None = Field(
        None, description="For an approved write: it must start by then (UTC), or be requested again."
    )


class IgnoredDecision(BaseModel):
    """A decision that was refused (wrong request, not an approver, self-approval, ...); kept, and audited as
    ``decision_refused``, so the attempt is on record whichever way it came."""

    decision: Decision
    reason: str
    received_at: datetime
    via: Literal["update", "signal"] = "signal"
