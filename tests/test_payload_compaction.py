"""Issue 26 finding 5: step results travel compacted (``tern.agent.payload``) into the composer's input, a python
step's outcome and the run's result. The answer composed from the compacted steps is the answer composed from the
whole ones; the digests are the code's SHA-256 computed here; the 20-step run's payloads stay under 2 MB where
they were over it (``benchmarks/payload_size.py``)."""

from __future__ import annotations

import hashlib

from benchmarks.payload_size import MAX_PAYLOAD, measure, run_steps
from tern.agent.compose import compose, ground_values
from tern.agent.payload import FEEDBACK_CHARS, RESULT_READINGS, compact_attempt, for_composer, for_result
from tern.models.activity_io import ComposeInput
from tern.models.python_step import PythonAttempt


def test_the_composer_gets_what_the_answer_needs_and_not_every_attempts_code() -> None:
    steps = run_steps(code_chars=5_000)
    whole = ComposeInput(workflow_id="tern-run-t", user="alice", query="q", steps=steps)
    slim = ComposeInput(workflow_id="tern-run-t", user="alice", query="q", steps=[for_composer(s) for s in steps])
    assert compose(slim).answer == compose(whole).answer  # readings, analyses, writes: all still there
    answer = "SR:BPM:00:499:X = 0.4990 mm, SR:BPM:05:003:X = 9.9 mm"
    assert ground_values(answer, slim.steps) == ground_values(answer, whole.steps) != []
    for before, after in zip(steps, slim.steps, strict=True):
        if before.python is None:
            continue
        assert after.python is not None and after.python.code == before.python.code  # the last code, once
        for a, b in zip(before.python.attempts, after.python.attempts, strict=True):
            assert b.code == "" and b.code_sha256 == hashlib.sha256(a.code.encode()).hexdigest()
            assert (b.code_chars, b.outcome, b.attempt) == (len(a.code), a.outcome, a.attempt)


def test_the_result_keeps_the_first_readings_and_counts_them() -> None:
    steps = run_steps(code_chars=100)
    read = next(s for s in steps if s.kind == "channel_read")
    assert read.readings is not None and len(read.readings) == 500
    kept = for_result(read)
    assert kept.readings == read.readings[:RESULT_READINGS] and kept.readings_total == 500
    small = read.model_copy(update={"readings": read.readings[:3]})
    assert for_result(small) == small  # under the cap: untouched, no total


def test_compacting_is_idempotent_and_keeps_the_end_of_long_feedback() -> None:
    a = PythonAttempt(attempt=1, code="x = 1\n", outcome="error", feedback="line\n" * 2_000 + "ZeroDivisionError")
    once = compact_attempt(a)
    assert compact_attempt(once) == once
    assert len(once.feedback) == FEEDBACK_CHARS and once.feedback.endswith("ZeroDivisionError")


def test_a_20_step_run_fits_the_payload_limit_it_broke() -> None:
    figures = measure(code_chars=200_000)
    for name in ("compose_input", "run_result"):
        assert figures[name]["before"] > MAX_PAYLOAD > figures[name]["after"], (name, figures[name])
    assert figures["python_outcome"]["after"] < figures["python_outcome"]["before"] / 3
