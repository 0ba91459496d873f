"""Reading a plan file and checking it before a run starts: size, encoding, syntax, shape, the ``Plan`` model and
the channels it names. Every problem is a :class:`~starters.client.TernUserError` naming the file, the field and
the limit (``tern.models.limits``); nothing else escapes for a file's content.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from starters.client import TernUserError, clip, validation_message
from tern.config import TernSettings
from tern.control.limits import LimitsDatabase, LimitsDatabaseError
from tern.models import ChannelReadStep, ControlWriteStep, GatherStep, Plan
from tern.models.limits import MAX_PLAN_BYTES, MAX_PLAN_DEPTH, MAX_PLAN_NODES


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _plan_shape_error(raw: Any) -> str | None:
    """Why ``raw`` (a parsed plan file) is nested too deeply or too big, or None. Iterative: YAML aliases can
    make a structure that refers to itself, and recursion is what this check guards against."""
    stack: list[tuple[Any, int]] = [(raw, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_PLAN_NODES:
            return f"more than {MAX_PLAN_NODES} values (limit MAX_PLAN_NODES; YAML aliases count each use)"
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
        for child in children:
            if isinstance(child, dict | list | tuple):
                if depth + 1 > MAX_PLAN_DEPTH:
                    return f"nested deeper than {MAX_PLAN_DEPTH} levels (limit MAX_PLAN_DEPTH)"
                stack.append((child, depth + 1))
            else:
                nodes += 1
    return None


def load_plan(path: Path) -> Plan:
    """Read a plan from a JSON or YAML (``.yaml``/``.yml``) file, UTF-8.

    Refuses, with :class:`TernUserError` naming the file, the field and the limit: a file over
    ``MAX_PLAN_BYTES``, text that is not UTF-8, JSON or YAML that does not parse, nesting deeper than
    ``MAX_PLAN_DEPTH`` or more than ``MAX_PLAN_NODES`` values, integers with more digits than Python converts
    (4300, ``sys.int_info.default_max_str_digits``), and anything :class:`Plan` refuses. Never raises another
    exception for the file's content.
    """
    path = Path(path)
    kind = "YAML" if path.suffix in (".yaml", ".yml") else "JSON"
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError as exc:
        raise TernUserError(f"plan file not found: {path}") from exc
    except OSError as exc:
        raise TernUserError(f"cannot read plan file {path}: {_one_line(str(exc))}") from exc
    if len(data) > MAX_PLAN_BYTES:
        raise TernUserError(f"plan file {path}: larger than {MAX_PLAN_BYTES} bytes (limit MAX_PLAN_BYTES)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TernUserError(
            f"plan file {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} ({exc.reason})"
        ) from exc
    try:
        raw: Any = yaml.safe_load(text) if kind == "YAML" else json.loads(text)
    except RecursionError as exc:
        raise TernUserError(
            f"plan file {path}: nested deeper than {MAX_PLAN_DEPTH} levels (limit MAX_PLAN_DEPTH)"
        ) from exc
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TernUserError(f"plan file {path} is not valid {kind}: {clip(_one_line(str(exc)), 300)}") from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise TernUserError(f"plan file {path} has a value Python cannot read: {str(exc).split(';')[0]}") from exc
    if not isinstance(raw, dict):
        raise TernUserError(f"{path}: a plan is an object with a 'steps' list")
    shape = _plan_shape_error(raw)
    if shape:
        raise TernUserError(f"plan file {path}: {shape}")
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        raise TernUserError(validation_message(exc, str(path))) from exc


def check_plan_channels(plan: Plan, settings: TernSettings) -> None:
    """Refuse plans naming channels the limits database does not know (unless unlisted channels are allowed).

    Limit violations of known channels are left to the run, which refuses and audits them before any approval.
    """
    if settings.control.allow_unlisted_channels:
        return
    try:
        limits = LimitsDatabase.load(settings.control.limits_path)
    except LimitsDatabaseError as exc:
        raise TernUserError(f"cannot check channels: {exc}") from exc
    unknown: list[str] = []
    # A gather step's channel reads are checked like any other; archiver channels are the archiver's to know.
    for step in [s for top in plan.steps for s in [top, *(top.sources if isinstance(top, GatherStep) else [])]]:
        names = (
            step.channels
            if isinstance(step, ChannelReadStep)
            else ([step.channel] if isinstance(step, ControlWriteStep) else [])
        )
        unknown += [f"{n} (step {step.id})" for n in names if n not in limits]
    if unknown:
        raise TernUserError(
            f"unknown channel(s), not in the limits database {settings.control.limits_path}: {', '.join(unknown)}"
        )
