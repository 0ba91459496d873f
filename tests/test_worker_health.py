"""The worker's HTTP endpoint (worker/health.py): /healthz, /readyz naming each dependency, /metrics.

A real worker (``run_worker``) in this process on the dev server, its own embedded PostgreSQL (so the test can
stop it), the simulated IOC as the Channel Access probe; the endpoint is read over real HTTP.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from tern.config import TernSettings
from tern.db import migrate_dsn
from tern.embedded.net import free_port
from tern.embedded.postgres import EmbeddedPostgres
from worker.health import HttpEndpointError

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]
PROBE = "SR:RF:CAVITY:01:VOLTAGE:SP"


@asynccontextmanager
async def running_worker(settings: TernSettings) -> AsyncIterator[str]:
    """``run_worker(settings)`` as a task; yields the endpoint's base URL once the worker polls."""
    from worker.main import run_worker

    stop = asyncio.Event()
    ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_worker(settings, stop, on_ready=ready.set_result))
    try:
        waits: set[asyncio.Future[object]] = {task, ready}  # type: ignore[arg-type]
        done, _ = await asyncio.wait(waits, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises the worker's error
        assert ready in done, "worker did not start within 60 s"
        url = ready.result()
        assert url is not None
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(url)


async def ready_within(url: str, seconds: float) -> httpx.Response:
    """``/readyz`` until it answers 200 or ``seconds`` pass (the last answer either way). A worker is ready once
    the server has seen its first poll, a moment after it starts polling: until then the temporal check is
    rightly not ok."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        resp = await get(f"{url}/readyz")
        if resp.status_code == 200 or loop.time() > deadline:
            return resp
        await asyncio.sleep(0.2)


async def test_readyz_names_each_dependency_and_turns_503_when_postgres_stops(temporal_env, ca_sim, tmp_path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", free_port())
    await asyncio.to_thread(pg.start)
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        await migrate_dsn(dsn)  # as `tern migrate` does: the worker only checks the schema
        settings = TernSettings(
            data_dir=tmp_path,
            database={"url": dsn},
            temporal={
                "address": temporal_env.client.service_client.config.target_host,
                "task_queue": "tq-" + uuid.uuid4().hex[:8],
            },
            control={"ca_server_port": ca_sim},
            worker={"ca_probe_channel": PROBE, "http_port": free_port()},
            sandbox={"backend": "process"},
        )
        async with running_worker(settings) as url:
            assert url == f"http://127.0.0.1:{settings.worker.http_port}"
            assert (await get(f"{url}/healthz")).json() == {"alive": True}
            resp = await ready_within(url, 30)
            body = resp.json()
            assert resp.status_code == 200, body
            deps = body["dependencies"]
            assert set(deps) == {"temporal", "postgres", "channel_access", "sandbox"}
            assert all(d["ok"] and d["checked"] for d in deps.values()), deps
            assert (
                settings.temporal.task_queue in deps["temporal"]["detail"] and PROBE in deps["channel_access"]["detail"]
            )
            metrics = await get(f"{url}/metrics")
            assert metrics.status_code == 200 and "python_info" in metrics.text

            await asyncio.to_thread(pg.stop)
            resp = await get(f"{url}/readyz")
            body = resp.json()
            assert resp.status_code == 503, body
            assert body["ready"] is False
            assert not body["dependencies"]["postgres"]["ok"], body
            assert body["dependencies"]["temporal"]["ok"] and body["dependencies"]["channel_access"]["ok"], body
            assert (await get(f"{url}/healthz")).status_code == 200  # alive, only not ready
    finally:
        await asyncio.to_thread(pg.stop)


async def test_readyz_reports_a_dead_probe_channel(temporal_env, pg_dsn, ca_sim, tmp_path) -> None:
    settings = TernSettings(
        data_dir=tmp_path,
        database={"url": pg_dsn},
        temporal={
            "address": temporal_env.client.service_client.config.target_host,
            "task_queue": "tq-" + uuid.uuid4().hex[:8],
        },
        control={"ca_server_port": ca_sim, "ca_timeout_s": 0.5},
        worker={"ca_probe_channel": "NO:SUCH:CHANNEL", "http_port": free_port()},
        sandbox={"backend": "process"},
    )
    async with running_worker(settings) as url:
        resp = await get(f"{url}/readyz")
        deps = resp.json()["dependencies"]
        assert resp.status_code == 503 and not deps["channel_access"]["ok"], deps
        assert "NO:SUCH:CHANNEL" in deps["channel_access"]["detail"] and deps["postgres"]["ok"], deps


async def test_busy_port_stops_the_worker_naming_the_setting(tmp_path) -> None:
    from worker.main import run_worker

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = TernSettings(data_dir=tmp_path, worker={"http_port": port}, sandbox={"backend": "process"})
        with pytest.raises(HttpEndpointError, match="TERN_WORKER__HTTP_PORT"):
            await run_worker(settings, asyncio.Event())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus text exposition as ``{(sample name, sorted labels): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def delta(after: dict, before: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_metrics_count_an_approved_write_run_where_it_happens(temporal_env, settings) -> None:
    """One run (logbook search, read, approved write): /metrics counts the search, the request, the decision and
    its wait, the verified write; the SDK's metrics (poller gauge of the alert rules) are on the same page."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from tern.control.channel_access import read_value
    from tern.models import Decision
    from tests.agent_helpers import ingest_demo, start_run, wait_for_state, write_plan
    from worker.sdk_metrics import ALERTED_SDK_METRICS
    from workflows.agent_run import AgentRunWorkflow

    await ingest_demo(settings.dsn)
    settings = settings.model_copy(
        update={
            "worker": settings.worker.model_copy(update={"http_port": free_port()}),
            "sandbox": settings.sandbox.model_copy(update={"backend": "process"}),
        }
    )
    address = temporal_env.client.service_client.config.target_host
    settings = settings.model_copy(update={"temporal": settings.temporal.model_copy(update={"address": address})})
    async with running_worker(settings) as url:
        before = samples((await get(f"{url}/metrics")).text)
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        channel = "SR:RF:CAVITY:02:VOLTAGE:SP"
        handle = await start_run(client, settings, write_plan(channel, read_value(channel) - 0.05, search=True))
        st = await wait_for_state(handle, "awaiting_approval")
        assert st.pending is not None
        await handle.execute_update(
            AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
        )
        result = await handle.result()
        assert result.status == "completed", result.error
        after = samples((await get(f"{url}/metrics")).text)
    assert delta(after, before, "tern_ariel_search_seconds_count", mode="hybrid") == 1
    assert delta(after, before, "tern_approval_requests_total", kind="control_write") == 1
    decided = {"kind": "control_write", "decision": "approved", "via": "update"}
    assert delta(after, before, "tern_approval_decisions_total", **decided) == 1
    assert delta(after, before, "tern_approval_wait_seconds_count") == 1
    assert delta(after, before, "tern_writes_total", outcome="verified") == 1
    names = {name for name, _ in after}
    assert set(ALERTED_SDK_METRICS) <= names, sorted(n for n in names if n.startswith("temporal_"))
