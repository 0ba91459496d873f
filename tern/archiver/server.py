"""The embedded archiver's retrieval API: the EPICS Archiver Appliance's JSON endpoints over PostgreSQL.

Same paths, parameters and JSON shape as the Appliance (archiver-appliance/epicsarchiverap, servlet
``DataRetrievalServlet``; docs "Retrieving data using other tools"), so one client serves both:

- ``GET /retrieval/data/getData.json?pv=PV&from=ISO&to=ISO``: ``[{"meta": {"name", "PREC"[, "EGU"]},
  "data": [{"secs", "nanos", "val", "severity", "status"}, ...]}]``; HTTP 404 for a PV that is not archived;
  ``pv`` may be ``operator_N(PV)`` (:mod:`tern.archiver.binning`); an empty range gives ``"data": []``.
- ``GET /retrieval/data/getDataForPVs.json?pv=A&pv=B&from=..&to=..``: the array with one element per archived
  PV (PVs that are not archived are left out).
- ``GET /retrieval/bpl/getMatchingPVs?pv=GLOB&limit=N``: archived PV names matching a glob (``*``, ``?``).

``from``/``to`` are ISO 8601 (``2026-11-19T03:20:00.000Z``); ``to`` defaults to now and ``from`` to an hour
before ``to``, as on the Appliance. A bad time, reversed range or unknown operator is HTTP 400.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response

from tern.archiver.binning import BinningError, parse_pv
from tern.archiver.series import Series
from tern.archiver.store import ArchiveStore


def _time(text: str | None, default: datetime, what: str) -> datetime:
    if not text:
        return default
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, f"cannot parse {what}={text!r} as ISO 8601 (e.g. 2026-11-19T03:20:00.000Z)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _range(frm: str | None, to: str | None) -> tuple[datetime, datetime]:
    end = _time(to, datetime.now(UTC), "to")
    start = _time(frm, end - timedelta(hours=1), "from")
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


def create_app(store: ArchiveStore) -> FastAPI:
    """The FastAPI application serving ``store`` (see module docstring for the endpoints)."""
    app = FastAPI(title="Tern embedded archiver", docs_url=None, redoc_url=None)

    async def fetch(pv_param: str, start: datetime, end: datetime) -> Series | None:
        try:
            name, binning = parse_pv(pv_param)
        except BinningError as exc:
            raise HTTPException(400, str(exc)) from None
        info = await store.channel(name)
        if info is None:
            return None
        return await store.read(info, start.timestamp(), end.timestamp(), binning)

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

    @app.get("/retrieval/bpl/getMatchingPVs")
    async def matching(pv: str = "*", limit: int = 500) -> list[str]:
        like = pv.replace("%", r"\%").replace("_", r"\_").replace("*", "%").replace("?", "_")
        return (await store.channels(like))[: max(0, limit)]

    return app
