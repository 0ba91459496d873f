"""The ARIEL HTTP API (FastAPI): search, get entry, status, health.

``create_app(settings)`` opens a pool to ``settings.dsn`` for the app's lifetime (or uses the pool given), and
closes the shared OpenSearch client at shutdown when that is the backend.
Run it with ``tern ariel serve`` (uvicorn), or ``python -m tern.ariel.api`` (the embedded stack's
component: 127.0.0.1:``ariel_api_port``, embedding model loaded at start so the first search does not wait).
Errors: 400 for a bad query (message names what is wrong), 404 for an unknown entry, 503 from ``/health`` when
PostgreSQL does not answer. ``/health`` also says whether the embedding model is loaded (``embedding``:
provider, loaded, model, error).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tern.ariel import store
from tern.ariel.embeddings import EmbeddingError
from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters
from tern.ariel.service import ArielService
from tern.config import TernSettings
from tern.db import create_pool
from tern.models import SearchMode, SearchResponse


class SearchBody(BaseModel):
    """``POST /search``: the query and optional filters (times ISO 8601, UTC when no zone is given)."""

    query: str = Field(min_length=1, max_length=2000)
    mode: SearchMode = "keyword"
    limit: int = Field(10, ge=1, le=100)
    filters: SearchFilters = SearchFilters()


def create_app(
    settings: TernSettings,
    pool: asyncpg.Pool | None = None,
    service_kwargs: dict[str, Any] | None = None,
    warm: bool = False,
) -> FastAPI:
    """The FastAPI app. ``pool``: use this pool instead of opening one; ``service_kwargs``: passed to
    ``ArielService`` (tests give their own embedder or LLM); ``warm``: build the embedder at start-up (a
    provider that cannot load only leaves semantic search degraded, each search saying why)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = pool is None
        app.state.pool = pool if pool is not None else await create_pool(settings.dsn)
        app.state.service = ArielService(settings, app.state.pool, **(service_kwargs or {}))
        if warm:
            try:
                await app.state.service.providers.embedder()
            except EmbeddingError:
                pass
        try:
            yield
        finally:
            await app.state.service.aclose()  # the shared OpenSearch client, when that is the backend
            if own:
                await app.state.pool.close()

    app = FastAPI(title="Tern ARIEL", summary="Search the accelerator logbook", lifespan=lifespan)

    async def run_search(request: Request, body: SearchBody) -> SearchResponse:
        try:
            return await request.app.state.service.search(body.query, body.mode, body.limit, body.filters)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc

    @app.get("/search")
    async def search_get(
        request: Request,
        q: Annotated[str, Query(min_length=1, max_length=2000, description="Query text with operators.")],
        mode: SearchMode = "keyword",
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
        author: str | None = None,
        tag: Annotated[list[str] | None, Query()] = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SearchResponse:
        """Search by query string: ``/search?q=rf+trip&mode=hybrid&limit=5&tag=rf``."""
        f = SearchFilters(author=author, tags=tag or [], since=since, until=until)
        return await run_search(request, SearchBody(query=q, mode=mode, limit=limit, filters=f))

    @app.post("/search")
    async def search_post(request: Request, body: SearchBody) -> SearchResponse:
        return await run_search(request, body)

    @app.get("/entries/{entry_id}")
    async def get_entry(request: Request, entry_id: str) -> LogbookEntry:
        async with request.app.state.pool.acquire() as conn:
            entry = await store.get_entry(conn, entry_id)
        if entry is None:
            raise HTTPException(status_code=404, detail=f"no logbook entry {entry_id!r}")
        return entry

    @app.get("/status")
    async def status(request: Request) -> store.StoreStatus:
        async with request.app.state.pool.acquire() as conn:
            return await store.status(conn)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        try:
            async with request.app.state.pool.acquire(timeout=5) as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
        embedding = {
            "provider": settings.ariel.embedding_provider,
            **request.app.state.service.providers.embedder_state(),
        }
        return JSONResponse({"status": "ok", "backend": settings.ariel.backend, "embedding": embedding})

    return app


def serve_embedded(settings: TernSettings) -> None:
    """Serve on 127.0.0.1:``settings.ariel.api_port``, loading the configured embedder at start."""
    import uvicorn

    app = create_app(settings, warm=True)
    uvicorn.run(app, host="127.0.0.1", port=settings.ariel.api_port, log_level="warning")


if __name__ == "__main__":
    serve_embedded(TernSettings())
