"""The worker's HTTP endpoint: ``/healthz`` (process alive), ``/readyz`` (every dependency answers) and
``/metrics`` (Prometheus text format), served by uvicorn inside the worker's own event loop.

``/readyz`` checks, concurrently and each within :data:`CHECK_TIMEOUT_S` seconds:

- ``temporal``: the frontend answers its gRPC health check and this worker's client identity is among the
  workflow pollers of the task queue (``DescribeTaskQueue``; the same view as ``temporal task-queue describe``);
- ``postgres``: ``SELECT 1`` on the worker's pool;
- ``channel_access``: the probe channel ``TernSettings.ca_probe_channel`` is read (the gateway or IOC answers);
  unset, the check passes with ``checked: false``;
- ``sandbox``: the Docker engine answers and the sandbox image exists (:func:`tern.sandbox.unavailable_reason`).

Body: ``{"ready": bool, "dependencies": {name: {"ok": bool, "detail": str, "checked": bool}}}``; status 200
when every dependency is ok, else 503 (Kubernetes readiness convention: any non-2xx/3xx is "not ready").
The endpoint binds ``TernSettings.worker_http_host:worker_http_port`` (port 0: no endpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from tern.config import TernSettings
from tern.control.ca_client import ChannelAccessClient

log = logging.getLogger("tern.worker.health")
CHECK_TIMEOUT_S = 5.0


class DependencyState(BaseModel):
    """One dependency in the ``/readyz`` body: ``ok``, what was seen, and whether it was checked at all."""

    ok: bool
    detail: str
    checked: bool = True


class Readiness(BaseModel):
    """The ``/readyz`` body."""

    ready: bool
    dependencies: dict[str, DependencyState]


Check = Callable[[], Awaitable[DependencyState]]


class HealthChecks:
    """The readiness checks of one worker process.

    Args:
        settings: the worker's settings (task queue, probe channel, CA timeout, sandbox backend).
        client: the worker's Temporal client (its ``identity`` is the worker's poller identity).
        pool: the worker's asyncpg pool.
        ca: a Channel Access client, or None when no probe channel is configured.
    """

    def __init__(
        self, settings: TernSettings, client: Client, pool: asyncpg.Pool, ca: ChannelAccessClient | None = None
    ) -> None:
        self.settings = settings
        self.client = client
        self.pool = pool
        self.ca = ca
        self.worker: Any = None  # set once the worker runs: worker.main.TernWorker (is_running, is_shutdown)
        self.checks: dict[str, Check] = {
            "temporal": self.temporal,
            "postgres": self.postgres,
            "channel_access": self.channel_access,
            "sandbox": self.sandbox,
        }

    async def temporal(self) -> DependencyState:
        """Frontend health check, then this worker among the task queue's workflow pollers."""
        await self.client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_S))
        if self.worker is None or not self.worker.is_running or self.worker.is_shutdown:
            return DependencyState(ok=False, detail="frontend answers; the worker is not running")
        resp = await self.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self.client.namespace,
                task_queue=TaskQueue(name=self.settings.temporal.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=CHECK_TIMEOUT_S),
        )
        mine = [p for p in resp.pollers if p.identity == self.client.identity]
        if not mine:
            return DependencyState(
                ok=False,
                detail=f"frontend answers; {self.client.identity} not polling {self.settings.temporal.task_queue}",
            )
        return DependencyState(ok=True, detail=f"{self.client.identity} polling {self.settings.temporal.task_queue}")

    async def postgres(self) -> DependencyState:
        """``SELECT 1`` on a pooled connection."""
        async with self.pool.acquire(timeout=CHECK_TIMEOUT_S) as conn:
            await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)
        return DependencyState(ok=True, detail="SELECT 1 answered")

    async def channel_access(self) -> DependencyState:
        """Read ``ca_probe_channel`` (a passing, unchecked state when none is configured)."""
        channel = self.settings.worker.ca_probe_channel
        if not channel or self.ca is None:
            return DependencyState(ok=True, checked=False, detail="no probe channel (TERN_WORKER__CA_PROBE_CHANNEL)")
        value = await self.ca.read_value(channel, self.settings.control.ca_timeout_s)
        return DependencyState(ok=True, detail=f"{channel} = {value:g}")

    async def sandbox(self) -> DependencyState:
        """The sandbox backend can run python steps (engine reachable, image present)."""
        from tern.sandbox import unavailable_reason

        problem = await asyncio.to_thread(unavailable_reason, self.settings)
        if problem:
            return DependencyState(ok=False, detail=problem)
        return DependencyState(ok=True, detail=f"{self.settings.sandbox.backend} backend ready")

    async def readiness(self) -> Readiness:
        """Run every check concurrently; a check that raises or exceeds the timeout is not ok, with the reason."""

        async def one(check: Check) -> DependencyState:
            try:
                return await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except TimeoutError:
                return DependencyState(ok=False, detail=f"no answer within {CHECK_TIMEOUT_S:g} s")
            except Exception as exc:
                return DependencyState(ok=False, detail=f"{type(exc).__name__}: {exc}")

        states = await asyncio.gather(*(one(c) for c in self.checks.values()))
        deps = dict(zip(self.checks, states, strict=True))
        return Readiness(ready=all(d.ok for d in deps.values()), dependencies=deps)


def build_app(checks: HealthChecks) -> FastAPI:
    """The ASGI app: ``GET /healthz``, ``GET /readyz`` and ``GET /metrics`` (prometheus_client's text exposition
    of the default registry: Tern's metrics (:mod:`tern.metrics`) and the SDK's (:mod:`worker.sdk_metrics`))."""
    app = FastAPI(title="Tern worker", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"alive": True}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        body = await checks.readiness()
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


class HttpEndpointError(RuntimeError):
    """The worker's HTTP endpoint cannot bind; the message names the address and the setting."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``. Raises :class:`HttpEndpointError` naming TERN_WORKER__HTTP_PORT
    and TERN_WORKER__HTTP_HOST when the address is busy or not local."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HttpEndpointError(
            f"the worker's HTTP endpoint cannot bind {host}:{port}: {exc.strerror}; choose another port with "
            "TERN_WORKER__HTTP_PORT (0 turns the endpoint off) or another interface with TERN_WORKER__HTTP_HOST"
        ) from exc
    sock.listen(64)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn inside the worker's loop: the worker owns SIGINT/SIGTERM, so uvicorn must not capture them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpEndpoint:
    """``async with HttpEndpoint(app, sock):`` serves ``app`` on the bound ``sock`` until the block exits."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        self.sock = sock
        self.server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> HttpEndpoint:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        log.info("worker HTTP endpoint on %s (/healthz, /readyz, /metrics)", self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task
        self.sock.close()
