"""The interface every ARIEL search backend implements (PostgreSQL, OpenSearch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters
from tern.models import LogbookHit


@dataclass
class IndexReport:
    """What a separate index acknowledged in one write: ``indexed`` entry ids (every write to them succeeded)
    and ``failed`` entry id -> reason (e.g. ``"429 es_rejected_execution_exception: ..."`` after the retries,
    or a mapping error). Failed documents stay pending in the storage of record and are pushed again later."""

    indexed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


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

    async def keyword(
        self, query: str, filters: SearchFilters | None = None, limit: int = 10, *, fusion: bool = False
    ) -> list[LogbookHit]:
        """Keyword hits, best first. ``fusion``: the hits are candidates for rank fusion (hybrid search), so
        the backend may rank a bounded set of the matches rather than all of them (PostgreSQL: its
        ``keyword_window``; OpenSearch ranks all of them either way)."""
        ...

    async def semantic(
        self,
        vector: Sequence[float],
        model: str,
        filters: SearchFilters | None = None,
        limit: int = 10,
        min_similarity: float = 0.0,
    ) -> list[LogbookHit] | None: ...

    async def ensure_index(self, vectors: dict[str, int] | None = None) -> str:
        """Make sure the index exists (idempotent, safe to race); returns its name. ``vectors``: model ->
        dimension of vector fields to create with it. The PostgreSQL backend's index is its table."""
        ...

    async def index_entries(self, entries: Sequence[LogbookEntry]) -> IndexReport:
        """Make entries searchable as given (the full documents, summary and keywords included, read from the
        storage of record); no-op where the storage of record is the index. Per-document failures are in the
        report; a failure of the whole request (cluster unreachable) raises."""
        ...

    async def index_embeddings(
        self, model: str, entry_ids: Sequence[str], vectors: Sequence[Sequence[float]]
    ) -> IndexReport:
        """Make one model's vectors of these entries searchable (upserts: the entry's text may arrive later);
        no-op where the storage of record is the index. Failures as ``index_entries``."""
        ...
