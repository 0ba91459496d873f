"""ORNL/SNS logbook JSON list (``ornl``): ID, logbook, event_time, entry_time (ISO 8601), author, title,
content, tags, attachments."""

from __future__ import annotations

from typing import Any

from tern.ariel.adapters.base import AdapterOptions
from tern.ariel.adapters.files import json_list_adapter
from tern.ariel.adapters.records import attachments, iso_ts, split_list


def ornl_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
    """``LogbookEntry`` fields of one ORNL record (``base.Mapper``): the event time is the entry's time (the
    entry time when absent), and the entry time is kept in ``metadata["entry_time"]``."""
    meta: dict[str, Any] = {}
    if rec.get("entry_time"):
        meta["entry_time"] = rec["entry_time"]
    return {
        "entry_id": opts.id_prefix + str(rec["ID"]),
        "source_system": "ornl",
        "timestamp": iso_ts(rec.get("event_time") or rec.get("entry_time")),
        "author": rec.get("author") or "",
        "title": rec.get("title") or "",
        "raw_text": rec.get("content") or "",
        "logbook": rec.get("logbook") or "",
        "tags": split_list(rec.get("tags")),
        "attachments": attachments(rec.get("attachments")),
        "metadata": meta,
    }


ADAPTER = json_list_adapter("ornl", ornl_fields)
