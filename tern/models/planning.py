"""Planning: the planner activity's input and output, plan versions and LLM token usage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tern.models.ids import WorkflowId
from tern.models.plan import Plan

PlanCause = Literal["question", "plan_rejected", "step_failed"]


class LLMUsage(BaseModel):
    """Token usage of one role ('planner', 'code', 'answer'), as counted by the server (0 when not reported)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return self.add(other)

    def add(self, other: LLMUsage) -> LLMUsage:
        """A new total of ``self`` and ``other``."""
        return LLMUsage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class ChannelCandidate(BaseModel):
    """A channel the channel finder proposes for the question (name, score in [0, 1], description)."""

    channel: str
    score: float = 0.0
    description: str = ""


class PlanFeedback(BaseModel):
    """Why a plan is asked for again: an approver's rejection or a failed step, and what has run so far.

    ``done`` holds one line per finished step, as the step's capability summarises it (data, never instructions).
    """

    cause: Literal["plan_rejected", "step_failed"]
    by: str = Field(description="Who or what caused the revision: the approver's name, or 'step <id>'.")
    comment: str = Field("", max_length=4000, description="The rejection comment or the failed step's message.")
    previous: Plan
    done: list[str] = Field(default_factory=list, description="Summaries of the steps that have run.")
    done_ids: list[str] = Field(default_factory=list, description="Ids of the steps that have run.")


class PlanInput(BaseModel):
    """Input of the ``plan`` activity."""

    workflow_id: WorkflowId
    user: str
    question: str
    context: str = Field("", max_length=4000, description="The user's context (role, machine state they know).")
    channel_candidates: list[ChannelCandidate] = Field(
        default_factory=list, description="The channel finder's proposals for the question, when it runs."
    )
    feedback: PlanFeedback | None = None
    memories: list[str] = Field(
        default_factory=list, description="The user's notes most relevant to the question ('YYYY-MM-DD: text')."
    )


class PlanDraft(BaseModel):
    """Output of the ``plan`` activity: a validated plan, the attempts it took and the rejected attempts' errors."""

    plan: Plan
    attempts: int
    approval_required: bool = Field(False, description="The worker's setting plan_approval asks for approval.")
    errors: list[str] = Field(default_factory=list, description="Validation errors of earlier attempts.")
    model: str = ""
    usage: LLMUsage = Field(default_factory=LLMUsage)


class PlanVersion(BaseModel):
    """One version of a run's plan and what caused it."""

    version: int
    cause: PlanCause
    by: str = Field(description="Who or what caused it: the requesting user, an approver, or 'step <id>'.")
    comment: str = ""
    plan: Plan
    attempts: int = 1
    errors: list[str] = Field(default_factory=list)
