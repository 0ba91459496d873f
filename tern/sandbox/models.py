"""Sandbox data shapes: what to run (``ExecutionRequest``) within which limits (``SandboxLimits``).

Pydantic models; bytes fields (input files) serialise to JSON as base64. What came back (``ExecutionResult``
with its ``Figure``s and ``Timings``) is shared with the ``python`` step models and lives in
``tern.models.execution``; it is re-exported here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue, model_validator

from tern.models.execution import Backend, ExecutionResult, ExecutionStatus, Figure, Timings
from tern.models.plan import ControlWriteStep

InputName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
"""Name of one input: a Python identifier, so the analysis code can use it as a variable."""

FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")]

_MIB = 1024 * 1024


class SandboxLimits(BaseModel):
    """Resource limits of one execution. They come from configuration (``TernSettings``), never from code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(60.0, gt=0, le=3600, description="Wall-clock limit; the container is killed, s.")
    memory_bytes: int = Field(512 * _MIB, ge=16 * _MIB, description="Memory limit (RAM, no swap), bytes.")
    cpus: float = Field(1.0, gt=0, le=64, description="CPU quota, in CPUs (1.0 = one core).")
    pids: int = Field(64, ge=8, le=4096, description="Most processes and threads at once.")
    tmpfs_bytes: int = Field(64 * _MIB, ge=_MIB, description="Size of the writable work directory, bytes.")
    stdout_bytes: int = Field(64 * 1024, ge=1024, description="Stdout kept; the rest is dropped, bytes.")
    stderr_bytes: int = Field(64 * 1024, ge=1024, description="Stderr kept; the rest is dropped, bytes.")
    result_bytes: int = Field(_MIB, ge=1024, description="Largest serialised `results` dict, bytes.")
    max_figures: int = Field(10, ge=0, le=100, description="Most figures returned; extra ones are dropped.")
    figure_bytes: int = Field(2 * _MIB, ge=1024, description="Largest PNG figure kept, bytes.")

    def frame_bytes(self) -> int:
        """Upper bound of the runner's JSON result document on the container's stdout, bytes.

        Captured text can grow up to 6x when JSON-escaped and PNGs by 4/3 in base64; 256 KiB covers the rest.
        """
        text = 6 * (self.stdout_bytes + self.stderr_bytes + 64 * 1024)
        return text + 2 * self.result_bytes + (self.figure_bytes * 4 // 3 + 1024) * self.max_figures + 262144


class InputFile(BaseModel):
    """A file given to the code as raw bytes, visible read-only at ``/inputs/files/<filename>``."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    data: bytes = Field(description="File content, bytes (base64 in JSON).")
    filename: FileName | None = Field(None, description="Name inside /inputs/files; the input name if unset.")


class ExecutionRequest(BaseModel):
    """One piece of analysis code and everything it may see.

    The code runs as a script with ``inputs`` (a dict name -> value) and each input also bound as a variable
    of the same name. JSON inputs arrive as Python values; file inputs as the path of a read-only file.
    The code must assign a dict named ``results`` (JSON-serialisable; numpy values are converted) and may
    propose control writes with ``results["proposed_writes"] = [{"channel": ..., "value": ...}]``.
    Figures left open in matplotlib (backend Agg) and PNG files written to the work directory are returned.
    """

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=200_000, description="Python 3 source code.")
    inputs: dict[InputName, JsonValue] = Field(default_factory=dict, description="JSON-able values by name.")
    files: dict[InputName, InputFile] = Field(default_factory=dict, description="Raw files by name.")
    expected_keys: list[str] = Field(
        default_factory=list, description="Keys `results` must contain; a missing key is an error."
    )
    limits: SandboxLimits | None = Field(None, description="Limits; the configured defaults when unset.")
    workflow_id: str = Field(
        "adhoc",
        max_length=200,
        validation_alias=AliasChoices("workflow_id", "run_id"),
        description="Workflow ID of the agent run the code belongs to ('cli', 'adhoc' outside a run); becomes the "
        "container label tern.run_id. The key 'run_id' is accepted too.",
    )
    step_id: str = Field("adhoc", max_length=200, description="Plan step id; becomes the container label.")

    @model_validator(mode="after")
    def _no_clash(self) -> ExecutionRequest:
        names = [f.filename or n for n, f in self.files.items()]
        if len(set(names)) != len(names):
            raise ValueError(f"two input files share a file name: {sorted(names)}")
        both = sorted(set(self.inputs) & set(self.files))
        if both:
            raise ValueError(f"names used for both a JSON input and a file input: {both}")
        return self


ProposedWrite = ControlWriteStep
"""A control write proposed by analysis code (``results["proposed_writes"]`` items: channel, value, reason).
Only a proposal, already shaped as the plan step it becomes: the workflow adds it as an approval-gated
``control_write`` step, checked against the limits database like any other. Unknown keys, non-finite or
non-numeric values and malformed channel names are rejected."""


__all__ = [
    "Backend",
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionStatus",
    "Figure",
    "FileName",
    "InputFile",
    "InputName",
    "ProposedWrite",
    "SandboxLimits",
    "Timings",
]
