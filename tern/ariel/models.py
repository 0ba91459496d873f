"""Logbook entries as stored by ARIEL (timestamps are timezone-aware UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator


class Attachment(BaseModel):
    """A file attached to a logbook entry (stored by reference)."""

    url: str = ""
    type: str = ""
    filename: str = ""
    caption: str = ""


class LogbookEntry(BaseModel):
    """One logbook entry. ``entry_id`` is unique across sources (adapters prefix it when needed)."""

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
