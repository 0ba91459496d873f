"""The ``channel_find`` step in an agent run, end to end: real Temporal dev server, worker, PostgreSQL.

The worker's channel database is the bundled limits file cut to its families of at most
:data:`MAX_FAMILY` channels (212 of 2,908: every RF cavity and klystron channel, every DCCT, the gamma and neutron
monitors, the booster and transfer-line BPMs and magnets), whole families so that the names' descriptions are
those of the full database. Embedding all 2,908 with the real (onnx) model took ~95 s of this file's ~100 s on the
2-core machine; the cut keeps the distractors of both queries (other cavities, klystrons, other beam currents)
and the real model.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tern.models import Plan
from tests.agent_helpers import running_worker, start_run

MAX_FAMILY = 30


@pytest.fixture
def settings(settings, tmp_path):
    """The conftest settings with a limits file of the bundled families of at most :data:`MAX_FAMILY` channels."""
    limits = json.loads(settings.control.limits_path.read_text())
    channels = [k for k in limits if not k.startswith("_") and k != "defaults"]
    family = Counter(":".join(k.split(":")[:3]) for k in channels)
    kept = {k: v for k, v in limits.items() if k not in channels or family[":".join(k.split(":")[:3])] <= MAX_FAMILY}
    assert 200 < len(kept) < 300 and "SR:DIAG:DCCT:01:CURRENT:RB" in kept and "SR:RF:CAVITY:01:POWER:FWD" in kept
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(kept))
    return settings.model_copy(update={"control": settings.control.model_copy(update={"limits_path": path})})


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
    assert find.status == "completed" and find.message == "3 channels"
    assert find.channels is not None and len(find.channels) == 3
    first = find.channels[0]
    assert first.name == "SR:RF:CAVITY:01:POWER:FWD" and first.units == "kW" and not first.writable
    assert "forward power" in first.description and first.score > find.channels[1].score
    assert hybrid.channels is not None and hybrid.channels[0].name == "SR:DIAG:DCCT:01:CURRENT:RB"
    assert hybrid.message == "5 channels"  # the default (onnx) embeddings are there: hybrid ran, no fallback notice
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
