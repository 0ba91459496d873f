"""JLab logbook JSON list (``jlab``): lognumber, created.timestamp (ISO 8601 or Unix seconds), author, title,
body.content (and body.format), books, tags, attachments. Publishing goes to the JLab logbook server
(``jlab_api``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tern.ariel.adapters import jlab_api
from tern.ariel.adapters.base import AdapterOptions
from tern.ariel.adapters.files import json_list_adapter
from tern.ariel.adapters.records import attachments, iso_ts, split_list, unix_ts


def jlab_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
    """``LogbookEntry`` fields of one JLab record (``base.Mapper``); the first book is the logbook."""
    created = rec.get("created")
    ts = created.get("timestamp") if isinstance(created, dict) else created
    body = rec.get("body")
    text = body.get("content", "") if isinstance(body, dict) else (body or "")
    books = split_list(rec.get("books"))
    meta: dict[str, Any] = {"books": books}
    if isinstance(body, dict) and body.get("format"):
        meta["body_format"] = body["format"]
    return {
        "entry_id": opts.id_prefix + str(rec["lognumber"]),
        "source_system": "jlab",
        "timestamp": iso_ts(ts) if isinstance(ts, str) and not ts.replace(".", "").isdigit() else unix_ts(ts),
        "author": rec.get("author") or "",
        "title": rec.get("title") or "",
        "raw_text": text,
        "tags": split_list(rec.get("tags")),
        "logbook": books[0] if books else "",
        "attachments": attachments(rec.get("attachments")),
        "metadata": meta,
    }


ADAPTER = replace(json_list_adapter("jlab", jlab_fields), publish=jlab_api.publish)
"""Reads JLab JSON exports; publishes to the JLab logbook server (``jlab_api``)."""
