"""Inputs and outcome of a ``python`` step (``PythonExecutionWorkflow``) and of its activities."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, JsonValue

from tern.models.approval import ApprovalMode, ApprovalRecord, IgnoredDecision
from tern.models.code_policy import PolicyReport
from tern.models.execution import ExecutionResult
from tern.models.ids import WorkflowId
from tern.models.planning import LLMUsage


class PythonRunInput(BaseModel):
    """Input of ``PythonExecutionWorkflow`` (a child of the agent run). Timeouts in seconds."""

    workflow_id: WorkflowId
    step_id: str
    user: str
    approvers: list[str] = Field(default_factory=list, description="Narrows the policy's approvers (AgentRunRequest).")
    approval_timeout_s: float = Field(gt=0)
    approval_mode: ApprovalMode = "all_code"
    code: str | None = None
    objective: str = ""
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    files: dict[str, str] = Field(
        default_factory=dict, description="Input name -> artifact id of this run, given to the code as a file."
    )
    expected_keys: list[str] = Field(default_factory=list)
    max_attempts: int = Field(3, ge=1, le=10)


class PythonAttempt(BaseModel):
    """One generate-analyze-run attempt."""

    attempt: int
    code: str = Field(
        description="The attempt's code; empty in a step's outcome (see code_sha256), which keeps "
        "only the last code once, in PythonStepOutcome.code."
    )
    outcome: Literal["ok", "syntax_error", "error", "timeout", "killed", "output_limit", "missing_keys"]
    feedback: str = ""
    code_sha256: str | None = Field(None, description="SHA-256 (hex) of the attempt's code (tern.agent.payload).")
    code_chars: int | None = Field(None, ge=0, description="Length of the attempt's code, characters.")


class PythonStepOutcome(BaseModel):
    """Result of ``PythonExecutionWorkflow``; figures are artifact references (PostgreSQL), not bytes."""

    status: Literal["completed", "rejected", "timed_out", "failed"]
    message: str = ""
    code: str | None = None
    analysis: PolicyReport | None = None
    execution: ExecutionResult | None = None
    attempts: list[PythonAttempt] = Field(default_factory=list)
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    ignored_decisions: list[IgnoredDecision] = Field(default_factory=list)
    llm_usage: LLMUsage | None = Field(None, description="Code generation's LLM calls and tokens (role 'code').")


class GenerateCodeInput(BaseModel):
    """What the code generator (an LLM provider, or a scripted activity in tests) gets."""

    workflow_id: WorkflowId
    step_id: str
    objective: str
    input_names: list[str] = Field(default_factory=list)
    expected_keys: list[str] = Field(default_factory=list)
    previous_code: str | None = None
    feedback: str | None = Field(None, description="Why the previous attempt failed (error, traceback).")
    attempt: int = 1


class GeneratedCode(BaseModel):
    code: str = Field(min_length=1, max_length=200_000)
    usage: LLMUsage | None = None


class AnalyzeInput(BaseModel):
    code: str


class ExecuteInput(BaseModel):
    """Run ``code`` in the sandbox for one attempt of one step."""

    workflow_id: WorkflowId
    step_id: str
    attempt: int
    code: str
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    files: dict[str, str] = Field(
        default_factory=dict, description="Input name -> artifact id of this run, mounted read-only as a file."
    )
    expected_keys: list[str] = Field(default_factory=list)
