"""A Bluesky plan call, its check against the queue server, and its outcome (``bluesky_plan`` steps; issue 24)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tern.models.ids import WorkflowId


class PlanRequest(BaseModel):  # type: ignore[no-redef]  # pydantic mypy plugin: field "kwargs" vs __init__(**kwargs)
    """A plan call: ``name(*args, **kwargs)``; device arguments by name (``"det1"``)."""

    name: str = Field(min_length=1)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    def call(self) -> str:
        """``count(['det1'], num=3)``: the call as shown to the approver."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


class PlanCheck(BaseModel):
    """A checked plan: the call, the plan's description and parameter names (from the queue server)."""

    plan: PlanRequest
    call: str
    description: str = ""
    parameters: list[str] = Field(default_factory=list)


class PlanOutcome(BaseModel):
    """How a submitted plan ended (the queue server's history item)."""

    item_uid: str
    exit_status: str = Field(description="completed, failed, stopped, aborted, halted, ...")
    run_uids: list[str] = Field(default_factory=list)
    message: str = ""
    submitted_here: bool = Field(False, description="this call added the item (False: found by its key)")


class BlueskyCheckInput(BaseModel):
    """Input of ``check_bluesky_plan``: the plan a step proposes."""

    workflow_id: WorkflowId
    step_id: str
    plan: PlanRequest


class BlueskyRunInput(BaseModel):
    """Input of ``run_bluesky_plan``: the approved plan and its idempotency key (the queue item carries it)."""

    workflow_id: WorkflowId
    step_id: str
    idempotency_key: str
    plan: PlanRequest
    approver: str = ""
