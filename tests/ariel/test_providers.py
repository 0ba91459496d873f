"""The one place that builds ARIEL's embedder and LLM (``tern.ariel.providers``), against a real HTTP endpoint
shaped like the OpenAI API (uvicorn on loopback)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from activities.ariel import ArielActivities
from tern.ariel.embeddings import EmbeddingError, HashingTestEmbedder, OpenAIEmbedder
from tern.ariel.providers import Providers
from tern.ariel.service import ArielService
from tern.llm import OpenAICompatibleChat
from tests.ariel.conftest import ariel_settings, serve
from tests.ariel.test_llm_enhance import openai_like_app


async def test_configured_embedder_is_built_once_and_shared(pool: asyncpg.Pool) -> None:
    seen: list[dict[str, Any]] = []
    async with serve(openai_like_app(seen)) as base:
        settings = ariel_settings(
            ariel={"embedding_provider": "openai", "embedding_url": f"{base}/v1", "embedding_model": "e-shared"},
            llm={"provider": "openai", "url": f"{base}/v1"},
        )
        service = ArielService(settings, pool)
        acts = ArielActivities(settings, pool)
        emb = await service.providers.embedder()
        assert isinstance(emb, OpenAIEmbedder) and emb.dim == 2 and len(seen) == 1  # one dimension probe
        assert await acts.providers.embedder() is emb and await Providers(settings).embedder() is emb
        assert len(seen) == 1  # built once per process, shared by search and ingestion
        assert isinstance(service.providers.llm, OpenAICompatibleChat) and not seen[1:]  # built, not called


async def test_given_providers_win_and_a_failed_build_is_retried() -> None:
    none = Providers(ariel_settings())
    assert await none.embedder() is None and none.llm is None
    mine = HashingTestEmbedder()
    given = Providers(
        ariel_settings(llm={"provider": "openai", "url": "http://127.0.0.1:9/v1"}), embedder=mine, llm=None
    )
    assert await given.embedder() is mine and given.llm is None
    async with serve(openai_like_app([])) as base:
        pass  # the server is gone: its port refuses connections
    down = Providers(
        ariel_settings(
            ariel={"embedding_provider": "openai", "embedding_url": f"{base}/v1", "embedding_model": "e-down"}
        )
    )
    for _ in range(2):  # not cached as a failure: each call tries again
        with pytest.raises(EmbeddingError):
            await down.embedder()
