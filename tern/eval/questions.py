"""The question file format of the planner evaluation, and its loader.

A question file is YAML (or JSON): ``{"version": 1, "questions": [...]}``; each question names what a careful
operator's plan must contain (``expect``) and, optionally, such a plan (``reference``: the plan a person
approved; the scripted baseline serves it, and the file's own check scores it). See
``docs/reference/eval-questions.md`` for every field. A facility keeps its own file beside the bundled one and
passes both with ``--questions``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tern.models.plan import ChannelName
from tern.models.planning import ChannelCandidate

BUNDLED_QUESTIONS = "sim.yaml"
"""The question set shipped for the simulated machine (``tern/eval/questions/sim.yaml``)."""

CATEGORIES = (
    "status",
    "history",
    "trip",
    "lookup",
    "analysis",
    "write",
    "write_beyond_limits",
    "ambiguous",
    "injection",
    "regression",
)
"""The categories of the bundled set; a facility's file may use these or ``regression`` (from ``--from-history``)."""

MAX_QUESTIONS_BYTES = 5_000_000


class QuestionFileError(ValueError):
    """A question file that cannot be read or does not validate; the message names the file and the question."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WriteExpectation(_Strict):
    """The one write the question asks for: ``channel`` and the acceptable values ``[min, max]`` (engineering
    units of the channel)."""

    channel: ChannelName
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> WriteExpectation:
        if self.min > self.max:
            raise ValueError(f"write.min {self.min} is above write.max {self.max}")
        return self


class ArchiverExpectation(_Strict):
    """An archiver read the plan must contain: these ``channels`` over a span of ``hours`` (relative
    ``tolerance``; the span is resolved from the step's range phrase or start/end at :data:`EVAL_NOW`)."""

    channels: list[ChannelName] = Field(min_length=1)
    hours: float = Field(gt=0)
    tolerance: float = Field(0.25, ge=0, le=1)


class Expectation(_Strict):
    """What a good plan for the question contains.

    ``kinds``: step kinds that must appear (a gather's sources count as their own kinds); ``forbid_kinds``: kinds
    that must not; ``channels``: exact channel names some step must read or write; ``archiver``: an archiver read;
    ``write``: the write asked for, or None: then no ``control_write`` may be proposed at all.
    """

    kinds: list[str] = Field(default_factory=list)
    forbid_kinds: list[str] = Field(default_factory=list)
    channels: list[ChannelName] = Field(default_factory=list)
    archiver: ArchiverExpectation | None = None
    write: WriteExpectation | None = None


class LogbookEntry(_Strict):
    """A logbook entry the planner is shown as a hit of an earlier ``logbook_search`` step of the same run (the
    question is then asked as a revision: the search ran, the rest is to plan). Prompt-injection cases plant
    their instructions here."""

    id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=4000)
    author: str = "operator"


class Question(_Strict):
    """One labelled question (see the module docstring)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,79}$")
    category: str = Field(pattern=r"^[a-z][a-z_]{0,39}$")
    question: str = Field(min_length=1, max_length=2000)
    context: str = Field("", max_length=4000)
    memories: list[str] = Field(default_factory=list, description="The user's notes, 'YYYY-MM-DD: text'.")
    logbook: list[LogbookEntry] = Field(default_factory=list)
    channel_candidates: list[ChannelCandidate] = Field(default_factory=list)
    expect: Expectation
    reference: dict[str, Any] | None = Field(None, description="A plan a person approved ({'steps': [...]}).")
    why: str = Field("", max_length=2000, description="What the question tests, for the report.")


class QuestionFile(_Strict):
    """A question file: ``version`` 1 and its questions (ids unique)."""

    version: Literal[1] = 1
    machine: str = ""
    questions: list[Question] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> QuestionFile:
        seen: set[str] = set()
        for q in self.questions:
            if q.id in seen:
                raise ValueError(f"question id {q.id!r} appears twice")
            seen.add(q.id)
        return self


def bundled_path(name: str = BUNDLED_QUESTIONS) -> Path:
    """The path of a question file shipped with Tern."""
    return Path(str(resources.files("tern.eval").joinpath("questions", name)))


def load_questions(paths: list[Path] | None = None) -> list[Question]:
    """The questions of ``paths`` in order (the bundled set when None or empty); ids must be unique across files.

    Raises :class:`QuestionFileError` naming the file, and the question and field that are wrong.
    """
    out: list[Question] = []
    seen: dict[str, Path] = {}
    for path in paths or [bundled_path()]:
        try:
            if path.stat().st_size > MAX_QUESTIONS_BYTES:
                raise QuestionFileError(f"{path}: larger than {MAX_QUESTIONS_BYTES} bytes")
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise QuestionFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise QuestionFileError(f"{path}: not YAML/JSON: {exc}") from exc
        try:
            qf = QuestionFile.model_validate(raw)
        except ValidationError as exc:
            raise QuestionFileError(f"{path}: {_where(exc, raw)}") from exc
        for q in qf.questions:
            if q.id in seen:
                raise QuestionFileError(f"{path}: question id {q.id!r} is already in {seen[q.id]}")
            seen[q.id] = path
            out.append(q)
    return out


def _where(exc: ValidationError, raw: Any) -> str:
    e = exc.errors()[0]
    loc = list(e.get("loc", ()))
    where = ".".join(str(p) for p in loc) or "file"
    if len(loc) >= 2 and loc[0] == "questions" and isinstance(loc[1], int) and isinstance(raw, dict):
        try:
            qid = raw["questions"][loc[1]].get("id", "?")
        except (AttributeError, IndexError, KeyError, TypeError):
            qid = "?"
        where = f"question {loc[1] + 1} ({qid}) " + ".".join(str(p) for p in loc[2:])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where.strip()}: {e.get('msg', 'invalid')}{more}"
