"""File sources: JSON documents and JSON-lines files, read in a worker thread so the event loop stays free.

Two shapes cover the file formats: ``json_list_adapter`` (a JSON list of records, or an object with an
``entries`` list; the cursor is the next record index) and ``jsonl_adapter`` (one JSON record a line; the
cursor is ``<byte offset>:<record position>``). A format module only supplies its record mapper.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from tern.ariel.adapters.base import Adapter, AdapterError, AdapterOptions, BadRecord, Item, ItemStream, Mapper
from tern.ariel.adapters.records import to_item

THREAD_CHUNK = 256  # items read per worker-thread hop


def check_file(path: Path) -> os.stat_result:
    """``path``'s stat result. Raises ``AdapterError`` when it does not exist or is not a regular file."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise AdapterError(f"logbook source not found: {path}") from exc
    if not path.is_file():
        raise AdapterError(f"logbook source is not a file: {path}")
    return st


@lru_cache(maxsize=4)
def _load_json_list(path: str, _mtime_ns: int, _size: int) -> list[Any]:
    try:
        doc = json.loads(Path(path).read_bytes())
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{path} is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise AdapterError(f"{path} is not UTF-8 text: {exc}") from exc
    entries = doc.get("entries") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise AdapterError(f"{path}: expected a list of entries or an object with an 'entries' list")
    return entries


def json_records(path: Path) -> list[Any]:
    """The records of a JSON file: the document if it is a list, else its ``entries`` list. Parsed once per
    file version (path, mtime and size key a small cache), so paging through a file does not re-read it.

    Raises:
        AdapterError: missing, not a file, not UTF-8, not JSON, or neither shape.
    """
    st = check_file(path)
    return _load_json_list(str(path.resolve()), st.st_mtime_ns, st.st_size)


def json_items(path: Path, cursor: str | None, mapper: Mapper, opts: AdapterOptions) -> Iterator[tuple[str, Item]]:
    """The items of a JSON file after ``cursor`` (a record index as text; None: the first record)."""
    records = json_records(path)
    start = int(cursor or 0)
    for pos in range(start, len(records)):
        yield str(pos + 1), to_item(pos, records[pos], mapper, opts)


def jsonl_items(path: Path, cursor: str | None, mapper: Mapper, opts: AdapterOptions) -> Iterator[tuple[str, Item]]:
    """The items of a JSON-lines file after ``cursor`` (``<byte offset>:<record position>``; None: the start).

    Blank lines are skipped and do not count as records; a line that is not JSON is a ``BadRecord``.
    Raises ``AdapterError`` when the file is missing or not a file.
    """
    check_file(path)
    offset, pos = (int(p) for p in (cursor or "0:0").split(":"))
    with path.open("rb") as f:
        f.seek(offset)
        for line in iter(f.readline, b""):
            offset += len(line)
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                item: Item = BadRecord(pos, f"line is not JSON: {exc}")
            else:
                item = to_item(pos, rec, mapper, opts)
            pos += 1
            yield f"{offset}:{pos}", item


def _count_jsonl(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


async def sync_to_async(it: Iterator[tuple[str, Item]], chunk: int = THREAD_CHUNK) -> ItemStream:
    """Drive a file iterator in a worker thread, ``chunk`` items at a time, so the event loop stays free."""

    def take() -> list[tuple[str, Item]]:
        out = []
        for pair in it:
            out.append(pair)
            if len(out) >= chunk:
                break
        return out

    while batch := await asyncio.to_thread(take):
        for pair in batch:
            yield pair


def json_list_adapter(name: str, mapper: Mapper) -> Adapter:
    """An ``Adapter`` named ``name`` for JSON files of records mapped by ``mapper`` (see ``json_records``)."""

    def items(source: str, cursor: str | None, opts: AdapterOptions) -> ItemStream:
        return sync_to_async(json_items(Path(source), cursor, mapper, opts))

    async def total(source: str) -> int | None:
        return len(await asyncio.to_thread(json_records, Path(source)))

    return Adapter(name=name, items=items, total=total)


def jsonl_adapter(name: str, mapper: Mapper) -> Adapter:
    """An ``Adapter`` named ``name`` for JSON-lines files of records mapped by ``mapper`` (see
    ``jsonl_items``)."""

    def items(source: str, cursor: str | None, opts: AdapterOptions) -> ItemStream:
        return sync_to_async(jsonl_items(Path(source), cursor, mapper, opts))

    async def total(source: str) -> int | None:
        path = Path(source)
        check_file(path)
        return await asyncio.to_thread(_count_jsonl, path)

    return Adapter(name=name, items=items, total=total)
