"""Logbook entries as stored by ARIEL, and the small records of ingestion (timestamps are timezone-aware UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from tern.models.ariel import BadRecordInfo, UpsertCounts


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


RunStatusName = Literal["running", "completed", "failed"]


__all__ = ["Attachment", "BadRecordInfo", "IngestionRun", "LogbookEntry", "UpsertCounts"]


class IngestionRun(BaseModel):
    """One row of ``ingestion_runs``: a source ingested by one (possibly continued-as-new) workflow."""

    run_key: str
    adapter: str
    source: str
    status: RunStatusName = "running"
    counts: UpsertCounts = UpsertCounts()
    cursor: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str = ""
    bad_records: list[BadRecordInfo] = []
