"""The embedded archiver's HTTP server run in the test process on a free loopback port (real HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from tern.archiver.server import create_app
from tern.archiver.store import ArchiveStore
from tern.embedded.net import free_port


class RunningServer:
    """uvicorn serving ``create_app(store)``; :meth:`stop` and :meth:`start` again on the same port."""

    def __init__(self, store: ArchiveStore, port: int | None = None) -> None:
        self.store = store
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.store), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


@asynccontextmanager
async def serving(store: ArchiveStore) -> AsyncIterator[RunningServer]:
    server = RunningServer(store)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def demo_archive(settings: Any, days: float = 5.0, period_s: float = 60.0) -> AsyncIterator[RunningServer]:
    """The embedded archiver's retrieval API over ``days`` of generated history (the demo's trip night included)
    of the default archived channels, in ``settings``' database: what the bundled demo plans' ``archiver_read``
    needs when a test runs them without the stack. Point the worker at ``server.url`` (``archiver_url``)."""
    from datetime import UTC, datetime

    from tern.archiver.backfill import backfill
    from tern.db import create_pool

    pool = await create_pool(settings.dsn)
    try:
        store = ArchiveStore(pool)
        await backfill(
            store,
            settings.archiver.channels,
            end=datetime.now(UTC),
            days=days,
            period_s=period_s,
            limits_path=settings.control.limits_path,
        )
        async with serving(store) as server:
            yield server
    finally:
        await pool.close()
