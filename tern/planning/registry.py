"""The capability registry: what the planner may use, the plan's JSON Schema and plan validation.

A capability is one step kind: its name, a description for the planner, its parameter model (a step model of
``tern.models.plan``), whether it needs a human approval, the channels it reads or writes (for validation
against the limits database) and how its result is summarised for the next LLM call. The planner prompt, the
JSON Schema sent as ``response_format`` and :meth:`CapabilityRegistry.validate` are all built from it, so a kind
that is not registered can neither be described to the LLM nor pass validation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from tern.control.limits import LimitsDatabase
from tern.models.plan import Plan
from tern.models.run import StepResult


class PlanInvalid(ValueError):
    """A plan failed validation; ``errors`` lists each problem in words the LLM can act on."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _no_channels(step: Any) -> tuple[list[str], list[str]]:
    return [], []


@dataclass(frozen=True)
class Capability:
    """One step kind the planner may use.

    Args:
        kind: the step's ``kind`` value (e.g. ``"channel_read"``).
        description: one paragraph for the planner: what it does, when to use it, what it returns.
        step_model: the pydantic step model (its JSON Schema is the parameters' schema).
        needs_approval: True when the step waits for a human decision (shown to the planner).
        summarise: a one-line (or few-line) summary of a finished step's ``StepResult`` for the next LLM call.
        channels: ``(read, written)`` channel names a step of this kind names, for validation.
        example: a JSON object of one step, shown in the prompt.
    """

    kind: str
    description: str
    step_model: type[BaseModel]
    needs_approval: bool = False
    summarise: Callable[[StepResult], str] = field(default=lambda r: f"{r.status}: {r.message}")
    channels: Callable[[Any], tuple[list[str], list[str]]] = _no_channels
    example: dict[str, Any] = field(default_factory=dict)


class CapabilityRegistry:
    """The registered capabilities, by kind. Register with :meth:`register` (a kind only once)."""

    def __init__(self, capabilities: Iterable[Capability] = ()) -> None:
        self._caps: dict[str, Capability] = {}
        self._schema: dict[str, Any] | None = None
        for cap in capabilities:
            self.register(cap)

    def register(self, cap: Capability) -> Capability:
        """Add ``cap``; raises ``ValueError`` for a kind already registered."""
        if cap.kind in self._caps:
            raise ValueError(f"capability {cap.kind!r} is already registered")
        self._caps[cap.kind] = cap
        self._schema = None
        return cap

    @property
    def kinds(self) -> list[str]:
        return list(self._caps)

    def get(self, kind: str) -> Capability | None:
        return self._caps.get(kind)

    def __iter__(self) -> Any:
        return iter(self._caps.values())

    def plan_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12, as pydantic emits it) of a plan using only the registered kinds (built once
        per set of capabilities; callers must not modify it)."""
        if self._schema is None:
            self._schema = self._build_schema()
        return self._schema

    def _build_schema(self) -> dict[str, Any]:
        defs: dict[str, Any] = {}
        items = []
        for cap in self:
            schema = cap.step_model.model_json_schema()
            defs.update(schema.pop("$defs", {}))
            schema["properties"]["kind"] = {"const": cap.kind, "type": "string"}
            schema["required"] = sorted({*schema.get("required", []), "kind"})
            items.append(schema)
        out: dict[str, Any] = {
            "type": "object",
            "properties": {"steps": {"type": "array", "minItems": 1, "items": {"anyOf": items}}},
            "required": ["steps"],
            "additionalProperties": False,
        }
        if defs:
            out["$defs"] = defs
        return out

    def describe(self) -> str:
        """The capabilities as the planner's prompt lists them."""
        parts = []
        for cap in self:
            approval = " Needs a human approval before it runs." if cap.needs_approval else ""
            example = f"\n  Example: {json.dumps(cap.example)}" if cap.example else ""
            parts.append(f"- {cap.kind}: {cap.description}{approval}{example}")
        return "\n".join(parts)

    def summarise(self, result: StepResult) -> str:
        """``result`` summarised by its capability (a generic line for unregistered kinds)."""
        cap = self.get(result.kind)
        body = cap.summarise(result) if cap else f"{result.status}: {result.message}"
        return f"step {result.step_id} ({result.kind}, {result.status}): {body}"

    def validate(
        self,
        raw: Any,
        limits: LimitsDatabase | None = None,
        *,
        require_respond: bool = True,
        earlier_ids: Iterable[str] = (),
    ) -> Plan:
        """``raw`` (parsed JSON) as a :class:`Plan` that uses registered kinds and known channels only.

        Checks, in order: the shape (``{"steps": [...]}``), each step's kind is registered, the step models
        (missing or bad parameters, unique ids, references to earlier steps), every channel read or written is
        in ``limits`` (unless it allows unlisted channels), every written channel is writable there, and the
        last step is ``respond`` (when ``require_respond``). Write values are not checked here: min, max and
        step limits are the run's limits check, which refuses and audits them in front of the approver.
        ``earlier_ids`` are the ids of steps that already ran (for a revision): usable as inputs, not reusable.

        Raises :class:`PlanInvalid` listing every problem found.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list) or not raw["steps"]:
            raise PlanInvalid(['the plan must be a JSON object {"steps": [...]} with at least one step'])
        errors = []
        for n, step in enumerate(raw["steps"], start=1):
            kind = step.get("kind") if isinstance(step, dict) else None
            if kind not in self._caps:
                errors.append(f"step {n}: unknown kind {kind!r}; the kinds are {', '.join(self.kinds)}")
        if errors:
            raise PlanInvalid(errors)
        try:
            plan = Plan.model_validate({**raw, "earlier_ids": list(earlier_ids)})
        except ValidationError as exc:
            raise PlanInvalid([_pydantic_error(e, raw) for e in exc.errors()[:10]]) from exc
        errors += self._channel_errors(plan, limits)
        if require_respond and plan.steps[-1].kind != "respond":
            errors.append("the last step must be 'respond' (the answer to the question)")
        if errors:
            raise PlanInvalid(errors)
        return plan

    def _channel_errors(self, plan: Plan, limits: LimitsDatabase | None) -> list[str]:
        if limits is None:
            return []
        errors = []
        for step in plan.steps:
            cap = self._caps[step.kind]
            read, written = cap.channels(step)
            for name in [*read, *written]:
                if name not in limits and not limits.allow_unlisted:
                    errors.append(f"step {step.id}: unknown channel {name!r} (not in the channel database)")
            for name in written:
                known = limits.get(name)
                if known is not None and not known.writable:
                    errors.append(f"step {step.id}: channel {name!r} is read-only; it cannot be written")
        return errors


def _pydantic_error(err: Any, raw: dict[str, Any]) -> str:
    loc = list(err.get("loc", ()))
    where = "plan"
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        where = f"step {loc[1] + 1}"
        field_path = [str(p) for p in loc[3:]] if len(loc) > 2 else []  # [steps, n, <kind tag>, field...]
        if field_path:
            where += f" field {'.'.join(field_path)}"
    return f"{where}: {err.get('msg', 'invalid')}"
