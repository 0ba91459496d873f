"""The adapter registry, and the entry points that read any registered format by its name.

``register`` adds an ``Adapter``; ``get_adapter`` looks one up by name. ``iter_entries``, ``source_total``,
``read_page`` and ``collect`` take the adapter's name, so callers (activities, CLI, benchmarks) never branch on
a format.
"""

from __future__ import annotations

from contextlib import aclosing

from tern.ariel.adapters.base import Adapter, AdapterError, AdapterOptions, BadRecord, Item, ItemStream, Page
from tern.ariel.models import LogbookEntry

_REGISTRY: dict[str, Adapter] = {}


def register(adapter: Adapter) -> Adapter:
    """Make ``adapter`` available under ``adapter.name``; returns it.

    Raises:
        ValueError: another adapter is registered under the same name.
    """
    known = _REGISTRY.get(adapter.name)
    if known is not None and known is not adapter:
        raise ValueError(f"an adapter named {adapter.name!r} is already registered")
    _REGISTRY[adapter.name] = adapter
    return adapter


def adapter_names() -> tuple[str, ...]:
    """The registered adapter names, in registration order."""
    return tuple(_REGISTRY)


def get_adapter(name: str) -> Adapter:
    """The adapter registered as ``name``.

    Raises:
        AdapterError: no adapter has that name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AdapterError(f"unknown adapter {name!r}; known adapters: {', '.join(_REGISTRY)}") from None


def check_adapter(adapter: str) -> None:
    """Raise ``AdapterError`` naming the known adapters when ``adapter`` is not one of them."""
    get_adapter(adapter)


async def iter_entries(
    adapter: str, source: str, cursor: str | None = None, opts: AdapterOptions | None = None
) -> ItemStream:
    """All items of ``source`` after ``cursor`` as ``(cursor_after_item, item)``.

    Args:
        adapter: a registered adapter name (``adapter_names()``).
        source: a file path, or for a service (``als-http``) its URL.
        cursor: where to resume (from an earlier item); None starts at the beginning.
        opts: adapter options (defaults: ``AdapterOptions()``).

    Raises:
        AdapterError: unknown adapter, missing or unreadable source, HTTP 4xx (not retryable).
        SourceUnavailable: the HTTP service kept failing after every retry (retryable later).
    """
    spec = get_adapter(adapter)
    async with aclosing(spec.items(source, cursor, opts or AdapterOptions())) as stream:
        async for pair in stream:
            yield pair


async def source_total(adapter: str, source: str) -> int | None:
    """The number of records in a file source (None for a service, whose size is unknown).

    Raises ``AdapterError`` (unknown adapter, missing or unreadable file)."""
    return await get_adapter(adapter).total(source)


async def read_page(
    adapter: str, source: str, cursor: str | None, page_size: int, opts: AdapterOptions | None = None
) -> Page:
    """Up to ``page_size`` items after ``cursor``; ``next_cursor`` is None once the source is exhausted.

    Raises ``ValueError`` when ``page_size`` < 1, and what ``iter_entries`` raises.
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
        await gen.aclose()
    return Page(items, last if more else None)


async def collect(
    adapter: str, source: str, opts: AdapterOptions | None = None
) -> tuple[list[LogbookEntry], list[BadRecord]]:
    """Every entry and bad record of a (small) source, for tests, demos and benchmarks.

    Raises what ``iter_entries`` raises."""
    entries: list[LogbookEntry] = []
    bad: list[BadRecord] = []
    async for _, item in iter_entries(adapter, source, None, opts):
        (bad if isinstance(item, BadRecord) else entries).append(item)  # type: ignore[arg-type]
    return entries, bad
