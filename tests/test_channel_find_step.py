"""The ``channel_find`` step in an agent run, end to end: real Temporal dev server, worker, PostgreSQL."""

from __future__ import annotations

import pytest

from tern.models import Plan
from tests.agent_helpers import running_worker, start_run


@pytest.fixture
async def worker(temporal_env, settings):
    async with running_worker(temporal_env.client, settings):
        yield temporal_env.client


async def test_channel_find_step_returns_ranked_channels_the_answer_lists(worker, settings) -> None:
    plan = Plan.model_validate(
        {
            "steps": [
                {"id": "find", "kind": "channel_find", "query": "cav 1 fwd pwr", "limit": 3},
                {"id": "hybrid", "kind": "channel_find", "query": "stored beam current", "mode": "hybrid"},
                {"id": "answer", "kind": "respond"},
            ]
        }
    )
    result = await (await start_run(worker, settings, plan)).result()
    assert result.status == "completed", result.error
    find, hybrid, _ = result.steps
    assert find.status == "completed" and find.message == "1 channel meant (one, confidence 1.00) and 2 alternatives"
    assert find.channels is not None and len(find.channels) == 3
    first = find.channels[0]
    assert first.name == "SR:RF:CAVITY:01:POWER:FWD" and first.units == "kW" and not first.writable
    assert "forward power" in first.description and first.score > find.channels[1].score
    assert hybrid.channels is not None and hybrid.channels[0].name == "SR:DIAG:DCCT:01:CURRENT:RB"
    # the default (onnx) embeddings are there: hybrid ran, no fallback notice; no area named: the storage ring's
    assert hybrid.message == "1 channel meant (one, confidence 0.80) and 4 alternatives"
    assert [c.in_set for c in hybrid.channels] == [True, False, False, False, False]
    assert "- SR:RF:CAVITY:01:POWER:FWD: Storage ring RF cavity 1: forward power" in result.answer


async def test_a_blank_channel_query_fails_the_step_without_retrying(worker, settings) -> None:
    plan = Plan.model_validate({"steps": [{"id": "find", "kind": "channel_find", "query": "   "}]})
    handle = await start_run(worker, settings, plan)
    result = await handle.result()
    assert result.status == "failed"
    assert result.steps[0].status == "failed" and "blank" in result.steps[0].message
    events = [e async for e in handle.fetch_history_events()]
    finds = {
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "find_channels"
    }
    starts = [
        e.activity_task_started_event_attributes.attempt
        for e in events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id in finds
    ]
    assert starts == [1]  # non-retryable
