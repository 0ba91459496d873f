"""Shared pydantic models: the only types that cross the workflow/activity/starter boundary.

Nothing here imports another ``tern`` sub-package: the sandbox's result and policy-report types that runs
embed live here too (``tern.models.execution``, ``tern.models.code_policy``).
"""

from tern.models.approval import ApprovalKind, ApprovalRecord, ApprovalRequest, Decision, IgnoredDecision
from tern.models.audit import AuditEvent, AuditKind
from tern.models.channels import ChannelFindResponse, ChannelHit, HierarchyNode
from tern.models.control import ChannelReading, LimitsCheck, Verification, VerificationLevel, WriteRecord
from tern.models.logbook import LogbookHit, SearchMode, SearchResponse
from tern.models.plan import (
    STEP_KINDS,
    ArchiverReadStep,
    BlueskyPlanStep,
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
    "BlueskyPlanStep",
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
