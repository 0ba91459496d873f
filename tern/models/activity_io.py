"""Inputs and outputs of the agent-run activities (one pydantic model argument each)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tern.models.channel_finder import ChannelFindMode
from tern.models.ids import WorkflowId
from tern.models.logbook import LogbookDraft, SearchMode
from tern.models.memory import Memory
from tern.models.planning import LLMUsage
from tern.models.run import StepResult, ValueMismatch


class LogbookSearchInput(BaseModel):
    workflow_id: WorkflowId
    step_id: str
    query: str
    limit: int = 5
    mode: SearchMode = "hybrid"


class ChannelFindInput(BaseModel):
    """Find channels by description (``channel_find`` step)."""

    workflow_id: WorkflowId
    step_id: str
    query: str
    limit: int = 5
    mode: ChannelFindMode = "keyword"


class ChannelReadInput(BaseModel):
    workflow_id: WorkflowId
    step_id: str
    channels: list[str]


class WriteCheckInput(BaseModel):
    """Check a proposed write: limits database, master switch, live value."""

    workflow_id: WorkflowId
    step_id: str
    channel: str
    value: float
    plan_writes: dict[str, float] = Field(
        default_factory=dict,
        description="The plan's later writes (channel -> value, in order): with them the ring model predicts the "
        "plan as the whole and applies the effect limits to it (issue 23).",
    )
    plan_each: bool = Field(
        True, description="Also predict (and limit) each of plan_writes alone: once per plan is enough."
    )


class WriteInput(BaseModel):
    """Perform an approved write. ``idempotency_key`` is unique per approved step: a retry never puts twice."""

    workflow_id: WorkflowId
    step_id: str
    idempotency_key: str
    channel: str
    value: float
    request_id: str
    approver: str
    approved_from: float | None = Field(
        None, description="The live value the approver was shown; the write is refused if the machine moved."
    )


class ComposeInput(BaseModel):
    """Everything the answer composer (a template, or an LLM provider) gets."""

    workflow_id: WorkflowId
    user: str
    query: str
    instructions: str = ""
    steps: list[StepResult]
    memories: list[Memory] = Field(default_factory=list, description="The user's notes relevant to the question.")


class ComposedAnswer(BaseModel):
    """The answer, its checked citations, and (LLM composer) the invented citations removed and token usage."""

    answer: str
    citations: list[str] = Field(default_factory=list, description="Logbook entry ids cited as [#id].")
    unsupported_citations: list[str] = Field(
        default_factory=list, description="[#id] citations naming no entry retrieved in this run (removed)."
    )
    unsupported_values: list[ValueMismatch] = Field(
        default_factory=list, description="Channel values the answer quoted that disagree with the readings."
    )
    usage: LLMUsage | None = None


class LogbookDraftInput(BaseModel):
    """Input of ``draft_logbook_entry``: the step's fields, the results of the steps it reports (``inputs``), and
    the artifact ids to attach (the step's own plus, with ``attach_figures``, the figures of those steps)."""

    workflow_id: WorkflowId
    step_id: str
    user: str
    title: str
    text: str = ""
    tags: list[str] = Field(default_factory=list)
    inputs: list[StepResult] = Field(default_factory=list)
    attachments: list[str] = Field(default_factory=list)


class LogbookPublishInput(BaseModel):
    """Input of ``publish_logbook_entry``: the approved draft, and the approval that allowed it."""

    draft: LogbookDraft
    approver: str
    request_id: str
