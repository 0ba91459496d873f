"""The OpenSearch backend at the HTTP boundary: the real ``opensearchpy.AsyncOpenSearch`` client against a
scripted endpoint (``tests.ariel.fake_opensearch``) answering with OpenSearch's documented responses. Each
test here failed on the backend as first landed (issue 15)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tern.ariel.api import create_app
from tern.ariel.backends.opensearch import OpenSearchBackend
from tern.ariel.embeddings import HashingTestEmbedder
from tests.ariel.conftest import ariel_settings
from tests.ariel.fake_opensearch import Call, FakeOpenSearch, fake_opensearch, index_not_found

ALIAS = "tern-ariel"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenSearch]:
    async with fake_opensearch() as f:
        yield f


@pytest.fixture
async def backend(fake: FakeOpenSearch) -> AsyncIterator[OpenSearchBackend]:
    b = OpenSearchBackend(fake.client(), ALIAS)
    yield b
    await b.close()


# --- defect 2: search before the first ingestion -------------------------------------------------------------


async def test_search_before_first_ingestion_answers_no_hits_with_a_notice(
    fake: FakeOpenSearch, backend: OpenSearchBackend, pool: asyncpg.Pool
) -> None:
    def no_index(call: Call):
        if call.path.startswith(f"/{ALIAS}"):
            return index_not_found(ALIAS)
        return None

    fake.handler = no_index
    emb = HashingTestEmbedder(dim=32, model="m")
    settings = ariel_settings(ariel_backend="opensearch", opensearch_url=fake.url)
    app = create_app(settings, pool=pool, service_kwargs={"backend": backend, "embedder": emb, "llm": None})
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ariel") as api:
            for mode in ("keyword", "semantic", "hybrid", "rag"):
                r = await api.get("/search", params={"q": "rf trip", "mode": mode})
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["hits"] == [] and "does not exist yet" in body["notice"], (mode, body)
    assert f"/{ALIAS}/_search" in fake.paths("POST")
