"""Approval requests, decisions and their records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tern.models.control import LimitsCheck

ApprovalKind = Literal["control_write", "python", "plan"]


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
    reason: str = ""


class Decision(BaseModel):
    """An approver's decision, sent as the ``decide`` update or signal."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1)
    approver: str = Field(min_length=1, max_length=200)
    approved: bool
    comment: str = Field("", max_length=4000)


class ApprovalRecord(BaseModel):
    """A decided (or expired) approval as it stands in the run result and the audit table."""

    request_id: str
    kind: ApprovalKind
    step_id: str
    decision: Literal["approved", "rejected", "timed_out"]
    approver: str | None = None
    comment: str = ""
    decided_at: datetime
    via: Literal["update", "signal", "timeout"] = "update"


class IgnoredDecision(BaseModel):
    """A signal-borne decision that failed validation; kept so the audit shows the attempt."""

    decision: Decision
    reason: str
    received_at: datetime
