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


async def test_readyz_names_each_dependency_and_turns_503_when_postgres_stops(temporal_env, ca_sim, tmp_path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", free_port())
    await asyncio.to_thread(pg.start)
    try:
        settings = TernSettings(
            data_dir=tmp_path,
            database_url=f"postgresql://postgres@127.0.0.1:{pg.port}/postgres",
            temporal_address=temporal_env.client.service_client.config.target_host,
            ca_server_port=ca_sim,
            ca_probe_channel=PROBE,
            task_queue="tq-" + uuid.uuid4().hex[:8],
            worker_http_port=free_port(),
            sandbox_backend="process",
        )
        async with running_worker(settings) as url:
            assert url == f"http://127.0.0.1:{settings.worker_http_port}"
            assert (await get(f"{url}/healthz")).json() == {"alive": True}
            resp = await get(f"{url}/readyz")
            body = resp.json()
            assert resp.status_code == 200, body
            deps = body["dependencies"]
            assert set(deps) == {"temporal", "postgres", "channel_access", "sandbox"}
            assert all(d["ok"] and d["checked"] for d in deps.values()), deps
            assert settings.task_queue in deps["temporal"]["detail"] and PROBE in deps["channel_access"]["detail"]
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
        database_url=pg_dsn,
        temporal_address=temporal_env.client.service_client.config.target_host,
        ca_server_port=ca_sim,
        ca_probe_channel="NO:SUCH:CHANNEL",
        ca_timeout_s=0.5,
        task_queue="tq-" + uuid.uuid4().hex[:8],
        worker_http_port=free_port(),
        sandbox_backend="process",
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
        settings = TernSettings(data_dir=tmp_path, worker_http_port=port, sandbox_backend="process")
        with pytest.raises(HttpEndpointError, match="TERN_WORKER_HTTP_PORT"):
            await run_worker(settings, asyncio.Event())
