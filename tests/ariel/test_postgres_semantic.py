"""PostgreSQL semantic search: the statement scans the HNSW index (it used to join both tables whole and sort
every distance, an exact search of ~150 ms at 100,000 entries), filters still hold, a selective filter still
returns every matching entry, and the bulk embedding path leaves a built index."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tern.ariel import ingest, store
from tern.ariel.backends import postgres
from tern.ariel.backends.postgres import PostgresBackend, hnsw_settings_sql, semantic_exact_sql, semantic_sql
from tern.ariel.embeddings import HashingTestEmbedder
from tern.ariel.ingest import embed_bulk
from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters
from tern.db import create_pool
from tern.embedded.postgres import EmbeddedPostgres
from tests.databases import fresh_database, template_database

EMB = HashingTestEmbedder(dim=64, model="test-hashing-64")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
N = 4000
WORDS = "beam klystron vacuum valve magnet septum cavity pump gauge kicker orbit tune loss rf trip reset".split()


def corpus() -> list[LogbookEntry]:
    """N entries of random operations words; every 1000th by 'rare-author', even ones tagged 'even'."""
    rnd = random.Random(3)
    return [
        LogbookEntry(
            entry_id=f"S{i:05d}",
            source_system="generic",
            timestamp=T0 + timedelta(minutes=i),
            author="rare-author" if i % 1000 == 7 else f"op{i % 13}",
            title=" ".join(rnd.choices(WORDS, k=3)),
            raw_text=" ".join(rnd.choices(WORDS, k=25)),
            tags=["even"] if i % 2 == 0 else ["odd"],
        )
        for i in range(N)
    ]


async def _load(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        await store.upsert_entries(conn, corpus())
    result = await embed_bulk(pool, EMB, batch_size=1000, index_memory_mb=64)
    assert result.embedded == N
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE ariel_entries")
    return result.table


@pytest.fixture(scope="module")
async def loaded_template(embedded_pg: EmbeddedPostgres, pg_template: str) -> str:
    """A migrated database holding the corpus, embedded by :func:`embed_bulk` (its HNSW index built) and analysed,
    as a template: loading it takes ~5 s, a copy a fraction of that (the index and the statistics are copied)."""

    async def load(dsn: str) -> None:
        pool = await create_pool(dsn)
        try:
            await _load(pool)
        finally:
            await pool.close()

    return await template_database(embedded_pg, "tern_semantic_template_", load, template=pg_template)


@pytest.fixture
async def loaded(embedded_pg: EmbeddedPostgres, loaded_template: str) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A pool on a copy of :func:`loaded_template`, and the name of its embedding table."""
    async with fresh_database(embedded_pg, template=loaded_template) as dsn:
        pool = await create_pool(dsn)
        try:
            async with pool.acquire() as conn:
                table = await store.embedding_table(conn, EMB.model)
            assert table is not None
            yield pool, table
        finally:
            await pool.close()


async def _plan(conn: store.Conn, stmt: tuple[str, list]) -> str:
    async with conn.transaction():
        await conn.execute(hnsw_settings_sql(30, 200, 20_000))
        rows = await conn.fetch("EXPLAIN (FORMAT JSON) " + stmt[0], *stmt[1])
    return json.dumps(json.loads(rows[0][0]))


async def test_semantic_statement_scans_the_hnsw_index_with_and_without_filters(
    loaded: tuple[asyncpg.Pool, str],
) -> None:
    pool, table = loaded
    [vec] = await EMB.embed(["klystron trip reset"])
    async with pool.acquire() as conn:
        for filters in (None, SearchFilters(tags=["even"]), SearchFilters(author="rare", since=T0)):
            plan = await _plan(conn, semantic_sql(table, vec, filters, 30))
            assert f'"Index Name": "{table}_hnsw"' in plan, (filters, plan)
        exact = await _plan(conn, semantic_exact_sql(table, vec, None, 30))
    assert f"{table}_hnsw" not in exact  # the recall reference computes every distance


async def test_semantic_hits_match_exact_search_and_respect_filters(loaded: tuple[asyncpg.Pool, str]) -> None:
    pool, _ = loaded
    backend = PostgresBackend(pool)
    [vec] = await EMB.embed(["septum kicker orbit"])
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, EMB.model)
        assert table is not None
        sql, args = semantic_exact_sql(table, vec, None, 10)
        exact = await conn.fetch(sql, *args)
    hits = await backend.semantic(vec, EMB.model, limit=10, min_similarity=-1.0)
    assert hits is not None and len(hits) == 10
    tenth = min(float(r["score"]) for r in exact)
    assert sum(h.score >= tenth - 1e-6 for h in hits) >= 9  # recall@10 >= 0.9, ties counted as equals
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    even = await backend.semantic(vec, EMB.model, SearchFilters(tags=["even"]), limit=20, min_similarity=-1.0)
    assert even is not None and len(even) == 20
    assert all(int(h.entry_id[1:]) % 2 == 0 for h in even)

    # 4 of 4,000 entries pass: fewer than EXACT_SEARCH_BELOW, so the exact search answers, with all four
    rare_filter = SearchFilters(author="rare-author")
    trace: list[tuple[str, list]] = []
    rare = await PostgresBackend(pool, trace=trace).semantic(vec, EMB.model, rare_filter, limit=10, min_similarity=-1)
    assert rare is not None
    assert sorted(h.entry_id for h in rare) == ["S00007", "S01007", "S02007", "S03007"]
    assert not any("hnsw" in sql or "OFFSET 0" in sql for sql, _ in trace)


async def test_a_starved_hnsw_scan_falls_back_to_exact_search(
    loaded: tuple[asyncpg.Pool, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The iterative scan gives up after max_scan_tuples vectors (here 100, the 4 matching entries being
    anywhere among 4,000): the exact search still returns every entry that passes the filters."""
    pool, _ = loaded
    monkeypatch.setattr(postgres, "EXACT_SEARCH_BELOW", 0)  # as if many entries passed: HNSW first
    [vec] = await EMB.embed(["septum kicker orbit"])
    trace: list[tuple[str, list]] = []
    backend = PostgresBackend(pool, trace=trace, max_scan_tuples=100)
    rare = await backend.semantic(vec, EMB.model, SearchFilters(author="rare-author"), limit=10, min_similarity=-1)
    assert rare is not None
    assert sorted(h.entry_id for h in rare) == ["S00007", "S01007", "S02007", "S03007"]
    assert "OFFSET 0" in trace[1][0] and "+ 0" in trace[2][0]  # count, HNSW, then exact


async def test_embed_bulk_builds_the_index_once_and_resumes(loaded: tuple[asyncpg.Pool, str]) -> None:
    pool, table = loaded  # embed_bulk embedded all 4,000 entries (asserted in _load) and built the index
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{table}_hnsw")
        await conn.execute("UPDATE ariel_entries SET raw_text = raw_text || ' edited' WHERE entry_id = 'S00001'")
    again = await embed_bulk(pool, EMB, batch_size=1000, index_memory_mb=64)
    assert again.embedded == 1  # only the changed entry
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{table}_hnsw")
        assert await store.count_pending_embeddings(conn, table) == 0


async def test_embed_all_takes_the_bulk_path_for_many_pending_entries(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many pending entries: the index is dropped and built again (a new relation); few: it is kept."""
    async with pool.acquire() as conn:
        await store.upsert_entries(conn, corpus()[:300])
        table = await store.embedding_table(conn, EMB.model, EMB.dim)
        assert table is not None
        index_oid = await conn.fetchval("SELECT $1::regclass::oid", f"{table}_hnsw")
    monkeypatch.setattr(ingest, "BULK_EMBED_MIN_PENDING", 200)
    assert await ingest.embed_all(pool, EMB) == 300
    async with pool.acquire() as conn:
        rebuilt = await conn.fetchval("SELECT $1::regclass::oid", f"{table}_hnsw")
        assert rebuilt != index_oid
        await store.upsert_entries(conn, corpus()[300:350])
    assert await ingest.embed_all(pool, EMB) == 50
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT $1::regclass::oid", f"{table}_hnsw") == rebuilt
        assert await store.count_pending_embeddings(conn, table) == 0
