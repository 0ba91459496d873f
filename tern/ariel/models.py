"""Logbook entries as stored by ARIEL (timestamps are timezone-aware UTC).

The small records of ingestion (``IngestionRun``, ``UpsertCounts``, ``BadRecordInfo``) cross the workflow boundary,
so they are defined in ``tern.models.ariel`` and re-exported here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from tern.models.ariel import BadRecordInfo, IngestionRun, RunStatusName, UpsertCounts


class Attachment(BaseModel):
    """A file attached to a logbook entry (stored by reference: ``url`` points at the logbook's copy)."""

    url: str = ""
    type: str = ""
    filename: str = ""
    thumbnail: str = ""
    caption: str = ""


class LogbookEntry(BaseModel):
    """One logbook entry. ``entry_id`` is unique across sources (adapters prefix it when needed).

    ``summary`` and ``keywords`` are filled by enhancement (an LLM), never by adapters; re-ingesting an entry
    keeps them unless its title or text changed.
    """

    entry_id: str = Field(min_length=1, max_length=200)
    source_system: str = Field(min_length=1)
    timestamp: datetime
    author: str = ""
    title: str = ""
    raw_text: str = ""
    tags: list[str] = []
    categories: list[str] = []
    logbook: str = ""
    attachments: list[Attachment] = []
    metadata: dict[str, Any] = {}
    summary: str = ""
    keywords: list[str] = []

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("timestamp must carry a timezone (UTC expected)")
        return v.astimezone(UTC)

    def embedding_text(self) -> str:
        """The text embedded for semantic search: title, then body (summary appended when present)."""
        parts = [self.title, self.raw_text]
        if self.summary:
            parts.append(self.summary)
        return "\n".join(p for p in parts if p)


__all__ = ["Attachment", "BadRecordInfo", "IngestionRun", "LogbookEntry", "RunStatusName", "UpsertCounts"]
