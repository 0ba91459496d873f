"""The types every ARIEL adapter shares: errors, items, options, pages and the ``Adapter`` description."""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tern.ariel.models import LogbookEntry
from tern.models.logbook import LogbookDraft


class AdapterError(ValueError):
    """The source as a whole cannot be read (missing file, not JSON, wrong shape, unknown adapter, HTTP 4xx).

    Retrying cannot help: the message names the source and what is wrong.
    """


class SourceUnavailable(RuntimeError):
    """A remote source kept failing (network errors, HTTP 5xx/429) after every retry; a later try may work."""


class PublishNotSupported(AdapterError):
    """The adapter cannot publish entries (``Adapter.publish`` is None): nothing was sent."""


class PublishRejected(AdapterError):
    """The facility logbook answered and refused the entry (bad credentials, unknown logbook, its error page):
    nothing was published; the message quotes the server's reason."""


class PublishOutcomeUnknown(RuntimeError):
    """A publish request may have reached the facility logbook but no answer came back (timeout, connection lost
    after sending): the entry may or may not exist, so it is not sent again automatically."""


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
        backoff_initial_s, backoff_max_s: the first and the longest wait between HTTP attempts (seconds,
            exponential with jitter).
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
        """``now`` in UTC, or the current time when ``now`` is not set."""
        return (self.now or datetime.now(UTC)).astimezone(UTC)


@dataclass
class Page:
    """One page of a source: its items, the cursor after the last one (None when the source is exhausted),
    and the number of records in the source when it is known (files) for progress reporting."""

    items: list[Item]
    next_cursor: str | None
    total: int | None = None


@dataclass
class PublishTarget:
    """A facility logbook to publish to (from the ``logbook`` settings section).

    Attributes:
        url: the logbook's URL (ELOG: ``https://host[:port]/[subdir/]<logbook>/``).
        logbook: the logbook's name where the protocol needs it (ELOG ``exp``); "" = from ``url``.
        username, password: credentials as the protocol sends them (ELOG: ``unm``, and ``upwd`` in ELOG's
            encoded form), or None.
        client_cert: a PEM file with a TLS client certificate and its key (the JLab logbook), or None.
        timeout_s: request timeout, seconds.
        transport: an httpx transport (tests only).
    """

    url: str
    logbook: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_cert: Path | None = None
    timeout_s: float = 30.0
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)


@dataclass(frozen=True)
class OutgoingFile:
    """An attachment as sent to a facility logbook: file name, media type and content (bytes)."""

    name: str
    media_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class PublishedRef:
    """The facility logbook's id of a published entry, and its URL when the server gives one."""

    entry_id: str
    url: str = ""


async def send_submit(
    request: httpx.Request, target: PublishTarget, server: str, *, verify: ssl.SSLContext | bool = True
) -> httpx.Response:
    """Send a publish ``request`` once (no redirects followed) and return the answer, whatever its status.

    ``server`` names the logbook in messages. Raises ``SourceUnavailable`` when the connection could not be made
    (nothing was sent: a retry may publish) and ``PublishOutcomeUnknown`` for any later failure (the request may
    have been stored: it must not be sent again blindly).
    """
    async with httpx.AsyncClient(timeout=target.timeout_s, transport=target.transport, verify=verify) as client:
        try:
            return await client.send(request, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise SourceUnavailable(f"{server} at {request.url.host} cannot be reached: {exc}") from exc
        except httpx.HTTPError as exc:
            raise PublishOutcomeUnknown(
                f"{server} at {request.url.host} did not answer the submit ({type(exc).__name__}: {exc}); the entry "
                "may have been stored: check the logbook before publishing again"
            ) from exc


Publisher = Callable[[LogbookDraft, Sequence[OutgoingFile], PublishTarget], Awaitable[PublishedRef]]
"""An adapter's publish method: ``(draft, files, target) -> PublishedRef``. Raises ``PublishRejected`` (the
server refused: nothing published), ``SourceUnavailable`` (nothing reached the server: may be retried) or
``PublishOutcomeUnknown`` (sent, no answer)."""

Mapper = Callable[[dict[str, Any], AdapterOptions], dict[str, Any]]
"""A format's record mapper: one raw record (a JSON object) -> ``LogbookEntry`` fields. It may raise
``KeyError`` (a missing field) or ``TypeError``/``ValueError``/``AttributeError``/``OverflowError`` (a
malformed one); ``tern.ariel.adapters.records.to_item`` turns those into a ``BadRecord``."""

ItemStream = AsyncGenerator[tuple[str, Item], None]
"""What an adapter yields: ``(cursor_after_item, item)`` pairs (an async generator, closed by the reader)."""


@dataclass(frozen=True)
class Adapter:
    """One logbook format, as the registry (``tern.ariel.adapters.registry``) knows it.

    Attributes:
        name: what users pass as ``--adapter`` (e.g. ``"jlab"``); unique in the registry.
        items: ``(source, cursor, opts) -> ItemStream``: every item after ``cursor`` (None: from the start) as
            ``(cursor_after_item, item)``; ``source`` is a file path or a service URL. Raises
            ``AdapterError`` or ``SourceUnavailable`` while iterating.
        total: ``(source) -> awaitable record count``, None when the source cannot tell (a service).
        incremental_source_system: set for a time-windowed service: the ``source_system`` of its entries, so
            that ingestion without ``since`` starts one window before the newest stored entry of that system
            (``tern.ariel.ingest.resolve_since``). None for file formats.
        publish: writes an approved entry to the facility logbook (``Publisher``); None when the format has no
            documented write API (``tern.ariel.publish`` then refuses with "publishing not supported").
    """

    name: str
    items: Callable[[str, str | None, AdapterOptions], ItemStream]
    total: Callable[[str], Awaitable[int | None]]
    incremental_source_system: str | None = None
    publish: Publisher | None = None
