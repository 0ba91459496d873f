"""Feeding a separate search index (OpenSearch) from PostgreSQL, the storage of record, so nothing is lost.

A document or vector is pending in PostgreSQL until the index acknowledged it (``store.pending_index_entries``,
``store.pending_index_vectors``): a crash, a 429 after all retries, or a refused document leaves it pending,
and the next push sends it again. Documents are always read back from PostgreSQL, so they carry what
enhancement added (summary, keywords) and what an upsert kept. Used by the ingestion steps
(``tern.ariel.ingest``); ``tern ariel reindex`` rebuilds the whole index instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tern.ariel import store
from tern.ariel.backends.base import IndexReport, SearchBackend

log = logging.getLogger(__name__)


@dataclass
class IndexCounts:
    """Documents or vectors acknowledged by the index now, and those it refused (still pending)."""

    indexed: int = 0
    failed: int = 0

    def __iadd__(self, other: IndexCounts) -> IndexCounts:
        self.indexed += other.indexed
        self.failed += other.failed
        return self

    def add(self, report: IndexReport, what: str) -> IndexCounts:
        """Count ``report`` in; each refused document is logged with the index's reason."""
        for entry_id, reason in report.failed.items():
            log.warning("search index refused %s of entry %s (stays pending): %s", what, entry_id, reason)
        self.indexed += len(report.indexed)
        self.failed += len(report.failed)
        return self


async def push_entries(
    conn: store.Conn, backend: SearchBackend, limit: int, entry_ids: Sequence[str] | None = None
) -> IndexCounts:
    """Send up to ``limit`` pending documents (only among ``entry_ids`` when given) and mark those the index
    acknowledged. Raises what the backend raises when the whole request fails (they stay pending)."""
    pending = await store.pending_index_entries(conn, limit, entry_ids)
    if not pending:
        return IndexCounts()
    report = await backend.index_entries([e for e, _ in pending])
    done = set(report.indexed)
    await store.mark_entries_indexed(conn, [(e.entry_id, h) for e, h in pending if e.entry_id in done])
    return IndexCounts().add(report, "the document")


async def push_vectors(conn: store.Conn, backend: SearchBackend, model: str, table: str, limit: int) -> IndexCounts:
    """Send up to ``limit`` pending vectors of ``model`` (embeddings table ``table``) and mark those the index
    acknowledged. Raises as ``push_entries``."""
    pending = await store.pending_index_vectors(conn, table, limit)
    if not pending:
        return IndexCounts()
    report = await backend.index_embeddings(model, [i for i, _, _ in pending], [v for _, _, v in pending])
    done = set(report.indexed)
    await store.mark_vectors_indexed(conn, table, [(i, h) for i, h, _ in pending if i in done])
    return IndexCounts().add(report, f"the {model} vector")


async def drain(
    conn: store.Conn, backend: SearchBackend, batch_size: int, max_batches: int, vectors: tuple[str, str] | None
) -> IndexCounts:
    """Push pending vectors of ``vectors`` = (model, embeddings table) when given, then pending documents, up
    to ``max_batches`` batches of ``batch_size`` each, stopping a kind when a batch gets nothing acknowledged
    (what the index keeps refusing waits for the next step instead of looping here)."""
    total = IndexCounts()
    if vectors is not None:
        for _ in range(max_batches):
            c = await push_vectors(conn, backend, vectors[0], vectors[1], batch_size)
            total += c
            if not c.indexed:
                break
    for _ in range(max_batches):
        c = await push_entries(conn, backend, batch_size)
        total += c
        if not c.indexed:
            break
    return total


async def pending_count(conn: store.Conn, table: str | None = None) -> int:
    """Documents pending in the index, plus ``table``'s vectors pending when a table is given."""
    n = await store.count_pending_index_entries(conn)
    return n + (await store.count_pending_index_vectors(conn, table) if table else 0)
