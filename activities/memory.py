"""Activities of ``memory`` steps and of the answer composer's memory context: per-user notes through
:mod:`tern.memory.store`.

Embeddings come from the configured provider (ARIEL's, :mod:`tern.ariel.providers`); when it cannot be set up
the note is stored and searched by keyword only, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity

from tern.ariel.embeddings import EmbeddingError, EmbeddingProvider
from tern.ariel.providers import CONFIGURED, Providers
from tern.config import TernSettings
from tern.memory.store import add_memory, search_memories
from tern.models.memory import Memory, MemoryAddInput, MemoryPolicy, MemorySearchInput

log = logging.getLogger(__name__)


class MemoryActivities:
    """Activities bound to one worker's settings (memory approval mode, embedding provider) and pool.

    Args:
        settings: the worker's settings.
        pool: asyncpg pool.
        embedder: an embedding provider, None for keyword only, or ``CONFIGURED`` (the settings' provider).
    """

    def __init__(self, settings: TernSettings, pool: asyncpg.Pool, embedder: EmbeddingProvider | None = CONFIGURED):
        self.settings = settings
        self.pool = pool
        self._providers = Providers(settings, embedder=embedder, llm=None)

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.memory_policy, self.remember, self.recall]

    async def _embedder(self) -> EmbeddingProvider | None:
        try:
            return await self._providers.embedder()
        except EmbeddingError as exc:
            log.warning("memory: embeddings unavailable, keyword only: %s", exc)
            return None

    @activity.defn(name="memory_policy")
    async def memory_policy(self) -> MemoryPolicy:
        """The worker's ``memory_approval_mode``."""
        return MemoryPolicy(approval_mode=self.settings.memory.approval_mode)

    @activity.defn(name="remember")
    async def remember(self, inp: MemoryAddInput) -> Memory:
        """Store one note (idempotent under ``idem_key``)."""
        emb = await self._embedder()
        try:
            return await add_memory(
                self.pool,
                inp.user,
                inp.text,
                source=inp.source,
                idem_key=inp.idem_key,
                embedder=emb,
                workflow_id=inp.workflow_id,
            )
        except EmbeddingError:
            return await add_memory(
                self.pool, inp.user, inp.text, source=inp.source, idem_key=inp.idem_key, workflow_id=inp.workflow_id
            )

    @activity.defn(name="recall")
    async def recall(self, inp: MemorySearchInput) -> list[Memory]:
        """The user's notes most relevant to the query (only that user's); ``limit`` None: the worker's
        ``memory_context_limit`` (0: none)."""
        limit = inp.limit if inp.limit is not None else self.settings.memory.context_limit
        if limit < 1:
            return []
        emb = await self._embedder()
        try:
            return await search_memories(self.pool, inp.user, inp.query, limit=limit, embedder=emb)
        except EmbeddingError:
            return await search_memories(self.pool, inp.user, inp.query, limit=limit)
