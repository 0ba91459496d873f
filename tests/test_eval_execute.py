"""``tern eval plans --execute`` on real components: the Temporal dev server, a Tern worker, PostgreSQL, the
simulated accelerator over Channel Access; the model under evaluation and the worker's answer LLM are a scripted
OpenAI-compatible server. The plans' read steps run, the write stops at its approval and is rejected (the
setpoint is unchanged), and an answer citing an entry the run never retrieved fails ``grounded``."""

from __future__ import annotations

import pytest

from starters.client import TernClient
from starters.eval_execute import execute_results
from tern.control.channel_access import read_value
from tern.eval import run_questions
from tern.llm import OpenAIChat
from tern.models import Plan
from tern.planning import REGISTRY
from tests.agent_helpers import running_worker, wait_for_state
from tests.llm_script import last_user_text, scripted_llm
from tests.test_eval_plans import LIMITS, QUESTIONS, by_question, ref

HCM = "SR:MAG:HCM:03:CURRENT:SP"


async def test_execute_reads_rejects_the_write_and_scores_grounding(temporal_env, settings) -> None:
    ids = ["status-01", "status-02", "write-01"]
    qs = [QUESTIONS[i] for i in ids]
    before = read_value(HCM)

    def answer(body: dict) -> str:
        if "tell me if it matches its setpoint" in last_user_text(body):
            return "The voltage matches its setpoint, as logged before [#DEMO-999]."  # never retrieved
        return "As read by this run."

    async with scripted_llm() as llm:
        llm.default["planner"] = by_question({i: ref(i) for i in ids})
        llm.default["answer"] = answer
        s = settings.model_copy(
            update={"llm": settings.llm.model_copy(update={"provider": "openai", "url": f"{llm.base}/v1"})}
        )
        async with running_worker(temporal_env.client, s):
            model = OpenAIChat(f"{llm.base}/v1", "under-test", "sk-test")
            result = await run_questions(model, qs, REGISTRY, LIMITS, label="m", provider="openai", structured=True)
            await execute_results(TernClient(temporal_env.client, s), qs, result, concurrency=3, timeout_s=120)
    by = {r.id: r for r in result.results}
    assert by["status-01"].passed and by["status-01"].run_status == "completed", by["status-01"].explain()
    assert {c.name for c in by["status-02"].failures} == {"grounded"}
    assert "DEMO-999" in by["status-02"].explain()
    w = by["write-01"]
    assert w.run_status == "rejected" and w.passed, w.explain()  # the plan was right; the write was rejected
    assert {c.name for c in w.checks} >= {"no_write_executed", "grounded", "write"}
    assert read_value(HCM) == pytest.approx(before)  # nothing written
    assert all(r.run_id.startswith("tern-run-") for r in result.results)


async def test_from_history_takes_the_plan_a_person_approved(temporal_env, settings) -> None:
    """``--from-history``: a run asked with plan approval, its plan approved by bob, becomes a regression question
    whose expectations are that plan; a run whose plan nobody approved is refused (exit 2)."""
    import typer

    from starters.eval_cli import _history_questions

    address = temporal_env.client.service_client.config.target_host
    async with scripted_llm() as llm:
        llm.default["planner"] = ref("status-01")
        llm.default["answer"] = "As read by this run."
        s = settings.model_copy(
            update={
                "llm": settings.llm.model_copy(update={"provider": "openai", "url": f"{llm.base}/v1"}),
                "temporal": settings.temporal.model_copy(update={"address": address}),
            }
        )
        client = TernClient(temporal_env.client, s)
        async with running_worker(temporal_env.client, s):
            handle = await client.ask(
                "What is the stored beam current?", user="alice", approvers=["bob"], plan_approval=True
            )
            await wait_for_state(handle, "awaiting_approval", within_s=60)
            await client.decide(handle.id, "bob", True, "fine")
            assert (await client.result(handle.id)).status == "completed"
            qs = await _history_questions(s, [handle.id])
            unapproved = await client.ask("What is the stored beam current?", user="alice", plan_approval=False)
            assert (await client.result(unapproved.id)).status == "completed"
            with pytest.raises(typer.Exit) as exc:
                await _history_questions(s, [unapproved.id])
    assert exc.value.exit_code == 2
    (q,) = qs
    assert q.category == "regression" and q.question == "What is the stored beam current?"
    assert q.expect.channels == ["SR:DIAG:DCCT:01:CURRENT:RB"] and q.expect.write is None
    assert Plan.model_validate(q.reference) == Plan.model_validate(QUESTIONS["status-01"].reference)
