"""The planner: asks the LLM for a plan, validates it against the capability registry and the channel database,
and feeds the errors back until a plan validates or the attempts run out."""

from __future__ import annotations

import json
import re
from typing import Any

from tern.control.limits import LimitsDatabase
from tern.llm.chat import ChatMessage, LLMClient
from tern.models.planning import LLMUsage, PlanDraft, PlanInput
from tern.planning.prompt import planner_messages, retry_message
from tern.planning.registry import CapabilityRegistry, PlanInvalid

PLAN_MAX_TOKENS = 2000
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class PlanningFailed(RuntimeError):
    """No attempt gave a valid plan; the message names the last error. ``usage`` counts the calls made."""

    def __init__(self, message: str, usage: LLMUsage) -> None:
        super().__init__(message)
        self.usage = usage


def parse_plan_json(text: str) -> Any:
    """The JSON object in an LLM reply: the whole reply, a fenced block, or the outermost ``{...}``.

    Raises ``ValueError`` (with ``json``'s message) when none parses.
    """
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    error = "the reply is empty"
    for cand in candidates:
        if not cand:
            continue
        try:
            return json.loads(cand)
        except ValueError as exc:
            error = f"the reply is not valid JSON ({exc})"
    raise ValueError(error)


async def make_plan(
    llm: LLMClient,
    registry: CapabilityRegistry,
    inp: PlanInput,
    limits: LimitsDatabase | None,
    *,
    max_attempts: int = 3,
) -> PlanDraft:
    """Ask ``llm`` for a plan for ``inp`` (``max_attempts`` LLM calls at most).

    Each reply is parsed (:func:`parse_plan_json`) and validated (:meth:`CapabilityRegistry.validate` against
    ``limits``); the errors go back to the LLM as the next user turn. Raises :class:`PlanningFailed` naming
    the last error, or ``tern.llm.LLMError`` when the endpoint fails (the activity's retry policy retries).
    """
    messages = planner_messages(registry, inp)
    done_ids = inp.feedback.done_ids if inp.feedback else []
    schema = registry.plan_schema()
    usage = LLMUsage()
    errors: list[str] = []
    for attempt in range(1, max_attempts + 1):
        reply = await llm.reply(messages, max_tokens=PLAN_MAX_TOKENS, json_schema=schema)
        usage = usage.add(
            LLMUsage(calls=1, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
        )
        try:
            plan = registry.validate(parse_plan_json(reply.text), limits, earlier_ids=done_ids)
        except PlanInvalid as exc:
            problems = exc.errors
        except ValueError as exc:
            problems = [str(exc)]
        else:
            return PlanDraft(plan=plan, attempts=attempt, errors=errors, model=reply.model, usage=usage)
        errors.append("; ".join(problems))
        messages += [ChatMessage(role="assistant", content=reply.text[:8000]), retry_message(problems)]
    raise PlanningFailed(f"no valid plan after {max_attempts} attempts; last error: {errors[-1]}", usage)
