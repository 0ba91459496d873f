"""What one sandboxed execution produced (``ExecutionResult``) and the shapes it embeds.

Shared by the sandbox (``tern.sandbox``, which builds results), the ``python`` step models
(``tern.models.python_step``, which carry them through workflow history) and the CLI. Pydantic models travel
through Temporal with the pydantic data converter and are (de)serialised by field names, so the module they
live in is not part of any recorded history. Bytes fields (figure PNGs) serialise to JSON as base64; large
figures are stored as artifacts (``tern.sandbox.artifacts``) and replaced by their references before a result
enters workflow history.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from tern.models.plan import ControlWriteStep

ExecutionStatus = Literal["ok", "error", "timeout", "killed", "output_limit"]
"""``ok``: the code ran and assigned a valid ``results`` dict. ``error``: it raised, did not assign
``results``, lacked an expected key, returned something not JSON-serialisable or proposed an invalid write.
``timeout``: the wall-clock limit killed it. ``killed``: the memory limit (OOM), a cancellation or the
engine ended it. ``output_limit``: results, figures or the raw output exceeded their size limits."""

Backend = Literal["docker", "process"]
"""Sandbox backend that ran the code: a hardened container, or a plain subprocess without isolation."""


class Figure(BaseModel):
    """One PNG figure: inline bytes (``png``) or, once stored, an artifact reference (``artifact_id``)."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    name: str = Field(max_length=200, description="Figure label or file name.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the PNG bytes, 64 hex digits.")
    size_bytes: int = Field(ge=0, description="Size of the PNG, bytes.")
    png: bytes | None = Field(None, description="PNG content, bytes; None once stored as an artifact.")
    artifact_id: str | None = Field(None, description="Reference of the stored artifact (see artifacts.py).")


class Timings(BaseModel):
    """Where the time went, seconds."""

    total_s: float = Field(0.0, description="From the call to the result, seconds.")
    setup_s: float = Field(0.0, description="Preparing inputs and creating the container, seconds.")
    run_s: float = Field(0.0, description="Container or process running, seconds.")
    code_s: float | None = Field(None, description="The analysis code alone, measured inside, seconds.")
    teardown_s: float = Field(0.0, description="Collecting output and removing the container, seconds.")


class ExecutionResult(BaseModel):
    """What one execution produced. ``status`` says how it ended; ``error`` explains anything but ``ok``.

    ``stdout``/``stderr`` are the kept text (size limits in ``tern.sandbox.models.SandboxLimits``), the
    ``*_bytes`` fields what the code wrote in all, bytes. ``proposed_writes`` are already shaped as the
    ``control_write`` plan steps they become.
    """

    model_config = ConfigDict(extra="forbid")

    status: ExecutionStatus
    results: dict[str, JsonValue] = Field(default_factory=dict, description="`results` minus proposed_writes.")
    proposed_writes: list[ControlWriteStep] = Field(default_factory=list, description="Proposed control_write steps.")
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = Field(0, description="Bytes the code wrote to stdout, kept or not.")
    stderr_bytes: int = Field(0, description="Bytes the code wrote to stderr, kept or not.")
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    truncated: bool = Field(False, description="True when stdout or stderr was cut (set automatically).")
    figures: list[Figure] = Field(default_factory=list)
    figures_dropped: int = Field(0, description="Figures over the count or size limit, not returned.")
    error: str | None = Field(None, description="What went wrong, with the traceback when the code raised.")
    error_type: str | None = Field(None, description="Exception class name, e.g. 'ZeroDivisionError'.")
    error_line: int | None = Field(None, description="Line of the analysis code where it failed, 1-based.")
    exit_code: int | None = Field(None, description="Exit code of the container or process; None if unknown.")
    backend: Backend
    isolation: Literal["container", "none"] = Field(
        description="'none' for the process backend: the code ran on the host WITHOUT isolation."
    )
    timings: Timings = Field(default_factory=Timings)
    attempt: int = Field(1, ge=1, description="Attempt of the execution activity that produced this result.")
    reruns: int = Field(
        0,
        ge=0,
        description="Earlier attempts that started this same code and were interrupted before they reported (the "
        "worker died, the Docker engine failed): the code ran again this many times. From the activity's heartbeat "
        "details; 0 for a first run.",
    )

    @model_validator(mode="after")
    def _truncated(self) -> ExecutionResult:
        self.truncated = self.stdout_truncated or self.stderr_truncated
        return self

    @property
    def ok(self) -> bool:
        """True when ``status == "ok"``."""
        return self.status == "ok"

    def feedback(self) -> str:
        """A short account of a failure, for feeding back to code generation ('' when ok)."""
        if self.ok:
            return ""
        parts = [f"status: {self.status}"]
        if self.error:
            parts.append(self.error)
        if self.stderr:
            parts.append("stderr (end):\n" + self.stderr[-4000:])
        return "\n".join(parts)
