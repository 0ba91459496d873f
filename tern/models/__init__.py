"""Shared pydantic models: the only types that cross the workflow/activity/starter boundary.

The run models (``tern.models.run``) load on first use: they embed the sandbox's result models, and the
sandbox's models import ``tern.models.plan``; loading them lazily breaks that import cycle.
"""

from typing import TYPE_CHECKING, Any

from tern.models.approval import ApprovalKind, ApprovalRecord, ApprovalRequest, Decision, IgnoredDecision
from tern.models.audit import AuditEvent, AuditKind
from tern.models.control import ChannelReading, LimitsCheck, Verification, VerificationLevel, WriteRecord
from tern.models.logbook import LogbookHit, SearchMode, SearchResponse
from tern.models.plan import (
    STEP_KINDS,
    ChannelReadStep,
    ControlWriteStep,
    LogbookSearchStep,
    Plan,
    PythonStep,
    RespondStep,
    Step,
)

if TYPE_CHECKING:
    from tern.models.run import AgentRunRequest, AgentRunResult, AgentRunStatus, RunState, RunStatus, StepResult

_LAZY = {"AgentRunRequest", "AgentRunResult", "AgentRunStatus", "RunState", "RunStatus", "StepResult"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from tern.models import run

        return getattr(run, name)
    raise AttributeError(f"module 'tern.models' has no attribute {name!r}")

__all__ = [
    "STEP_KINDS",
    "AgentRunRequest",
    "AgentRunResult",
    "AgentRunStatus",
    "ApprovalKind",
    "ApprovalRecord",
    "ApprovalRequest",
    "AuditEvent",
    "AuditKind",
    "ChannelReadStep",
    "ChannelReading",
    "ControlWriteStep",
    "Decision",
    "IgnoredDecision",
    "LimitsCheck",
    "LogbookHit",
    "LogbookSearchStep",
    "Plan",
    "PythonStep",
    "RespondStep",
    "RunState",
    "RunStatus",
    "SearchMode",
    "SearchResponse",
    "Step",
    "StepResult",
    "Verification",
    "VerificationLevel",
    "WriteRecord",
]
