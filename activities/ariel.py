"""ARIEL activities: thin adapters over ``tern.ariel`` that heartbeat and turn failures into ``ApplicationError``.

Non-retryable (retrying cannot help): ``AdapterError`` (unknown adapter, missing or malformed source, HTTP 4xx),
``EnhancementUnavailable`` (the configured or requested embedding model cannot be loaded) and
``EmbeddingDimensionMismatch`` (the model's vectors have another dimension than those stored under its name).
Retryable: a source that keeps failing (``SourceUnavailable``), embedding or LLM endpoints that fail, database errors.

Register with the worker: ``activities=[*other, *ariel_activities(settings, pool)]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from tern.ariel import store
from tern.ariel.adapters import AdapterError, SourceUnavailable
from tern.ariel.backends.base import SearchBackend
from tern.ariel.embeddings import EmbeddingError, EmbeddingProvider
from tern.ariel.ingest import adapter_options, embed_pending, ingest_page, summarize_pending
from tern.ariel.providers import CONFIGURED, Providers, configured_embedder
from tern.ariel.service import make_backend
from tern.ariel.store import DimensionMismatch
from tern.config import TernSettings
from tern.llm import ChatProvider, LLMError
from tern.models.ariel import (
    EnhanceInput,
    EnhanceResult,
    IngestionRun,
    IngestPageInput,
    PageResult,
    ReembedInput,
    ReembedStep,
)

HEARTBEAT_EVERY_S = 5.0  # a page can wait on a slow source


class ArielActivities:
    """Activities over one pool.

    Args:
        settings: Tern settings (backend, embedding provider, LLM, HTTP adapter options).
        pool: asyncpg pool on the storage of record.
        embedder, llm: as in ``tern.ariel.providers.Providers``: ``CONFIGURED`` (default), None for none, or
            a provider (tests pass their own).
        backend: a search backend; default from ``settings.ariel.backend``.
    """

    def __init__(
        self,
        settings: TernSettings,
        pool: asyncpg.Pool,
        *,
        embedder: EmbeddingProvider | None = CONFIGURED,
        llm: ChatProvider | None = CONFIGURED,
        backend: SearchBackend | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.providers = Providers(settings, embedder=embedder, llm=llm)
        self.backend = backend or make_backend(settings, pool)

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.record_run, self.ingest_page, self.embed, self.summarize, self.reembed]

    @property
    def _separate_index(self) -> SearchBackend | None:
        """The backend when ingestion must feed it (its own index beside PostgreSQL), else None."""
        return self.backend if self.backend.separate_index else None

    async def _embedder(self) -> EmbeddingProvider | None:
        try:
            return await self.providers.embedder()
        except EmbeddingError as exc:
            raise ApplicationError(str(exc), type="EnhancementUnavailable", non_retryable=True) from exc

    @activity.defn(name="ariel_record_run")
    async def record_run(self, run: IngestionRun) -> None:
        """Create or update the run's row in ``ingestion_runs``; when a run completes having added or updated
        entries, refresh the table statistics (keyword search takes its BM25 document frequencies from them)."""
        async with self.pool.acquire() as conn:
            await store.record_run(conn, run)
            if run.status == "completed" and (run.counts.added or run.counts.updated):
                await store.refresh_statistics(conn)

    @activity.defn(name="ariel_ingest_page")
    async def ingest_page(self, inp: IngestPageInput) -> PageResult:
        """Read one page after ``inp.cursor`` and upsert it (and index it in a separate index, e.g. OpenSearch)."""
        opts = adapter_options(self.settings, id_prefix=inp.id_prefix, now=inp.now, since=inp.since, until=inp.until)
        backend = self._separate_index
        try:
            async with heartbeating(HEARTBEAT_EVERY_S, lambda: inp.cursor):
                return await ingest_page(
                    self.pool, inp.adapter, inp.source, inp.cursor, inp.page_size, opts, backend, inp.with_total
                )
        except AdapterError as exc:
            raise ApplicationError(str(exc), type="AdapterError", non_retryable=True) from exc
        except SourceUnavailable as exc:
            raise ApplicationError(str(exc), type="SourceUnavailable") from exc

    @activity.defn(name="ariel_embed")
    async def embed(self, inp: EnhanceInput) -> EnhanceResult:
        """Embed up to ``max_batches`` batches of entries without a current embedding (resumable)."""
        emb = await self._embedder()
        if emb is None:
            return EnhanceResult(kind="embeddings", notice="no embedding provider is configured")
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done = n

        backend = self._separate_index
        try:
            async with heartbeating(HEARTBEAT_EVERY_S, lambda: done):
                return await embed_pending(
                    self.pool, emb, inp.batch_size, inp.max_batches, backend=backend, on_batch=progress
                )
        except EmbeddingError as exc:
            raise ApplicationError(str(exc), type="EmbeddingError") from exc
        except DimensionMismatch as exc:
            raise ApplicationError(str(exc), type="EmbeddingDimensionMismatch", non_retryable=True) from exc

    @activity.defn(name="ariel_reembed")
    async def reembed(self, inp: ReembedInput) -> ReembedStep:
        """Embed up to ``max_batches`` batches of entries lacking a current vector of ``inp.provider``/``model``
        (built once per worker process; ``openai`` uses the worker's ``embedding_url`` and key)."""
        settings = self.settings.model_copy(
            update={
                "ariel": self.settings.ariel.model_copy(
                    update={"embedding_provider": inp.provider, "embedding_model": inp.model}
                )
            }
        )
        try:
            emb = await configured_embedder(settings)
        except EmbeddingError as exc:
            raise ApplicationError(str(exc), type="EnhancementUnavailable", non_retryable=True) from exc
        assert emb is not None  # provider is never "none" here (ReembedInput)
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done = n

        try:
            async with heartbeating(HEARTBEAT_EVERY_S, lambda: done):
                r = await embed_pending(
                    self.pool, emb, inp.batch_size, inp.max_batches, backend=self._separate_index, on_batch=progress
                )
        except EmbeddingError as exc:
            raise ApplicationError(str(exc), type="EmbeddingError") from exc
        except DimensionMismatch as exc:
            raise ApplicationError(str(exc), type="EmbeddingDimensionMismatch", non_retryable=True) from exc
        async with self.pool.acquire() as conn:
            total = await store.count_entries(conn)
        return ReembedStep(stored_as=emb.model, processed=r.processed, remaining=r.remaining, total=total)

    @activity.defn(name="ariel_summarize")
    async def summarize(self, inp: EnhanceInput) -> EnhanceResult:
        """Keywords and a summary from the LLM for up to ``batch_size`` entries (resumable)."""
        llm = self.providers.llm
        if llm is None:
            return EnhanceResult(kind="summaries", notice="no LLM is configured")
        try:
            async with heartbeating(HEARTBEAT_EVERY_S):
                return await summarize_pending(self.pool, llm, inp.batch_size, backend=self._separate_index)
        except LLMError as exc:
            raise ApplicationError(str(exc), type="LLMError") from exc


def ariel_activities(settings: TernSettings, pool: asyncpg.Pool, **kwargs: Any) -> list[Callable[..., Any]]:
    """The ARIEL activity callables to register on the Tern worker (``kwargs``: see ``ArielActivities``)."""
    return ArielActivities(settings, pool, **kwargs).all()
