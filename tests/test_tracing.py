"""Tracing (worker/telemetry.py, tern/tracing.py): one agent run is one trace, from the client's start of the
workflow through the workflow, its python child workflow and the activities to the Channel Access write and its
readback; spans exported over OTLP/HTTP reach a receiver; a bad OTLP URL stops the worker naming the setting.

Real components: the dev server, PostgreSQL, the simulated IOC, the process sandbox backend (no Docker needed
for the trace's shape), the OpenTelemetry SDK's in-memory exporter.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import Request  # module level: FastAPI resolves the handler's annotation from the module
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tern.control.channel_access import read_value
from tern.models import Plan
from tests.agent_helpers import running_worker, start_run
from tests.test_python_step import approve_next

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "SR:MAG:SF:10:CURRENT:SP"
CODE = """
sp = {r["channel"]: r["value"] for r in inputs["read"]["readings"]}["CHANNEL"]
results = {"setpoint": sp, "proposed_writes": [{"channel": "CHANNEL", "value": round(sp + 1.0, 4), "reason": "t"}]}
""".replace("CHANNEL", CHANNEL)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """An in-memory exporter on the process's SDK tracer provider (installed if none is)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.mark.temporal
@pytest.mark.postgres
@pytest.mark.ca
async def test_one_run_is_one_trace_from_the_client_to_the_write(temporal_env, settings, spans) -> None:
    from worker.connection import connect

    settings = settings.model_copy(
        update={
            "temporal": settings.temporal.model_copy(
                update={"address": temporal_env.client.service_client.config.target_host}
            ),
            "sandbox": settings.sandbox.model_copy(update={"backend": "process", "allow_process_backend": True}),
        }
    )
    client = await connect(settings)
    plan = Plan.model_validate(
        {
            "steps": [
                {"id": "search", "kind": "logbook_search", "query": "RF cavity trip"},
                {"id": "read", "kind": "channel_read", "channels": [CHANNEL]},
                {"id": "analyse", "kind": "python", "inputs": ["read"], "expected_keys": ["setpoint"], "code": CODE},
                {"id": "answer", "kind": "respond"},
            ]
        }
    )
    before = read_value(CHANNEL)
    async with running_worker(client, settings):
        handle = await start_run(client, settings, plan)
        await approve_next(client, handle.id)  # the code
        await approve_next(client, handle.id)  # its proposed write
        result = await asyncio.wait_for(handle.result(), 120)
    assert result.status == "completed", result.error
    assert result.writes and result.writes[0].verified
    finished = spans.get_finished_spans()
    write = next(s for s in finished if s.name == "ca.write" and s.attributes["ca.channel"] == CHANNEL)
    assert write.attributes["ca.value"] == pytest.approx(before + 1.0, abs=1e-3)
    assert write.attributes["ca.verified"] is True and "ca.readback" in write.attributes
    assert write.attributes["ca.verification"] in ("callback", "readback")
    run = [s for s in finished if s.context.trace_id == write.context.trace_id]
    names = {s.name for s in run}
    expected = {
        "StartWorkflow:AgentRunWorkflow",
        "RunWorkflow:AgentRunWorkflow",
        "StartChildWorkflow:PythonExecutionWorkflow",
        "RunWorkflow:PythonExecutionWorkflow",
        "RunActivity:search_logbook",
        "ariel.search",
        "RunActivity:read_channels",
        "RunActivity:execute_python",
        "sandbox.execute",
        "RunActivity:write_channel",
        "ca.read",
        "ca.write",
    }
    assert expected <= names, expected - names
    roots = [s for s in run if s.parent is None]
    assert [r.name for r in roots] == ["StartWorkflow:AgentRunWorkflow"], [r.name for r in roots]
    by_id = {s.context.span_id: s for s in run}
    chain, span = [], write
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        chain.append(span.name)
    assert chain[0] == "RunActivity:write_channel" and chain[-1] == "StartWorkflow:AgentRunWorkflow", chain


def test_bad_otlp_url_stops_the_worker_naming_the_setting(tmp_path) -> None:
    from tests.conftest import env_without_services

    for var, value in (
        ("TERN_WORKER__OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:99999"),
    ):
        env = env_without_services(tmp_path, **{var: value})
        env.pop(
            "TERN_WORKER__OTLP_ENDPOINT" if var != "TERN_WORKER__OTLP_ENDPOINT" else "OTEL_EXPORTER_OTLP_ENDPOINT", None
        )
        proc = subprocess.run(
            [sys.executable, "-m", "worker.main"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert proc.returncode != 0
        assert var in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_spans_reach_an_otlp_receiver(tmp_path) -> None:
    """A process with TERN_WORKER__OTLP_ENDPOINT exports its spans (OTLP/HTTP protobuf) to a receiver on loopback: a
    FastAPI app that decodes the body with opentelemetry-proto's ExportTraceServiceRequest."""
    import threading

    import uvicorn
    from fastapi import FastAPI, Response
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tern.embedded.net import free_port

    received: list[str] = []
    app = FastAPI()

    @app.post("/v1/traces")
    async def traces(request: Request) -> Response:
        req = ExportTraceServiceRequest.FromString(await request.body())
        received.extend(s.name for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans)
        return Response(b"", media_type="application/x-protobuf")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        script = (
            "from tern.config import TernSettings\n"
            "from worker.telemetry import configure_tracing, flush_tracing\n"
            "from tern import tracing\n"
            "assert configure_tracing(TernSettings())\n"
            "with tracing.span('ca.read', {'ca.channel': 'X'}):\n"
            "    pass\n"
            "flush_tracing()\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TERN_WORKER__OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
        while not server.started:
            thread.join(0.05)
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert received == ["ca.read"], (received, proc.stderr)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.postgres
async def test_postgresql_queries_are_spans_under_the_caller(pg_dsn, spans) -> None:
    """A pool from tern.db.create_pool traces each query as a db.query span, child of the span it ran in, with
    the statement (never its arguments) and its duration."""
    from tern.db import create_pool
    from tern.tracing import span

    pool = await create_pool(pg_dsn)
    try:
        with span("caller") as parent:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT $1::text || pg_sleep(0.05)::text", "secret-operator-text")
    finally:
        await pool.close()
    queries = [
        s for s in spans.get_finished_spans() if s.name == "db.query" and "pg_sleep" in s.attributes["db.statement"]
    ]
    assert len(queries) == 1, [s.name for s in spans.get_finished_spans()]
    q = queries[0]
    assert q.parent is not None and q.parent.span_id == parent.get_span_context().span_id
    assert q.attributes["db.system"] == "postgresql" and "secret-operator-text" not in str(q.attributes)
    assert q.attributes["db.elapsed_s"] >= 0.05 and (q.end_time - q.start_time) >= 0.05e9
