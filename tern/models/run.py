"""Agent-run request, live status and result."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tern.models.approval import ApprovalMode, ApprovalRecord, ApprovalRequest, IgnoredDecision
from tern.models.archiver import ArchiverReadOutput
from tern.models.bluesky import PlanOutcome
from tern.models.channel_finder import ChannelHit
from tern.models.control import ChannelReading, LimitsCheck, WriteRecord
from tern.models.identity import Proof
from tern.models.ids import CHILD_WORKFLOW_ID_ALIASES, WorkflowId
from tern.models.limits import (
    MAX_APPROVAL_TIMEOUT_S,
    MAX_APPROVERS,
    MAX_QUERY_CHARS,
    MIN_APPROVAL_TIMEOUT_S,
    UserName,
)
from tern.models.logbook import LogbookHit, LogbookPublication, SearchMode
from tern.models.memory import Memory
from tern.models.plan import Plan
from tern.models.planning import ChannelCandidate, LLMUsage, PlanVersion
from tern.models.python_step import PythonStepOutcome
from tern.models.ring import MeasuredEffect
from tern.models.search_attributes import FinalRunState, RunState
from tern.models.trigger import RunTrigger

StepStatus = Literal["completed", "refused", "rejected", "timed_out", "failed", "skipped"]


class AgentRunRequest(BaseModel):
    """Input of ``AgentRunWorkflow``; timeouts in seconds.

    ``approvers`` narrows who may decide this run's requests; the worker's approval policy decides who may
    (empty: whoever the policy allows; under an open policy, the requester alone). It can never widen it.
    ``python_approval_mode`` can likewise only be stricter than the worker's.

    Limits (``tern.models.limits``): names are 1 to ``MAX_USER_CHARS`` characters and not blank, at most
    ``MAX_APPROVERS`` approvers; the query is at most ``MAX_QUERY_CHARS`` characters; the approval timeout is a
    finite number of seconds in ``(0, MAX_APPROVAL_TIMEOUT_S]``. Violations raise ``pydantic.ValidationError``.
    """

    model_config = ConfigDict(extra="forbid")
    user: UserName
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    plan: Plan | None = None
    approvers: list[UserName] = Field(default_factory=list, max_length=MAX_APPROVERS)
    approval_timeout_s: float = Field(3600.0, gt=MIN_APPROVAL_TIMEOUT_S, le=MAX_APPROVAL_TIMEOUT_S, allow_inf_nan=False)
    python_approval_mode: ApprovalMode = Field(
        "all_code", description="When python steps need approval (Osprey's modes; all_code is fail-secure)."
    )
    plan_approval: bool = Field(
        False, description="Without a plan: ask an approver for the planned steps before any runs (kind 'plan')."
    )
    context: str = Field("", max_length=4000, description="The user's context, given to the planner.")
    channel_candidates: list[ChannelCandidate] = Field(
        default_factory=list, max_length=100, description="Channels proposed for the question (channel finder)."
    )
    trigger: RunTrigger | None = Field(
        None, description="The trigger and event that started this run (tern trigger); None when a user started it."
    )
    proposed_by: str | None = Field(
        None,
        description="The run that proposed this one (the inverse of a write whose effect was unexpected, issue 23); "
        "honoured only when that run is this run's parent workflow: such a run starts without a proof of its own "
        "and its write waits for an approval like any other.",
    )
    proof: Proof | None = Field(
        None,
        description="Who starts the run, proven (tern.identity): a statement naming the workflow id and the digest of "
        "this request, signed by ``user`` or by a service allowed to act for ``user``. Required when the worker's "
        "approval.identity is proven.",
    )


class ValueMismatch(BaseModel):
    """A channel value an LLM answer quoted that disagrees with the run's reading of that channel."""

    channel: str
    quoted: str = Field(description="The number as the answer wrote it.")
    read: float = Field(description="The reading, in the channel's engineering units.")


class StepResult(BaseModel):
    """What one step produced. Only the field matching the step kind is set."""

    step_id: str
    kind: str
    status: StepStatus
    message: str = ""
    hits: list[LogbookHit] | None = None
    channels: list[ChannelHit] | None = Field(
        None,
        description="channel_find: the channels found, best first (name, score, description, units, writable); "
        "a later channel_read step reads them through its channels_from.",
    )
    readings: list[ChannelReading] | None = None
    readings_total: int | None = Field(
        None,
        ge=0,
        description="How many readings the step took when a run's result keeps only the first of them "
        "(tern.agent.payload.RESULT_READINGS); None: readings holds them all.",
    )
    check: LimitsCheck | None = None
    write: WriteRecord | None = None
    measured_effect: MeasuredEffect | None = Field(
        None, description="control_write of a ring magnet: measured against predicted after the write (tern.ring)."
    )
    python: PythonStepOutcome | None = None
    archived: ArchiverReadOutput | None = None
    sources: list[StepResult] | None = Field(None, description="A gather step: one result per source, in order.")
    memories: list[Memory] | None = Field(None, description="A memory step: the note stored, or the notes found.")
    logbook: LogbookPublication | None = Field(
        None, description="A logbook_publish step: the published entry (target, id, attachments, approver)."
    )
    bluesky: PlanOutcome | None = Field(
        None, description="A bluesky_plan step: the queue item, its exit status, run uids and message."
    )
    answer: str | None = None
    search_mode_used: SearchMode | None = Field(
        None, description="logbook_search: the mode that ran (hybrid falls back to keyword without embeddings)."
    )
    embedding_model: str | None = Field(None, description="logbook_search: the model of the semantic part, if any.")


class AgentRunResult(BaseModel):
    """Output of ``AgentRunWorkflow``."""

    workflow_id: WorkflowId
    status: FinalRunState
    query: str
    user: str
    steps: list[StepResult] = []
    writes: list[WriteRecord] = []
    approvals: list[ApprovalRecord] = []
    ignored_decisions: list[IgnoredDecision] = Field(
        default_factory=list, description="The last 50 refused decisions (every one is in the audit table)."
    )
    ignored_decisions_total: int = Field(0, description="How many decisions were refused in all.")
    answer: str = ""
    citations: list[str] = []
    unsupported_citations: list[str] = Field(
        default_factory=list, description="[#id] citations the LLM wrote that no step of this run retrieved (removed)."
    )
    unsupported_values: list[ValueMismatch] = Field(
        default_factory=list, description="Channel values the LLM's answer quoted that disagree with the readings."
    )
    plan: list[PlanVersion] = Field(default_factory=list, description="Every planned version (planned runs only).")
    llm_usage: dict[str, LLMUsage] = Field(default_factory=dict, description="LLM calls and tokens per role.")
    error: str | None = None


class AgentRunStatus(BaseModel):
    """Answer of the ``status`` query: where the run is now."""

    workflow_id: WorkflowId
    state: RunState
    user: str
    query: str
    current_step: str | None = None
    current_kind: str | None = Field(None, description="Kind of the current step ('python' runs as a child).")
    child_workflow_id: str | None = Field(
        None,
        validation_alias=CHILD_WORKFLOW_ID_ALIASES,
        description="Workflow ID of the running python step (a child workflow), if any.",
    )
    steps_done: int = 0
    steps_total: int = 0
    pending: ApprovalRequest | None = None
    approvals: list[ApprovalRecord] = []
    ignored_decisions: list[IgnoredDecision] = Field(
        default_factory=list, description="The last 50 refused decisions (every one is in the audit table)."
    )
    ignored_decisions_total: int = Field(0, description="How many decisions were refused in all.")
    started_at: datetime | None = None

    @classmethod
    def of_result(cls, result: AgentRunResult, started_at: datetime | None) -> AgentRunStatus:
        """The status a completed run's ``status`` query gives, from its result: a finished run has no current
        step or pending request, its state is its final status, and every step it planned is done (the
        workflow counts planned, revised and proposed-write steps into both). ``started_at``: the workflow's
        start time (UTC), from DescribeWorkflowExecution."""
        return cls(
            workflow_id=result.workflow_id,
            state=result.status,
            user=result.user,
            query=result.query,
            steps_done=len(result.steps),
            steps_total=len(result.steps),
            approvals=result.approvals,
            ignored_decisions=result.ignored_decisions,
            ignored_decisions_total=result.ignored_decisions_total,
            started_at=started_at,
        )
