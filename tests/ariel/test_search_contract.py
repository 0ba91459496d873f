"""The search contract, run on every backend: PostgreSQL always, OpenSearch when TERN_ARIEL__OPENSEARCH_URL is set.

Semantic paths use ``HashingTestEmbedder`` (word-overlap vectors, for tests only) so that they run without the
embeddings extra; the real model is exercised in ``test_real_model.py`` and in the quality benchmark.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from tern.ariel import indexing, store
from tern.ariel.backends import SearchBackend
from tern.ariel.embeddings import HashingTestEmbedder
from tern.ariel.ingest import embed_pending
from tern.ariel.query import SearchFilters
from tern.ariel.service import ArielService
from tern.llm import ChatMessage, LLMError
from tests.ariel.conftest import ariel_settings

EMB = HashingTestEmbedder(dim=256, model="test-hashing-256")


@pytest.fixture(params=["postgres", "opensearch-rebuild", "opensearch-ingest"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The backend of :func:`service`; the OpenSearch ones skip here without a cluster, before ``service`` loads
    the logbook (~0.65 s a test otherwise spent for nothing)."""
    if request.param != "postgres" and not os.environ.get("TERN_ARIEL__OPENSEARCH_URL"):
        pytest.skip("OpenSearch contract run needs TERN_ARIEL__OPENSEARCH_URL (no OpenSearch on this machine)")
    return str(request.param)


@pytest.fixture
async def service(backend_kind: str, loaded_pool: asyncpg.Pool) -> AsyncIterator[ArielService]:
    """The same logbook on each backend. OpenSearch is filled two ways: ``reindex_from`` (a rebuild), and the
    path ingestion takes (``ensure_index``, then ``index_entries`` and ``index_embeddings`` through
    ``tern.ariel.indexing``, which marks what the index acknowledged)."""
    await embed_pending(loaded_pool, EMB, batch_size=200)
    if backend_kind == "postgres":
        yield ArielService(ariel_settings(), loaded_pool, embedder=EMB, llm=None)
        return
    url = os.environ["TERN_ARIEL__OPENSEARCH_URL"]
    from tern.ariel.backends.opensearch import OpenSearchBackend
    from tern.ariel.backends.opensearch_client import close_shared_clients

    settings = ariel_settings(
        ariel={
            "backend": "opensearch",
            "opensearch_url": url,
            "opensearch_index": f"tern-ariel-test-{uuid.uuid4().hex[:8]}",
        }
    )
    backend = OpenSearchBackend.from_settings(settings)
    try:
        if backend_kind == "opensearch-rebuild":
            await backend.reindex_from(loaded_pool)
        else:
            await fill_by_ingestion_path(backend, loaded_pool)
        yield ArielService(settings, loaded_pool, backend=backend, embedder=EMB, llm=None)
    finally:
        await backend.client.indices.delete(index=f"{backend.alias}-*")
        await close_shared_clients()


async def fill_by_ingestion_path(backend: SearchBackend, pool: asyncpg.Pool) -> None:
    """Push every pending document and vector the way ingestion does, then refresh so searches see them."""
    name = await backend.ensure_index({EMB.model: EMB.dim})
    assert await backend.ensure_index() == name  # idempotent
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, EMB.model)
        assert table is not None
        while (await indexing.push_entries(conn, backend, 500)).indexed:
            pass
        while (await indexing.push_vectors(conn, backend, EMB.model, table, 500)).indexed:
            pass
        assert await indexing.pending_count(conn, table) == 0
    await refresh(backend)


async def refresh(backend: SearchBackend) -> None:
    """Make writes searchable now (OpenSearch refreshes every second; PostgreSQL needs nothing)."""
    if backend.separate_index:
        await backend.client.indices.refresh(index=backend.alias)  # type: ignore[attr-defined]


def ids(resp) -> list[str]:
    return [h.entry_id for h in resp.hits]


async def test_keyword_ranks_title_above_text(service: ArielService) -> None:
    r = await service.search("klystron", limit=10)
    assert r.mode_used == "keyword" and not r.notice
    # J20002's title names the klystron; E001 and 10009.. mention it only in the text
    assert ids(r)[0] == "J20002" and "E001" in ids(r)
    assert any("**Klystron**" in h for h in r.hits[0].highlights)


async def test_every_term_first_then_any_term(service: ArielService) -> None:
    r = await service.search("RF cavity trip reflected power", limit=10)
    # E001 and DEMO-001 hold every term (so do DEMO-026 and DEMO-027, whose titles name the cavity's
    # reflected-power trip or its thermal excursions): all of them before the any-term matches
    found = ids(r)
    assert {"DEMO-001", "E001"} <= set(found[:4])
    assert "10012" in found  # RF cavity trip without "reflected power": found by the any-term pass
    assert found.index("10012") > max(found.index("E001"), found.index("DEMO-001"))


async def test_phrase_and_exclusion(service: ArielService) -> None:
    r = await service.search('"beam loss" -vacuum', limit=20)
    assert r.hits and "E003" in ids(r)
    assert "10002" not in ids(r)  # beam loss caused by a vacuum spike: excluded


async def test_or_binds_loosest_and_operator_characters_are_text(service: ArielService) -> None:
    """Both backends read ``a or b -c`` as PostgreSQL's websearch_to_tsquery does, ``a | (b & !c)``, and take
    ``*``, ``+`` and ``~`` as plain characters, not prefix, must or fuzzy operators."""
    found = ids(await service.search("klystron or vacuum -reset", limit=50))
    assert "J20002" in found  # names the klystron (and its reset): matched by the first alternative
    base = ids(await service.search("klystron", limit=50))
    for q in ("klystron*", "+klystron", "klystron~"):
        assert ids(await service.search(q, limit=50)) == base, q


async def test_filters(service: ArielService) -> None:
    r = await service.search("shift author:oper_jones", limit=20)
    assert ids(r) == ["E007"]
    r = await service.search(
        "beam",
        limit=50,
        filters=SearchFilters(
            since=datetime(2024, 1, 1, 3, 0, tzinfo=UTC), until=datetime(2024, 1, 1, 5, 0, tzinfo=UTC)
        ),
    )
    assert r.hits and all(
        datetime(2024, 1, 1, 3, tzinfo=UTC) <= h.timestamp < datetime(2024, 1, 1, 5, tzinfo=UTC)
        for h in r.hits
        if h.timestamp
    )
    r = await service.search("tag:rf", limit=50)
    assert set(ids(r)) >= {"DEMO-001"} and all(i.startswith("DEMO") for i in ids(r))
    r = await service.search("source:jlab", limit=50)
    assert sorted(ids(r)) == [f"J2000{i}" for i in range(1, 8)]


async def test_typo_falls_back_to_similarity(service: ArielService) -> None:
    r = await service.search("klystorn", limit=5)
    assert "J20002" in ids(r)


async def test_semantic_and_hybrid(service: ArielService) -> None:
    r = await service.search("septum timing injection efficiency", mode="semantic", limit=5)
    assert r.mode_used == "semantic" and not r.notice
    assert {"E014", "10006"} & set(ids(r)[:3])
    assert all(-1.0 <= h.score <= 1.0 for h in r.hits)
    h = await service.search("septum timing injection efficiency", mode="hybrid", limit=5)
    assert h.mode_used == "hybrid" and {"E014", "10006"} <= set(ids(h))
    assert all(0 < x.score <= 2 / 61 + 1e-9 for x in h.hits)  # an RRF sum of two lists, k = 60


async def test_semantic_without_embeddings_degrades_with_notice(service: ArielService) -> None:
    no_provider = ArielService(service.settings, service.db, backend=service.backend, embedder=None, llm=None)
    r = await no_provider.search("vacuum leak", mode="semantic")
    assert r.mode_used == "keyword" and "no embedding provider" in r.notice and r.hits
    other_model = HashingTestEmbedder(dim=32, model="never-embedded")
    unembedded = ArielService(service.settings, service.db, backend=service.backend, embedder=other_model, llm=None)
    r = await unembedded.search("vacuum leak", mode="hybrid")
    assert r.mode_used == "keyword" and "never-embedded" in r.notice and r.hits


class FakeLLM:
    """The one allowed test double: an LLM that answers from the context it is given."""

    model = "fake"

    def __init__(self, reply: str | None = None, fail: bool = False) -> None:
        self.reply, self.fail = reply, fail
        self.prompts: list[str] = []

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int = 800, temperature: float = 0.0
    ) -> str:
        self.prompts.append(messages[-1].content)
        if self.fail:
            raise LLMError("endpoint down")
        assert self.reply is not None
        return self.reply


async def test_rag_checks_citations_against_context(service: ArielService) -> None:
    llm = FakeLLM("The cavity tripped on reflected power [#E001] and was reset [#DEMO-001]; see also [#NOPE-9].")
    rag = ArielService(service.settings, service.db, backend=service.backend, embedder=EMB, llm=llm)
    r = await rag.search("RF cavity trip reflected power", mode="rag", limit=5)
    assert r.mode_used == "rag" and r.answer.startswith("The cavity")
    assert r.citations == ["E001", "DEMO-001"] and r.invalid_citations == ["NOPE-9"]
    assert "[#NOPE-9]" in r.notice
    assert "[#E001] RF Cavity Trip in Sector 3" in llm.prompts[0]
    assert len(llm.prompts[0]) < service.settings.ariel.rag_context_chars + 200


async def test_rag_without_llm_or_with_a_failing_one(service: ArielService) -> None:
    r = await service.search("vacuum leak bellows", mode="rag", limit=3)
    assert r.mode_used == "hybrid" and "No LLM is configured" in r.notice and len(r.hits) == 3 and not r.answer
    failing = ArielService(service.settings, service.db, backend=service.backend, embedder=EMB, llm=FakeLLM(fail=True))
    r = await failing.search("vacuum leak bellows", mode="rag", limit=3)
    assert r.hits and "LLM failed" in r.notice


async def test_bad_requests_are_refused(service: ArielService) -> None:
    with pytest.raises(ValueError, match="unknown search mode"):
        await service.search("x", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        await service.search("x", limit=0)
    with pytest.raises(ValueError, match="date: expects a date"):
        await service.search("beam date:yesterday")


async def test_index_writes_are_acknowledged_and_idempotent(service: ArielService) -> None:
    """``ensure_index``, ``index_entries`` and ``index_embeddings`` on every backend: writing documents and
    vectors again acknowledges each one and changes no search result."""
    backend = service.backend
    assert await backend.ensure_index() == await backend.ensure_index()
    before = ids(await service.search("klystron", limit=10))
    async with service.db.acquire() as conn:  # type: ignore[union-attr]
        entries = await store.get_entries(conn, ["E001", "J20002"])
    report = await backend.index_entries(list(entries.values()))
    assert sorted(report.indexed) == ["E001", "J20002"] and not report.failed
    vectors = await EMB.embed([e.embedding_text() for e in entries.values()])
    report = await backend.index_embeddings(EMB.model, list(entries), vectors)
    assert sorted(report.indexed) == ["E001", "J20002"] and not report.failed
    await refresh(backend)
    assert ids(await service.search("klystron", limit=10)) == before
    r = await service.search("septum timing injection efficiency", mode="semantic", limit=5)
    assert r.mode_used == "semantic" and {"E014", "10006"} & set(ids(r)[:3])
