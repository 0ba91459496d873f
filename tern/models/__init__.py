"""Shared pydantic models: the only types that cross the workflow/activity/starter boundary.

Nothing here imports another ``tern`` sub-package: the sandbox's result and policy-report types that runs
embed live here too (``tern.models.execution``, ``tern.models.code_policy``).

The names below are loaded on first use (PEP 562 ``__getattr__``): importing this package or one submodule
(``tern.models.limits``) does not build every model, so ``tern --help`` starts without them. Workflows import them
inside ``workflow.unsafe.imports_passed_through()`` as before, which loads them there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tern.models.approval import ApprovalKind, ApprovalRecord, ApprovalRequest, Decision, IgnoredDecision
    from tern.models.audit import AuditEvent, AuditKind
    from tern.models.channel_finder import ChannelFindResponse, ChannelHit, HierarchyNode
    from tern.models.control import ChannelReading, LimitsCheck, Verification, VerificationLevel, WriteRecord
    from tern.models.logbook import LogbookHit, SearchMode, SearchResponse
    from tern.models.plan import (
        STEP_KINDS,
        ArchiverReadStep,
        ChannelFindStep,
        ChannelReadStep,
        ControlWriteStep,
        GatherStep,
        LogbookPublishStep,
        LogbookSearchStep,
        MemoryStep,
        Plan,
        PythonStep,
        RespondStep,
        Step,
    )
    from tern.models.run import AgentRunRequest, AgentRunResult, AgentRunStatus, StepResult, ValueMismatch
    from tern.models.search_attributes import FinalRunState, RunState

_SUBMODULE: dict[str, str] = {
    "STEP_KINDS": "plan",
    "AgentRunRequest": "run",
    "AgentRunResult": "run",
    "AgentRunStatus": "run",
    "ApprovalKind": "approval",
    "ApprovalRecord": "approval",
    "ApprovalRequest": "approval",
    "ArchiverReadStep": "plan",
    "AuditEvent": "audit",
    "AuditKind": "audit",
    "ChannelFindResponse": "channel_finder",
    "ChannelFindStep": "plan",
    "ChannelHit": "channel_finder",
    "ChannelReadStep": "plan",
    "ChannelReading": "control",
    "ControlWriteStep": "plan",
    "Decision": "approval",
    "FinalRunState": "search_attributes",
    "GatherStep": "plan",
    "HierarchyNode": "channel_finder",
    "IgnoredDecision": "approval",
    "LimitsCheck": "control",
    "LogbookHit": "logbook",
    "LogbookPublishStep": "plan",
    "LogbookSearchStep": "plan",
    "MemoryStep": "plan",
    "Plan": "plan",
    "PythonStep": "plan",
    "RespondStep": "plan",
    "RunState": "search_attributes",
    "SearchMode": "logbook",
    "SearchResponse": "logbook",
    "Step": "plan",
    "StepResult": "run",
    "ValueMismatch": "run",
    "Verification": "control",
    "VerificationLevel": "control",
    "WriteRecord": "control",
}
"""Each exported name -> the submodule of ``tern.models`` that defines it."""

__all__ = [
    "STEP_KINDS",
    "AgentRunRequest",
    "AgentRunResult",
    "AgentRunStatus",
    "ApprovalKind",
    "ApprovalRecord",
    "ApprovalRequest",
    "ArchiverReadStep",
    "AuditEvent",
    "AuditKind",
    "ChannelFindResponse",
    "ChannelFindStep",
    "ChannelHit",
    "ChannelReadStep",
    "ChannelReading",
    "ControlWriteStep",
    "Decision",
    "FinalRunState",
    "GatherStep",
    "HierarchyNode",
    "IgnoredDecision",
    "LimitsCheck",
    "LogbookHit",
    "LogbookPublishStep",
    "LogbookSearchStep",
    "MemoryStep",
    "Plan",
    "PythonStep",
    "RespondStep",
    "RunState",
    "SearchMode",
    "SearchResponse",
    "Step",
    "StepResult",
    "ValueMismatch",
    "Verification",
    "VerificationLevel",
    "WriteRecord",
]


def __getattr__(name: str) -> Any:
    """Load ``name`` from its submodule on first use (then it is a plain module attribute)."""
    module = _SUBMODULE.get(name)
    if module is None:
        raise AttributeError(f"module 'tern.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tern.models.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULE])
