"""Ingestion and enhancement steps, each bounded and idempotent so a workflow can run them as activities.

``ingest_page`` reads one page of a source and upserts it; ``embed_pending`` and ``summarize_pending`` work
through entries whose embedding or summary is missing or stale, so a crash resumes where it stopped (the
state is in the database, not in the caller). With a separate search index (OpenSearch) each step also pushes
what it changed, read back from PostgreSQL, and what the index has not acknowledged yet
(``tern.ariel.indexing``). ``ingest_source`` runs the whole loop in-process (CLI ``--direct``, benchmarks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import asyncpg

from tern.ariel import store
from tern.ariel.adapters import AdapterOptions, BadRecord, get_adapter, read_page, source_total
from tern.ariel.backends.base import SearchBackend
from tern.ariel.embeddings import EmbeddingProvider
from tern.ariel.indexing import IndexCounts, drain, pending_count, push_entries, push_vectors
from tern.ariel.models import LogbookEntry
from tern.config import TernSettings
from tern.llm import ChatMessage, ChatProvider, LLMError
from tern.models.ariel import BadRecordInfo, BulkEmbedResult, EnhanceResult, PageResult, UpsertCounts


def adapter_options(settings: TernSettings, **overrides: object) -> AdapterOptions:
    """Adapter options from the settings (HTTP window, attempts, timeout), with overrides."""
    opts = AdapterOptions(
        window=timedelta(hours=settings.ariel.http_window_h),
        attempts=settings.ariel.http_attempts,
        timeout_s=settings.ariel.http_timeout_s,
    )
    for k, v in overrides.items():
        setattr(opts, k, v)
    return opts


async def resolve_since(conn: store.Conn, adapter: str, opts: AdapterOptions) -> None:
    """Incremental service ingestion: without ``since``, a time-windowed service adapter (one with an
    ``incremental_source_system``) starts one window before the newest stored entry of that source system.

    Raises ``AdapterError`` for an unknown adapter.
    """
    system = get_adapter(adapter).incremental_source_system
    if system is not None and opts.since is None:
        newest = await store.latest_timestamp(conn, system)
        if newest is not None:
            opts.since = newest - opts.window


async def ingest_page(
    pool: asyncpg.Pool,
    adapter: str,
    source: str,
    cursor: str | None,
    page_size: int,
    opts: AdapterOptions,
    backend: SearchBackend | None = None,
    with_total: bool = False,
) -> PageResult:
    """Read one page after ``cursor`` and upsert its valid entries; with a separate index ``backend``, push the
    page's new or changed documents to it (refused ones stay pending: ``PageResult.index_failed``).

    Raises ``AdapterError`` / ``SourceUnavailable`` from the adapter (see ``tern.ariel.adapters``), and what
    the backend raises when the index cannot be reached (the page is then read again; upserts are idempotent).
    """
    if cursor is None:
        async with pool.acquire() as conn:
            await resolve_since(conn, adapter, opts)
    page = await read_page(adapter, source, cursor, page_size, opts)
    entries = [i for i in page.items if isinstance(i, LogbookEntry)]
    bad = [BadRecordInfo(position=i.position, reason=i.reason) for i in page.items if isinstance(i, BadRecord)]
    pushed = IndexCounts()
    async with pool.acquire() as conn:
        counts = await store.upsert_entries(conn, entries)
        if backend is not None and entries:
            pushed = await push_entries(conn, backend, len(entries), [e.entry_id for e in entries])
    counts.failed = len(bad)
    total = await source_total(adapter, source) if with_total else None
    return PageResult(
        counts=counts, bad_records=bad, next_cursor=page.next_cursor, total=total, index_failed=pushed.failed
    )


async def ingest_source(
    pool: asyncpg.Pool,
    adapter: str,
    source: str,
    opts: AdapterOptions,
    page_size: int = 500,
    backend: SearchBackend | None = None,
    progress: Callable[[PageResult, UpsertCounts], Awaitable[None] | None] | None = None,
) -> tuple[UpsertCounts, list[BadRecordInfo]]:
    """Ingest a whole source in-process, page by page; ``progress(page, totals)`` after each page. When
    entries were added or updated, the table's statistics are refreshed at the end (``store.refresh_statistics``)."""
    totals = UpsertCounts()
    bad: list[BadRecordInfo] = []
    cursor: str | None = None
    first = True
    while True:
        page = await ingest_page(pool, adapter, source, cursor, page_size, opts, backend, with_total=first)
        first = False
        totals = totals + page.counts
        bad += page.bad_records
        if progress is not None:
            r = progress(page, totals)
            if r is not None:
                await r
        if page.next_cursor is None:
            if totals.added or totals.updated:
                async with pool.acquire() as conn:
                    await store.refresh_statistics(conn)
            return totals, bad
        cursor = page.next_cursor


async def embed_pending(
    pool: asyncpg.Pool,
    embedder: EmbeddingProvider,
    batch_size: int = 64,
    max_batches: int = 20,
    backend: SearchBackend | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> EnhanceResult:
    """Embed up to ``max_batches`` batches of entries lacking a current embedding of ``embedder.model``.

    With a separate index ``backend``, each batch's vectors are stored in PostgreSQL and then pushed; a vector
    stays pending until the index acknowledged it, so one lost to a crash or a refusal is pushed by the next
    call (which also pushes pending documents). ``remaining`` counts what is left to embed or to index.

    Raises ``EmbeddingError`` when the provider fails, and what the backend raises when the index cannot be
    reached (the vectors are stored and stay pending).
    """
    dim = embedder.dim
    pushed = IndexCounts()
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, embedder.model, dim)
        assert table is not None
        done = 0
        for _ in range(max_batches):
            batch = await store.pending_embeddings(conn, table, batch_size)
            if not batch:
                break
            vectors = await embedder.embed([e.embedding_text() for e in batch])
            await store.store_embeddings(conn, table, batch, vectors)
            if backend is not None:
                pushed += await push_vectors(conn, backend, embedder.model, table, len(batch))
            done += len(batch)
            if on_batch:
                on_batch(done)
        remaining = await store.count_pending_embeddings(conn, table)
        if backend is not None:
            pushed += await drain(conn, backend, batch_size, max_batches, (embedder.model, table))
            remaining += await pending_count(conn, table)
    return EnhanceResult(
        kind="embeddings", processed=done, remaining=remaining, indexed=pushed.indexed, index_failed=pushed.failed
    )


async def embed_bulk(
    pool: asyncpg.Pool,
    embedder: EmbeddingProvider,
    batch_size: int = 2000,
    index_memory_mb: int = 1024,
    index_workers: int = 1,
    on_batch: Callable[[int], None] | None = None,
    index_m: int = store.HNSW_M,
    index_ef_construction: int = store.HNSW_EF_CONSTRUCTION,
) -> BulkEmbedResult:
    """Embed every entry lacking a current vector of ``embedder.model`` the way a bulk import should: the
    model's HNSW index is dropped, the vectors are stored in id order (keyset paging, one COPY per batch),
    then the index is built once (``store.build_vector_index`` with ``index_memory_mb``,
    ``index_workers``, ``index_m`` and ``index_ef_construction``) and the table analysed. For a first
    import or a re-embed of most entries; for a few new entries ``embed_pending`` keeps the index and is
    bounded per call. PostgreSQL backend only (a separate index is fed by ``embed_pending``).

    Meanwhile semantic search still answers, by exact scan (slow at scale). If the process dies before the
    build, the table stays without index until ``embed_bulk`` runs again (it resumes where it stopped, then
    builds the index). Raises ``EmbeddingError`` when the provider fails.
    """
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, embedder.model, embedder.dim)
        assert table is not None
        await store.drop_vector_index(conn, table)
        done, after = 0, ""
        t = time.perf_counter()
        while batch := await store.pending_embeddings(conn, table, batch_size, after):
            vectors = await embedder.embed([e.embedding_text() for e in batch])
            await store.store_embeddings(conn, table, batch, vectors)
            done += len(batch)
            after = batch[-1].entry_id
            if on_batch:
                on_batch(done)
        embed_s = time.perf_counter() - t
        build_s = await store.build_vector_index(
            conn, table, index_memory_mb, index_workers, index_m, index_ef_construction
        )
        await conn.execute(f"ANALYZE {table}")
    return BulkEmbedResult(embedded=done, table=table, embed_s=embed_s, index_build_s=build_s)


BULK_EMBED_MIN_PENDING = 10_000  # embed_all: from this many pending entries on, the bulk path (entries)


async def embed_all(
    pool: asyncpg.Pool,
    embedder: EmbeddingProvider,
    backend: SearchBackend | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Embed every entry lacking a current vector of ``embedder.model``; returns how many were embedded.

    With PostgreSQL as the index (``backend`` None) and at least ``BULK_EMBED_MIN_PENDING`` entries pending,
    through ``embed_bulk`` (index dropped and built once, ``maintenance_work_mem`` sized to the table: about
    4 bytes per dimension plus 1 KB of graph per vector, at least 1 GB, at most 8 GB); otherwise
    ``embed_pending`` until nothing is left (the index is updated as vectors arrive). Raises what those raise.
    """
    if backend is None:
        async with pool.acquire() as conn:
            table = await store.embedding_table(conn, embedder.model, embedder.dim)
            assert table is not None
            pending = await store.count_pending_embeddings(conn, table)
            total = await store.count_entries(conn)
        if pending >= BULK_EMBED_MIN_PENDING:
            memory_mb = min(8192, max(1024, total * (4 * embedder.dim + 1024) // 2**20))
            return (await embed_bulk(pool, embedder, index_memory_mb=memory_mb, on_batch=on_batch)).embedded
    done = 0
    while (r := await embed_pending(pool, embedder, backend=backend)).processed or r.indexed:
        done += r.processed
        if on_batch:
            on_batch(done)
    return done


SUMMARY_PROMPT = (
    "From the accelerator logbook entry below, give 5 to 15 keywords (equipment, systems, symptoms, actions) "
    "and a one-to-two sentence summary. Answer with JSON only: "
    '{"keywords": ["..."], "summary": "..."}'
)


def parse_summary(reply: str) -> tuple[str, list[str]]:
    """``(summary, keywords)`` from the LLM's JSON reply (a fenced code block is accepted).

    Raises ``ValueError`` when the reply is not the requested JSON."""
    text = reply.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    doc = json.loads(text[text.index("{") : text.rindex("}") + 1])
    summary, keywords = doc.get("summary"), doc.get("keywords")
    if not isinstance(summary, str) or not isinstance(keywords, list):
        raise ValueError("reply lacks 'summary' text or a 'keywords' list")
    return summary.strip(), [str(k).strip() for k in keywords if str(k).strip()][:15]


async def summarize_pending(
    pool: asyncpg.Pool,
    llm: ChatProvider,
    batch_size: int = 10,
    on_entry: Callable[[int], None] | None = None,
    backend: SearchBackend | None = None,
) -> EnhanceResult:
    """Ask the LLM for keywords and a summary of up to ``batch_size`` entries lacking current ones.

    A malformed reply is recorded on the entry (``enhancement_error``) and not retried; an unreachable LLM
    raises ``LLMError`` so that the caller retries later. With a separate index ``backend`` the summarized
    documents (and any other pending ones) are pushed to it afterwards, read back from PostgreSQL.
    """
    async with pool.acquire() as conn:
        batch = await store.pending_summaries(conn, batch_size)
        failed = 0
        for n, e in enumerate(batch, start=1):
            reply = await llm.complete(
                [
                    ChatMessage(role="system", content=SUMMARY_PROMPT),
                    ChatMessage(role="user", content=f"{e.title}\n\n{e.raw_text}"),
                ],
                max_tokens=300,
            )
            try:
                summary, keywords = parse_summary(reply)
            except ValueError as exc:
                failed += 1
                await store.store_summary(conn, e.entry_id, "", [], error=f"unusable LLM reply: {exc}"[:500])
            else:
                await store.store_summary(conn, e.entry_id, summary, keywords)
            if on_entry:
                on_entry(n)
        remaining = len(await store.pending_summaries(conn, 1_000_000))
        pushed = IndexCounts()
        if backend is not None:
            pushed = await drain(conn, backend, max(batch_size, 100), 10, None)
            remaining += await pending_count(conn)
    return EnhanceResult(
        kind="summaries",
        processed=len(batch) - failed,
        failed=failed,
        remaining=remaining,
        indexed=pushed.indexed,
        index_failed=pushed.failed,
    )


__all__: Sequence[str] = [
    "EnhanceResult",
    "LLMError",
    "PageResult",
    "adapter_options",
    "embed_pending",
    "ingest_page",
    "ingest_source",
    "summarize_pending",
]
