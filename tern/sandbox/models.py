"""Sandbox data shapes: what to run (``ExecutionRequest``) and what came back (``ExecutionResult``).

Both are pydantic models that travel through Temporal with the pydantic data converter; bytes fields
(input files, figure PNGs) serialise to JSON as base64. Large figures should be stored as artifacts
(``tern.sandbox.artifacts``) and replaced by their references before a result enters workflow history.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from tern.models.plan import ControlWriteStep

InputName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
"""Name of one input: a Python identifier, so the analysis code can use it as a variable."""

FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")]

ExecutionStatus = Literal["ok", "error", "timeout", "killed", "output_limit"]
"""``ok``: the code ran and assigned a valid ``results`` dict. ``error``: it raised, did not assign
``results``, lacked an expected key, returned something not JSON-serialisable or proposed an invalid write.
``timeout``: the wall-clock limit killed it. ``killed``: the memory limit (OOM), a cancellation or the
engine ended it. ``output_limit``: results, figures or the raw output exceeded their size limits."""

Backend = Literal["docker", "process"]

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
    run_id: str = Field("adhoc", max_length=200, description="Agent run id; becomes the container label.")
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


class Figure(BaseModel):
    """One PNG figure: inline bytes (``png``) or, once stored, an artifact reference (``artifact_id``)."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    name: str = Field(max_length=200, description="Figure label or file name.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
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
    """What one execution produced. ``status`` says how it ended; ``error`` explains anything but ``ok``."""

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
