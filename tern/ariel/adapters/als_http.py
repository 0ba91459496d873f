"""The ALS eLog service (``als-http``): ``GET URL?op=retrieve&start=<unix s>&end=<unix s>`` per time window,
answering a JSON list (or JSON lines, or an object with an ``entries`` list) of ALS records (``als``).

Each window is retried with jittered exponential backoff on transient failures (network errors, HTTP 5xx and
429); a window that keeps failing raises ``SourceUnavailable``, any other HTTP error ``AdapterError``. The
cursor is ``<window start unix s>:<index in the window>``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from tern.ariel.adapters.als import SOURCE_SYSTEM, als_fields
from tern.ariel.adapters.base import Adapter, AdapterError, AdapterOptions, ItemStream, SourceUnavailable
from tern.ariel.adapters.records import to_item

DEFAULT_SPAN = timedelta(days=7)  # without ``since``: this long before ``until``


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


async def als_http_items(url: str, cursor: str | None, opts: AdapterOptions) -> ItemStream:
    """Windows ``[start, start + opts.window)`` from ``opts.since`` to ``opts.until`` (see ``AdapterOptions``);
    cursor ``<window start>:<index>``.

    Positions of bad records are ``<window start unix s> * 1_000_000 + index`` so they stay unique and sortable.
    Raises ``SourceUnavailable`` (a window kept failing) or ``AdapterError`` (HTTP 4xx, not JSON).
    """
    until = int((opts.until or opts.reference_now()).timestamp())
    since = int((opts.since or datetime.fromtimestamp(until, UTC) - DEFAULT_SPAN).timestamp())
    step = max(1, int(opts.window.total_seconds()))
    start, skip = (int(p) for p in cursor.split(":")) if cursor else (since, 0)
    async with httpx.AsyncClient(transport=opts.transport, timeout=opts.timeout_s) as client:
        while start < until:
            end = min(start + step, until)
            records = await _fetch_window(client, url, start, end, opts)
            for i in range(skip, len(records)):
                nxt = f"{start}:{i + 1}" if i + 1 < len(records) else f"{end}:0"
                yield nxt, to_item(start * 1_000_000 + i, records[i], als_fields, opts)
            start, skip = end, 0


async def _unknown_total(url: str) -> int | None:
    return None


ADAPTER = Adapter(name="als-http", items=als_http_items, total=_unknown_total, incremental_source_system=SOURCE_SYSTEM)
