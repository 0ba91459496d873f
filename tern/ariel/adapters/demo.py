"""The demo logbook (``demo``): ``{"entries": [{id, when: {days_ago, time}, author, title, text, tags,
categories}]}``, times relative to ``AdapterOptions.now`` so the demo logbook is always recent."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from tern.ariel.adapters.base import AdapterOptions
from tern.ariel.adapters.files import json_list_adapter
from tern.ariel.adapters.records import split_list


def demo_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
    """``LogbookEntry`` fields of one demo record (``base.Mapper``): the entry is ``when.days_ago`` days
    before ``opts.reference_now()``'s date, at ``when.time`` (UTC, default midnight)."""
    when = rec["when"]
    t = time.fromisoformat(str(when.get("time", "00:00:00")))
    day = opts.reference_now().date() - timedelta(days=int(when["days_ago"]))
    return {
        "entry_id": opts.id_prefix + str(rec["id"]),
        "source_system": "demo",
        "timestamp": datetime.combine(day, t, tzinfo=UTC),
        "author": rec.get("author") or "",
        "title": rec.get("title") or "",
        "raw_text": rec.get("text") or "",
        "tags": split_list(rec.get("tags")),
        "categories": split_list(rec.get("categories")),
    }


ADAPTER = json_list_adapter("demo", demo_fields)
