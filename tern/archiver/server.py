"""The embedded archiver's retrieval API: the EPICS Archiver Appliance's JSON endpoints over PostgreSQL.

Same paths, parameters and JSON shape as the Appliance (archiver-appliance/epicsarchiverap, servlet
``DataRetrievalServlet``; docs "Retrieving data using other tools"), so one client serves both:

- ``GET /retrieval/data/getData.json?pv=PV&from=ISO&to=ISO``: ``[{"meta": {"name", "PREC"[, "EGU"]},
  "data": [{"secs", "nanos", "val", "severity", "status"}, ...]}]``; HTTP 404 for a PV that is not archived;
  ``pv`` may be ``operator_N(PV)`` (:mod:`tern.archiver.binning`); an empty range gives ``"data": []``.
- ``GET /retrieval/data/getDataForPVs.json?pv=A&pv=B&from=..&to=..``: the array with one element per archived
  PV (PVs that are not archived are left out).
- ``GET /retrieval/data/getData.raw?pv=PV&from=ISO&to=ISO``: the same samples in the Appliance's PB/HTTP format
  (:mod:`tern.archiver.pb`: ``EPICSEvent.proto`` messages of the channel's type, one chunk per UTC year,
  ``application/x-protobuf``); binned requests are ``ScalarDouble``; HTTP 404 for a PV that is not archived.
- ``GET /retrieval/bpl/getMatchingPVs?pv=GLOB&limit=N`` (or ``regex=RE``): archived PV names matching a glob
  (``*``, ``?``) or a regular expression matching the whole name, sorted; ``limit`` (default 500) <= 0 means
  all. ``/mgmt/bpl/getAllPVs`` and ``/mgmt/bpl/getMatchingPVs`` answer the same.
- ``GET /mgmt/bpl/getPVStatus?pv=A,B*``: one status object per name or glob match (``pvName``, ``status``
  ``Being archived`` or ``Not being archived``, ``appliance``, ``connectionState``, ``lastEvent``...).
- ``GET /mgmt/bpl/getApplianceInfo``: the identity and component URLs clients start from (``mgmtURL``,
  ``retrievalURL``, ``dataRetrievalURL``).

``from``/``to`` are ISO 8601 (``2026-11-19T03:20:00.000Z``); ``to`` defaults to an hour after now and ``from``
to a day before ``to``, as on the Appliance (``DataRetrievalServlet.getRequestTimes``). A bad time, reversed
range or unknown operator is HTTP 400.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response

from tern.archiver import pb
from tern.archiver.binning import BinningError, parse_pv
from tern.archiver.series import Series
from tern.archiver.store import ArchiveStore, ChannelInfo

APPLIANCE_IDENTITY = "tern-embedded"
"""The ``identity`` this archiver reports (``getApplianceInfo``, ``getPVStatus``'s ``appliance``)."""


def _time(text: str | None, default: datetime, what: str) -> datetime:
    if not text:
        return default
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, f"cannot parse {what}={text!r} as ISO 8601 (e.g. 2026-11-19T03:20:00.000Z)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _range(frm: str | None, to: str | None) -> tuple[datetime, datetime]:
    end = _time(to, datetime.now(UTC) + timedelta(hours=1), "to")
    start = _time(frm, end - timedelta(days=1), "from")
    if start > end:
        raise HTTPException(400, f"from ({start.isoformat()}) is after to ({end.isoformat()})")
    return start, end


def encode(series: list[Series]) -> bytes:
    """The Appliance JSON array for ``series`` (values written with ``repr``: exact doubles; NaN as null)."""
    parts = []
    for s in series:
        rows = ",".join(
            f'{{"secs":{sec},"nanos":{ns},"val":{repr(v) if math.isfinite(v) else "null"},'
            f'"severity":{sev},"status":{st}}}'
            for sec, ns, v, sev, st in zip(s.secs, s.nanos, s.vals, s.severity, s.status, strict=True)
        )
        parts.append(f'{{"meta":{json.dumps(s.meta, separators=(",", ":"))},"data":[{rows}]}}')
    return ("[" + ",".join(parts) + "]").encode()


def pb_headers(info: ChannelInfo) -> dict[str, str]:
    """``PayloadInfo.headers`` for ``info`` as the Appliance sends them: ``PREC``, ``EGU`` and, for an enum, its
    labels as ``ENUM_0``, ``ENUM_1``, ... (epicsarchiverap ``MetaInfo``)."""
    headers = {"PREC": str(info.prec), "EGU": info.units}
    headers.update({f"ENUM_{i}": label for i, label in enumerate(info.enum_strs)})
    return headers


def _name_matcher(pv: str | None, regex: str | None) -> Callable[[str], bool]:
    """The Appliance's name matching: ``regex`` matches the whole name (Java ``Pattern.matches``); ``pv`` is a glob
    (``*`` any run, ``?`` one character). HTTP 400 for a regex that does not compile."""
    if regex is not None:
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise HTTPException(400, f"regex={regex!r} is not a valid regular expression: {exc}") from None
    else:
        pattern = re.compile(".*".join(".".join(map(re.escape, p.split("?"))) for p in (pv or "*").split("*")))
    return lambda name: pattern.fullmatch(name) is not None


def _last_event(secs: int | None) -> str:
    """A sample time as the Appliance's status pages write it (``TimeUtils.convertToHumanReadableString``), UTC."""
    return "Never" if secs is None else datetime.fromtimestamp(secs, UTC).strftime("%b/%d/%Y %H:%M:%S +00:00")


def create_app(store: ArchiveStore, connected: Callable[[str], bool | None] | None = None) -> FastAPI:
    """The FastAPI application serving ``store`` (see module docstring for the endpoints).

    Args:
        store: the samples.
        connected: the Channel Access connection state of an archived channel (None: unknown), for
            ``getPVStatus``'s ``connectionState``; the embedded archiver passes its monitor's.
    """
    app = FastAPI(title="Tern embedded archiver", docs_url=None, redoc_url=None)

    async def fetch_info(pv_param: str, start: datetime, end: datetime) -> tuple[ChannelInfo, Series, bool] | None:
        try:
            name, binning = parse_pv(pv_param)
        except BinningError as exc:
            raise HTTPException(400, str(exc)) from None
        info = await store.channel(name)
        if info is None:
            return None
        return info, await store.read(info, start.timestamp(), end.timestamp(), binning), binning is not None

    async def fetch(pv_param: str, start: datetime, end: datetime) -> Series | None:
        found = await fetch_info(pv_param, start, end)
        return None if found is None else found[1]

    async def matching_names(pv: str | None, regex: str | None, limit: int) -> list[str]:
        match = _name_matcher(pv, regex)
        names = [n for n in await store.channels() if match(n)]
        return names[:limit] if limit > 0 else names

    @app.get("/retrieval/data/getData.json")
    async def get_data(pv: str = Query(...), frm: str | None = Query(None, alias="from"), to: str | None = None):
        start, end = _range(frm, to)
        found = await fetch(pv, start, end)
        if found is None:
            raise HTTPException(404, f"PV {pv} is not archived")
        return Response(encode([found]), media_type="application/json")

    @app.get("/retrieval/data/getDataForPVs.json")
    async def get_data_for_pvs(
        pv: list[str] = Query(...), frm: str | None = Query(None, alias="from"), to: str | None = None
    ):
        start, end = _range(frm, to)
        found = [s for s in [await fetch(p, start, end) for p in pv] if s is not None]
        return Response(encode(found), media_type="application/json")

    @app.get("/retrieval/data/getData.raw")
    async def get_data_raw(pv: str | None = None, frm: str | None = Query(None, alias="from"), to: str | None = None):
        if not pv:  # the Appliance: "PV name is null." (HTTP 400)
            raise HTTPException(400, "missing pv=NAME (the PV to retrieve, or operator_N(NAME))")
        start, end = _range(frm, to)
        found = await fetch_info(pv, start, end)
        if found is None:
            raise HTTPException(404, f"PV {pv} is not archived")
        info, series, binned = found
        payload_type = "SCALAR_DOUBLE" if binned else info.dbr_type
        try:
            body = pb.encode(series, payload_type, pb_headers(info), year=start.astimezone(UTC).year)
        except pb.PBError as exc:  # a stored value that does not fit the channel's type: refuse, do not guess
            raise HTTPException(500, str(exc)) from None
        return Response(body, media_type="application/x-protobuf")

    @app.get("/retrieval/bpl/getMatchingPVs")
    async def matching(pv: str | None = None, regex: str | None = None, limit: int = 500) -> list[str]:
        return await matching_names(pv, regex, limit)

    @app.get("/mgmt/bpl/getMatchingPVs")
    @app.get("/mgmt/bpl/getAllPVs")
    async def all_pvs(pv: str | None = None, regex: str | None = None, limit: int = 500) -> list[str]:
        return await matching_names(pv, regex, limit)

    async def statuses(pv: str) -> list[dict[str, Any]]:
        archived = await store.channels()
        out: list[dict[str, Any]] = []
        for requested in [p.strip() for p in pv.split(",") if p.strip()]:
            match = _name_matcher(requested, None)  # a name without * or ? matches only itself
            names = [n for n in archived if match(n)]
            if not names:
                out.append({"pvName": requested, "status": "Not being archived"})
            for info in await store.channel_infos(names):
                state = connected(info.name) if connected is not None else None
                out.append(
                    {
                        "pvName": info.name,
                        "pvNameOnly": info.name,
                        "status": "Being archived",
                        "appliance": APPLIANCE_IDENTITY,
                        "isMonitored": "true",
                        "samplingPeriod": "0.0",
                        "connectionState": "unknown" if state is None else str(state).lower(),
                        "lastEvent": _last_event(await store.last_sample_secs(info.id)),
                    }
                )
        return out

    @app.get("/mgmt/bpl/getPVStatus")
    async def pv_status(pv: str | None = None) -> list[dict[str, Any]]:
        if not pv:
            raise HTTPException(400, "missing pv=NAME[,NAME...] (names or globs, comma separated)")
        return await statuses(pv)

    @app.post("/mgmt/bpl/getPVStatus")
    async def pv_status_post(request: Request) -> list[dict[str, Any]]:
        """Many names: ``pv=A,B,C`` as an ``application/x-www-form-urlencoded`` body, as the Appliance accepts."""
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        names = ",".join(form.get("pv", []))
        if not names:
            raise HTTPException(400, "missing pv=NAME[,NAME...] in the form body")
        return await statuses(names)

    @app.get("/mgmt/bpl/getApplianceInfo")
    async def appliance_info(request: Request) -> dict[str, str]:
        base = str(request.base_url).rstrip("/")
        return {
            "identity": APPLIANCE_IDENTITY,
            "mgmtURL": f"{base}/mgmt/bpl",
            "retrievalURL": f"{base}/retrieval/bpl",
            "dataRetrievalURL": f"{base}/retrieval",
        }

    return app
