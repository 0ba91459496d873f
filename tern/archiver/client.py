"""Client of the EPICS Archiver Appliance retrieval API (``/retrieval/data/getData.json``,
``/retrieval/data/getDataForPVs.json``), for a real Appliance or Tern's embedded archiver.

Protocol (Appliance documentation "Retrieving data using other tools"; servlet ``DataRetrievalServlet`` in
archiver-appliance/epicsarchiverap): ``GET getData.json?pv=NAME&from=ISO&to=ISO`` with ISO 8601 times in UTC
(``2026-11-19T03:20:00.000Z``); ``pv`` may carry a binning operator (``mean_600(NAME)``, see
:mod:`tern.archiver.binning`). ``getDataForPVs.json`` takes several ``pv`` parameters. The answer is a JSON array
(:mod:`tern.archiver.series`). An unknown PV is answered with HTTP 404 by ``getData.json`` and left out of the
``getDataForPVs.json`` array.

Why not a client library: ``pyarchappl`` is synchronous (``requests``), reads a site INI file, and returns pandas
frames (pandas is not a worker dependency); the Osprey archiver connector is a thin wrapper in a framework
Tern does not use. The protocol is two GET endpoints, so httpx (async, timeouts) plus tenacity (retries with
exponential backoff) is less code to trust than an adapter around either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from tern.archiver.binning import Binning
from tern.archiver.series import Series

DATA_PATH = "/retrieval/data/getData.json"
MULTI_PATH = "/retrieval/data/getDataForPVs.json"


class ArchiverError(RuntimeError):
    """A retrieval failed; subclasses say why."""


class UnknownChannel(ArchiverError):
    """The archiver does not archive this channel (HTTP 404, or absent from a multi-PV answer)."""

    def __init__(self, channel: str) -> None:
        super().__init__(f"channel {channel!r} is not archived")
        self.channel = channel


class EmptyRange(ArchiverError):
    """The channel is archived but has no sample in the requested range."""

    def __init__(self, channel: str, start: datetime, end: datetime) -> None:
        super().__init__(f"channel {channel!r} has no archived sample between {iso(start)} and {iso(end)}")
        self.channel = channel


class ArchiverUnavailable(ArchiverError):
    """The archiver did not answer (connection refused, timeout, HTTP 5xx) after every attempt."""


class ArchiverProtocolError(ArchiverError):
    """The archiver answered with something that is not the Appliance JSON format."""


class _Retryable(Exception):
    """An HTTP 5xx answer (retried like a transport error)."""


def iso(t: datetime) -> str:
    """``t`` as the Appliance's ISO 8601 form in UTC with milliseconds: ``2026-11-19T03:20:00.000Z``.
    A naive ``t`` is taken as UTC."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class ArchiverClient:
    """Async retrieval client. Use as ``async with ArchiverClient(url) as c: await c.get(...)``.

    Args:
        base_url: the Appliance's retrieval base, e.g. ``http://archiver:17668`` (paths are appended).
        timeout_s: per-request timeout, seconds (connect and read).
        attempts: tries per request for transport errors, timeouts and HTTP 5xx (>= 1).
        backoff_s: first wait between tries, seconds (doubled each time, at most 10 s).
    """

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, attempts: int = 4, backoff_s: float = 0.5) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout_s))

    async def __aenter__(self) -> ArchiverClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def _get_json(self, path: str, params: list[tuple[str, str]], channel: str | None) -> Any:
        resp: httpx.Response | None = None
        query: list[tuple[str, str | int | float | bool | None]] = list(params)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff_s, max=10),
                retry=retry_if_exception_type((httpx.TransportError, _Retryable)),
                reraise=True,
            ):
                with attempt:
                    resp = await self._http.get(path, params=query)
                    if resp.status_code >= 500:
                        raise _Retryable(f"HTTP {resp.status_code}: {resp.text[:200]}")
        except (httpx.TransportError, _Retryable) as exc:
            raise ArchiverUnavailable(
                f"archiver at {self.base_url} did not answer after {self.attempts} attempts: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        assert resp is not None
        if resp.status_code == 404 and channel is not None:
            raise UnknownChannel(channel)
        if resp.status_code >= 400:
            raise ArchiverError(f"archiver refused the request (HTTP {resp.status_code}): {resp.text[:300]}")
        if not resp.content.strip():
            return []
        try:
            return resp.json()
        except ValueError as exc:
            raise ArchiverProtocolError(f"archiver answered with invalid JSON: {exc}") from exc

    @staticmethod
    def _parse(doc: Any, binning: Binning | None) -> list[Series]:
        if not isinstance(doc, list):
            raise ArchiverProtocolError(f"archiver answer is not a JSON array but {type(doc).__name__}")
        try:
            return [Series.from_appliance(el, binning.label if binning else None) for el in doc]
        except ValueError as exc:
            raise ArchiverProtocolError(str(exc)) from exc

    async def get(self, channel: str, start: datetime, end: datetime, binning: Binning | None = None) -> Series:
        """One channel's samples in ``[start, end]`` (``getData.json``).

        Raises ``UnknownChannel``, ``EmptyRange`` (no sample in the range), ``ArchiverUnavailable`` (after the
        retries), ``ArchiverProtocolError``, or ``ArchiverError`` (other HTTP 4xx)."""
        pv = binning.wrap(channel) if binning else channel
        doc = await self._get_json(DATA_PATH, [("pv", pv), ("from", iso(start)), ("to", iso(end))], channel)
        found = self._parse(doc, binning)
        if not found:
            raise EmptyRange(channel, start, end)
        series = found[0]
        series.channel = channel
        if not len(series):
            raise EmptyRange(channel, start, end)
        return series

    async def get_many(
        self, channels: Sequence[str], start: datetime, end: datetime, binning: Binning | None = None
    ) -> dict[str, Series | ArchiverError]:
        """Several channels in one request (``getDataForPVs.json``): channel -> its series, or the error that
        names why it has none (``UnknownChannel``: absent from the answer; ``EmptyRange``: no samples).
        Raises ``ArchiverUnavailable`` / ``ArchiverProtocolError`` for the request as a whole."""
        params = [("pv", binning.wrap(c) if binning else c) for c in channels]
        params += [("from", iso(start)), ("to", iso(end))]
        found = {s.channel: s for s in self._parse(await self._get_json(MULTI_PATH, params, None), binning)}
        out: dict[str, Series | ArchiverError] = {}
        for c in channels:
            s = found.get(c) or found.get(binning.wrap(c) if binning else c)
            if s is None:
                out[c] = UnknownChannel(c)
            elif not len(s):
                out[c] = EmptyRange(c, start, end)
            else:
                s.channel = c
                out[c] = s
        return out

    async def get_each(
        self, channels: Sequence[str], start: datetime, end: datetime, binning: Binning | None = None
    ) -> dict[str, Series | ArchiverError]:
        """Like :meth:`get_many` but one ``getData.json`` request per channel, run concurrently, so that one
        channel's failure (404, timeout) never hides the others' data."""
        results = await asyncio.gather(*(self.get(c, start, end, binning) for c in channels), return_exceptions=True)
        out: dict[str, Series | ArchiverError] = {}
        for c, r in zip(channels, results, strict=True):
            if isinstance(r, BaseException) and not isinstance(r, ArchiverError):
                raise r
            out[c] = r
        return out
