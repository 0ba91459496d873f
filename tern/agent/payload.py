"""Keeping workflow payloads small (issue 26 finding 5): what a step result carries into the answer composer's
input (``ComposeInput.steps``), a python step's outcome and the run's result (``AgentRunResult.steps``).

Temporal refuses a payload over 2 MB and a history over 50 MB (Temporal's "System limits" documentation); before
this, every python attempt's code (up to 200,000 characters each) and every reading of a read step (up to 500)
travelled in each of those payloads, so a 20-step run could exceed the first limit.

- A python step's attempts keep their number, outcome, feedback (the error the generator saw, cut to
  :data:`FEEDBACK_CHARS`) and the SHA-256 and length of their code; the last code (what ran, or was refused) stays
  once in ``PythonStepOutcome.code``. An approved code's digest is in the audit (``approval_requested``) and the
  code itself in the approval request that showed it.
- The run's result keeps the first :data:`RESULT_READINGS` readings of a step and says how many there were
  (``readings_total``); the composer's input keeps all of them (the answer quotes them, and
  :func:`tern.agent.compose.ground_values` checks the quotes against them). Every reading stays in history as the
  read activity's result.

Pure functions: the workflows call them (deterministic, no I/O).
"""

from __future__ import annotations

import hashlib

from tern.models.python_step import PythonAttempt, PythonStepOutcome
from tern.models.run import StepResult

FEEDBACK_CHARS = 4_000
"""Characters of an attempt's feedback (an error and its traceback) kept in a step's outcome."""
RESULT_READINGS = 50
"""Readings of one step kept in a run's result (``AgentRunResult.steps``); the rest are counted."""


def compact_attempt(a: PythonAttempt) -> PythonAttempt:
    """``a`` without its code: the code's SHA-256 (hex, of the UTF-8 text) and length instead; feedback cut to
    :data:`FEEDBACK_CHARS` (its end kept: a traceback's last lines say what failed). Idempotent."""
    if not a.code:
        return a
    feedback = a.feedback if len(a.feedback) <= FEEDBACK_CHARS else "…" + a.feedback[-(FEEDBACK_CHARS - 1) :]
    return a.model_copy(
        update={
            "code": "",
            "code_sha256": hashlib.sha256(a.code.encode()).hexdigest(),
            "code_chars": len(a.code),
            "feedback": feedback,
        }
    )


def compact_outcome(o: PythonStepOutcome) -> PythonStepOutcome:
    """A python step's outcome with its attempts compacted (:func:`compact_attempt`); the rest unchanged."""
    return o.model_copy(update={"attempts": [compact_attempt(a) for a in o.attempts]})


def for_composer(step: StepResult) -> StepResult:
    """``step`` as the answer composer gets it: python attempts compacted, readings all kept (a gather step's
    sources likewise)."""
    update: dict[str, object] = {}
    if step.python is not None:
        update["python"] = compact_outcome(step.python)
    if step.sources:
        update["sources"] = [for_composer(s) for s in step.sources]
    return step.model_copy(update=update) if update else step


def for_result(step: StepResult, max_readings: int = RESULT_READINGS) -> StepResult:
    """``step`` as the run's result keeps it: as :func:`for_composer`, and at most ``max_readings`` readings
    (the first ones, in the order read) with ``readings_total`` saying how many there were."""
    out = for_composer(step)
    update: dict[str, object] = {}
    if out.readings is not None and len(out.readings) > max_readings:
        update = {"readings": out.readings[:max_readings], "readings_total": len(out.readings)}
    if out.sources:
        update["sources"] = [for_result(s, max_readings) for s in out.sources]
    return out.model_copy(update=update) if update else out
