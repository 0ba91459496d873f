"""Regression questions from recorded runs (``tern eval plans --from-history RUN...``): a run's question and the
plan a person approved become a question whose expectations are that plan's step kinds, channels and writes."""

from __future__ import annotations

import re

from tern.eval.questions import ArchiverExpectation, Expectation, Question, WriteExpectation
from tern.models.plan import ArchiverReadStep, ControlWriteStep, GatherStep, Plan
from tern.models.run import AgentRunResult
from tern.planning.registry import CapabilityRegistry

WRITE_TOLERANCE = 0.01  # a regression write matches within 1 % of the approved value (at least 1e-6)


class NoApprovedPlan(ValueError):
    """The run has no plan a person approved (it was not planned, or its plan was never approved)."""


def approved_plan(run: AgentRunResult) -> Plan:
    """The last plan version of ``run`` that an approver approved (approval kind ``plan``, step ``plan-vN``, decided
    by a person through an Update or Signal).

    Raises :class:`NoApprovedPlan` when there is none: a plan that ran without a person's approval is not taken
    as a reference."""
    approved = {
        a.step_id
        for a in run.approvals
        if a.kind == "plan" and a.decision == "approved" and a.via in ("update", "signal")  # a person, not a policy
    }
    for v in reversed(run.plan):
        if f"plan-v{v.version}" in approved:
            return v.plan
    raise NoApprovedPlan(f"run {run.workflow_id} has no plan a person approved (plan approval was off or refused)")


def question_from_run(run: AgentRunResult, registry: CapabilityRegistry) -> Question:
    """A ``regression`` question from ``run``: its query, and as expectations the approved plan's kinds, the
    channels it names, its archiver reads (span of the first, when given as a range phrase) and its one write
    (the approved value within :data:`WRITE_TOLERANCE`). Raises :class:`NoApprovedPlan`."""
    plan = approved_plan(run)
    kinds: list[str] = []
    channels: list[str] = []
    archiver = None
    writes: list[ControlWriteStep] = []
    for step in plan.steps:
        inner = [step, *(step.sources if isinstance(step, GatherStep) else [])]
        for s in inner:
            if s.kind not in kinds:
                kinds.append(s.kind)
            if isinstance(s, ControlWriteStep):
                writes.append(s)
            if isinstance(s, ArchiverReadStep) and archiver is None and s.range:
                m = re.fullmatch(r"\s*(?:last|past)\s+(\d+(?:\.\d+)?)\s*(h|hours?|d|days?)\s*", s.range, re.I)
                if m:
                    hours = float(m.group(1)) * (24 if m.group(2).lower().startswith("d") else 1)
                    archiver = ArchiverExpectation(channels=list(s.channels), hours=hours)
        cap = registry.get(step.kind)
        if cap is not None:
            read, written = cap.channels(step)
            channels += [c for c in [*read, *written] if c not in channels]
    write = None
    if writes:
        w = writes[0]
        tol = max(abs(w.value) * WRITE_TOLERANCE, 1e-6)
        write = WriteExpectation(channel=w.channel, min=w.value - tol, max=w.value + tol)
    safe = re.sub(r"[^a-z0-9_.\-]", "-", run.workflow_id.lower())[:70]
    return Question(
        id=f"run-{safe}",
        category="regression",
        question=run.query,
        expect=Expectation(kinds=kinds, channels=channels, archiver=archiver, write=write),
        reference=plan.model_dump(mode="json", exclude={"earlier_ids"}, exclude_none=True),
        why=f"recorded run {run.workflow_id}, plan approved by a person",
    )
