"""A run's progress as it publishes it in its Temporal memo (key :data:`PROGRESS_MEMO`), so that one visibility
list call (``tern pending``, the MCP tools, the chat bridges) or one long poll on the run's history
(``tern follow``) reads it: no ``status`` query per run, no worker replaying the history to answer.

The workflow upserts the memo (``workflow.upsert_memo``) when a step starts, when it is done (with its one-line
summary), when a request starts or stops waiting (with who may decide and until when), when the plan is revised
and when the run finishes. Each upsert is a ``WorkflowPropertiesModified`` event in the run's history carrying the
new memo value, which is what a follower reads. The memo is kept small (a few hundred bytes to a few kB): the
request's summary, never its code or plan (those stay behind the ``status`` query and ``tern show``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from tern.models.approval import ApprovalKind, ApprovalRequest
from tern.models.control import LimitsCheck
from tern.models.ring import PlanEffect, PredictedEffect
from tern.models.search_attributes import RunState

PROGRESS_MEMO = "tern.progress"
"""Memo key under which a run publishes its :class:`RunProgress` (Temporal memos need no registration)."""

MAX_LINE_CHARS = 300
"""Longest one-line text kept in the memo (a step's summary, a request's summary, the question)."""

ProgressEvent = Literal[
    "started", "planned", "step_started", "step_done", "waiting", "decided", "plan_revised", "finished"
]
"""What the latest publication reports: the run started, the planner made its plan, a step started, a step ended
(its summary in ``line``), a request waits for a decision (``pending``), it stopped waiting, the plan was revised
after a failed step, the run ended."""


def clip_line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis marks a cut)."""
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


class PendingSummary(BaseModel):
    """The request a run waits on, as far as a list needs it: which, what kind, what, who may decide, until when;
    for a control write the checked proposal (channel, value, limits: a few hundred bytes). A python step's code,
    a plan or a logbook draft stay out (``tern show`` has them)."""

    request_id: str
    kind: ApprovalKind
    step_id: str
    summary: str
    requested_by: str
    approvers: list[str]
    requested_at: datetime
    expires_at: datetime
    min_approvals: int = 1
    approved_by: list[str] = []
    write: LimitsCheck | None = None
    plan_effect: PlanEffect | None = Field(None, description="A plan's writes as the whole (without each alone).")

    @classmethod
    def of(cls, req: ApprovalRequest) -> PendingSummary:
        """The summary of ``req`` (its ``summary`` clipped to :data:`MAX_LINE_CHARS`)."""
        return cls(
            request_id=req.request_id,
            kind=req.kind,
            step_id=req.step_id,
            summary=clip_line(req.summary),
            requested_by=req.requested_by,
            approvers=list(req.approvers),
            requested_at=req.requested_at,
            expires_at=req.expires_at,
            min_approvals=req.min_approvals,
            approved_by=list(req.approved_by),
            write=req.write.model_copy(
                update={
                    "plan_effect": _lean(req.write.plan_effect),
                    "predicted_effect": _flat(req.write.predicted_effect),
                }
            )
            if req.write
            else None,
            plan_effect=_lean(req.plan_effect),
        )


def _lean(p: PlanEffect | None) -> PlanEffect | None:
    """A plan's effect as the whole only: each write alone (up to a kilobyte a write) and the orbit change at every
    BPM stay in the request."""
    if p is None:
        return None
    return p.model_copy(update={"per_write": {}, "per_write_omitted": bool(p.per_write), "combined": _flat(p.combined)})


def _flat(e: PredictedEffect | None) -> PredictedEffect | None:
    """An effect without its orbit change at every BPM (2-3 kB, the chat card's plot): that stays in the request."""
    return e.model_copy(update={"orbit_change_mm": None}) if e is not None and e.orbit_change_mm else e


class RunProgress(BaseModel):
    """A run's latest progress: the memo value under :data:`PROGRESS_MEMO`.

    ``seq`` counts publications (1 for the first): a follower prints each one once and can tell a missed one.
    ``steps_done``/``steps_total`` count steps of the current plan (a revision changes the total). ``line`` is the
    one-line text of ``event`` (at most :data:`MAX_LINE_CHARS`). ``updated_at`` is workflow time (UTC).
    """

    workflow_id: str
    seq: int = Field(ge=1)
    event: ProgressEvent
    state: RunState
    user: str
    query: str = Field("", description="The question, clipped to MAX_LINE_CHARS.")
    step_id: str | None = None
    step_kind: str | None = None
    steps_done: int = 0
    steps_total: int = 0
    line: str = ""
    pending: PendingSummary | None = None
    updated_at: datetime

    @property
    def finished(self) -> bool:
        """Whether this is the run's last publication."""
        return self.event == "finished"

    def text(self) -> str:
        """One line for a person: ``[done/total] <what happened>`` (``waiting`` names the approvers and expiry)."""
        where = f"[{self.steps_done}/{self.steps_total}]" if self.steps_total else "[-]"
        if self.event == "waiting" and self.pending is not None:
            p = self.pending
            need = f" ({len(p.approved_by)} of {p.min_approvals} approvals)" if p.min_approvals > 1 else ""
            who = ", ".join(p.approvers) or "(no approver)"
            return (
                f"{where} waiting for {who}{need} on {p.kind} request {p.request_id}: {p.summary} "
                f"(expires {p.expires_at:%Y-%m-%d %H:%M:%S} UTC)"
            )
        return f"{where} {self.line}".rstrip()
