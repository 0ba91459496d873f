"""Ingestion adapters: turn a logbook export or service into validated ``LogbookEntry`` objects.

Every adapter is an async iterator of ``(cursor, item)`` pairs, where ``item`` is a ``LogbookEntry`` or a
``BadRecord`` (position and reason: a bad record is reported and the batch goes on) and ``cursor`` is an opaque
string that resumes the source just after that item (a byte offset in a JSONL file, a record index in a JSON
file, a time window and index for the ALS HTTP service). ``read_page`` cuts one page out of any adapter; the
ingestion workflow calls it page by page, so a source of any size is read in bounded steps and a crash resumes
at the last cursor.

Formats (samples in ``shared/data/osprey``):

=============  ====================================================================================
``als``        ALS eLog export, JSON lines: id, timestamp (Unix seconds), author, subject, details,
               category (comma list), tag, linkedto, level, attachments
``als-http``   the ALS eLog service: ``GET URL?op=retrieve&start=<unix s>&end=<unix s>`` per time window,
               answering a JSON list (or JSON lines) of ALS records; retried with exponential backoff
``jlab``       JLab logbook JSON list: lognumber, created.timestamp, author, title, body.content, books,
               tags, attachments
``ornl``       ORNL/SNS logbook JSON list: ID, logbook, event_time, entry_time (ISO 8601), author, title,
               content, attachments
``generic``    ``{"entries": [{id, timestamp (ISO 8601), author, text, tags, title?}]}``
``demo``       ``{"entries": [{id, when: {days_ago, time}, author, title, text, tags, categories}]}``
=============  ====================================================================================
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from tern.ariel.models import Attachment, LogbookEntry


class AdapterError(ValueError):
    """The source as a whole cannot be read (missing file, not JSON, wrong shape, unknown adapter, HTTP 4xx).

    Retrying cannot help: the message names the source and what is wrong.
    """


class SourceUnavailable(RuntimeError):
    """A remote source kept failing (network errors, HTTP 5xx/429) after every retry; a later try may work."""


class BadRecord(ValueError):
    """One record could not be turned into an entry; ``position`` is its 0-based index in the source."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"record {position}: {reason}")
        self.position = position
        self.reason = reason


Item = LogbookEntry | BadRecord


@dataclass
class AdapterOptions:
    """Options shared by the adapters.

    Attributes:
        id_prefix: prepended to every entry_id (use it when two logbooks share id ranges).
        now: reference time for the demo format's relative times and the HTTP adapter's default end (UTC).
        since, until: the HTTP adapter's time range (UTC); ``since`` defaults to 7 days before ``until``,
            ``until`` to ``now``.
        window: the HTTP adapter's retrieval window.
        attempts, timeout_s: HTTP attempts per window and the timeout of one request (seconds).
        transport: an httpx transport (tests route requests to an in-process ASGI app with it).
    """

    id_prefix: str = ""
    now: datetime | None = None
    since: datetime | None = None
    until: datetime | None = None
    window: timedelta = timedelta(hours=24)
    attempts: int = 5
    timeout_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)

    def reference_now(self) -> datetime:
        return (self.now or datetime.now(UTC)).astimezone(UTC)


@dataclass
class Page:
    """One page of a source: its items, the cursor after the last one (None when the source is exhausted),
    and the number of records in the source when it is known (files) for progress reporting."""

    items: list[Item]
    next_cursor: str | None
    total: int | None = None


# --- helpers ---------------------------------------------------------------------------------------------


def _validated(pos: int, data: dict[str, Any]) -> Item:
    try:
        return LogbookEntry.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        return BadRecord(pos, f"{loc}: {first['msg']}")


def _unix_ts(value: Any) -> datetime:
    """Unix seconds (int, float or numeric string) as an aware UTC datetime; ValueError otherwise."""
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError(f"timestamp missing or not a number: {value!r}")
    return datetime.fromtimestamp(float(value), tz=UTC)


def _iso_ts(value: Any) -> datetime:
    """ISO 8601 text as an aware datetime (a trailing 'Z' is UTC); a naive time is refused."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"timestamp missing or not ISO 8601 text: {value!r}")
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone")
    return ts


def _attachments(raw: Any) -> list[Attachment]:
    """Attachments given as URLs or objects (url/href/path, type/mime, filename/name, caption, thumbnail)."""
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


def _split_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


# --- record mappers (one per format): raw dict -> entry fields ---------------------------------------------


def _als_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
    tag = str(rec.get("tag") or "").strip()
    linked = str(rec.get("linkedto") or "").strip()
    meta: dict[str, Any] = {"subject": rec.get("subject", ""), "level": rec.get("level", "")}
    if linked and linked != "0":
        meta["linked_to"] = opts.id_prefix + linked
    return {
        "entry_id": opts.id_prefix + str(rec["id"]),
        "source_system": "als",
        "timestamp": _unix_ts(rec.get("timestamp")),
        "author": rec.get("author") or "",
        "title": rec.get("subject") or "",
        "raw_text": rec.get("details") or "",
        "categories": _split_list(rec.get("category")),
        "tags": [] if tag in ("", "0") else [tag],
        "attachments": _attachments(rec.get("attachments")),
        "metadata": meta,
    }


def _jlab_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
    created = rec.get("created")
    ts = created.get("timestamp") if isinstance(created, dict) else created
    body = rec.get("body")
    text = body.get("content", "") if isinstance(body, dict) else (body or "")
    books = _split_list(rec.get("books"))
    meta: dict[str, Any] = {"books": books}
    if isinstance(body, dict) and body.get("format"):
        meta["body_format"] = body["format"]
    return {
        "entry_id": opts.id_prefix + str(rec["lognumber"]),
        "source_system": "jlab",
        "timestamp": _iso_ts(ts) if isinstance(ts, str) and not ts.replace(".", "").isdigit() else _unix_ts(ts),
        "author": rec.get("author") or "",
        "title": rec.get("title") or "",
        "raw_text": text,
        "tags": _split_list(rec.get("tags")),
        "logbook": books[0] if books else "",
        "attachments": _attachments(rec.get("attachments")),
        "metadata": meta,
    }


def _ornl_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if rec.get("entry_time"):
        meta["entry_time"] = rec["entry_time"]
    return {
        "entry_id": opts.id_prefix + str(rec["ID"]),
        "source_system": "ornl",
        "timestamp": _iso_ts(rec.get("event_time") or rec.get("entry_time")),
        "author": rec.get("author") or "",
        "title": rec.get("title") or "",
        "raw_text": rec.get("content") or "",
        "logbook": rec.get("logbook") or "",
        "tags": _split_list(rec.get("tags")),
        "attachments": _attachments(rec.get("attachments")),
        "metadata": meta,
    }


def _generic_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
    text = rec.get("text") or ""
    return {
        "entry_id": opts.id_prefix + str(rec["id"]),
        "source_system": "generic",
        "timestamp": rec.get("timestamp"),
        "author": rec.get("author") or "",
        "title": rec.get("title") or text[:80],
        "raw_text": text,
        "tags": _split_list(rec.get("tags")),
        "categories": _split_list(rec.get("categories")),
        "attachments": _attachments(rec.get("attachments")),
    }


def _demo_fields(rec: dict[str, Any], opts: AdapterOptions) -> dict[str, Any]:
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
        "tags": _split_list(rec.get("tags")),
        "categories": _split_list(rec.get("categories")),
    }


def _map(pos: int, rec: Any, mapper: Any, opts: AdapterOptions) -> Item:
    if not isinstance(rec, dict):
        return BadRecord(pos, f"record is a {type(rec).__name__}, not an object")
    try:
        data = mapper(rec, opts)
    except KeyError as exc:
        return BadRecord(pos, f"missing field {exc.args[0]!r}")
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        return BadRecord(pos, f"malformed record: {exc}")
    return _validated(pos, data)


# --- file sources --------------------------------------------------------------------------------------------


def _check_file(path: Path) -> os.stat_result:
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


def _json_records(path: Path) -> list[Any]:
    st = _check_file(path)
    return _load_json_list(str(path.resolve()), st.st_mtime_ns, st.st_size)


def _json_items(path: Path, cursor: str | None, mapper: Any, opts: AdapterOptions) -> Iterator[tuple[str, Item]]:
    records = _json_records(path)
    start = int(cursor or 0)
    for pos in range(start, len(records)):
        yield str(pos + 1), _map(pos, records[pos], mapper, opts)


def _jsonl_items(path: Path, cursor: str | None, opts: AdapterOptions) -> Iterator[tuple[str, Item]]:
    """ALS JSON lines. The cursor is ``<byte offset>:<record position>``; blank lines are skipped."""
    _check_file(path)
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
                item = _map(pos, rec, _als_fields, opts)
            pos += 1
            yield f"{offset}:{pos}", item


def _count_jsonl(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


# --- ALS HTTP -----------------------------------------------------------------------------------------------


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and (
        exc.response.status_code >= 500 or exc.response.status_code == 429
    )


async def _fetch_window(client: httpx.AsyncClient, url: str, start: int, end: int, opts: AdapterOptions) -> list[Any]:
    """One ``op=retrieve`` request, retried with jittered exponential backoff on transient failures."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(opts.attempts),
        wait=wait_exponential_jitter(multiplier=opts.backoff_initial_s, max=opts.backoff_max_s),
        retry=retry_if_exception(_transient),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                resp = await client.get(url, params={"op": "retrieve", "start": start, "end": end})
                resp.raise_for_status()
    except httpx.HTTPStatusError as exc:
        if _transient(exc):
            raise SourceUnavailable(
                f"{url}: HTTP {exc.response.status_code} for window {start}-{end} after {opts.attempts} attempts"
            ) from exc
        raise AdapterError(f"{url}: HTTP {exc.response.status_code} for window {start}-{end}") from exc
    except httpx.TransportError as exc:
        raise SourceUnavailable(f"{url}: {exc!r} for window {start}-{end} after {opts.attempts} attempts") from exc
    text = resp.text.strip()
    if not text:
        return []
    try:
        if text.startswith("["):
            records = json.loads(text)
        elif text.startswith("{"):
            doc = json.loads(text) if "\n" not in text else None
            records = (doc.get("entries") if isinstance(doc, dict) else None) or [
                json.loads(line) for line in text.splitlines() if line.strip()
            ]
        else:
            raise AdapterError(f"{url}: response is neither a JSON list nor JSON lines")
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{url}: response for window {start}-{end} is not JSON: {exc}") from exc
    if not isinstance(records, list):
        raise AdapterError(f"{url}: expected a list of records for window {start}-{end}")
    return records


async def _als_http_items(url: str, cursor: str | None, opts: AdapterOptions) -> AsyncIterator[tuple[str, Item]]:
    """Windows ``[start, start + window)`` from ``since`` to ``until``; cursor ``<window start>:<index>``.

    Positions of bad records are ``<window start unix s> * 1_000_000 + index`` so they stay unique and sortable.
    """
    until = int((opts.until or opts.reference_now()).timestamp())
    since = int((opts.since or datetime.fromtimestamp(until, UTC) - timedelta(days=7)).timestamp())
    step = max(1, int(opts.window.total_seconds()))
    start, skip = (int(p) for p in cursor.split(":")) if cursor else (since, 0)
    async with httpx.AsyncClient(transport=opts.transport, timeout=opts.timeout_s) as client:
        while start < until:
            end = min(start + step, until)
            records = await _fetch_window(client, url, start, end, opts)
            for i in range(skip, len(records)):
                nxt = f"{start}:{i + 1}" if i + 1 < len(records) else f"{end}:0"
                yield nxt, _map(start * 1_000_000 + i, records[i], _als_fields, opts)
            start, skip = end, 0


# --- public entry points -----------------------------------------------------------------------------------

_JSON_MAPPERS = {"jlab": _jlab_fields, "ornl": _ornl_fields, "generic": _generic_fields, "demo": _demo_fields}
ADAPTERS: tuple[str, ...] = ("als", "als-http", "jlab", "ornl", "generic", "demo")


def check_adapter(adapter: str) -> None:
    """Raise ``AdapterError`` naming the known adapters when ``adapter`` is not one of them."""
    if adapter not in ADAPTERS:
        raise AdapterError(f"unknown adapter {adapter!r}; known adapters: {', '.join(ADAPTERS)}")


async def _sync_to_async(it: Iterator[tuple[str, Item]], chunk: int = 256) -> AsyncIterator[tuple[str, Item]]:
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


async def iter_entries(
    adapter: str, source: str, cursor: str | None = None, opts: AdapterOptions | None = None
) -> AsyncIterator[tuple[str, Item]]:
    """All items of ``source`` after ``cursor`` as ``(cursor_after_item, item)``.

    Args:
        adapter: one of ``ADAPTERS``.
        source: a file path, or for ``als-http`` the service URL.
        cursor: where to resume (from an earlier item); None starts at the beginning.
        opts: adapter options (defaults: ``AdapterOptions()``).

    Raises:
        AdapterError: unknown adapter, missing or unreadable source, HTTP 4xx (not retryable).
        SourceUnavailable: the HTTP service kept failing after every retry (retryable later).
    """
    check_adapter(adapter)
    opts = opts or AdapterOptions()
    if adapter == "als-http":
        async for pair in _als_http_items(source, cursor, opts):
            yield pair
        return
    path = Path(source)
    if adapter == "als":
        it = _jsonl_items(path, cursor, opts)
    else:
        it = _json_items(path, cursor, _JSON_MAPPERS[adapter], opts)
    async for pair in _sync_to_async(it):
        yield pair


async def source_total(adapter: str, source: str) -> int | None:
    """The number of records in a file source (None for the HTTP service, whose size is unknown)."""
    check_adapter(adapter)
    if adapter == "als-http":
        return None
    path = Path(source)
    if adapter == "als":
        _check_file(path)
        return await asyncio.to_thread(_count_jsonl, path)
    return len(await asyncio.to_thread(_json_records, path))


async def read_page(
    adapter: str, source: str, cursor: str | None, page_size: int, opts: AdapterOptions | None = None
) -> Page:
    """Up to ``page_size`` items after ``cursor``; ``next_cursor`` is None once the source is exhausted.

    Raises what ``iter_entries`` raises.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    items: list[Item] = []
    last = cursor
    more = False
    gen = iter_entries(adapter, source, cursor, opts)
    try:
        async for nxt, item in gen:
            if len(items) >= page_size:  # one item beyond the page: the source is not exhausted
                more = True
                break
            items.append(item)
            last = nxt
    finally:
        await gen.aclose()  # type: ignore[attr-defined]
    return Page(items, last if more else None)


async def collect(
    adapter: str, source: str, opts: AdapterOptions | None = None
) -> tuple[list[LogbookEntry], list[BadRecord]]:
    """Every entry and bad record of a (small) source, for tests, demos and benchmarks."""
    entries: list[LogbookEntry] = []
    bad: list[BadRecord] = []
    async for _, item in iter_entries(adapter, source, None, opts):
        (bad if isinstance(item, BadRecord) else entries).append(item)  # type: ignore[arg-type]
    return entries, bad

