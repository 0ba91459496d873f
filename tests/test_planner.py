"""The planner and the grounded-answer composer: the real openai and anthropic SDK clients over real HTTP to
scripted servers (tests/llm_script.py), the bundled limits database as the channel database."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import pytest

from tern.agent.compose import compose_with_llm
from tern.config import TernSettings
from tern.control.limits import LimitsDatabase
from tern.llm import AnthropicChat, LLMError, OpenAIChat, make_chat_provider
from tern.models import ChannelReadStep, LogbookHit, Plan, StepResult
from tern.models.activity_io import ComposeInput
from tern.models.planning import PlanFeedback, PlanInput
from tern.planning import REGISTRY, PlanningFailed, make_plan, parse_plan_json
from tests.llm_script import last_user_text, plan_json, scripted_llm

LIMITS = LimitsDatabase.load(TernSettings().control.limits_path)
READ = {"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:RB"]}
SEARCH = {"id": "search", "kind": "logbook_search", "query": "RF cavity 1 trip"}
ANSWER = {"id": "answer", "kind": "respond"}
QUESTION = PlanInput(workflow_id="r1", user="alice", question="RF cavity 1 tripped again: has this happened before?")


def openai_client(base: str, **kw) -> OpenAIChat:
    return OpenAIChat(f"{base}/v1", "scripted-model", "sk-test-key", **kw)


async def test_malformed_json_then_valid_plan_is_a_retry_with_the_error_fed_back() -> None:
    async with scripted_llm() as llm:
        llm.script["planner"] = ["Sure! Here is the plan: {steps: [", plan_json(SEARCH, READ, ANSWER)]
        draft = await make_plan(openai_client(llm.base), REGISTRY, QUESTION, LIMITS)
    assert [s.id for s in draft.plan.steps] == ["search", "read", "answer"]
    assert draft.attempts == 2 and "not valid JSON" in draft.errors[0]
    first, second = llm.by_role("planner")
    assert first["response_format"]["type"] == "json_schema"  # structured output asked for
    schema = first["response_format"]["json_schema"]["schema"]
    kinds = {item["properties"]["kind"]["const"] for item in schema["properties"]["steps"]["items"]["anyOf"]}
    assert kinds == set(REGISTRY.kinds)  # the schema comes from the registry
    assert "not valid JSON" in last_user_text(second)
    assert second["messages"][-2] == {"role": "assistant", "content": "Sure! Here is the plan: {steps: ["}
    assert draft.usage.calls == 2 and draft.usage.prompt_tokens == 200 and draft.usage.completion_tokens == 40


async def test_unknown_channel_and_read_only_write_are_fed_back() -> None:
    bad = plan_json(
        {"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTS"]},
        {"id": "set", "kind": "control_write", "channel": "SR:RF:CAVITY:01:VOLTAGE:RB", "value": 2.0},
        ANSWER,
    )
    async with scripted_llm() as llm:
        llm.script["planner"] = [bad, plan_json(READ, ANSWER)]
        draft = await make_plan(openai_client(llm.base), REGISTRY, QUESTION, LIMITS)
    assert draft.attempts == 2
    fed_back = last_user_text(llm.by_role("planner")[1])
    assert "unknown channel 'SR:RF:CAVITY:01:VOLTS'" in fed_back
    assert "'SR:RF:CAVITY:01:VOLTAGE:RB' is read-only" in fed_back


async def test_unknown_kind_missing_parameter_and_no_respond_then_failure_names_the_last_error() -> None:
    async with scripted_llm() as llm:
        llm.script["planner"] = [
            plan_json({"kind": "shell", "cmd": "rm -rf /"}, ANSWER),
            plan_json({"id": "s", "kind": "logbook_search"}, ANSWER),
            plan_json(READ),
        ]
        with pytest.raises(PlanningFailed, match="last error: the last step must be 'respond'") as exc:
            await make_plan(openai_client(llm.base), REGISTRY, QUESTION, LIMITS)
    texts = [last_user_text(r) for r in llm.by_role("planner")]
    assert "unknown kind 'shell'" in texts[1] and "step 1 field query: Field required" in texts[2]
    assert exc.value.usage.calls == 3


async def test_server_without_json_schema_support_gets_instructions_only() -> None:
    async with scripted_llm() as llm:
        llm.refuse_response_format = True
        llm.default["planner"] = plan_json(READ, ANSWER)
        client = openai_client(llm.base)
        await make_plan(client, REGISTRY, QUESTION, LIMITS)
        await make_plan(client, REGISTRY, QUESTION, LIMITS)
    sent = ["response_format" in r for r in llm.by_role("planner")]
    assert sent == [True, False, False]  # refused once, then not asked again by this client
    assert '"steps"' in llm.by_role("planner")[1]["messages"][0]["content"]  # the schema is in the instructions


async def test_anthropic_messages_api_plans_with_retry() -> None:
    async with scripted_llm() as llm:
        llm.script["planner"] = ["```json\n{not json\n```", f"```json\n{plan_json(SEARCH, ANSWER)}\n```"]
        client = AnthropicChat(llm.base, "claude-scripted", "sk-ant-test")
        draft = await make_plan(client, REGISTRY, QUESTION, LIMITS)
    assert draft.attempts == 2 and [s.kind for s in draft.plan.steps] == ["logbook_search", "respond"]
    first = llm.by_role("planner")[0]
    assert first["model"] == "claude-scripted" and "You are the planner" in first["system"]
    assert all(m["role"] != "system" for m in first["messages"])
    assert draft.usage.prompt_tokens == 180 and draft.usage.completion_tokens == 30


async def test_http_errors_are_llm_errors_retryable_or_not() -> None:
    async with scripted_llm() as llm:
        llm.script["planner"] = [503, 401]
        client = openai_client(llm.base)
        with pytest.raises(LLMError) as e1:
            await make_plan(client, REGISTRY, QUESTION, LIMITS)
        with pytest.raises(LLMError) as e2:
            await make_plan(client, REGISTRY, QUESTION, LIMITS)
    assert e1.value.retryable and "503" in str(e1.value)
    assert not e2.value.retryable and "401" in str(e2.value)
    assert "sk-test-key" not in str(e1.value) + str(e2.value)


async def test_revision_after_a_failed_step_may_use_earlier_ids_and_not_reuse_them() -> None:
    previous = Plan.model_validate({"steps": [READ, ANSWER]})
    feedback = PlanFeedback(
        cause="step_failed", by="step read", comment="unavailable", previous=previous, done=["x"], done_ids=["read"]
    )
    analyse = {"id": "analyse", "kind": "python", "inputs": ["read"], "code": "results = {}"}
    async with scripted_llm() as llm:
        llm.script["planner"] = [plan_json(READ, ANSWER), plan_json(analyse, {"id": "answer2", "kind": "respond"})]
        draft = await make_plan(
            openai_client(llm.base), REGISTRY, QUESTION.model_copy(update={"feedback": feedback}), LIMITS
        )
    assert draft.attempts == 2 and "duplicate step id 'read'" in draft.errors[0]
    assert "step read failed" in last_user_text(llm.by_role("planner")[0])


def test_parse_plan_json_finds_fenced_or_embedded_objects() -> None:
    assert parse_plan_json('Plan:\n```json\n{"steps": []}\n```') == {"steps": []}
    assert parse_plan_json('blah {"steps": [1]} blah') == {"steps": [1]}
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_plan_json("{nope")


async def test_grounded_answer_removes_an_invented_citation() -> None:
    hits = [LogbookHit(entry_id="DEMO-007", title="RF cavity 1 trip", timestamp=datetime(2026, 1, 2, tzinfo=UTC))]
    steps = [StepResult(step_id="search", kind="logbook_search", status="completed", hits=hits)]
    inp = ComposeInput(workflow_id="r", user="alice", query="cavity trips?", steps=steps)
    async with scripted_llm() as llm:
        llm.script["answer"] = ["Yes: it tripped before [#DEMO-007], and also [#DEMO-999]."]
        composed = await compose_with_llm(openai_client(llm.base), inp, REGISTRY.summarise)
    assert composed.answer == "Yes: it tripped before [#DEMO-007], and also."
    assert composed.citations == ["DEMO-007"] and composed.unsupported_citations == ["DEMO-999"]
    assert composed.usage is not None and composed.usage.calls == 1
    assert "[#DEMO-007] RF cavity 1 trip" in last_user_text(llm.by_role("answer")[0])


async def test_grounded_answer_checks_quoted_channel_values_against_the_readings() -> None:
    """Values the LLM quotes next to a channel name are checked against this run's readings (rounded to the quoted
    decimals): a wrong one is said in the answer and listed; right ones, other numbers and other channels pass."""
    from tern.agent.compose import ground_values
    from tern.models import ChannelReading

    readings = [
        ChannelReading(channel="SR:RF:CAVITY:01:VOLTAGE:RB", value=1.49996, units="MV"),
        ChannelReading(channel="SR:RF:CAVITY:01:POWER:REV", value=8.91, units="kW"),
        ChannelReading(channel="SR:VAC:GAUGE:01:PRESSURE", value=2.1e-10, units="Torr"),
    ]
    steps = [StepResult(step_id="read", kind="channel_read", status="completed", readings=readings)]
    right = (
        "SR:RF:CAVITY:01:VOLTAGE:RB reads 1.5 MV, SR:RF:CAVITY:01:POWER:REV = 8.91 kW and "
        "SR:VAC:GAUGE:01:PRESSURE is 2.1e-10 Torr; 3 trips since 2026."
    )
    assert ground_values(right, steps) == []
    wrong = "SR:RF:CAVITY:01:VOLTAGE:RB reads 3.0 MV while SR:RF:CAVITY:01:POWER:REV stays at 8.9 kW."
    assert [(w.channel, w.quoted, w.read) for w in ground_values(wrong, steps)] == [
        ("SR:RF:CAVITY:01:VOLTAGE:RB", "3.0", 1.49996)
    ]
    inp = ComposeInput(workflow_id="r", user="alice", query="cavity 1 now?", steps=steps)
    async with scripted_llm() as llm:
        llm.script["answer"] = [wrong]
        composed = await compose_with_llm(openai_client(llm.base), inp, REGISTRY.summarise)
    assert composed.answer.startswith(wrong)
    assert "SR:RF:CAVITY:01:VOLTAGE:RB was quoted as 3.0, the reading was 1.49996" in composed.answer
    assert [w.quoted for w in composed.unsupported_values] == ["3.0"]


def test_settings_choose_provider_and_model_per_role() -> None:
    s = TernSettings(llm={"provider": "openai", "url": "http://127.0.0.1:9/v1", "model": "m", "planner_model": "big"})
    planner, answer = make_chat_provider(s, "planner"), make_chat_provider(s, "answer")
    assert isinstance(planner, OpenAIChat) and planner.model == "big"
    assert answer is not None and answer.model == "m"
    a = make_chat_provider(TernSettings(llm={"provider": "anthropic", "api_key": "k", "model": "c"}), "code")
    assert isinstance(a, AnthropicChat) and a.model == "c"
    assert make_chat_provider(TernSettings()) is None
    with pytest.raises(ValueError, match="TERN_LLM__API_KEY"):
        TernSettings(llm={"provider": "anthropic"})
    assert "sk-" not in repr(TernSettings(llm={"provider": "anthropic", "api_key": "sk-secret"}))


def test_schema_is_json_serialisable_and_lists_every_kind() -> None:
    schema = REGISTRY.plan_schema()
    assert json.loads(json.dumps(schema))["required"] == ["steps"]


@pytest.mark.load
async def test_one_client_holds_fifty_plans_in_flight() -> None:
    """50 runs planning at once share one client (one per worker): none waits for another's reply."""
    async with scripted_llm() as llm:
        llm.default["planner"] = plan_json(READ, ANSWER)
        llm.delay_s = 1.0
        client = openai_client(llm.base)  # the default pool: llm_max_concurrency = 50 connections
        drafts = await asyncio.gather(*(make_plan(client, REGISTRY, QUESTION, LIMITS) for _ in range(50)))
    assert len(drafts) == 50 and all(d.attempts == 1 for d in drafts)
    assert llm.max_in_flight == 50


def test_prompt_schema_and_validation_all_come_from_the_registry() -> None:
    from tern.planning.capabilities import CHANNEL_READ, RESPOND
    from tern.planning.prompt import planner_messages
    from tern.planning.registry import CapabilityRegistry, PlanInvalid

    reads_only = CapabilityRegistry([CHANNEL_READ, RESPOND])
    schema_kinds = [
        i["properties"]["kind"]["const"] for i in reads_only.plan_schema()["properties"]["steps"]["items"]["anyOf"]
    ]
    assert schema_kinds == ["channel_read", "respond"]
    system = planner_messages(reads_only, QUESTION)[0].content
    assert "- channel_read:" in system and "- control_write:" not in system
    write = {"id": "w", "kind": "control_write", "channel": "SR:RF:CAVITY:01:VOLTAGE:SP", "value": 1.0}
    with pytest.raises(PlanInvalid, match="unknown kind 'control_write'; the kinds are channel_read, respond"):
        reads_only.validate({"steps": [write, ANSWER]}, LIMITS)
    assert REGISTRY.validate({"steps": [write, ANSWER]}, LIMITS).steps[0].kind == "control_write"
    with pytest.raises(ValueError, match="already registered"):
        reads_only.register(RESPOND)


def test_channels_from_must_name_earlier_steps() -> None:
    from tern.planning.registry import PlanInvalid

    later = {"id": "read", "kind": "channel_read", "channels_from": ["find"]}
    with pytest.raises(PlanInvalid, match=r"channels_from \['find'\] are not ids of earlier steps"):
        REGISTRY.validate({"steps": [later, ANSWER]}, LIMITS)
    with pytest.raises(PlanInvalid, match="needs 'channels' or 'channels_from'"):
        REGISTRY.validate({"steps": [{"kind": "channel_read"}, ANSWER]}, LIMITS)
    ok = REGISTRY.validate(
        {"steps": [SEARCH, {"id": "r", "kind": "channel_read", "channels_from": ["search"]}, ANSWER]}
    )
    step = ok.steps[1]
    assert isinstance(step, ChannelReadStep) and step.channels_from == ["search"]


def test_the_channel_finder_is_a_capability_the_planner_sees() -> None:
    """channel_find is registered: in the prompt's capability list and JSON Schema, and a plan that finds channels
    and then reads what it found validates; its result is summarised for the next LLM call with names and units."""
    from tern.models import ChannelHit

    assert "channel_find" in REGISTRY.kinds and "channel_find" in json.dumps(REGISTRY.plan_schema())
    find = {"id": "find", "kind": "channel_find", "query": "cavity 1 reflected power", "limit": 3}
    read = {"id": "read", "kind": "channel_read", "channels_from": ["find"]}
    plan = REGISTRY.validate({"steps": [find, read, ANSWER]}, LIMITS)
    assert [s.kind for s in plan.steps] == ["channel_find", "channel_read", "respond"]
    found = StepResult(
        step_id="find",
        kind="channel_find",
        status="completed",
        channels=[ChannelHit(name="SR:RF:CAVITY:01:POWER:REV", score=2.0, description="reflected power", units="kW")],
    )
    assert REGISTRY.summarise(found).endswith(": SR:RF:CAVITY:01:POWER:REV (reflected power, kW)")


async def test_debug_logging_writes_neither_prompt_nor_key(caplog) -> None:
    secret_question = QUESTION.model_copy(update={"question": "the-secret-question-text"})
    with caplog.at_level(logging.DEBUG):
        async with scripted_llm() as llm:
            llm.script["planner"] = [plan_json(READ, ANSWER)]
            await make_plan(openai_client(llm.base), REGISTRY, secret_question, LIMITS)
            llm.script["planner"] = [plan_json(READ, ANSWER)]
            await make_plan(AnthropicChat(llm.base, "c", "sk-test-key"), REGISTRY, secret_question, LIMITS)
    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert "the-secret-question-text" not in logged and "sk-test-key" not in logged


def test_plan_request_shows_its_steps_to_the_approver() -> None:
    from tern.approval.render import pending_markdown
    from tern.models import ApprovalRequest

    plan = Plan.model_validate({"steps": [SEARCH, READ, ANSWER]})
    now = datetime(2026, 11, 23, tzinfo=UTC)
    req = ApprovalRequest(
        request_id="r1",
        kind="plan",
        step_id="plan-v1",
        summary="plan v1: 3 steps",
        requested_by="alice",
        approvers=["bob"],
        requested_at=now,
        expires_at=now,
        plan=plan,
    )
    text = pending_markdown(req, workflow_id="run-1", now=now)
    assert "Waiting for approval: the run's plan" in text
    assert '1. `search` (logbook\\_search): `{"query": "RF cavity 1 trip"}`' in text
    assert '2. `read` (channel\\_read): `{"channels": ["SR:RF:CAVITY:01:VOLTAGE:RB"]}`' in text
