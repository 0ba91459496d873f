"""Record helpers shared by the formats: field parsers, and the step from a raw record to a validated item.

A format's mapper (``base.Mapper``) uses the parsers to build ``LogbookEntry`` fields; ``to_item`` runs the
mapper and validates the result, turning every failure of one record into a ``BadRecord`` so that a batch
goes on past it.
"""

from __future__ import annotations

import mimetypes
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from tern.ariel.adapters.base import AdapterOptions, BadRecord, Item, Mapper
from tern.ariel.models import Attachment, LogbookEntry


def unix_ts(value: Any) -> datetime:
    """Unix seconds (int, float or numeric string) as an aware UTC datetime.

    Raises:
        ValueError: missing, empty, boolean or not a number.
        OverflowError: out of the platform's time range.
    """
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError(f"timestamp missing or not a number: {value!r}")
    return datetime.fromtimestamp(float(value), tz=UTC)


def iso_ts(value: Any) -> datetime:
    """ISO 8601 text as an aware datetime (a trailing 'Z' is UTC).

    Raises:
        ValueError: missing, not text, not ISO 8601, or without a timezone (a naive time is refused).
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"timestamp missing or not ISO 8601 text: {value!r}")
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone")
    return ts


def attachments(raw: Any) -> list[Attachment]:
    """Attachments given as a list of URLs or objects (url/href/path, type/mime/content_type, filename/name,
    caption/description, thumbnail); items of other types are skipped, a missing type is guessed from the
    file name (``mimetypes``)."""
    out: list[Attachment] = []
    for a in raw or []:
        if isinstance(a, str):
            a = {"url": a}
        if not isinstance(a, dict):
            continue
        url = str(a.get("url") or a.get("href") or a.get("path") or "")
        filename = str(a.get("filename") or a.get("name") or (PurePosixPath(url).name if url else ""))
        mime = str(a.get("type") or a.get("mime") or a.get("content_type") or "")
        if not mime and filename:
            mime = mimetypes.guess_type(filename)[0] or ""
        out.append(
            Attachment(
                url=url,
                type=mime,
                filename=filename,
                caption=str(a.get("caption") or a.get("description") or ""),
                thumbnail=str(a.get("thumbnail") or ""),
            )
        )
    return out


def split_list(value: Any) -> list[str]:
    """A comma-separated string or a list as a list of non-empty, stripped strings (None: empty list)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def _validated(pos: int, data: dict[str, Any]) -> Item:
    try:
        return LogbookEntry.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        return BadRecord(pos, f"{loc}: {first['msg']}")


def to_item(pos: int, rec: Any, mapper: Mapper, opts: AdapterOptions) -> Item:
    """Record ``rec`` (decoded JSON) at 0-based position ``pos``, mapped by ``mapper`` and validated as a
    ``LogbookEntry``; a ``BadRecord`` naming the first problem when it is not an object, lacks a field, is
    malformed or fails validation. Never raises for a bad record."""
    if not isinstance(rec, dict):
        return BadRecord(pos, f"record is a {type(rec).__name__}, not an object")
    try:
        data = mapper(rec, opts)
    except KeyError as exc:
        return BadRecord(pos, f"missing field {exc.args[0]!r}")
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        return BadRecord(pos, f"malformed record: {exc}")
    return _validated(pos, data)
