"""The OpenSearch search backend: BM25 text fields, ``knn_vector`` fields, bulk indexing, alias-based reindexing.

PostgreSQL stays the storage of record; OpenSearch holds a searchable copy. Searches go to an alias
(``settings.ariel.opensearch_index``, default ``tern-ariel``) that points at one concrete index
``<alias>-<version>`` (the first is ``<alias>-1``); ``reindex_from`` builds a new concrete index from PostgreSQL
and swaps the alias in one ``_aliases`` call, so searches never see a half-built index, while writes go to both.
Writes report per document what the index acknowledged (``IndexReport``); ``tern.ariel.indexing`` keeps the rest
pending in PostgreSQL. The client is shared per process (``opensearch_client``).

Request bodies are built by pure functions in ``opensearch_bodies`` (``index_body``, ``keyword_body``,
``knn_body``, ``alias_swap_actions``...) and responses parsed by ``parse_hits``; both are unit-tested against
the shapes in the OpenSearch documentation (Search API, k-NN query, Bulk API, Aliases API, Create index API).

Scores: keyword hits carry the BM25 score; k-NN hits with ``cosinesimil`` carry ``(1 + cos) / 2``, which
``parse_hits(..., cosine=True)`` turns back into the cosine similarity (clamped to [-1, 1]) so that thresholds
mean the same on both backends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from pydantic import BaseModel

from tern.ariel import store
from tern.ariel.backends.base import IndexReport, SearchIndexMissing
from tern.ariel.backends.opensearch_bodies import (
    HAS_TEXT,
    HIGHLIGHT,
    MAX_ANALYZER_OFFSET,
    RETRY_ON_CONFLICT,
    SOURCE_FIELDS,
    SQS_FLAGS,
    TEXT_FIELDS,
    alias_swap_actions,
    browse_body,
    bulk_entry_actions,
    bulk_vector_actions,
    default_ef_search,
    entry_document,
    error_type,
    filter_clauses,
    float32_values,
    fuzzy_body,
    index_body,
    keyword_body,
    knn_body,
    parse_hits,
    simple_query,
    vector_field,
    vector_mapping,
)
from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters
from tern.config import TernSettings
from tern.models import LogbookHit

REINDEX_BATCH = 1000
FAILURES_KEPT = 50  # per-document failures a rebuild reports (all are counted)
MAX_BACKOFF_S = 60.0
BULK_MAX_BYTES = 5 * 1024 * 1024
"""Largest bulk request body sent, bytes (opensearch-py's ``max_chunk_bytes``; its default is 100 MB): Amazon
OpenSearch Service refuses requests over 10 MiB on small instances with 413 for the whole request
(``http.max_content_length`` is fixed there), and 1,536-dimension vectors make 500-document requests of
about 10 MB even at float32 precision."""

__all__ = [  # the request bodies and parsers live in opensearch_bodies; callers and tests take them from here
    "BULK_MAX_BYTES",
    "FAILURES_KEPT",
    "HAS_TEXT",
    "HIGHLIGHT",
    "MAX_ANALYZER_OFFSET",
    "MAX_BACKOFF_S",
    "REINDEX_BATCH",
    "RETRY_ON_CONFLICT",
    "SOURCE_FIELDS",
    "SQS_FLAGS",
    "TEXT_FIELDS",
    "OpenSearchBackend",
    "ReindexResult",
    "alias_swap_actions",
    "browse_body",
    "bulk_entry_actions",
    "bulk_vector_actions",
    "default_ef_search",
    "entry_document",
    "error_type",
    "filter_clauses",
    "float32_values",
    "fuzzy_body",
    "index_body",
    "keyword_body",
    "knn_body",
    "parse_hits",
    "simple_query",
    "vector_field",
    "vector_mapping",
]


_MAPPED: dict[str, set[tuple[str, str]]] = {}
"""Per cluster URL, the (index, model) pairs whose vector field this process has put in the mapping; shared by
the backends ``from_settings`` makes (one per activity), so the mapping is put once per process and index."""


class ReindexResult(BaseModel):
    """What ``reindex_from`` did (``tern ariel reindex --json``): the new index, the indices it replaced,
    documents and vectors (per model) acknowledged, the first ``FAILURES_KEPT`` refusals (entry id ->
    reason; those stay pending in PostgreSQL), their count, and the time taken in seconds."""

    index: str
    replaced: list[str] = []
    entries: int = 0
    vectors: dict[str, int] = {}
    failed: dict[str, str] = {}
    failed_count: int = 0
    seconds: float = 0.0

    def add_failures(self, report: IndexReport) -> None:
        self.failed_count += len(report.failed)
        for k, v in report.failed.items():
            if len(self.failed) < FAILURES_KEPT:
                self.failed[k] = v


class OpenSearchBackend:
    """Search on OpenSearch through ``opensearchpy.AsyncOpenSearch``.

    Args:
        client: an ``AsyncOpenSearch`` this backend owns (``close`` closes it); ``from_settings`` uses the shared
            one instead.
        alias: the alias searched (concrete indices are ``<alias>-<version>``).
        bulk_retries: times a bulk item refused with 429 is retried.
        bulk_backoff_s: first wait before such a retry, seconds (doubling, at most ``MAX_BACKOFF_S``).
        bulk_max_bytes: largest bulk request body, bytes (``BULK_MAX_BYTES``); keep it under the cluster's
            ``http.max_content_length``.
        replicas: replica shards of the indices it creates.
        ef_search: HNSW candidate queue of k-NN searches; None for ``max(100, 2 * k)`` (``knn_body``).
    """

    name = "opensearch"
    separate_index = True  # fed from PostgreSQL, the storage of record

    def __init__(
        self,
        client: Any,
        alias: str,
        *,
        bulk_retries: int = 5,
        bulk_backoff_s: float = 2.0,
        replicas: int = 0,
        ef_search: int | None = None,
        bulk_max_bytes: int = BULK_MAX_BYTES,
    ) -> None:
        self._client = client
        self._settings: TernSettings | None = None
        self.alias = alias
        self.ef_search = ef_search
        self.replicas = replicas
        self._mapped: set[tuple[str, str]] = set()  # (index, model) whose vector field is in the mapping
        self.bulk_retries = bulk_retries
        self.bulk_backoff_s = bulk_backoff_s
        self.bulk_max_bytes = bulk_max_bytes

    @classmethod
    def from_settings(cls, settings: TernSettings) -> OpenSearchBackend:
        """A backend on the process's shared client for these settings (``opensearch_client.shared_client``,
        taken on first use, so this may be called outside the event loop); ``close`` leaves that client open
        (``close_shared_clients`` closes it). Raises ``ValueError`` without ``opensearch_url``."""
        if not settings.ariel.opensearch_url:
            raise ValueError("the opensearch backend needs TERN_ARIEL__OPENSEARCH_URL")
        backend = cls(
            None,
            settings.ariel.opensearch_index,
            bulk_retries=settings.ariel.opensearch_bulk_retries,
            bulk_backoff_s=settings.ariel.opensearch_bulk_backoff_s,
            replicas=settings.ariel.opensearch_replicas,
            ef_search=settings.ariel.opensearch_ef_search,
        )
        backend._settings = settings
        backend._mapped = _MAPPED.setdefault(settings.ariel.opensearch_url, set())
        return backend

    @property
    def client(self) -> Any:
        """The ``AsyncOpenSearch`` client: the one given, or the shared one for the settings on the running
        loop (looked up on each use, so a backend outlives ``close_shared_clients`` and event loops)."""
        if self._client is not None:
            return self._client
        from tern.ariel.backends.opensearch_client import shared_client

        assert self._settings is not None
        return shared_client(self._settings)

    async def _connect(self) -> None:
        """Make the shared client, if this backend uses it and it is not made yet, off the event loop
        (``prepare_shared_client``: AWS credentials may take seconds). Called first by every request method."""
        if self._client is None:
            from tern.ariel.backends.opensearch_client import prepare_shared_client

            assert self._settings is not None
            await prepare_shared_client(self._settings)

    async def close(self) -> None:
        """Close the client when it was given to this backend; a shared client stays open for the others."""
        if self._client is not None:
            await self._client.close()

    async def _read(self, method: str, **kwargs: Any) -> Any:
        """``await self.client.<method>(index=self.alias, **kwargs)`` (``method``: ``search`` or ``count``), the
        client made first off the loop (``_connect``); ``index_not_found_exception`` (404: the alias does not
        exist before the first ingestion) raises ``SearchIndexMissing``."""
        from opensearchpy import NotFoundError

        await self._connect()
        try:
            return await getattr(self.client, method)(index=self.alias, **kwargs)
        except NotFoundError as exc:
            if error_type(exc) == "index_not_found_exception":
                raise SearchIndexMissing(f"no index or alias {self.alias!r}") from exc
            raise

    async def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        resp: dict[str, Any] = await self._read("search", body=body)
        return resp

    async def keyword(
        self, query: str, filters: SearchFilters | None = None, limit: int = 10, *, fusion: bool = False
    ) -> list[LogbookHit]:
        """Every-term BM25 matches, then any-term matches, else fuzzy matches (as the PostgreSQL backend).
        ``fusion`` changes nothing here (OpenSearch's BM25 top-k is cheap at any frequency). Raises
        ``SearchIndexMissing`` before the first ingestion (no alias yet)."""
        text = query.strip()
        if not text:
            return parse_hits(await self._search(browse_body(filters, limit)))
        hits = parse_hits(await self._search(keyword_body(text, filters, limit)))
        if len(hits) < limit and len(text.split()) > 1 and not re.search(r"(?<!\S)-", text):
            more = await self._search(
                keyword_body(text, filters, limit - len(hits), operator="or", exclude=[h.entry_id for h in hits])
            )
            hits += parse_hits(more)
        if hits:
            return hits
        return parse_hits(await self._search(fuzzy_body(text, filters, limit)))

    async def semantic(
        self,
        vector: Sequence[float],
        model: str,
        filters: SearchFilters | None = None,
        limit: int = 10,
        min_similarity: float = 0.0,
    ) -> list[LogbookHit] | None:
        """k-NN search; None when no document carries ``model``'s vector. Raises ``SearchIndexMissing`` before
        the first ingestion. One request when it finds hits: the query has ``ignore_unmapped`` (``knn_body``),
        and only an empty answer is followed by a count of the documents with the vector (and text)."""
        field = vector_field(model)
        hits = parse_hits(await self._search(knn_body(vector, model, filters, limit, self.ef_search)), cosine=True)
        if not hits:
            count = await self._read(
                "count", body={"query": {"bool": {"filter": [{"exists": {"field": field}}, HAS_TEXT]}}}
            )
            if not count.get("count"):
                return None
        return [h for h in hits if h.score >= min_similarity]

    @property
    def building_alias(self) -> str:
        """The alias a rebuild's new index carries until the swap; writes go to its indices too."""
        return f"{self.alias}-building"

    async def _write_indices(self) -> dict[str, list[str]]:
        """Where writes go: alias -> its concrete indices, for the alias and, during a rebuild, the new index's
        ``building_alias``; creates the first index when there is none. Bulk actions name the aliases, not the
        indices, and are sent with ``require_alias=true`` (``_bulk``): an index deleted after this lookup (a
        rebuild's swap or its cleanup after an error) fails those items with ``index_not_found_exception``
        (they stay pending) instead of being auto-created with dynamic mappings and no ``knn``.
        One ``GET _alias/<alias>*``, filtered here to the two names: a wildcard never answers 404
        (``RestGetAliasesAction`` reports only missing exact names), so the common case, no rebuild under way,
        costs no error response and no client warning."""
        await self._connect()
        found: dict[str, Any] = await self.client.indices.get_alias(name=f"{self.alias}*")
        targets: dict[str, list[str]] = {}
        for alias in (self.alias, self.building_alias):
            indices = sorted(i for i, v in found.items() if alias in (v or {}).get("aliases", {}))
            if indices:
                targets[alias] = indices
        if self.alias not in targets:
            targets[self.alias] = [await self.ensure_index()]
        return targets

    async def _concrete_indices(self, alias: str | None = None) -> list[str]:
        """The indices ``alias`` (default: the searched alias) points at, sorted; [] when it does not exist."""
        from opensearchpy import NotFoundError

        await self._connect()
        try:
            found = await self.client.indices.get_alias(name=alias or self.alias)
        except NotFoundError:
            return []
        return sorted(found.keys())

    async def ensure_index(self, vectors: dict[str, int] | None = None) -> str:
        """Make sure the alias points at an index; returns the concrete index.

        The first index has a fixed name, ``<alias>-1``, created together with its alias in one request, so two
        first ingestions racing cannot create two indices under one alias: the loser gets
        ``resource_already_exists_exception`` and uses the winner's. Raises ``RuntimeError`` when ``<alias>-1``
        exists without the alias (left by hand; ``tern ariel reindex`` repairs it)."""
        from opensearchpy import RequestError

        current = await self._concrete_indices()
        if current:
            return current[-1]
        index = f"{self.alias}-1"
        body = {**index_body(vectors, self.replicas), "aliases": {self.alias: {}}}
        try:
            await self.client.indices.create(index=index, body=body)
        except RequestError as exc:
            if error_type(exc) != "resource_already_exists_exception":
                raise
            if index not in await self._concrete_indices():
                raise RuntimeError(
                    f"OpenSearch index {index!r} exists but alias {self.alias!r} does not point at it; "
                    "rebuild with `tern ariel reindex`"
                ) from exc
        return index

    async def _bulk(self, actions: list[dict[str, Any]], *, refresh: bool = False) -> IndexReport:
        """Send bulk actions (each ``_index`` an alias) with ``async_streaming_bulk`` and ``require_alias=true``
        (Bulk API: every action must target an alias, so none auto-creates an index), in requests of at most
        ``bulk_max_bytes`` (the helper's ``max_chunk_bytes``). Items refused with 429 are retried
        ``bulk_retries`` times with exponential backoff from ``bulk_backoff_s`` (the helper's documented
        behaviour), every other item failure is reported per document instead of raised, so the caller knows
        which documents the index acknowledged. An id is indexed only when all its actions succeeded.
        No ``refresh=wait_for``: it would wait forever on a rebuild's index (``refresh_interval: -1``);
        documents become searchable within the index's refresh interval (1 s by default)."""
        from opensearchpy.helpers import async_streaming_bulk

        report = IndexReport()
        if not actions:
            return report
        await self._connect()
        ok_ids: dict[str, None] = {}
        async for ok, item in async_streaming_bulk(
            self.client,
            actions,
            max_retries=self.bulk_retries,
            initial_backoff=self.bulk_backoff_s,
            max_backoff=MAX_BACKOFF_S,
            raise_on_error=False,
            yield_ok=True,
            max_chunk_bytes=self.bulk_max_bytes,
            refresh=refresh,
            require_alias=True,
        ):
            info = next(iter(item.values()))
            entry_id = str(info.get("_id"))
            if ok:
                ok_ids[entry_id] = None
            else:
                err = info.get("error") or {}
                reason = f"{err.get('type', '?')}: {err.get('reason', '')}" if isinstance(err, dict) else str(err)
                report.failed[entry_id] = f"{info.get('status', '?')} {reason}"
        report.indexed = [i for i in ok_ids if i not in report.failed]
        return report

    async def index_entries(self, entries: Sequence[LogbookEntry]) -> IndexReport:
        """Upsert the entries' documents (see ``SearchBackend.index_entries``) in every index writes go to
        (``_write_indices``, through their aliases); an entry is acknowledged when all of them took it."""
        actions = [a for alias in await self._write_indices() for a in bulk_entry_actions(alias, entries)]
        return await self._bulk(actions)

    async def index_embeddings(
        self, model: str, entry_ids: Sequence[str], vectors: Sequence[Sequence[float]]
    ) -> IndexReport:
        """Upsert one model's vectors (see ``SearchBackend.index_embeddings``); adds the model's ``knn_vector``
        field to the index mapping first, once per index and model in this process (``_MAPPED``). An index
        without the field (made again by hand, after the process put it) refuses the vectors
        (``strict_dynamic_mapping_exception``, the indices are ``dynamic: strict``): they stay pending and the
        next push puts the mapping again."""
        actions: list[dict[str, Any]] = []
        for alias, indices in (await self._write_indices()).items():
            for index in indices:
                if vectors and (index, model) not in self._mapped:
                    await self.client.indices.put_mapping(
                        index=index, body={"properties": {vector_field(model): vector_mapping(len(vectors[0]))}}
                    )
                    self._mapped.add((index, model))
            actions += bulk_vector_actions(alias, model, entry_ids, vectors)
        report = await self._bulk(actions)
        if any("strict_dynamic_mapping_exception" in why for why in report.failed.values()):
            self._mapped.difference_update({pair for pair in self._mapped if pair[1] == model})
        return report

    async def reindex_from(
        self, pool: asyncpg.Pool, progress: Callable[[int, int], None] | None = None
    ) -> ReindexResult:
        """Build a new concrete index from PostgreSQL (documents with summaries and keywords, and every model's
        current vectors), swap the alias to it atomically, delete the old indices.

        While it builds, the new index carries the alias ``<alias>-building``, so ingestion writes go to the old
        and the new index alike (``_write_indices``) and nothing written during the rebuild is lost with the old
        index; the new index is built with ``refresh_interval: -1`` and refreshed once at the end. Documents it
        copied are marked acknowledged in PostgreSQL. ``progress(done, total)`` is called after each batch.
        On an error the half-built index is deleted and the error raised (the old index keeps serving); one
        left by a killed rebuild is deleted by the next. Run one rebuild at a time.
        """
        started = time.monotonic()
        async with pool.acquire() as conn:
            models = {
                r["model"]: (r["dim"], r["table_name"])
                for r in await conn.fetch("SELECT model, dim, table_name FROM ariel_embedding_models")
            }
            total = int(await conn.fetchval("SELECT count(*) FROM ariel_entries"))
            old = await self._concrete_indices()
            for stale in set(await self._concrete_indices(self.building_alias)) - set(old):
                await self.client.indices.delete(index=stale, ignore_unavailable=True)  # a killed rebuild's
            index = f"{self.alias}-{time.time_ns() // 1_000_000}"
            body = index_body({m: d for m, (d, _) in models.items()}, self.replicas)
            body["settings"]["index"]["refresh_interval"] = "-1"
            body["aliases"] = {self.building_alias: {}}
            await self.client.indices.create(index=index, body=body)
            result = ReindexResult(index=index, replaced=old, vectors={m: 0 for m in models})
            building = self.building_alias  # writes go through the alias (``require_alias``), as ingestion's
            try:
                after = ""
                while batch := await store.index_documents_after(conn, after, REINDEX_BATCH):
                    after = batch[-1][0].entry_id
                    rep = await self._bulk(bulk_entry_actions(building, [e for e, _ in batch]), refresh=False)
                    result.add_failures(rep)
                    done = set(rep.indexed)
                    await store.mark_entries_indexed(conn, [(e.entry_id, h) for e, h in batch if e.entry_id in done])
                    result.entries += len(done)
                    for model, (_dim, table) in models.items():
                        rows = await store.current_vectors(conn, table, [e.entry_id for e, _ in batch])
                        rep = await self._bulk(
                            bulk_vector_actions(building, model, [i for i, _, _ in rows], [v for _, _, v in rows]),
                            refresh=False,
                        )
                        result.add_failures(rep)
                        done = set(rep.indexed)
                        await store.mark_vectors_indexed(conn, table, [(i, h) for i, h, _ in rows if i in done])
                        result.vectors[model] += len(done)
                    if progress:
                        progress(min(total, result.entries + len(result.failed)), total)
                await self.client.indices.put_settings(index=index, body={"index": {"refresh_interval": None}})
                await self.client.indices.refresh(index=index)
                swap = alias_swap_actions(self.alias, old, index)
                swap["actions"].append({"remove": {"index": index, "alias": self.building_alias}})
                await self.client.indices.update_aliases(body=swap)
            except BaseException:
                await self.client.indices.delete(index=index, ignore_unavailable=True)
                raise
        for i in old:
            await self.client.indices.delete(index=i, ignore_unavailable=True)
        result.seconds = round(time.monotonic() - started, 3)
        return result
