"""Operator memory: notes a user asked the agent to remember, and how a run or the CLI reaches them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from tern.models.ids import WorkflowId
from tern.models.limits import UserName

MAX_MEMORY_CHARS = 4000
MemoryApprovalMode = Literal["none", "always"]


class Memory(BaseModel):
    """One stored note of one user."""

    id: int
    user: str
    text: str
    source: str = ""
    created_at: datetime
    score: float | None = Field(None, description="Search relevance (fused rank score), None outside a search.")


class MemoryAddInput(BaseModel):
    """Store ``text`` for ``user``; ``idem_key`` (run/step) makes a retried activity add it once."""

    user: UserName
    text: str = Field(min_length=1, max_length=MAX_MEMORY_CHARS)
    source: str = ""
    idem_key: str | None = None
    workflow_id: WorkflowId = ""
    step_id: str = ""


class MemorySearchInput(BaseModel):
    """Search ``user``'s notes (never another user's) for ``query``; at most ``limit`` results (None: the
    worker's ``memory_context_limit``, the composer's context)."""

    user: UserName
    query: str = Field(min_length=1, max_length=2000)
    limit: int | None = Field(5, ge=1, le=50)


class MemoryPolicy(BaseModel):
    """Whether storing a note needs a human decision (the worker's ``memory_approval_mode``)."""

    approval_mode: MemoryApprovalMode
