"""Agent-run plans: an ordered list of typed steps, validated before anything starts."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tern.models.channels import ChannelFindMode
from tern.models.limits import MAX_CHANNEL_QUERY_CHARS, MAX_SEARCH_QUERY_CHARS

ChannelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_:.\-\[\]{}$]+$")]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field("", max_length=64, description="Unique step id; filled in as '<n>-<kind>' when empty.")


class LogbookSearchStep(_Step):
    """Search the electronic logbook (ARIEL); hits become citable entries."""

    kind: Literal["logbook_search"] = "logbook_search"
    query: str = Field(min_length=1, max_length=MAX_SEARCH_QUERY_CHARS)
    limit: int = Field(5, ge=1, le=100)
    mode: Literal["keyword", "semantic", "hybrid", "rag"] = Field(
        "hybrid", description="ARIEL search mode; without embeddings, semantic parts degrade to keyword search."
    )


class ChannelFindStep(_Step):
    """Find channels by description ("cavity 1 forward power") in the channel database; the result
    (``StepResult.channels``) is a ranked list of names with scores and descriptions, which a later step can take
    as "the channels step X found"."""

    kind: Literal["channel_find"] = "channel_find"
    query: str = Field(min_length=1, max_length=MAX_CHANNEL_QUERY_CHARS)
    limit: int = Field(5, ge=1, le=100, description="The most channels returned.")
    mode: ChannelFindMode = Field(
        "keyword", description="Channel-finder mode; without embeddings, semantic parts degrade to keyword search."
    )


class ChannelReadStep(_Step):
    """Read the live value, units, alarm state and limits of one or more channels (PVs).

    ``channels_from`` names earlier steps whose found channels (``StepResult.channels``, e.g. a channel finder's)
    are read too, after ``channels``; at least one of the two must be given.
    """

    kind: Literal["channel_read"] = "channel_read"
    channels: list[ChannelName] = Field(default_factory=list, max_length=500)
    channels_from: list[str] = Field(
        default_factory=list, max_length=20, description="Ids of earlier steps whose found channels are read too."
    )

    @model_validator(mode="after")
    def _some_channels(self) -> ChannelReadStep:
        if not self.channels and not self.channels_from:
            raise ValueError("a channel_read step needs 'channels' or 'channels_from' (earlier step ids)")
        return self


class ControlWriteStep(_Step):
    """Write an absolute value to a setpoint, after a limits check and a human approval."""

    kind: Literal["control_write"] = "control_write"
    channel: ChannelName
    value: float = Field(strict=True, description="Absolute target value in the channel's engineering units.")
    reason: str = Field("", max_length=2000, description="Why the write is proposed, shown to the approver.")

    @field_validator("value", mode="before")
    @classmethod
    def _finite_number(cls, v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"write value must be a number, got {type(v).__name__} {_short(v)}")
        try:
            value = float(v)
        except OverflowError:  # an integer beyond the float range (~1.8e308), e.g. 400 digits in a plan file
            raise ValueError("write value must be finite, got an integer beyond the float range (1.8e308)") from None
        if not math.isfinite(value):
            raise ValueError(f"write value must be finite, got {v!r}")
        return value


def _short(v: object, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class PythonStep(_Step):
    """Run analysis code in the sandbox (no network, no control-system access).

    ``code`` is run as given; without it, code is generated from ``objective`` (needs a configured code
    generator). ``inputs`` names earlier steps whose results (``StepResult`` as JSON) the code receives as
    ``inputs["<step id>"]``, the id made a Python identifier (see :func:`input_name`: ``2-read`` -> ``s2_read``).
    The code assigns a dict ``results``; ``results["proposed_writes"] = [{"channel": ..., "value": ...}]``
    proposes control writes, which become approval-gated ``control_write`` steps.
    """

    kind: Literal["python"] = "python"
    code: str | None = Field(None, min_length=1, max_length=200_000)
    objective: str = Field("", max_length=4000, description="What the code must compute (for generation).")
    inputs: list[str] = Field(default_factory=list, max_length=50)
    expected_keys: list[str] = Field(default_factory=list, max_length=100)
    max_attempts: int = Field(3, ge=1, le=10, description="Generate-and-run attempts when the code fails.")

    @model_validator(mode="after")
    def _code_or_objective(self) -> PythonStep:
        if self.code is None and not self.objective.strip():
            raise ValueError("a python step needs 'code' or an 'objective' to generate code from")
        return self


def input_name(step_id: str) -> str:
    """The sandbox input name of an earlier step's result: ``step_id`` as a Python identifier."""
    name = re.sub(r"\W", "_", step_id)[:62]
    return f"s{name}" if not name or name[0].isdigit() else name


class RespondStep(_Step):
    """Compose the final answer from earlier steps, citing logbook entries as [#entry_id]."""

    kind: Literal["respond"] = "respond"
    instructions: str = Field("", max_length=4000)


Step = Annotated[
    LogbookSearchStep | ChannelFindStep | ChannelReadStep | ControlWriteStep | PythonStep | RespondStep,
    Field(discriminator="kind"),
]
STEP_KINDS = ("logbook_search", "channel_find", "channel_read", "control_write", "python", "respond")


class Plan(BaseModel):
    """An ordered list of steps. Step ids are unique; empty ids are filled in as ``<n>-<kind>``.

    A revision of a running plan carries ``earlier_ids``: the ids of the steps that already ran, which its steps
    may use as inputs and must not reuse.
    """

    model_config = ConfigDict(extra="forbid")
    steps: list[Step] = Field(min_length=1, max_length=100)
    earlier_ids: list[str] = Field(
        default_factory=list, max_length=1000, description="Revisions: ids of the steps that ran before this plan."
    )

    @model_validator(mode="after")
    def _ids(self) -> Plan:
        seen: set[str] = set(self.earlier_ids)
        for n, step in enumerate(self.steps, start=1):
            if not step.id:
                step.id = f"{n}-{step.kind}"
            if step.id in seen:
                raise ValueError(f"duplicate step id {step.id!r}")
            refs = step.inputs if isinstance(step, PythonStep) else []
            refs = step.channels_from if isinstance(step, ChannelReadStep) else refs
            missing = [i for i in refs if i not in seen]
            if missing:
                field = "inputs" if isinstance(step, PythonStep) else "channels_from"
                raise ValueError(f"step {step.id!r}: {field} {missing} are not ids of earlier steps")
            seen.add(step.id)
        return self
