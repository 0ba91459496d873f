"""The facility write freeze: while frozen no control write executes anywhere; writes reached in runs wait (their
approvals kept, their write-by deadlines paused) until a thaw. Held by the ``FacilityFreezeWorkflow``
(``workflows/facility_freeze.py``, one execution with the fixed id ``control.freeze_workflow_id``)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tern.models.identity import Proof

FREEZE_WORKFLOW_ID = "tern-facility-freeze"
"""Default workflow id of the one freeze workflow of a facility (setting ``control.freeze_workflow_id``): every
worker and client finds it by this id. Freezes, thaws and refused attempts are audited under it as the run id (a
held write under its own run's id)."""
MAX_REASON_CHARS = 500
FreezeAction = Literal["freeze", "thaw"]


class FreezeChange(BaseModel):
    """One ``freeze`` or ``thaw`` Update: who, why, and (proven identity) the proof signing exactly this change.

    ``change_id`` is the statement's request id (one per attempt; a proof is single use); ``surface`` the front end
    (``cli``, a chat bridge)."""

    model_config = ConfigDict(extra="forbid")
    action: FreezeAction
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)
    change_id: str = Field(min_length=1, max_length=200)
    surface: str = Field("cli", max_length=40)
    proof: Proof | None = None

    @field_validator("reason", "by")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v


def change_digest(change: FreezeChange) -> str:
    """SHA-256 hex of what a freeze/thaw statement must name: the action and the reason in canonical JSON (as
    :func:`tern.identity.statement.canonical_json`: keys sorted, no spaces, ASCII)."""
    text = json.dumps({"action": change.action, "reason": change.reason}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class HoldRequest(BaseModel):
    """A run's write that is about to execute asks the freeze workflow whether it must wait (Update ``hold``)."""

    workflow_id: str = Field(min_length=1, max_length=1000)
    step_id: str = Field(min_length=1, max_length=200)
    channel: str
    value: float
    request_id: str = Field("", description="The approval request the write carries (kept while held).")


class HeldWrite(HoldRequest):
    """A write waiting for a thaw, since ``held_at`` (UTC)."""

    held_at: datetime


class FreezeState(BaseModel):
    """Where the freeze is. ``epoch`` counts freezes and thaws (a run waits for the epoch after the one it was held
    in); ``held`` the writes waiting now."""

    frozen: bool = False
    by: str = ""
    reason: str = ""
    since: datetime | None = None
    epoch: int = 0
    held: list[HeldWrite] = Field(default_factory=list)

    def describe(self) -> str:
        """One line: ``frozen by X since <UTC time>: reason (N writes held)`` or ``not frozen``."""
        if not self.frozen:
            return "not frozen: control writes execute once approved"
        since = f"{self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else "?"
        return f"frozen by {self.by} since {since}: {self.reason} ({len(self.held)} write(s) held)"


class FreezeAuthInput(BaseModel):
    """Input of the ``authorize_freeze`` activity: the change, the freeze workflow's id (the statement must name
    it) and the proof's use key."""

    change: FreezeChange
    workflow_id: str
    use_key: str
