"""Generic JSON (``generic``): ``{"entries": [{id, timestamp (ISO 8601), author, text, tags, categories?,
title?, attachments?}]}``; without a title, the first 80 characters of the text are the title."""

from __future__ import annotations

from typing import Any

from tern.ariel.adapters.base import AdapterOptions
from tern.ariel.adapters.files import json_list_adapter
from tern.ariel.adapters.records import attachments, split_list


def generic_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
    """``LogbookEntry`` fields of one generic record (``base.Mapper``); the timestamp is validated by
    ``LogbookEntry`` (ISO 8601 with a timezone)."""
    text = rec.get("text") or ""
    return {
        "entry_id": opts.id_prefix + str(rec["id"]),
        "source_system": "generic",
        "timestamp": rec.get("timestamp"),
        "author": rec.get("author") or "",
        "title": rec.get("title") or text[:80],
        "raw_text": text,
        "tags": split_list(rec.get("tags")),
        "categories": split_list(rec.get("categories")),
        "attachments": attachments(rec.get("attachments")),
    }


ADAPTER = json_list_adapter("generic", generic_fields)
