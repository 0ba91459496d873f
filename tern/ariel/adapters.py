"""Ingestion adapters: turn a logbook export into validated ``LogbookEntry`` objects.

Each adapter yields ``(position, entry_or_error)``; a bad record is reported with its position and reason and
does not stop the batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tern.ariel.models import LogbookEntry


class AdapterError(ValueError):
    """The source as a whole cannot be read (missing file, not JSON, wrong top-level shape)."""


class BadRecord(ValueError):
    """One record could not be turned into an entry; ``position`` is its 0-based index in the source."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"record {position}: {reason}")
        self.position = position
        self.reason = reason


def _load_entries_list(path: Path) -> list[Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise AdapterError(f"logbook source not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{path} is not valid JSON: {exc}") from exc
    entries = doc.get("entries") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise AdapterError(f"{path}: expected a list of entries or an object with an 'entries' list")
    return entries


def _validated(pos: int, data: dict[str, Any]) -> LogbookEntry | BadRecord:
    try:
        return LogbookEntry.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        return BadRecord(pos, f"{loc}: {first['msg']}")


def demo_entries(path: Path, *, now: datetime | None = None) -> Iterator[LogbookEntry | BadRecord]:
    """The demo format: ``{"entries": [{id, when: {days_ago, time}, author, title, text, tags, categories}]}``.

    ``when`` is relative to ``now`` (UTC; default: the current time), so the demo logbook always looks recent.
    """
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    for pos, rec in enumerate(_load_entries_list(path)):
        try:
            when = rec["when"]
            t = time.fromisoformat(str(when.get("time", "00:00:00")))
            day = today - timedelta(days=int(when["days_ago"]))
            ts = datetime.combine(day, t, tzinfo=UTC)
            data = {
                "entry_id": rec["id"],
                "source_system": "demo",
                "timestamp": ts,
                "author": rec.get("author", ""),
                "title": rec.get("title", ""),
                "raw_text": rec.get("text", ""),
                "tags": rec.get("tags", []),
                "categories": rec.get("categories", []),
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            yield BadRecord(pos, f"malformed demo record: {exc!r}")
            continue
        yield _validated(pos, data)


def generic_entries(path: Path) -> Iterator[LogbookEntry | BadRecord]:
    """Generic JSON: ``{"entries": [{id, timestamp (ISO 8601), author, text, tags, title?}]}``."""
    for pos, rec in enumerate(_load_entries_list(path)):
        if not isinstance(rec, dict) or "id" not in rec:
            yield BadRecord(pos, "record is not an object with an 'id'")
            continue
        text = rec.get("text", "")
        yield _validated(
            pos,
            {
                "entry_id": str(rec["id"]),
                "source_system": "generic",
                "timestamp": rec.get("timestamp"),
                "author": rec.get("author", ""),
                "title": rec.get("title") or text[:80],
                "raw_text": text,
                "tags": rec.get("tags", []),
            },
        )
