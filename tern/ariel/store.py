"""PostgreSQL storage of record for logbook entries, embeddings and ingestion runs (asyncpg).

Upserts are idempotent and bulk: rows are COPYed into a temporary table, then merged with one
``INSERT ... ON CONFLICT (entry_id) DO UPDATE ... WHERE <something changed>``, so re-ingesting a source leaves
unchanged rows untouched and counts them as ``unchanged``. Enhancement output (summary, keywords) is never
overwritten by an upsert.

Embeddings live in one table per model (``ariel_emb_<slug>``, pgvector ``vector(dim)`` with an HNSW cosine
index), registered in ``ariel_embedding_models`` and created on first use.

A separate search index (OpenSearch) is fed from here and tracked here: an entry's document is pending until
the index acknowledged its current ``DOC_HASH`` (``ariel_entries.indexed_doc``), a vector until the index
acknowledged it for the entry's current text (``indexed_hash`` of the embeddings table); see
``pending_index_entries``, ``mark_entries_indexed``, ``pending_index_vectors``, ``mark_vectors_indexed``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from tern.ariel.models import BadRecordInfo, IngestionRun, LogbookEntry, UpsertCounts
from tern.db import Conn  # re-exported: ARIEL modules annotate connections as store.Conn
from tern.models.ariel import MAX_BAD_RECORDS

ENTRY_COLUMNS = (  # the columns an upsert writes, in COPY order (the scale benchmark COPYs the same)
    "entry_id",
    "source_system",
    "ts",
    "author",
    "title",
    "raw_text",
    "tags",
    "categories",
    "logbook",
    "attachments",
    "metadata",
)
_MUTABLE = ENTRY_COLUMNS[1:]

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS ariel_stage (
    entry_id text, source_system text, ts timestamptz, author text, title text, raw_text text,
    tags text[], categories text[], logbook text, attachments jsonb, metadata jsonb
) ON COMMIT DELETE ROWS
"""

_MERGE = f"""
WITH merged AS (
    INSERT INTO ariel_entries AS t ({", ".join(ENTRY_COLUMNS)})
    SELECT {", ".join(ENTRY_COLUMNS)} FROM ariel_stage
    ON CONFLICT (entry_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _MUTABLE)}, updated_at = now()
    WHERE ({", ".join(f"t.{c}" for c in _MUTABLE)}) IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _MUTABLE)})
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS added, count(*) FILTER (WHERE NOT inserted) AS updated FROM merged
"""


def entry_row(e: LogbookEntry) -> tuple[Any, ...]:
    """The row of ``ariel_entries`` (columns ``ENTRY_COLUMNS``) for one entry; JSON columns as text."""
    return (
        e.entry_id,
        e.source_system,
        e.timestamp,
        e.author,
        e.title,
        e.raw_text,
        e.tags,
        e.categories,
        e.logbook,
        json.dumps([a.model_dump() for a in e.attachments]),
        json.dumps(e.metadata, default=str),
    )


async def upsert_entries(conn: Conn, entries: Sequence[LogbookEntry]) -> UpsertCounts:
    """Insert or update entries by ``entry_id`` in one transaction (COPY into a temp table, then merge).

    When an id occurs twice in ``entries`` the later one wins and the earlier counts as updated.
    Returns the counts (``failed`` is 0: records are validated before they get here).
    """
    latest: dict[str, LogbookEntry] = {}
    for e in entries:
        latest[e.entry_id] = e
    dupes = len(entries) - len(latest)
    if not latest:
        return UpsertCounts()
    async with conn.transaction():
        await conn.execute(_STAGE)
        await conn.copy_records_to_table(
            "ariel_stage", records=[entry_row(e) for e in latest.values()], columns=list(ENTRY_COLUMNS)
        )
        row = await conn.fetchrow(_MERGE)
    assert row is not None
    added, updated = int(row["added"]), int(row["updated"])
    return UpsertCounts(added=added, updated=updated + dupes, unchanged=len(latest) - added - updated)


def _entry_from_row(r: asyncpg.Record) -> LogbookEntry:
    return LogbookEntry(
        entry_id=r["entry_id"],
        source_system=r["source_system"],
        timestamp=r["ts"],
        author=r["author"],
        title=r["title"],
        raw_text=r["raw_text"],
        tags=list(r["tags"]),
        categories=list(r["categories"]),
        logbook=r["logbook"],
        attachments=json.loads(r["attachments"]),
        metadata=json.loads(r["metadata"]),
        summary=r["summary"],
        keywords=list(r["keywords"]),
    )


async def get_entry(conn: Conn, entry_id: str) -> LogbookEntry | None:
    """One entry by id, or None."""
    r = await conn.fetchrow("SELECT * FROM ariel_entries WHERE entry_id = $1", entry_id)
    return _entry_from_row(r) if r else None


async def get_entries(conn: Conn, entry_ids: Sequence[str]) -> dict[str, LogbookEntry]:
    """Entries by id (missing ids are absent from the result)."""
    rows = await conn.fetch("SELECT * FROM ariel_entries WHERE entry_id = ANY($1::text[])", list(entry_ids))
    return {r["entry_id"]: _entry_from_row(r) for r in rows}


async def iter_entry_batches(conn: Conn, batch_size: int = 1000, after: str = "") -> list[LogbookEntry]:
    """The next ``batch_size`` entries in ``entry_id`` order after ``after`` (keyset paging; for reindexing)."""
    rows = await conn.fetch(
        "SELECT * FROM ariel_entries WHERE entry_id > $1 ORDER BY entry_id LIMIT $2", after, batch_size
    )
    return [_entry_from_row(r) for r in rows]


async def latest_timestamp(conn: Conn, source_system: str) -> datetime | None:
    """The newest entry time of one source system (for incremental ingestion), or None."""
    ts: datetime | None = await conn.fetchval(
        "SELECT max(ts) FROM ariel_entries WHERE source_system = $1", source_system
    )
    return ts


async def refresh_statistics(conn: Conn) -> None:
    """``ANALYZE ariel_entries``: refresh the planner statistics, from which keyword search also takes the
    document frequencies of its BM25 ranking (``tern.ariel.backends.postgres``). About 0.3 s at 100,000
    entries (ANALYZE samples at most 30,000 rows); autovacuum does the same later on its own."""
    await conn.execute("ANALYZE ariel_entries")


# --- ingestion runs --------------------------------------------------------------------------------------


async def record_run(conn: Conn, run: IngestionRun) -> None:
    """Create or update the ``ingestion_runs`` row ``run.run_key`` with the run's totals so far.

    ``finished_at`` is set by the database when the status leaves 'running'. Only the first
    ``MAX_BAD_RECORDS`` bad records are kept.
    """
    bad = json.dumps([b.model_dump() for b in run.bad_records[:MAX_BAD_RECORDS]])
    c = run.counts
    await conn.execute(
        """
        INSERT INTO ingestion_runs (run_key, adapter, source, status, added, updated, unchanged, failed, cursor,
                                    bad_records, error, finished_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, CASE WHEN $4 = 'running' THEN NULL ELSE now() END)
        ON CONFLICT (run_key) DO UPDATE SET
            status = EXCLUDED.status, added = EXCLUDED.added, updated = EXCLUDED.updated,
            unchanged = EXCLUDED.unchanged, failed = EXCLUDED.failed, cursor = EXCLUDED.cursor,
            bad_records = EXCLUDED.bad_records, error = EXCLUDED.error, finished_at = EXCLUDED.finished_at
        """,
        run.run_key,
        run.adapter,
        run.source,
        run.status,
        c.added,
        c.updated,
        c.unchanged,
        c.failed,
        run.cursor,
        bad,
        run.error,
    )


def _run_from_row(r: asyncpg.Record) -> IngestionRun:
    return IngestionRun(
        run_key=r["run_key"],
        adapter=r["adapter"],
        source=r["source"],
        status=r["status"],
        counts=UpsertCounts(added=r["added"], updated=r["updated"], unchanged=r["unchanged"], failed=r["failed"]),
        cursor=r["cursor"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        error=r["error"],
        bad_records=[BadRecordInfo.model_validate(b) for b in json.loads(r["bad_records"])],
    )


async def get_run(conn: Conn, run_key: str) -> IngestionRun | None:
    """One ingestion run by key, or None."""
    r = await conn.fetchrow("SELECT * FROM ingestion_runs WHERE run_key = $1", run_key)
    return _run_from_row(r) if r else None


async def recent_runs(conn: Conn, limit: int = 10) -> list[IngestionRun]:
    """The most recently started ingestion runs, newest first."""
    rows = await conn.fetch("SELECT * FROM ingestion_runs ORDER BY started_at DESC LIMIT $1", limit)
    return [_run_from_row(r) for r in rows]


# --- embeddings --------------------------------------------------------------------------------------------


class DimensionMismatch(ValueError):
    """Vectors of ``dim`` dimensions for a model whose stored vectors have ``stored_dim``: another model under
    the same name (``TERN_ARIEL__EMBEDDING_MODEL``), never mixed. The message names the fix."""

    def __init__(self, model: str, stored_dim: int, dim: int) -> None:
        self.model, self.stored_dim, self.dim = model, stored_dim, dim
        super().__init__(
            f"embedding model {model!r} is stored with {stored_dim}-dimensional vectors, but the configured "
            f"provider gives {dim}: TERN_ARIEL__EMBEDDING_MODEL names another model than the stored one. Fix: "
            f"configure "
            f"the model the vectors were made with, or re-embed under a new name "
            f"(tern ariel reembed --model NAME --provider P)"
        )


async def count_entries(conn: Conn) -> int:
    """How many logbook entries are stored."""
    n: int = await conn.fetchval("SELECT count(*) FROM ariel_entries")
    return n


async def embedding_models(conn: Conn) -> dict[str, int]:
    """Every model with stored vectors: name -> dimension."""
    rows = await conn.fetch("SELECT model, dim FROM ariel_embedding_models ORDER BY model")
    return {r["model"]: r["dim"] for r in rows}


def embedding_table_name(model: str) -> str:
    """``ariel_emb_<slug>``: a readable, length-bounded, collision-free table name for a model id."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:30]
    return f"ariel_emb_{slug}_{hashlib.sha1(model.encode()).hexdigest()[:8]}"


async def embedding_table(conn: Conn, model: str, dim: int | None = None) -> str | None:
    """The embeddings table of ``model``; created (with its HNSW index) when ``dim`` is given and it is new.

    Returns None when the model has no table and ``dim`` is None. Raises ``DimensionMismatch`` (a
    ``ValueError``) when ``dim`` contradicts the registered dimension (a different model under the same name).
    """
    row = await conn.fetchrow("SELECT dim, table_name FROM ariel_embedding_models WHERE model = $1", model)
    if row:
        if dim is not None and dim != row["dim"]:
            raise DimensionMismatch(model, row["dim"], dim)
        name: str = row["table_name"]
        return name
    if dim is None:
        return None
    name = embedding_table_name(model)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {name} (
                    entry_id text PRIMARY KEY REFERENCES ariel_entries (entry_id) ON DELETE CASCADE,
                    content_hash text NOT NULL,
                    embedding vector({int(dim)}) NOT NULL,
                    indexed_hash text)"""
        )
        await conn.execute(vector_index_sql(name))
        await conn.execute(
            "INSERT INTO ariel_embedding_models (model, dim, table_name) VALUES ($1, $2, $3) "
            "ON CONFLICT (model) DO NOTHING",
            model,
            dim,
            name,
        )
    return name


HNSW_M = 24  # links per node of the HNSW graph (pgvector's default: 16)
HNSW_EF_CONSTRUCTION = 128  # candidate list while building it (pgvector's default: 64)


def vector_index_sql(table: str, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> str:
    """``CREATE INDEX`` of ``table``'s HNSW cosine index ``<table>_hnsw``, if it does not exist.

    ``m`` 24 and ``ef_construction`` 128 rather than pgvector's 16 and 64: at 100,000 entries of the scale
    benchmark, pgvector's graph gave tie-aware recall@10 against exact search of 0.84 to 0.96 from build to
    build at ef_search 200 (one query in 30 finding 0 or 1 of its 10 nearest), this one 0.97 and 1.00 in
    two builds, for about the same to 2.6 times the build time (benchmarks/README.md, Scale)."""
    return (
        f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops) "
        f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
    )


async def drop_vector_index(conn: Conn, table: str) -> None:
    """Drop ``table``'s HNSW index (bulk loads then store vectors without updating the graph; see
    ``build_vector_index``). Semantic search keeps working meanwhile, by exact scan."""
    await conn.execute(f"DROP INDEX IF EXISTS {table}_hnsw")


async def build_vector_index(
    conn: Conn,
    table: str,
    memory_mb: int = 1024,
    workers: int = 1,
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
) -> float:
    """Build ``table``'s HNSW index over the vectors stored (nothing when it exists); returns the seconds taken.

    Args:
        m, ef_construction: graph parameters (``vector_index_sql``).
        memory_mb: ``maintenance_work_mem`` of the build, MB. The graph should fit: about 1.6 KB per
            384-dimensional vector plus its neighbour lists at m = 16, so ~2 GB at 1,000,000 entries; pgvector
            warns ("hnsw graph no longer fits into maintenance_work_mem") and slows down when it does not.
        workers: ``max_parallel_maintenance_workers`` (besides the leader).

    Building once after a bulk load is faster than inserting each vector into the graph and gives a better
    graph: at 100,000 entries (the scale benchmark's hashing vectors), tie-aware recall@10 against exact
    search was 0.90 with the graph grown by inserts and 0.99 with the graph built after the load, both at
    ef_search 200 (benchmarks/README.md, Scale; pgvector README: "faster to create an index after loading
    your initial data").
    """
    async with conn.transaction():
        await conn.execute(
            f"SET LOCAL maintenance_work_mem = '{int(memory_mb)}MB'; "
            f"SET LOCAL max_parallel_maintenance_workers = {int(workers)}"
        )
        t = time.perf_counter()
        await conn.execute(vector_index_sql(table, m, ef_construction))
        return time.perf_counter() - t


def vector_literal(vec: Sequence[float]) -> str:
    """A pgvector text literal ``[x1,x2,...]`` (sent as text and cast with ``::vector``)."""
    return "[" + ",".join(f"{float(x):.7g}" for x in vec) + "]"


async def pending_embeddings(conn: Conn, table: str, limit: int, after: str = "") -> list[LogbookEntry]:
    """Entries with no embedding in ``table``, or one made from older text (content_hash differs), in id
    order after ``after`` (keyset paging: a bulk pass then does not re-read the entries it has done)."""
    rows = await conn.fetch(
        f"""SELECT e.* FROM ariel_entries e LEFT JOIN {table} v USING (entry_id)
            WHERE e.entry_id > $2 AND (v.entry_id IS NULL OR v.content_hash <> e.content_hash)
            ORDER BY e.entry_id LIMIT $1""",
        limit,
        after,
    )
    return [_entry_from_row(r) for r in rows]


async def count_pending_embeddings(conn: Conn, table: str) -> int:
    n: int = await conn.fetchval(
        f"""SELECT count(*) FROM ariel_entries e LEFT JOIN {table} v USING (entry_id)
            WHERE v.entry_id IS NULL OR v.content_hash <> e.content_hash"""
    )
    return n


_VEC_STAGE = "CREATE TEMP TABLE IF NOT EXISTS ariel_vec_stage (entry_id text, embedding text) ON COMMIT DELETE ROWS"


async def store_embeddings(
    conn: Conn, table: str, entries: Sequence[LogbookEntry], vectors: Sequence[Sequence[float]]
) -> None:
    """Upsert one vector per entry, tagged with the content hash of the text it was made from; a separate
    search index has not acknowledged it yet (``pending_index_vectors``). One transaction: COPY into a
    temporary table, then one merge (entries deleted meanwhile are skipped)."""
    if len(entries) != len(vectors):
        raise ValueError(f"{len(entries)} entries but {len(vectors)} vectors")
    async with conn.transaction():
        await conn.execute(_VEC_STAGE)
        await conn.copy_records_to_table(
            "ariel_vec_stage",
            records=[(e.entry_id, vector_literal(v)) for e, v in zip(entries, vectors, strict=True)],
            columns=["entry_id", "embedding"],
        )
        await conn.execute(
            f"""INSERT INTO {table} (entry_id, content_hash, embedding)
                SELECT e.entry_id, e.content_hash, s.embedding::vector
                FROM ariel_vec_stage s JOIN ariel_entries e USING (entry_id)
                ON CONFLICT (entry_id) DO UPDATE SET content_hash = EXCLUDED.content_hash,
                                                     embedding = EXCLUDED.embedding, indexed_hash = NULL"""
        )


# --- feeding a separate search index (OpenSearch) ------------------------------------------------------------

DOC_HASH = (
    "md5(row(e.source_system, extract(epoch FROM e.ts), e.author, e.title, e.raw_text, e.summary, e.keywords, "
    "e.tags, e.categories, e.logbook)::text)"
)
"""SQL (over ``ariel_entries e``): the hash of every field the search index holds (``entry_document``), so that
an upsert, a new summary or new keywords make the document pending again."""


async def pending_index_entries(
    conn: Conn, limit: int, entry_ids: Sequence[str] | None = None
) -> list[tuple[LogbookEntry, str]]:
    """Entries whose current document the search index has not acknowledged, with their ``DOC_HASH``, in id
    order; only among ``entry_ids`` when given."""
    rows = await conn.fetch(
        f"""SELECT e.*, {DOC_HASH} AS doc_hash FROM ariel_entries e
            WHERE e.indexed_doc IS DISTINCT FROM {DOC_HASH} AND ($2::text[] IS NULL OR e.entry_id = ANY($2::text[]))
            ORDER BY e.entry_id LIMIT $1""",
        limit,
        None if entry_ids is None else list(entry_ids),
    )
    return [(_entry_from_row(r), r["doc_hash"]) for r in rows]


async def index_documents_after(conn: Conn, after: str, limit: int) -> list[tuple[LogbookEntry, str]]:
    """The next ``limit`` entries after id ``after`` with their ``DOC_HASH`` (keyset paging; index rebuilds)."""
    rows = await conn.fetch(
        f"SELECT e.*, {DOC_HASH} AS doc_hash FROM ariel_entries e WHERE e.entry_id > $1 ORDER BY e.entry_id LIMIT $2",
        after,
        limit,
    )
    return [(_entry_from_row(r), r["doc_hash"]) for r in rows]


async def current_vectors(conn: Conn, table: str, entry_ids: Sequence[str]) -> list[tuple[str, str, list[float]]]:
    """``(entry_id, content_hash, vector)`` of the current embeddings of these entries in ``table``."""
    rows = await conn.fetch(
        f"""SELECT v.entry_id, v.content_hash, v.embedding::text AS vec FROM {table} v JOIN ariel_entries e
            USING (entry_id) WHERE v.entry_id = ANY($1::text[]) AND v.content_hash = e.content_hash""",
        list(entry_ids),
    )
    return [(r["entry_id"], r["content_hash"], json.loads(r["vec"])) for r in rows]


async def count_pending_index_entries(conn: Conn) -> int:
    """How many entries' documents the search index has not acknowledged."""
    n: int = await conn.fetchval(
        f"SELECT count(*) FROM ariel_entries e WHERE e.indexed_doc IS DISTINCT FROM {DOC_HASH}"
    )
    return n


async def mark_entries_indexed(conn: Conn, acked: Sequence[tuple[str, str]]) -> None:
    """Record ``(entry_id, doc_hash)`` pairs the index acknowledged. An entry changed since it was read keeps a
    different ``DOC_HASH`` and so stays pending."""
    await conn.executemany("UPDATE ariel_entries SET indexed_doc = $2 WHERE entry_id = $1", list(acked))


async def pending_index_vectors(conn: Conn, table: str, limit: int) -> list[tuple[str, str, list[float]]]:
    """``(entry_id, content_hash, vector)`` of current embeddings in ``table`` the index has not acknowledged."""
    rows = await conn.fetch(
        f"""SELECT v.entry_id, v.content_hash, v.embedding::text AS vec FROM {table} v
            JOIN ariel_entries e USING (entry_id)
            WHERE v.content_hash = e.content_hash AND v.indexed_hash IS DISTINCT FROM v.content_hash
            ORDER BY v.entry_id LIMIT $1""",
        limit,
    )
    return [(r["entry_id"], r["content_hash"], json.loads(r["vec"])) for r in rows]


async def count_pending_index_vectors(conn: Conn, table: str) -> int:
    n: int = await conn.fetchval(
        f"""SELECT count(*) FROM {table} v JOIN ariel_entries e USING (entry_id)
            WHERE v.content_hash = e.content_hash AND v.indexed_hash IS DISTINCT FROM v.content_hash"""
    )
    return n


async def mark_vectors_indexed(conn: Conn, table: str, acked: Sequence[tuple[str, str]]) -> None:
    """Record ``(entry_id, content_hash)`` pairs of vectors the index acknowledged (a vector replaced since
    carries another hash and stays pending)."""
    await conn.executemany(
        f"UPDATE {table} SET indexed_hash = $2 WHERE entry_id = $1 AND content_hash = $2", list(acked)
    )


# --- LLM enhancement (summary and keywords) --------------------------------------------------------------


async def pending_summaries(conn: Conn, limit: int) -> list[LogbookEntry]:
    """Entries whose summary/keywords are missing or were made from older text."""
    rows = await conn.fetch(
        "SELECT * FROM ariel_entries WHERE summary_hash IS DISTINCT FROM content_hash "
        "AND enhancement_error = '' ORDER BY entry_id LIMIT $1",
        limit,
    )
    return [_entry_from_row(r) for r in rows]


async def store_summary(conn: Conn, entry_id: str, summary: str, keywords: Sequence[str], error: str = "") -> None:
    """Store an entry's LLM summary and keywords (or the reason it failed, so it is not retried forever)."""
    await conn.execute(
        "UPDATE ariel_entries SET summary = $2, keywords = $3, enhancement_error = $4, "
        "summary_hash = CASE WHEN $4 = '' THEN content_hash ELSE summary_hash END WHERE entry_id = $1",
        entry_id,
        summary,
        list(keywords),
        error,
    )


# --- status ---------------------------------------------------------------------------------------------------


class StoreStatus(BaseModel):
    """Counts for ``tern ariel status`` and the HTTP status endpoint."""

    entries: int
    by_source: dict[str, int]
    newest: datetime | None
    oldest: datetime | None
    embeddings: dict[str, int]
    summaries: int
    recent_runs: list[IngestionRun]
    index_pending: int = 0
    """Documents and vectors a separate search index (OpenSearch) has not acknowledged; only meaningful with
    that backend (with PostgreSQL the table is the index and nothing is pushed)."""


async def status(conn: Conn, runs: int = 5) -> StoreStatus:
    """Entry counts by source, time span, embeddings per model, summaries, the latest ingestion runs, and what
    a separate search index has not acknowledged."""
    by_source = {
        r["source_system"]: r["n"]
        for r in await conn.fetch("SELECT source_system, count(*) AS n FROM ariel_entries GROUP BY 1 ORDER BY 1")
    }
    span = await conn.fetchrow("SELECT min(ts) AS oldest, max(ts) AS newest FROM ariel_entries")
    assert span is not None
    emb: dict[str, int] = {}
    pending = await count_pending_index_entries(conn)
    for r in await conn.fetch("SELECT model, table_name FROM ariel_embedding_models ORDER BY model"):
        emb[r["model"]] = await conn.fetchval(f"SELECT count(*) FROM {r['table_name']}")
        pending += await count_pending_index_vectors(conn, r["table_name"])
    summaries = await conn.fetchval("SELECT count(*) FROM ariel_entries WHERE summary_hash = content_hash")
    return StoreStatus(
        entries=sum(by_source.values()),
        by_source=by_source,
        newest=span["newest"],
        oldest=span["oldest"],
        embeddings=emb,
        summaries=summaries,
        recent_runs=await recent_runs(conn, runs),
        index_pending=pending,
    )
