"""An answer LLM that keeps failing does not fail a run whose steps are done (issue 13, LLM endpoint faults).

Found by ``benchmarks.load --llm-faults 240``: during a four-minute outage every run with an LLM composer
failed at its ``respond`` step, approved writes that had landed included. ``compose_answer`` now waits for the
endpoint for ``ANSWER_LLM_ATTEMPTS`` attempts, then answers with the template composer and says the LLM failed.
The endpoint is the real scripted HTTP server (``tests/llm_script.py``) answering 500 and 429.
"""

from __future__ import annotations

import dataclasses

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.agent import ANSWER_LLM_ATTEMPTS, AgentActivities
from tern.config import TernSettings
from tern.models.activity_io import ComposeInput
from tests.llm_script import scripted_llm

INP = ComposeInput(workflow_id="answer-fallback", user="alice", query="what is the beam current?", steps=[])


def _acts(base: str) -> AgentActivities:
    return AgentActivities(TernSettings(llm={"provider": "openai", "url": f"{base}/v1", "model": "scripted"}))


def _attempt(n: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=n)
    return env


@pytest.mark.parametrize("status", [500, 429])
async def test_a_failing_answer_llm_is_retried_then_answered_by_the_template(status: int) -> None:
    async with scripted_llm() as llm:
        llm.default["answer"] = status
        acts = _acts(llm.base)
        with pytest.raises(ApplicationError) as err:  # early attempts: the workflow's retry policy waits
            await _attempt(ANSWER_LLM_ATTEMPTS - 1).run(acts.compose_answer, INP)
        assert not err.value.non_retryable and f"HTTP {status}" in str(err.value)
        composed = await _attempt(ANSWER_LLM_ATTEMPTS).run(acts.compose_answer, INP)
    assert composed.answer.startswith("Question: what is the beam current?")
    assert "The answer LLM failed" in composed.answer and f"HTTP {status}" in composed.answer
    assert composed.usage is None


async def test_a_refused_request_still_fails_at_once() -> None:
    """A bad key or model (HTTP 401/404) is a configuration error, not an outage: no template answer."""
    async with scripted_llm() as llm:
        llm.default["answer"] = 401
        with pytest.raises(ApplicationError) as err:
            await _attempt(ANSWER_LLM_ATTEMPTS).run(_acts(llm.base).compose_answer, INP)
    assert err.value.non_retryable


async def test_a_working_answer_llm_answers() -> None:
    async with scripted_llm() as llm:
        llm.default["answer"] = "The beam current is as read."
        composed = await _attempt(ANSWER_LLM_ATTEMPTS).run(_acts(llm.base).compose_answer, INP)
    assert composed.answer == "The beam current is as read." and composed.usage is not None
