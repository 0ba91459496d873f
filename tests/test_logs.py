"""Worker log lines (worker/logs.py): TERN_WORKER__LOG_FORMAT=json gives one JSON object a line carrying the workflow
id, Tern's run, step and request ids and the trace id of the record's span; the human format stays the
default. A real run (dev server, PostgreSQL, simulated IOC) with the worker's interceptors."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tern.config import TernSettings
from tern.control.channel_access import read_value
from tern.models import Decision
from tests.agent_helpers import running_worker, start_run, wait_for_state, write_plan
from worker.logs import make_handler
from workflows.agent_run import AgentRunWorkflow


@pytest.mark.temporal
@pytest.mark.postgres
@pytest.mark.ca
async def test_json_lines_carry_workflow_step_request_and_trace_ids(temporal_env, settings) -> None:
    from worker.connection import connect

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())  # spans (and so trace ids) without an exporter
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    settings = settings.model_copy(
        update={
            "temporal": settings.temporal.model_copy(
                update={"address": temporal_env.client.service_client.config.target_host}
            )
        }
    )
    try:
        client = await connect(settings)
        channel = "SR:RF:CAVITY:01:VOLTAGE:SP"
        async with running_worker(client, settings):
            handle = await start_run(client, settings, write_plan(channel, read_value(channel) - 0.05))
            st = await wait_for_state(handle, "awaiting_approval")
            assert st.pending is not None
            await handle.execute_update(
                AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
            )
            result = await handle.result()
        assert result.status == "completed", result.error
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    wrote = [r for r in lines if r["message"].startswith(f"wrote {channel}")]
    assert len(wrote) == 1, lines
    rec = wrote[0]
    assert rec["level"] == "INFO" and rec["logger"] == "tern.control.write"
    assert rec["workflow_id"] == handle.id and rec["run_id"] == handle.id
    assert rec["step_id"] == "write" and rec["request_id"] == st.pending.request_id
    assert rec["activity"] == "write_channel"
    assert len(rec["trace_id"]) == 32 and int(rec["trace_id"], 16)


def test_human_format_is_the_default() -> None:
    assert TernSettings().worker.log_format == "human"
    stream = io.StringIO()
    logger = logging.getLogger("tern.test.human")
    logger.propagate = False
    logger.addHandler(make_handler("human", stream))
    logger.warning("plain %s", "words")
    assert stream.getvalue().rstrip().endswith("tern.test.human WARNING plain words")
