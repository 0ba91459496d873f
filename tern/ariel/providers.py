"""The embedding provider and LLM an ARIEL caller uses: given explicitly, or the configured ones.

``ArielService`` (search) and ``ArielActivities`` (ingestion) take ``embedder=`` and ``llm=`` arguments with
three meanings: ``CONFIGURED`` (the default) builds the one ``TernSettings`` configures, None means none (search
degrades to keyword, enhancement is skipped), anything else is used as given (tests pass their own).
``Providers`` holds that choice. The LLM client is built at once (building it opens no connection); the
embedder on first use, and at most once per process per configuration (``configured_embedder``), because
loading a local model takes seconds.
"""

from __future__ import annotations

from typing import Any

from tern.ariel.embeddings import EmbeddingError, EmbeddingProvider, make_embedder
from tern.config import TernSettings
from tern.llm import ChatProvider, make_chat_provider

CONFIGURED: Any = object()  # "the one the settings configure" (a sentinel: None already means "none")
_embedder_cache: dict[tuple[str, str, str | None], EmbeddingProvider] = {}


async def configured_embedder(settings: TernSettings) -> EmbeddingProvider | None:
    """The embedding provider ``settings`` configure (None for 'none'), built once per process per
    (provider, model, URL).

    Raises ``EmbeddingError`` when it cannot be set up (a later call tries again).
    """
    key = (settings.ariel.embedding_provider, settings.ariel.embedding_model, settings.ariel.embedding_url)
    if settings.ariel.embedding_provider == "none":
        return None
    if key not in _embedder_cache:
        emb = await make_embedder(settings)
        assert emb is not None
        _embedder_cache[key] = emb
    return _embedder_cache[key]


class Providers:
    """One caller's embedder and LLM.

    Args:
        settings: Tern settings (``embedding_*`` and ``llm_*``).
        embedder: an embedding provider, None for none, or ``CONFIGURED`` (built on first ``embedder()``).
        llm: a chat provider, None for none, or ``CONFIGURED`` (built now from ``settings``).
    """

    def __init__(
        self,
        settings: TernSettings,
        embedder: EmbeddingProvider | None = CONFIGURED,
        llm: ChatProvider | None = CONFIGURED,
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self.embedder_error = ""  # why the configured embedder could not be built, the last time it was tried
        self.llm: ChatProvider | None = make_chat_provider(settings) if llm is CONFIGURED else llm

    async def embedder(self) -> EmbeddingProvider | None:
        """The embedder, built from the settings on the first call when it is ``CONFIGURED``.

        Raises ``EmbeddingError`` when the configured provider cannot be set up (the next call tries again).
        """
        if self._embedder is CONFIGURED:
            try:
                self._embedder = await configured_embedder(self.settings)
            except EmbeddingError as exc:
                self.embedder_error = str(exc)
                raise
            self.embedder_error = ""
        return self._embedder

    def embedder_state(self) -> dict[str, Any]:
        """``{"loaded": bool, "model": name vectors are stored under or None, "error": str}`` without building
        anything (``/health`` of the ARIEL API, ``tern status``)."""
        emb = self._embedder
        if emb is CONFIGURED or emb is None:
            return {"loaded": False, "model": None, "error": self.embedder_error}
        return {"loaded": True, "model": emb.model, "error": ""}
