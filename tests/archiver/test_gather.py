"""``gather`` steps: logbook, live channels and archived history fetched at once as separate activities, each
within its own time limit; an archiver that does not answer is named in a partial result (real Temporal dev
server, PostgreSQL, Channel Access simulator, embedded archiver over HTTP, Docker sandbox)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tern.archiver.store import ArchiveStore
from tern.db import create_pool
from tern.embedded.net import free_port
from tern.models import AgentRunRequest, Plan
from tests.agent_helpers import running_worker
from tests.archiver.helpers import RunningServer
from workflows.agent_run import AgentRunWorkflow

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]
CH = "SR:RF:CAVITY:01:POWER:REV"
CODE = """
rev = load_series("hist_up")["SR:RF:CAVITY:01:POWER:REV"]
results = {"n": int(len(rev)), "sources": [s["status"] for s in inputs["data"]["sources"]]}
"""


async def test_one_source_down_gives_a_partial_result_within_its_time_limit(
    temporal_env, settings, docker_backend
) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    pool = await create_pool(settings.dsn)
    store = ArchiveStore(pool)
    info = await store.ensure_channel(CH)
    await store.append(info.id, [(int(end.timestamp()) - 600 + i, 0, 5.0 + i % 3, 0, 0) for i in range(600)])
    up = RunningServer(store)
    await up.start()
    down_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every request is refused
    s = settings.model_copy(
        update={
            "archiver": settings.archiver.model_copy(update={"url": up.url}),
            "approval": settings.approval.model_copy(update={"python_mode": "disabled"}),
        }
    )
    window = {"start": (end - timedelta(minutes=10)).isoformat(), "end": end.isoformat(), "binning": "raw"}
    plan = Plan.model_validate(
        {
            "steps": [
                {
                    "id": "data",
                    "kind": "gather",
                    "timeout_s": 8,
                    "sources": [
                        {"id": "trips", "kind": "logbook_search", "query": "RF trip", "mode": "keyword"},
                        {"id": "live", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:SP"]},
                        {"id": "hist-up", "kind": "archiver_read", "channels": [CH], **window},
                    ],
                },
                {"id": "py", "kind": "python", "inputs": ["data"], "code": CODE},
                {"id": "answer", "kind": "respond"},
            ]
        }
    )
    try:
        async with running_worker(temporal_env.client, s):
            req = AgentRunRequest(user="alice", query="q", plan=plan, python_approval_mode="disabled")
            handle = await temporal_env.client.start_workflow(
                AgentRunWorkflow.run, req, id=f"run-{uuid.uuid4().hex[:10]}", task_queue=s.temporal.task_queue
            )
            result = await handle.result()
            assert result.status == "completed", result.error
            gather = result.steps[0]
            assert [r.status for r in gather.sources or []] == ["completed", "completed", "completed"]
            assert result.steps[1].python and result.steps[1].python.execution
            assert result.steps[1].python.execution.results == {"n": 600, "sources": ["completed"] * 3}

        # The same sources with the archiver gone: its source fails within the 8 s limit, the others are kept.
        s_down = s.model_copy(update={"archiver": s.archiver.model_copy(update={"url": down_url, "attempts": 20})})
        gather_only = Plan.model_validate({"steps": [plan.steps[0].model_dump(), {"id": "answer", "kind": "respond"}]})
        async with running_worker(temporal_env.client, s_down):
            req = AgentRunRequest(user="alice", query="q", plan=gather_only)
            handle = await temporal_env.client.start_workflow(
                AgentRunWorkflow.run, req, id=f"run-{uuid.uuid4().hex[:10]}", task_queue=s.temporal.task_queue
            )
            result = await handle.result()
        gather = result.steps[0]
        assert result.status == "completed" and gather.status == "completed", gather.message
        trips, live, hist = gather.sources or []
        assert (trips.status, live.status, hist.status) == ("completed", "completed", "failed")
        assert live.readings and live.readings[0].value is not None
        assert "2 of 3 sources; failed: hist-up (archiver_read)" in gather.message
        assert "ScheduleToClose timeout" in hist.message and "(time limit 8 s)" in hist.message, hist.message
        # ended by its time limit, not by the 20 attempts: Temporal timed the read out at its schedule-to-close
        # deadline (the history, not a wall-clock bound that a loaded machine breaks: issue 28)
        events = [e async for e in handle.fetch_history_events()]
        reads = {
            e.event_id: e.activity_task_scheduled_event_attributes
            for e in events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        timed_out = [
            reads[e.activity_task_timed_out_event_attributes.scheduled_event_id]
            for e in events
            if e.HasField("activity_task_timed_out_event_attributes")
            and e.activity_task_timed_out_event_attributes.scheduled_event_id in reads
        ]
        assert [(a.activity_type.name, a.schedule_to_close_timeout.ToSeconds()) for a in timed_out] == [
            ("read_archiver", 8)
        ]
        assert "Data sources (step data): 2 of 3 sources" in result.answer
    finally:
        await up.stop()
        await pool.close()
