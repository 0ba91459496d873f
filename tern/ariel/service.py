"""The ARIEL search service: one entry point for keyword, semantic, hybrid and RAG search on any backend.

Degradation is explicit, never an error: semantic and hybrid search without an embedding provider, with a
provider that cannot load (model package missing, unknown model name), without stored vectors of the
provider's model, with stored vectors of another dimension under its name, or with a failing embedding
endpoint answer with keyword search and say why in ``SearchResponse.notice``, naming the setting and the fix;
RAG without an LLM (or with a failing one) answers with the hybrid hits; a backend whose index does not exist yet
(OpenSearch before the first ingestion) answers no hits with a notice.

Vectors of different models are never mixed: a query embedded with model X is compared with the vectors
stored under X only (one table per model, ``tern.ariel.store``); when X has none but other models do, the
notice says so and names the fix, ``tern ariel reembed``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from tern import metrics, tracing
from tern.ariel import rag, store
from tern.ariel.backends.base import SearchBackend, SearchIndexMissing
from tern.ariel.backends.postgres import PostgresBackend
from tern.ariel.embeddings import EmbeddingError, EmbeddingProvider
from tern.ariel.fusion import rrf
from tern.ariel.providers import CONFIGURED, Providers
from tern.ariel.providers import configured_embedder as configured_embedder  # re-export: tern ariel CLI
from tern.ariel.query import SearchFilters, parse_query
from tern.config import TernSettings
from tern.llm import ChatProvider, LLMError
from tern.models import LogbookHit, SearchMode, SearchResponse

MODES: tuple[SearchMode, ...] = ("keyword", "semantic", "hybrid", "rag")
HYBRID_CANDIDATES_MIN = 30  # each ranking fused by RRF contributes at least this many candidates
RAG_RETRIEVE_MIN = 8  # entries retrieved for a RAG context, at least


def make_backend(settings: TernSettings, db: asyncpg.Pool | store.Conn) -> SearchBackend:
    """The search backend chosen by ``settings.ariel.backend`` (PostgreSQL needs ``db``; OpenSearch uses the
    process's shared client, see ``tern.ariel.backends.opensearch_client``)."""
    if settings.ariel.backend == "opensearch":
        from tern.ariel.backends.opensearch import OpenSearchBackend

        return OpenSearchBackend.from_settings(settings)
    return PostgresBackend(
        db,
        ef_search=settings.ariel.hnsw_ef_search,
        max_scan_tuples=settings.ariel.hnsw_max_scan_tuples,
        keyword_window=settings.ariel.hybrid_keyword_window,
    )


class ArielService:
    """Search over the logbook.

    Args:
        settings: Tern settings (backend, embedding provider, RRF k, RAG limits).
        db: asyncpg pool or connection to the storage of record.
        backend: a search backend; default from ``settings.ariel.backend``.
        embedder: an embedding provider, None for none; default (``CONFIGURED``) from
            ``settings.ariel.embedding_provider``, built on first use (``tern.ariel.providers``).
        llm: a chat provider, None for none; default (``CONFIGURED``) from ``settings.llm.provider``.
    """

    def __init__(
        self,
        settings: TernSettings,
        db: asyncpg.Pool | store.Conn,
        *,
        backend: SearchBackend | None = None,
        embedder: EmbeddingProvider | None = CONFIGURED,
        llm: ChatProvider | None = CONFIGURED,
    ) -> None:
        self.settings = settings
        self.db = db
        self.backend = backend or make_backend(settings, db)
        self.providers = Providers(settings, embedder=embedder, llm=llm)

    async def aclose(self) -> None:
        """Release what the service opened: with the OpenSearch backend made from the settings, the process's
        shared OpenSearch clients (``close_shared_clients``); a backend given by the caller is the caller's."""
        if self.settings.ariel.backend == "opensearch":
            from tern.ariel.backends.opensearch_client import close_shared_clients

            await close_shared_clients()

    async def _semantic(
        self, text: str, filters: SearchFilters, limit: int
    ) -> tuple[list[LogbookHit] | None, str, str]:
        """``(semantic hits, "", model)``, or ``(None, why not, "")``."""
        if not text:
            return None, "semantic search needs query text", ""
        try:
            emb = await self.providers.embedder()
        except EmbeddingError as exc:
            return None, f"embedding provider unavailable ({exc})", ""
        if emb is None:
            return None, "no embedding provider is configured (TERN_ARIEL__EMBEDDING_PROVIDER=none)", ""
        stored = await self._stored_models()
        if emb.model not in stored:
            return None, self._not_stored(emb.model, stored), ""
        if emb.dim and stored[emb.model] != emb.dim:
            return None, str(store.DimensionMismatch(emb.model, stored[emb.model], emb.dim)), ""
        try:
            [vec] = await emb.embed([text])
        except EmbeddingError as exc:
            return None, f"the query could not be embedded ({exc})", ""
        hits = await self.backend.semantic(
            vec, emb.model, filters, limit, min_similarity=self.settings.ariel.semantic_min_similarity
        )
        if hits is None:
            return None, f"no embeddings of model {emb.model!r} are stored yet (run ingestion with enhancement)", ""
        return hits, "", emb.model

    async def _stored_models(self) -> dict[str, int]:
        if isinstance(self.db, asyncpg.Pool):
            async with self.db.acquire() as conn:
                return await store.embedding_models(conn)
        return await store.embedding_models(self.db)

    def _not_stored(self, model: str, stored: dict[str, int]) -> str:
        """Why there is nothing to compare a query vector of ``model`` with, and the fix."""
        fix = (
            f"run `tern ariel reembed --model {self.settings.ariel.embedding_model} --provider "
            f"{self.settings.ariel.embedding_provider}` to embed the stored entries with it"
        )
        if not stored:
            return f"no embeddings of model {model!r} are stored yet (run ingestion with enhancement, or {fix})"
        others = ", ".join(f"{m!r} ({d} dims)" for m, d in stored.items())
        return f"no embeddings of model {model!r} are stored, only of {others}, and models are never mixed: {fix}"

    async def _hybrid(self, text: str, filters: SearchFilters, limit: int) -> tuple[list[LogbookHit], str, str]:
        """``(RRF of keyword and semantic rankings, "", model)``; keyword alone with why when semantic is
        unavailable."""
        n = max(HYBRID_CANDIDATES_MIN, 3 * limit)
        keyword, (semantic, why, model) = await asyncio.gather(
            self.backend.keyword(text, filters, n, fusion=True), self._semantic(text, filters, n)
        )
        if semantic is None:
            return keyword[:limit], why, ""
        return rrf([keyword, semantic], k=self.settings.ariel.rrf_k, limit=limit), "", model

    async def search(
        self, query: str, mode: SearchMode = "keyword", limit: int = 5, filters: SearchFilters | None = None
    ) -> SearchResponse:
        """Search the logbook.

        Args:
            query: text in web-search syntax, with optional operators (``author:``, ``tag:``, ``date:``...,
                see ``tern.ariel.query``).
            mode: keyword, semantic, hybrid (RRF, k = ``settings.ariel.rrf_k``) or rag.
            limit: the most hits returned (1..100).
            filters: filters added to those typed in the query (explicit ones win).

        Raises:
            ValueError: unknown mode, limit out of range, or a malformed operator (``QueryError``).
        """
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; modes: {', '.join(MODES)}")
        if not 1 <= limit <= 100:
            raise ValueError(f"limit must be between 1 and 100, got {limit}")
        started = time.perf_counter()
        try:
            with tracing.span("ariel.search", {"ariel.mode": mode, "ariel.limit": limit}) as span:
                resp = await self._search(query, mode, limit, filters)
                span.set_attributes({"ariel.mode_used": resp.mode_used, "ariel.hits": len(resp.hits)})
                return resp
        finally:
            metrics.ariel_search.labels(mode=mode).observe(time.perf_counter() - started)

    async def _search(self, query: str, mode: SearchMode, limit: int, filters: SearchFilters | None) -> SearchResponse:
        text, parsed = parse_query(query)
        f = parsed.merged(filters) if filters else parsed
        resp = SearchResponse(query=query, mode=mode, mode_used=mode)
        try:
            await self._dispatch(text, f, limit, resp)
        except SearchIndexMissing as exc:
            resp.hits, resp.answer, resp.citations, resp.invalid_citations = [], "", [], []
            resp.notice = f"The {self.backend.name} search index does not exist yet ({exc}): nothing has been "
            resp.notice += "ingested into it, so there are no hits."
        return resp

    async def _dispatch(self, text: str, f: SearchFilters, limit: int, resp: SearchResponse) -> None:
        mode = resp.mode
        if mode == "keyword":
            resp.hits = await self.backend.keyword(text, f, limit)
        elif mode == "semantic":
            hits, why, resp.embedding_model = await self._semantic(text, f, limit)
            if hits is None:
                resp.hits, resp.mode_used = await self.backend.keyword(text, f, limit), "keyword"
                resp.notice = f"Semantic search unavailable: {why}; showing keyword results."
            else:
                resp.hits = hits
        elif mode == "hybrid":
            resp.hits, why, resp.embedding_model = await self._hybrid(text, f, limit)
            if why:
                resp.mode_used, resp.notice = "keyword", f"Hybrid search used keyword search only: {why}."
        else:
            await self._rag(text, f, limit, resp)

    async def _rag(self, text: str, f: SearchFilters, limit: int, resp: SearchResponse) -> None:
        hits, why, resp.embedding_model = await self._hybrid(text, f, max(limit, RAG_RETRIEVE_MIN))
        notices = [f"Retrieval used keyword search only: {why}."] if why else []
        retrieval_mode: SearchMode = "keyword" if why else "hybrid"
        llm = self.providers.llm
        if llm is None:
            resp.hits, resp.mode_used = hits[:limit], retrieval_mode
            resp.notice = " ".join(
                [*notices, "No LLM is configured (TERN_LLM__PROVIDER=none): showing the retrieved entries."]
            )
            return
        entries = await self._entries([h.entry_id for h in hits])
        context, ids = rag.build_context(
            [entries[h.entry_id] for h in hits if h.entry_id in entries],
            self.settings.ariel.rag_context_chars,
            self.settings.ariel.rag_entry_chars,
        )
        if not ids:
            resp.hits, resp.mode_used = [], retrieval_mode
            resp.notice = " ".join([*notices, "No logbook entries matched, so there is nothing to answer from."])
            return
        try:
            answer = await llm.complete(rag.messages(text, context))
        except LLMError as exc:
            resp.hits, resp.mode_used = hits[:limit], retrieval_mode
            resp.notice = " ".join([*notices, f"The LLM failed ({exc}): showing the retrieved entries."])
            return
        resp.answer = answer
        resp.citations, resp.invalid_citations = rag.check_citations(answer, ids)
        in_context = set(ids)
        resp.hits = [h for h in hits if h.entry_id in in_context][:limit]
        if resp.invalid_citations:
            notices.append(
                "The answer cites entries that were not in its context: "
                + ", ".join(f"[#{c}]" for c in resp.invalid_citations)
                + "."
            )
        if not resp.citations:
            notices.append("The answer cites no logbook entry.")
        resp.notice = " ".join(notices)

    async def _entries(self, ids: Sequence[str]) -> dict[str, Any]:
        if isinstance(self.db, asyncpg.Pool):
            async with self.db.acquire() as conn:
                return await store.get_entries(conn, ids)
        return await store.get_entries(self.db, ids)


async def search(
    db: asyncpg.Pool | store.Conn,
    settings: TernSettings,
    query: str,
    mode: SearchMode = "keyword",
    limit: int = 5,
    filters: SearchFilters | None = None,
    **service_kwargs: Any,
) -> SearchResponse:
    """One search with the configured backend, embedder and LLM: ``ArielService(...).search(...)``.

    This is the call for the agent's ``logbook_search`` activity: ``(await search(pool, settings, step.query,
    limit=step.limit)).hits`` are ``LogbookHit`` objects ready for workflow history.
    """
    return await ArielService(settings, db, **service_kwargs).search(query, mode, limit, filters)
