"""Logbook search results as they travel through workflow history (small: ids, titles, snippets)."""

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
