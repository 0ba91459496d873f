"""Logbook search results, and drafted and published logbook entries, as they travel through workflow history
(small: ids, titles, snippets, artifact references)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

SearchMode = Literal["keyword", "semantic", "hybrid", "rag"]


class LogbookHit(BaseModel):
    """One ranked logbook entry. ``score`` is backend- and mode-specific (higher is better): BM25 for keyword
    (word similarity for the typo fallback), cosine similarity for semantic, the RRF sum for hybrid and RAG."""

    entry_id: str
    title: str
    author: str = ""
    timestamp: datetime | None = None
    score: float = 0.0
    snippet: str = ""
    highlights: list[str] = []


class SearchResponse(BaseModel):
    """The answer of one ARIEL search.

    ``mode`` is what was asked, ``mode_used`` what actually ran (semantic and hybrid fall back to keyword when
    no embeddings exist; rag falls back to hybrid when no LLM is configured); ``notice`` then says why.
    ``answer`` and ``citations`` are set by RAG only: citations are the ``[#entry_id]`` references of the answer
    that were found in the retrieved context; ``invalid_citations`` are those that were not.
    ``embedding_model`` names the model whose vectors ranked the semantic part ("" when none did).
    """

    query: str
    mode: SearchMode
    mode_used: SearchMode
    hits: list[LogbookHit] = Field(default_factory=list)
    notice: str = ""
    answer: str = ""
    citations: list[str] = Field(default_factory=list)
    invalid_citations: list[str] = Field(default_factory=list)
    embedding_model: str = ""


MAX_ENTRY_TEXT_CHARS = 50_000  # of a drafted entry: the step's text and the summaries of the steps it names
EMBEDDED_TARGET = "embedded"
"""``logbook.publish_target`` of the embedded logbook (the ARIEL store); any other value names an adapter."""


class DraftAttachment(BaseModel):
    """A file attached to a drafted entry, by reference: an artifact of the run (``tern artifact ID``)."""

    artifact_id: str
    name: str = ""
    media_type: str = ""
    size_bytes: int = Field(0, ge=0, description="Size of the content, bytes.")


class LogbookDraft(BaseModel):
    """A logbook entry as drafted by a ``logbook_publish`` step and shown to the approver before it is published.

    ``target`` is where it will go (``"embedded"`` or an adapter name, from ``logbook.publish_target``);
    ``entry_id`` is the embedded logbook's id of the entry (derived from ``workflow_id`` and ``step_id``: a
    retried publish upserts the same row), "" for a facility logbook (whose server assigns the id).
    """

    workflow_id: str
    step_id: str
    target: str
    entry_id: str = ""
    author: str
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(max_length=MAX_ENTRY_TEXT_CHARS)
    tags: list[str] = []
    attachments: list[DraftAttachment] = []


class LogbookPublication(BaseModel):
    """A published entry: where, under which id, after whose approval. ``duplicate`` is True when the entry had
    already been published for this run and step (a retried activity) and nothing was sent again."""

    target: str
    entry_id: str = Field(description="The embedded entry id, or the facility logbook's message id.")
    url: str = Field("", description="Where the facility logbook shows the entry, when it says.")
    title: str
    attachments: list[str] = Field([], description="Artifact ids attached.")
    approved_by: str = ""
    published_at: datetime
    duplicate: bool = False
