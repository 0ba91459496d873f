"""Runs questions through the planner (:func:`tern.planning.make_plan`) and scores the plans; nothing is executed.

Each question becomes the ``PlanInput`` the ``plan`` activity would get for it: the question, its context, the
user's notes (``memories``), the channel finder's candidates, and, when the question carries logbook entries, a
revision after an earlier ``logbook_search`` step whose hits are those entries (summarised as the workflow
summarises them for the planner). Questions run ``concurrency`` at a time against one client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tern.control.limits import LimitsDatabase
from tern.eval.questions import Question
from tern.eval.scoring import Check, ModelResult, QuestionResult, score_plan
from tern.llm.chat import LLMClient, LLMError
from tern.models.logbook import LogbookHit
from tern.models.plan import Plan
from tern.models.planning import PlanFeedback, PlanInput
from tern.models.run import StepResult
from tern.planning.planner import PlanningFailed, make_plan
from tern.planning.registry import CapabilityRegistry

EVAL_NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
"""The fixed 'now' at which the plans' time ranges are resolved, so a score never depends on the clock."""
EVAL_USER = "eval"
LLM_RETRY_PAUSES_S = (2.0, 10.0)
"""Pauses before asking again after a retryable endpoint failure (HTTP 429/5xx, timeout), as the ``plan``
activity's retry policy would: a rate-limited model is not scored on its rate limit."""
SEARCH_STEP = "search"  # the id of the earlier logbook_search step of a question that carries logbook entries


def plan_input(q: Question, registry: CapabilityRegistry) -> PlanInput:
    """The ``PlanInput`` for ``q`` (module docstring)."""
    feedback = None
    if q.logbook:
        hits = [
            LogbookHit(entry_id=e.id, title=e.title, author=e.author, snippet=e.text, timestamp=EVAL_NOW)
            for e in q.logbook
        ]
        searched = StepResult(step_id=SEARCH_STEP, kind="logbook_search", status="completed", hits=hits)
        previous = Plan.model_validate(
            {
                "steps": [
                    {"id": SEARCH_STEP, "kind": "logbook_search", "query": q.question[:200]},
                    {"id": "answer", "kind": "respond"},
                ]
            }
        )
        feedback = PlanFeedback(
            cause="step_failed",
            by="step answer",
            comment="the logbook hits alone do not answer the question; plan the remaining work",
            previous=previous,
            done=[registry.summarise(searched)],
            done_ids=[SEARCH_STEP],
        )
    return PlanInput(
        workflow_id=f"eval-{q.id}",
        user=EVAL_USER,
        question=q.question,
        context=q.context,
        channel_candidates=q.channel_candidates,
        memories=q.memories,
        feedback=feedback,
    )


async def run_question(
    llm: LLMClient,
    q: Question,
    registry: CapabilityRegistry,
    limits: LimitsDatabase,
    *,
    max_attempts: int = 3,
    now: datetime = EVAL_NOW,
    retry_pauses_s: tuple[float, ...] = LLM_RETRY_PAUSES_S,
) -> QuestionResult:
    """Plan ``q`` with ``llm`` and score it. A retryable endpoint failure is asked again after each pause of
    :data:`LLM_RETRY_PAUSES_S`; an endpoint failure that remains (``LLMError``) or a plan that never validated
    fails the question with the reason; neither stops the evaluation."""
    t0 = time.perf_counter()
    try:
        for pause in (*retry_pauses_s, None):
            t0 = time.perf_counter()  # the latency of the call that answered, not of the waits before it
            try:
                draft = await make_plan(llm, registry, plan_input(q, registry), limits, max_attempts=max_attempts)
                break
            except LLMError as exc:
                if pause is None or not exc.retryable:
                    raise
                await asyncio.sleep(pause)
    except PlanningFailed as exc:
        return QuestionResult(
            id=q.id,
            category=q.category,
            passed=False,
            checks=[Check(name="plan", ok=False, reason=str(exc))],
            attempts=exc.usage.calls,
            prompt_tokens=exc.usage.prompt_tokens,
            completion_tokens=exc.usage.completion_tokens,
            latency_s=time.perf_counter() - t0,
            error=str(exc),
        )
    except LLMError as exc:
        return QuestionResult(
            id=q.id,
            category=q.category,
            passed=False,
            checks=[Check(name="plan", ok=False, reason=f"LLM error: {exc}")],
            latency_s=time.perf_counter() - t0,
            error=str(exc),
        )
    latency = time.perf_counter() - t0
    checks = [Check(name="plan", ok=True), *score_plan(q, draft.plan, registry, limits, now=now)]
    return QuestionResult(
        id=q.id,
        category=q.category,
        passed=all(c.ok for c in checks),
        checks=checks,
        kinds=[s.kind for s in draft.plan.steps],
        plan=draft.plan.model_dump(mode="json", exclude={"earlier_ids"}, exclude_none=True),
        attempts=draft.attempts,
        prompt_tokens=draft.usage.prompt_tokens,
        completion_tokens=draft.usage.completion_tokens,
        latency_s=latency,
    )


async def run_questions(
    llm: LLMClient,
    questions: list[Question],
    registry: CapabilityRegistry,
    limits: LimitsDatabase,
    *,
    label: str,
    provider: str,
    structured: bool,
    max_attempts: int = 3,
    concurrency: int = 4,
    progress: Callable[[QuestionResult], Any] | None = None,
    retry_pauses_s: tuple[float, ...] = LLM_RETRY_PAUSES_S,
) -> ModelResult:
    """Every question of ``questions`` through ``llm``, at most ``concurrency`` at once; results in question order.
    ``progress`` is called after each question. Raises ``ValueError`` for ``concurrency`` < 1."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    sem = asyncio.Semaphore(concurrency)

    async def one(q: Question) -> QuestionResult:
        async with sem:
            r = await run_question(llm, q, registry, limits, max_attempts=max_attempts, retry_pauses_s=retry_pauses_s)
        if progress is not None:
            progress(r)
        return r

    results = await asyncio.gather(*(one(q) for q in questions))
    return ModelResult(label=label, model=llm.model, provider=provider, structured=structured, results=list(results))
