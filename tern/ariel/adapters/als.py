"""ALS eLog export, JSON lines (``als``): one record a line with id, timestamp (Unix seconds), author,
subject, details, category (comma list), tag, linkedto, level, attachments. The same record shape is what the
ALS eLog service answers (``als_http``)."""

from __future__ import annotations

from typing import Any

from tern.ariel.adapters.base import AdapterOptions
from tern.ariel.adapters.files import jsonl_adapter
from tern.ariel.adapters.records import attachments, split_list, unix_ts

SOURCE_SYSTEM = "als"


def als_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
    """``LogbookEntry`` fields of one ALS record (``base.Mapper``). A ``tag`` or ``linkedto`` of "0" means
    none; ``linkedto`` goes to ``metadata["linked_to"]`` with the id prefix."""
    tag = str(rec.get("tag") or "").strip()
    linked = str(rec.get("linkedto") or "").strip()
    meta: dict[str, Any] = {"subject": rec.get("subject", ""), "level": rec.get("level", "")}
    if linked and linked != "0":
        meta["linked_to"] = opts.id_prefix + linked
    return {
        "entry_id": opts.id_prefix + str(rec["id"]),
        "source_system": SOURCE_SYSTEM,
        "timestamp": unix_ts(rec.get("timestamp")),
        "author": rec.get("author") or "",
        "title": rec.get("subject") or "",
        "raw_text": rec.get("details") or "",
        "categories": split_list(rec.get("category")),
        "tags": [] if tag in ("", "0") else [tag],
        "attachments": attachments(rec.get("attachments")),
        "metadata": meta,
    }


ADAPTER = jsonl_adapter("als", als_fields)
