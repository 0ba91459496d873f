"""Logbook search hits as they travel through workflow history (small: ids, titles, snippets)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class LogbookHit(BaseModel):
    """One ranked logbook entry. ``score`` is backend-specific (higher is better)."""

    entry_id: str
    title: str
    author: str = ""
    timestamp: datetime | None = None
    score: float = 0.0
    snippet: str = ""
    highlights: list[str] = []
