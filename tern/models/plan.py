"""Agent-run plans: an ordered list of typed steps, validated before anything starts."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tern.models.channel_finder import ChannelFindMode
from tern.models.limits import MAX_CHANNEL_QUERY_CHARS, MAX_SEARCH_QUERY_CHARS
from tern.models.timerange import TimeRangeError, resolve

ChannelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_:.\-\[\]{}$]+$")]

MAX_PLAN_STEP_ID = 64  # characters of a step id in a plan; derived ids add a suffix (DERIVED_ID_SEPARATOR)
# Reserved for the ids of steps Tern derives while a run goes on ('<python step>#write-<n>' for the writes a python
# step proposes): plan step ids may not contain it, so a derived id never equals a plan's (approvals, audit keys and
# results are keyed by step id).
DERIVED_ID_SEPARATOR = "#"


def derived_write_id(step_id: str, n: int) -> str:
    """The id of the ``n``-th (from 1) write that python step ``step_id`` proposes: ``calc#write-1``.

    Cannot equal a plan step's id: :class:`Plan` refuses ids containing :data:`DERIVED_ID_SEPARATOR`. (Runs
    started before this scheme used ``calc-write-1``, which a plan step could also be named; see
    ``workflows.agent_run.DERIVED_WRITE_ID_PATCH``.)"""
    return f"{step_id}{DERIVED_ID_SEPARATOR}write-{n}"


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(
        "",
        max_length=MAX_PLAN_STEP_ID + 16,  # plans are held to MAX_PLAN_STEP_ID (Plan); the rest is for derived ids
        description="Unique step id; filled in as '<n>-<kind>' when empty.",
    )


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


ARCHIVER_BINNING = re.compile(r"^(auto|raw|(mean|min|max|count|firstSample|lastSample|median|std)_[1-9]\d{0,7})$")
_RANGE_CHECK_NOW = datetime(2000, 1, 1, tzinfo=UTC)  # ranges are checked for syntax and order, not against now


class ArchiverReadStep(_Step):
    """Read archived history (EPICS Archiver Appliance retrieval API) of channels over a time range.

    The samples are stored as an artifact (gzip Appliance JSON); the step result carries, per channel, count,
    first/last time, min/max/mean/last value and worst alarm severity, plus the artifact reference. A ``python``
    step naming this step in ``inputs`` also gets the samples as a read-only file: ``load_series("<input name>")``
    in the sandbox returns ``{channel: pandas DataFrame}`` indexed by UTC time with columns value, severity,
    status. Channels without data are named in the result; the step fails only when none has data."""

    kind: Literal["archiver_read"] = "archiver_read"
    channels: list[ChannelName] = Field(min_length=1, max_length=50, description="Channel (PV) names to read.")
    range: str | None = Field(
        None,
        max_length=200,
        description="Time range phrase in the facility time zone: 'last 6 h', 'since 03:20', 'since the trip at "
        "03:20', 'yesterday 18:00 to 22:00', 'today', '<ISO 8601> to <ISO 8601>'. Give this or 'start'.",
    )
    start: str | None = Field(
        None, max_length=64, description="Start time: ISO 8601, 'now', '6 h ago' or 'yesterday 18:00'."
    )
    end: str | None = Field(None, max_length=64, description="End time (same forms as start); default now.")
    binning: str = Field(
        "auto",
        description="'auto' (server-side mean over bins chosen so each channel returns at most "
        "archiver_target_points points), 'raw', or an Appliance operator with its bin width in seconds, e.g. "
        "'mean_600', 'max_60', 'firstSample_3600' (operators: mean min max count firstSample lastSample median std).",
    )

    @model_validator(mode="after")
    def _range_and_binning(self) -> ArchiverReadStep:
        if not ARCHIVER_BINNING.match(self.binning):
            raise ValueError(
                f"binning {self.binning!r} is not 'auto', 'raw' or operator_seconds with a known operator "
                "(mean min max count firstSample lastSample median std), e.g. 'mean_600'"
            )
        try:
            resolve(range_text=self.range, start=self.start, end=self.end, now=_RANGE_CHECK_NOW, tz=UTC)
        except TimeRangeError as exc:
            raise ValueError(str(exc)) from None
        return self


class MemoryStep(_Step):
    """The run's user's memory: ``remember`` stores ``text`` as a note of that user (through the approval gate
    when the worker's memory_approval_mode is 'always'); ``recall`` returns the user's notes most relevant to
    ``query`` (keyword and embedding search). A user never sees another user's notes."""

    kind: Literal["memory"] = "memory"
    action: Literal["remember", "recall"] = Field("remember", description="Store a note, or search the notes.")
    text: str | None = Field(None, min_length=1, max_length=4000, description="remember: the note to store.")
    query: str | None = Field(
        None, min_length=1, max_length=MAX_SEARCH_QUERY_CHARS, description="recall: what to look for."
    )
    limit: int = Field(5, ge=1, le=50, description="recall: most notes returned.")

    @model_validator(mode="after")
    def _needs(self) -> MemoryStep:
        if self.action == "remember" and not (self.text or "").strip():
            raise ValueError("a memory step with action 'remember' needs 'text'")
        if self.action == "recall" and not (self.query or "").strip():
            raise ValueError("a memory step with action 'recall' needs 'query'")
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


ARTIFACT_ID = r"^art_[0-9a-f]{32}$"


class LogbookPublishStep(_Step):
    """Draft a logbook entry and publish it after a human approval (approval kind ``logbook``).

    The entry: ``title``, ``text`` followed by the summaries of the earlier steps named in ``inputs`` (as the
    planner sees them), ``tags``, the run's workflow id, and as attachments the figures of those steps (python
    steps' figures, unless ``attach_figures`` is false) plus the run's artifacts named in ``attachments``. The draft
    is shown to the approver; only an approved draft is published, to the target the worker's
    ``logbook.publish_target`` names (the embedded logbook, i.e. the ARIEL store, or a facility logbook).
    """

    kind: Literal["logbook_publish"] = "logbook_publish"
    title: str = Field(min_length=1, max_length=200, description="The entry's title (subject).")
    text: str = Field("", max_length=20_000, description="The entry's text, before the summaries of 'inputs'.")
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=20)
    inputs: list[str] = Field(
        default_factory=list, max_length=50, description="Ids of earlier steps whose results the entry reports."
    )
    attachments: list[Annotated[str, Field(pattern=ARTIFACT_ID)]] = Field(
        default_factory=list, max_length=20, description="Artifact ids (art_...) of this run to attach."
    )
    attach_figures: bool = Field(True, description="Attach the figures of the steps named in 'inputs'.")

    @field_validator("title", mode="before")
    @classmethod
    def _title_not_blank(cls, v: object) -> object:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("a logbook_publish step needs a non-empty 'title'")
            return v.strip()
        return v


class RespondStep(_Step):
    """Compose the final answer from earlier steps, citing logbook entries as [#entry_id]."""

    kind: Literal["respond"] = "respond"
    instructions: str = Field("", max_length=4000)


Source = Annotated[LogbookSearchStep | ChannelReadStep | ArchiverReadStep, Field(discriminator="kind")]
MAX_GATHER_TIMEOUT_S = 3600.0


class GatherStep(_Step):
    """Several data sources (logbook searches, channel reads, archiver reads) fetched at the same time, each as
    its own activity with its own time limit. A source that fails or runs out of time is named in the result;
    the others' data is kept. The step fails only when every source fails. A ``python`` step naming this step in
    ``inputs`` gets every source's result (``inputs[name]["sources"]``) and each archived series as
    ``load_series("<source id as identifier>")``."""

    kind: Literal["gather"] = "gather"
    sources: list[Source] = Field(min_length=1, max_length=20, description="The retrievals, run concurrently.")
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=MAX_GATHER_TIMEOUT_S,
        description="Time limit of each source, seconds, retries included; unset: each kind's own limit.",
    )


Step = Annotated[
    LogbookSearchStep
    | ChannelFindStep
    | ChannelReadStep
    | ArchiverReadStep
    | GatherStep
    | MemoryStep
    | ControlWriteStep
    | PythonStep
    | LogbookPublishStep
    | RespondStep,
    Field(discriminator="kind"),
]
STEP_KINDS = (
    "logbook_search",
    "channel_find",
    "channel_read",
    "archiver_read",
    "gather",
    "memory",
    "control_write",
    "python",
    "logbook_publish",
    "respond",
)


def _plan_id(step_id: str) -> None:
    """Raise ``ValueError`` when ``step_id`` may not name a plan's step (see :class:`Plan`)."""
    if DERIVED_ID_SEPARATOR in step_id:
        raise ValueError(
            f"step id {step_id!r}: {DERIVED_ID_SEPARATOR!r} is reserved for the ids Tern derives (the writes a python "
            f"step proposes are {derived_write_id('<step>', 1)!r}, ...); rename the step"
        )
    if len(step_id) > MAX_PLAN_STEP_ID:
        raise ValueError(f"step id {step_id[:20]!r}... is {len(step_id)} characters; at most {MAX_PLAN_STEP_ID}")


class Plan(BaseModel):
    """An ordered list of steps. Step ids are unique, at most :data:`MAX_PLAN_STEP_ID` characters and free of
    :data:`DERIVED_ID_SEPARATOR` (``#``, reserved for the ids Tern derives); empty ids are filled in as
    ``<n>-<kind>``. Raises ``ValueError`` (pydantic ``ValidationError``) naming the step otherwise.

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
            _plan_id(step.id)
            if step.id in seen:
                raise ValueError(f"duplicate step id {step.id!r}")
            if isinstance(step, GatherStep):
                for k, src in enumerate(step.sources, start=1):
                    src.id = src.id or f"{step.id}.{k}-{src.kind}"
                    _plan_id(src.id)
                    if src.id in seen or src.id == step.id:
                        raise ValueError(f"duplicate step id {src.id!r}")
                    seen.add(src.id)
            refs = step.inputs if isinstance(step, PythonStep | LogbookPublishStep) else []
            refs = step.channels_from if isinstance(step, ChannelReadStep) else refs
            missing = [i for i in refs if i not in seen]
            if missing:
                field = "channels_from" if isinstance(step, ChannelReadStep) else "inputs"
                raise ValueError(f"step {step.id!r}: {field} {missing} are not ids of earlier steps")
            seen.add(step.id)
        return self
