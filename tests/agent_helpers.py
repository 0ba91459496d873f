"""Helpers shared by the agent-run tests (no fixtures here)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from tern import DATA_DIR
from tern.ariel.adapters import collect
from tern.ariel.store import upsert_entries
from tern.config import TernSettings
from tern.db import create_pool
from tern.models import AgentRunRequest, AgentRunStatus, Plan
from worker.main import build_worker
from workflows.agent_run import AgentRunWorkflow
from workflows.queues import long_queue


@asynccontextmanager
async def queue_workers(client: Client, *, task_queue: str, **options: Any) -> AsyncIterator[Worker]:
    """Two in-process workers with the same workflows, activities and ``options`` (``temporalio.worker.Worker``'s
    keyword arguments): one on ``task_queue`` and one on its long-work queue (``workflows.queues.long_queue``),
    as Tern's worker polls both (``worker.main.TernWorker``). A run's python step is a child workflow on the
    long-work queue (patch ``long-work-queue-1``): a test worker on the main queue alone would leave it waiting
    forever. Yields the main queue's worker."""
    async with (
        Worker(client, task_queue=task_queue, **options) as main,
        Worker(client, task_queue=long_queue(task_queue), **options),
    ):
        yield main


@asynccontextmanager
async def running_worker(
    client: Client, settings: TernSettings, overrides: Mapping[str, Callable[..., Any]] | None = None
) -> AsyncIterator[asyncpg.Pool]:
    """A Tern worker on ``settings.temporal.task_queue`` (in this process) with its own pool, for one test."""
    pool = await create_pool(settings.dsn)
    try:
        async with build_worker(client, settings, pool, overrides):
            yield pool
    finally:
        await pool.close()


def spawn_worker(
    settings: TernSettings, address: str, log_path: Path, *, module: str = "worker.main", **env: str
) -> subprocess.Popen[bytes]:
    """``python -m worker.main`` as a separate process (so a test can SIGKILL it) for ``settings``' task queue,
    database and simulated IOC at Temporal ``address``, writes enabled; ``env`` adds ``TERN_*`` variables.
    ``module="tests.quick_worker"`` runs it with the workflows' test-sized heartbeat timeouts (a killed worker's
    activity is retried sooner). Output goes to ``log_path``."""
    full = {
        **os.environ,
        "TERN_TEMPORAL__ADDRESS": address,
        "TERN_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "TERN_DATABASE__URL": settings.dsn,
        "TERN_CONTROL__CA_SERVER_PORT": str(settings.control.ca_server_port),
        "TERN_CONTROL__WRITES_ENABLED": "true",
        "TERN_APPROVAL__PYTHON_MODE": settings.approval.python_mode,
        "TERN_WORKER__HTTP_PORT": "0",  # workers of parallel tests must not share the default port
        **env,
    }
    with open(log_path, "a") as fh:
        return subprocess.Popen([sys.executable, "-m", module], env=full, stdout=fh, stderr=subprocess.STDOUT)


async def ingest_demo(dsn: str) -> None:
    pool = await create_pool(dsn)
    try:
        async with pool.acquire() as conn:
            entries, bad = await collect("demo", str(DATA_DIR / "demo_logbook.json"))
            assert not bad, bad
            await upsert_entries(conn, entries)
    finally:
        await pool.close()


def write_plan(channel: str, value: float, *, search: bool = False) -> Plan:
    steps: list[dict[str, Any]] = []
    if search:
        steps.append({"id": "search", "kind": "logbook_search", "query": "RF cavity trip"})
    steps += [
        {"id": "read", "kind": "channel_read", "channels": [channel]},
        {"id": "write", "kind": "control_write", "channel": channel, "value": value, "reason": "test"},
        {"id": "answer", "kind": "respond"},
    ]
    return Plan.model_validate({"steps": steps})


async def start_run(
    client: Client,
    settings: TernSettings,
    plan: Plan,
    *,
    user: str = "alice",
    approvers: list[str] | None = None,
    timeout_s: float = 600,
) -> WorkflowHandle:
    req = AgentRunRequest(
        user=user,
        query="test question",
        plan=plan,
        approvers=["alice", "bob"] if approvers is None else approvers,
        approval_timeout_s=timeout_s,
    )
    return await client.start_workflow(
        AgentRunWorkflow.run, req, id=f"run-{uuid.uuid4().hex[:10]}", task_queue=settings.temporal.task_queue
    )


async def wait_for_state(handle: WorkflowHandle, state: str, within_s: float = 30) -> AgentRunStatus:
    async def poll() -> AgentRunStatus:
        while True:
            st = await handle.query(AgentRunWorkflow.status)
            if st.state == state:
                return st
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), within_s)


async def audit_rows(dsn: str, workflow_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [
            dict(r) for r in await conn.fetch("SELECT * FROM audit_events WHERE run_id = $1 ORDER BY id", workflow_id)
        ]
    finally:
        await conn.close()
