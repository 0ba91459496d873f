"""``archiver_read`` steps on the real Temporal dev server, PostgreSQL, the embedded archiver over HTTP and the
Docker sandbox: the samples go to the artifact store (history stays small), the python step loads them as
pandas DataFrames, channels without data are named, bad ranges and binnings are refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from tern.archiver.series import SERIES_MEDIA_TYPE, unpack
from tern.archiver.store import ArchiveStore
from tern.config import TernSettings
from tern.db import create_pool
from tern.models import AgentRunRequest, Plan
from tern.sandbox.artifacts import load_artifact
from tests.agent_helpers import running_worker
from tests.archiver.helpers import RunningServer
from workflows.agent_run import AgentRunWorkflow

pytestmark = [pytest.mark.temporal, pytest.mark.postgres]
DAY_S = 86400
CHANNELS = ["SR:RF:CAVITY:01:TEMPERATURE:RB", "SR:RF:CAVITY:01:POWER:REV"]
HISTORY_LIMIT_BYTES = 64 * 1024

ANALYSIS = """
series = load_series("history")
temp = series["SR:RF:CAVITY:01:TEMPERATURE:RB"]
rev = load_series("history_series")["SR:RF:CAVITY:01:POWER:REV"]
results = {
    "rows": int(len(temp)),
    "mean_temp": float(temp["value"].mean()),
    "max_rev": float(rev["value"].max()),
    "tz": str(temp.index.tz),
    "columns": list(temp.columns),
    "summary_count": inputs["history"]["archived"]["series"][0]["count"],
}
"""


@pytest.fixture
async def archiver(settings: TernSettings) -> AsyncIterator[tuple[TernSettings, datetime]]:
    """A day of 1 Hz samples for CHANNELS ending on the hour before now, served over HTTP; settings point at it."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    t0 = int(end.timestamp()) - DAY_S
    pool = await create_pool(settings.dsn)
    store = ArchiveStore(pool)
    for k, ch in enumerate(CHANNELS):
        info = await store.ensure_channel(ch, prec=2, units="degC" if k == 0 else "kW")
        await store.append(info.id, [(t0 + i, 0, float(k * 100 + i % 60), 0, 0) for i in range(DAY_S)])
    server = RunningServer(store)
    await server.start()
    try:
        yield (
            settings.model_copy(
                update={
                    "archiver": settings.archiver.model_copy(update={"url": server.url}),
                    "approval": settings.approval.model_copy(update={"python_mode": "disabled"}),
                }
            ),
            end,
        )
    finally:
        await server.stop()
        await pool.close()


async def run_plan(client, s: TernSettings, plan: Plan):
    req = AgentRunRequest(user="alice", query="archived history", plan=plan, python_approval_mode="disabled")
    handle = await client.start_workflow(
        AgentRunWorkflow.run, req, id=f"run-{uuid.uuid4().hex[:10]}", task_queue=s.temporal.task_queue
    )
    return handle, await handle.result()


async def test_a_day_of_1hz_stays_out_of_history_and_reaches_pandas(temporal_env, archiver, docker_backend) -> None:
    s, end = archiver
    plan = Plan.model_validate(
        {
            "steps": [
                {
                    "id": "history",
                    "kind": "archiver_read",
                    "channels": [*CHANNELS, "NOT:ARCHIVED"],
                    "start": (end - timedelta(days=1)).isoformat(),
                    "end": end.isoformat(),
                    "binning": "raw",
                },
                {"id": "analyse", "kind": "python", "inputs": ["history"], "code": ANALYSIS},
                {"id": "answer", "kind": "respond"},
            ]
        }
    )
    async with running_worker(temporal_env.client, s) as pool:
        handle, result = await run_plan(temporal_env.client, s, plan)
        assert result.status == "completed", result.error
        step = result.steps[0]
        assert step.status == "completed" and "no data: NOT:ARCHIVED: channel 'NOT:ARCHIVED' is not archived" in (
            step.message
        )
        arch = step.archived
        assert arch is not None and arch.binning is None and arch.samples == 2 * DAY_S
        temp = arch.series[0]
        assert (temp.count, temp.min, temp.max, temp.units) == (DAY_S, 0.0, 59.0, "degC")
        art = await load_artifact(pool, arch.artifact_id or "")
        assert art is not None and art.media_type == SERIES_MEDIA_TYPE and art.size_bytes == arch.artifact_bytes
        assert [len(x) for x in unpack(art.content)] == [DAY_S, DAY_S]
        py = result.steps[1].python
        assert py is not None and py.execution is not None, result.steps[1].message
        got = py.execution.results
        assert got["rows"] == DAY_S and got["tz"] == "UTC" and got["columns"] == ["value", "severity", "status"]
        assert got["mean_temp"] == pytest.approx(temp.mean) and got["max_rev"] == 159.0
        assert got["summary_count"] == DAY_S
        assert "SR:RF:CAVITY:01:TEMPERATURE:RB: 86400 points" in result.answer
        history = await handle.fetch_history()
        size = len(history.to_json().encode())
        assert size < HISTORY_LIMIT_BYTES, f"history of the run is {size} bytes"
        child = await temporal_env.client.get_workflow_handle(f"{handle.id}.analyse").fetch_history()
        assert len(child.to_json().encode()) < HISTORY_LIMIT_BYTES


async def test_no_data_or_too_long_a_span_fails_the_step_with_the_reason(temporal_env, archiver) -> None:
    s = archiver[0].model_copy(update={"archiver": archiver[0].archiver.model_copy(update={"max_span_h": 48.0})})
    plan = Plan.model_validate(
        {
            "steps": [
                {"id": "none", "kind": "archiver_read", "channels": ["NOT:ARCHIVED"], "range": "last 1 h"},
                {"id": "long", "kind": "archiver_read", "channels": CHANNELS[:1], "range": "last 3 d"},
                {"id": "auto", "kind": "archiver_read", "channels": CHANNELS[:1], "range": "last 2 d"},
            ]
        }
    )
    async with running_worker(temporal_env.client, s):
        _handle, result = await run_plan(temporal_env.client, s, plan)
    none, long, auto = result.steps
    assert none.status == "failed" and "no archived data: NOT:ARCHIVED" in none.message
    assert long.status == "failed" and "exceeds the maximum of 48 h" in long.message
    # 2 days at 1 Hz > 2000 points: the server bins (mean over 120 s): a day of data -> 720 bins
    assert auto.status == "completed" and auto.archived is not None and auto.archived.binning == "mean_120"
    assert auto.archived.series[0].count == DAY_S // 120
    assert result.status == "failed"


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ({"range": "2026-11-20T00:00Z to 2026-11-19T00:00Z"}, "reversed"),
        ({"range": "since the dawn of time"}, "cannot read"),
        ({"start": "yesterday 25:00"}, "bad clock time"),
        ({"range": "last 1 h", "binning": "avg_600"}, "binning 'avg_600'"),
        ({"range": "last 1 h", "binning": "mean_0"}, "binning 'mean_0'"),
        ({}, "a time range is required"),
    ],
)
def test_bad_steps_are_refused_before_anything_runs(step: dict, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Plan.model_validate({"steps": [{"kind": "archiver_read", "channels": ["A:B"], **step}]})
