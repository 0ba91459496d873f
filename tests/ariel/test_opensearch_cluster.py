"""Ingestion plus search on a real OpenSearch cluster (CI: ``.github/workflows/opensearch.yml`` runs it on
OpenSearch 2.19 and 3.x). Skipped, saying why, unless ``TERN_ARIEL__OPENSEARCH_URL`` names a cluster; the README's
ARIEL section shows how to start one with Docker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest

from tern.ariel import indexing, store
from tern.ariel.adapters import AdapterOptions
from tern.ariel.backends.opensearch import OpenSearchBackend
from tern.ariel.backends.opensearch_client import close_shared_clients
from tern.ariel.ingest import embed_pending, ingest_source, summarize_pending
from tern.ariel.service import ArielService
from tests.ariel.conftest import NOW, SAMPLE_ENTRIES, SAMPLES, ariel_settings
from tests.ariel.test_search_contract import EMB, FakeLLM

URL = os.environ.get("TERN_ARIEL__OPENSEARCH_URL")
pytestmark = pytest.mark.skipif(not URL, reason="needs an OpenSearch cluster at TERN_ARIEL__OPENSEARCH_URL")


@pytest.fixture
async def backend() -> AsyncIterator[OpenSearchBackend]:
    settings = ariel_settings(
        ariel={
            "backend": "opensearch",
            "opensearch_url": URL,
            "opensearch_index": f"tern-ariel-it-{uuid.uuid4().hex[:8]}",
        }
    )
    b = OpenSearchBackend.from_settings(settings)
    try:
        yield b
    finally:
        await b.client.indices.delete(index=f"{b.alias}-*")
        await close_shared_clients()


def ids(resp) -> list[str]:
    return [h.entry_id for h in resp.hits]


async def test_ingestion_then_search(backend: OpenSearchBackend, pool: asyncpg.Pool) -> None:
    settings = backend._settings
    assert settings is not None
    service = ArielService(settings, pool, backend=backend, embedder=EMB, llm=None)
    r = await service.search("klystron")
    assert r.hits == [] and "does not exist yet" in r.notice  # before the first ingestion: no 500

    for adapter, path in SAMPLES:
        await ingest_source(pool, adapter, str(path), AdapterOptions(now=NOW), page_size=20, backend=backend)
    while (await embed_pending(pool, EMB, batch_size=32, backend=backend)).remaining:
        pass
    llm = FakeLLM('{"keywords": ["zebracorn"], "summary": "An entry about the zebracorn."}')
    while (await summarize_pending(pool, llm, batch_size=50, backend=backend)).remaining:
        pass
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, EMB.model)
        assert table and await indexing.pending_count(conn, table) == 0
    await backend.client.indices.refresh(index=backend.alias)

    r = await service.search("klystron", limit=10)
    assert ids(r)[0] == "J20002" and not r.notice
    r = await service.search("zebracorn", limit=100)  # a word only the summaries and keywords hold
    assert len(r.hits) == SAMPLE_ENTRIES
    r = await service.search("septum timing injection efficiency", mode="hybrid", limit=5)
    assert r.mode_used == "hybrid" and {"E014", "10006"} <= set(ids(r))

    pg = ArielService(ariel_settings(), pool, embedder=EMB, llm=None)  # the same documents on PostgreSQL
    for q in ("tag:rf", "source:jlab", "zebracorn author:oper_jones"):
        assert sorted(ids(await service.search(q, limit=100))) == sorted(ids(await pg.search(q, limit=100))), q

    result = await backend.reindex_from(pool)
    assert result.entries == SAMPLE_ENTRIES and result.vectors == {EMB.model: SAMPLE_ENTRIES} and not result.failed
    assert ids(await service.search("klystron", limit=10))[0] == "J20002"


async def test_knn_recall_against_exact_search(backend: OpenSearchBackend, pool: asyncpg.Pool) -> None:
    """Recall@10 of the k-NN search (ef_search = max(100, 2k)) against exact cosine ranking of the same
    vectors; prints the figure. Only a cluster can measure it."""
    for adapter, path in SAMPLES:
        await ingest_source(pool, adapter, str(path), AdapterOptions(now=NOW))
    while (await embed_pending(pool, EMB, batch_size=64)).remaining:
        pass
    await backend.reindex_from(pool)
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, EMB.model)
        assert table
        all_ids = [r["entry_id"] for r in await conn.fetch("SELECT entry_id FROM ariel_entries")]
        rows = await store.current_vectors(conn, table, all_ids)
    names = [i for i, _, _ in rows]
    matrix = np.array([v for _, _, v in rows], dtype=float)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    queries = [
        "rf cavity trip",
        "vacuum leak",
        "beam loss",
        "klystron fault",
        "injection efficiency",
        "magnet power supply",
        "shift summary",
        "cryogenic",
        "orbit feedback",
        "timing",
    ]
    found = total = 0
    for q in queries:
        [vec] = await EMB.embed([q])
        v = np.array(vec, dtype=float) / (np.linalg.norm(vec) or 1.0)
        exact = {names[i] for i in np.argsort(-(matrix @ v))[:10]}
        hits = await backend.semantic(vec, EMB.model, limit=10, min_similarity=-1.0)
        assert hits is not None
        found += len(exact & {h.entry_id for h in hits})
        total += len(exact)
    recall = found / total
    print(f"k-NN recall@10 against exact cosine, {len(queries)} queries, {len(names)} vectors: {recall:.3f}")
    assert recall >= 0.9


async def test_writes_never_create_an_index_and_vector_only_documents_are_not_hits(
    backend: OpenSearchBackend, pool: asyncpg.Pool
) -> None:
    """Issue 27, 1 and 3 on a real cluster: a bulk write to a missing alias (a rebuild's, deleted) fails per
    item under ``require_alias=true`` and creates no index; a vector pushed before its entry's text is no hit of
    k-NN search or browse; a model with no field in the mapping is None (``ignore_unmapped``); and a vector
    survives a later text upsert (3.x derived-source vectors)."""
    from tern.ariel.backends.opensearch import bulk_entry_actions

    for adapter, path in SAMPLES[:1]:
        await ingest_source(pool, adapter, str(path), AdapterOptions(now=NOW))
    async with pool.acquire() as conn:
        entries = await store.iter_entry_batches(conn, 1000)
    report = await backend._bulk(bulk_entry_actions(backend.building_alias, entries[:2]))
    assert report.indexed == [] and len(report.failed) == 2, report
    assert all("index_not_found_exception" in why for why in report.failed.values()), report.failed
    assert not await backend.client.indices.exists(index=backend.building_alias)  # not auto-created

    first, rest = entries[0], entries[1:]
    assert not (await backend.index_entries(rest)).failed
    [orphan_vec, *vecs] = await EMB.embed([first.title] + [e.title for e in rest])
    ids = [first.entry_id] + [e.entry_id for e in rest]  # the first entry's text is not indexed yet
    assert not (await backend.index_embeddings(EMB.model, ids, [orphan_vec, *vecs])).failed
    await backend.client.indices.refresh(index=backend.alias)
    hits = await backend.semantic(orphan_vec, EMB.model, limit=100, min_similarity=-1.0)
    assert hits is not None and first.entry_id not in {h.entry_id for h in hits} and all(h.title for h in hits)
    assert first.entry_id not in {h.entry_id for h in await backend.keyword("", limit=100)}
    # ignore_unmapped: a model without a field in the mapping matches nothing instead of failing the search
    assert await backend.semantic(orphan_vec, "a-model-never-indexed", limit=5) is None

    assert not (await backend.index_entries([first])).failed  # the text arrives after the vector
    await backend.client.indices.refresh(index=backend.alias)
    hits = await backend.semantic(orphan_vec, EMB.model, limit=100, min_similarity=-1.0)
    found = {h.entry_id: h for h in hits or []}  # a k-NN hit needs the vector: the text upsert kept it
    assert first.entry_id in found and found[first.entry_id].title == first.title
