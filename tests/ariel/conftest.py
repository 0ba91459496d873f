"""ARIEL fixtures: a migrated pool on a fresh database, the sample logbooks, settings for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI, Response

from tern.ariel.adapters import AdapterOptions
from tern.ariel.ingest import ingest_source
from tern.config import TernSettings
from tern.db import create_pool

DATA = Path(__file__).resolve().parent / "data"
NOW = datetime(2024, 3, 20, 12, 0, tzinfo=UTC)  # reference time for the demo logbook's relative dates
SAMPLES = [
    ("als", DATA / "als_logbook_entries.jsonl"),
    ("als", DATA / "als_sample_entries.jsonl"),
    ("jlab", DATA / "jlab_sample_entries.json"),
    ("ornl", DATA / "ornl_sample_entries.json"),
    ("generic", DATA / "generic_sample_entries.json"),
    ("demo", DATA / "demo_logbook.json"),
]
SAMPLE_ENTRIES = 15 + 12 + 7 + 6 + 5 + 28


def ariel_settings(**sections: dict[str, Any]) -> TernSettings:
    """Settings isolated from the environment's ARIEL choices (postgres, no embeddings, no LLM); ``sections`` as
    for ``TernSettings`` (``llm={"provider": "openai", ...}``), merged over those choices field by field."""
    ariel = {"backend": "postgres", "embedding_provider": "none", **sections.pop("ariel", {})}
    llm = {"provider": "none", **sections.pop("llm", {})}
    return TernSettings(ariel=ariel, llm=llm, **sections)  # type: ignore[arg-type]


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(pg_dsn)
    yield p
    await p.close()


@pytest.fixture
async def loaded_pool(pool: asyncpg.Pool) -> asyncpg.Pool:
    """A pool whose database holds every sample logbook."""
    for adapter, path in SAMPLES:
        await ingest_source(pool, adapter, str(path), AdapterOptions(now=NOW))
    return pool


# --- a stand-in for the ALS eLog service: a real FastAPI app served by uvicorn on loopback -----------------


def _als_records() -> list[dict]:
    import json

    out = []
    for name in ("als_logbook_entries.jsonl", "als_sample_entries.jsonl"):
        out += [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    return out


@asynccontextmanager
async def serve(app: FastAPI, **tls: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields its base URL (``http://127.0.0.1:PORT``, or
    ``https://`` when ``tls`` gives uvicorn's ``ssl_certfile``, ``ssl_keyfile``, ``ssl_ca_certs``...)."""
    import asyncio

    import uvicorn

    from tern.embedded.net import free_port

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", **tls)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def _als_service() -> AsyncIterator[tuple[str, dict]]:
    behaviours: dict[str, dict] = {}
    records = _als_records()
    app = FastAPI()

    @app.get("/b/{key}")
    async def retrieve(key: str, op: str, start: int, end: int) -> Response:
        b = behaviours[key]
        call = {"start": start, "end": end, "op": op}
        b["calls"].append(call)
        if b["status"] != 200:
            call["status"] = b["status"]
            return Response(status_code=b["status"])
        if b["fail_first"] > 0:
            b["fail_first"] -= 1
            call["status"] = 503
            return Response(status_code=503)
        call["status"] = 200
        import json

        chosen = [r for r in records if start <= int(r["timestamp"]) < end]
        return Response(json.dumps(chosen), media_type="application/json")

    async with serve(app) as base:
        yield base, behaviours


@pytest.fixture
def als_server(_als_service: tuple[str, dict]):
    """Factory: ``url, calls = als_server(fail_first=N, status=200)``; each call gets its own endpoint."""
    import uuid

    base, behaviours = _als_service

    def make(fail_first: int = 0, status: int = 200) -> tuple[str, list[dict]]:
        key = uuid.uuid4().hex[:8]
        behaviours[key] = {"fail_first": fail_first, "status": status, "calls": []}
        return f"{base}/b/{key}", behaviours[key]["calls"]

    return make


@asynccontextmanager
async def ariel_worker(client: Any, pool: asyncpg.Pool, **activity_kwargs: Any) -> AsyncIterator[TernSettings]:
    """Run a worker with the ARIEL workflow and activities (hashing test embeddings, no LLM unless
    ``activity_kwargs`` say otherwise) on a task queue of its own; yields settings naming that queue."""
    import uuid

    from activities.ariel import ariel_activities
    from tern.ariel.embeddings import HashingTestEmbedder
    from tests.agent_helpers import queue_workers
    from workflows.logbook_ingestion import ARIEL_WORKFLOWS
    from workflows.logbook_reembed import LogbookReembedWorkflow

    settings = ariel_settings(temporal={"task_queue": "ariel-" + uuid.uuid4().hex[:8]})
    acts = ariel_activities(settings, pool, **{"embedder": HashingTestEmbedder(), "llm": None, **activity_kwargs})
    workflows = [*ARIEL_WORKFLOWS, LogbookReembedWorkflow]
    # both queues: the CLI starts ingestion and re-embedding on the long-work queue (workflows.queues)
    async with queue_workers(client, task_queue=settings.temporal.task_queue, workflows=workflows, activities=acts):
        yield settings


@pytest.fixture
async def worker_env(temporal_env, pool: asyncpg.Pool) -> AsyncIterator[tuple[Any, TernSettings, asyncpg.Pool]]:
    """A worker with the ARIEL workflow and activities (hashing test embeddings) on its own task queue."""
    async with ariel_worker(temporal_env.client, pool) as settings:
        yield temporal_env.client, settings, pool
