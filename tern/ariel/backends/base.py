"""The interface every ARIEL search backend implements (PostgreSQL, OpenSearch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters
from tern.models import LogbookHit


class SearchIndexMissing(LookupError):
    """The backend's search index does not exist yet: nothing has been ingested into it (OpenSearch answers
    ``index_not_found_exception`` for its alias). Search answers no hits and says so in its notice, as the
    PostgreSQL backend does on an empty table."""


@runtime_checkable
class SearchBackend(Protocol):
    """Keyword and vector retrieval over logbook entries. Scores: higher is better, comparable within a call.

    ``keyword`` takes full text in web-search syntax (quoted phrases, ``or``, ``-term``) and ranks titles
    above body text; it returns highlights with matches wrapped in ``**``. ``semantic`` ranks by cosine
    similarity to ``vector`` and returns None (not an empty list) when no embeddings of ``model`` exist, so
    that callers can degrade to keyword search with a notice. Both raise ``SearchIndexMissing`` when the
    backend's index does not exist yet.

    Attributes:
        name: a label for messages and logs (``"postgres"``, ``"opensearch"``); never branch on it.
        separate_index: True when the backend searches an index of its own beside the PostgreSQL storage of
            record (OpenSearch), so ingestion must push entries and vectors to it (``index_entries``,
            ``index_embeddings``); False when the storage of record is the index (PostgreSQL).
    """

    name: str
    separate_index: bool

    async def keyword(self, query: str, filters: SearchFilters | None = None, limit: int = 10) -> list[LogbookHit]: ...

    async def semantic(
        self,
        vector: Sequence[float],
        model: str,
        filters: SearchFilters | None = None,
        limit: int = 10,
        min_similarity: float = 0.0,
    ) -> list[LogbookHit] | None: ...

    async def index_entries(self, entries: Sequence[LogbookEntry]) -> int:
        """Make entries searchable (no-op where the storage of record is the index); returns the count."""
        ...

    async def index_embeddings(
        self, model: str, entries: Sequence[LogbookEntry], vectors: Sequence[Sequence[float]]
    ) -> int:
        """Make vectors searchable (no-op where the storage of record is the index); returns the count."""
        ...
