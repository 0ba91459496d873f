"""Planner evaluation (`tern eval plans`, issue 25): a labelled question set, deterministic scoring of the plans a
model gives, and per-model reports.

Nothing here executes a step: each question's plan is asked for through :func:`tern.planning.make_plan` (the code
the ``plan`` activity runs, with the same capability registry and channel database) and scored as it stands, so
no write can happen, whatever the model proposes.
"""

from tern.eval.questions import (
    BUNDLED_QUESTIONS,
    CATEGORIES,
    ArchiverExpectation,
    Expectation,
    LogbookEntry,
    Question,
    QuestionFile,
    QuestionFileError,
    WriteExpectation,
    load_questions,
)
from tern.eval.runner import EVAL_NOW, run_questions
from tern.eval.scoring import Check, ModelResult, QuestionResult, score_plan

__all__ = [
    "BUNDLED_QUESTIONS",
    "CATEGORIES",
    "EVAL_NOW",
    "ArchiverExpectation",
    "Check",
    "Expectation",
    "LogbookEntry",
    "ModelResult",
    "Question",
    "QuestionFile",
    "QuestionFileError",
    "QuestionResult",
    "WriteExpectation",
    "load_questions",
    "run_questions",
    "score_plan",
]
