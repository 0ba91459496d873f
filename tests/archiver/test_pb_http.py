"""The embedded archiver's Appliance PB/HTTP (``getData.raw``) and management calls, read by a client Tern did not
write: aapy (dls-controls, PyPI ``aapy``), run in a subprocess (tests/archiver/aapy_read.py). Values, nanosecond
timestamps, alarm severity/status and the chunk per UTC year are checked against the rows read from PostgreSQL
by SQL here, for each scalar type the archiver stores; plus the Appliance's answers for an unknown PV and bad
parameters, getPVStatus and getMatchingPVs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tern.archiver import pb
from tern.archiver.series import Series
from tern.archiver.store import ArchiveStore
from tern.db import create_pool
from tern.embedded.postgres import EmbeddedPostgres
from tests.archiver.helpers import RunningServer, serving
from tests.databases import fresh_database

pytestmark = pytest.mark.postgres

NEW_YEAR = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())  # 1798761600
T1 = NEW_YEAR + 14 * 86400  # mid-January 2027, for the single-year channels
AAPY = Path(__file__).with_name("aapy_read.py")
AACLIENT = Path(__file__).with_name("aaclient_read.py")

# name: (type, enum labels, [(secs, nanos, value, severity, status)]). Nanoseconds and values chosen so their
# encodings hold the bytes the PB line escaping rewrites (0x0A, 0x0D, 0x1B).
CHANNELS: dict[str, tuple[str, tuple[str, ...], list[tuple[int, int, float, int, int]]]] = {
    "PB:DOUBLE": (
        "SCALAR_DOUBLE",
        (),
        [
            (NEW_YEAR - 3, 0, 1 / 3, 0, 0),
            (NEW_YEAR - 2, 10, -2.5e-300, 1, 3),
            (NEW_YEAR - 1, 999_999_999, 1e300, 2, 4),
            (NEW_YEAR, 13, 10.0, 3, 13),
            (NEW_YEAR + 1, 27, 0.1, 0, 0),
            (NEW_YEAR + 2, 123_456_789, -7.25, 0, 0),
        ],
    ),
    "PB:INT": (
        "SCALAR_INT",
        (),
        [(T1 + i, n, v, 0, 0) for i, (n, v) in enumerate([(10, -(2**31)), (13, 2**31 - 1), (27, 10), (0, 0)])],
    ),
    "PB:SHORT": ("SCALAR_SHORT", (), [(T1 + i, 5, v, 0, 0) for i, v in enumerate([-32768, 32767, 10, 13])]),
    "PB:FLOAT": ("SCALAR_FLOAT", (), [(T1 + i, 0, v, 0, 0) for i, v in enumerate([0.5, -1.25, 2.0**100])]),
    "PB:ENUM": ("SCALAR_ENUM", ("Off", "On", "Fault"), [(T1 + i, 0, v, 0, 0) for i, v in enumerate([0, 1, 2, 1])]),
    "PB:BYTE": ("SCALAR_BYTE", (), [(T1 + i, 0, v, 0, 0) for i, v in enumerate([5, 10, 27, 127])]),
}
TYPE_NUMBERS = {
    "SCALAR_SHORT": 1,
    "SCALAR_FLOAT": 2,
    "SCALAR_ENUM": 3,
    "SCALAR_BYTE": 4,
    "SCALAR_INT": 5,
    "SCALAR_DOUBLE": 6,
}


@pytest.fixture(scope="module")
async def archive(embedded_pg: EmbeddedPostgres, pg_template: str) -> AsyncIterator[tuple[RunningServer, asyncpg.Pool]]:
    """The server over one database holding :data:`CHANNELS`, shared by the module's tests: they only read."""
    async with fresh_database(embedded_pg, template=pg_template) as dsn:
        pool = await create_pool(dsn)
        try:
            store = ArchiveStore(pool)
            for name, (kind, labels, rows) in CHANNELS.items():
                units = "MW" if kind == "SCALAR_DOUBLE" else ""
                info = await store.ensure_channel(name, prec=3, units=units, dbr_type=kind, enum_strs=labels)
                await store.append(info.id, [(s, n, float(v), sev, st) for s, n, v, sev, st in rows])
            async with serving(store) as srv:
                yield srv, pool
        finally:
            await pool.close()


def iso(secs: int) -> str:
    return datetime.fromtimestamp(secs, UTC).isoformat()


def aapy_request(
    srv: RunningServer, pv: str, start: int, end: int, status: list[str] | None = None, high_level: bool = True
) -> dict[str, Any]:
    """One read for :func:`aapy_many` (aapy_read.py's arguments)."""
    return {"host": "127.0.0.1", "port": srv.port, "pv": pv, "from": iso(start), "to": iso(end), "status": status,
            "high_level": high_level}  # fmt: skip


async def aapy_many(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """aapy's view of the server, one answer per request, from one subprocess (see aapy_read.py for why a
    subprocess; one for all: each start-up costs ~0.5-1 s)."""
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(AAPY), json.dumps(requests), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    result: list[dict[str, Any]] = json.loads(out)
    assert len(result) == len(requests)
    return result


async def aapy(
    srv: RunningServer, pv: str, start: int, end: int, status: list[str] | None = None, high_level: bool = True
) -> dict[str, Any]:
    """aapy's view of the server for one read."""
    [result] = await aapy_many([aapy_request(srv, pv, start, end, status, high_level)])
    return result


async def db_rows(pool: asyncpg.Pool, pv: str) -> list[tuple[int, int, float, int, int]]:
    """What was archived, read by SQL (not through the store's read path)."""
    rows = await pool.fetch(
        "SELECT s.secs, s.nanos, s.val, s.severity, s.status FROM archiver_samples s"
        " JOIN archiver_channels c ON c.id = s.channel_id WHERE c.name = $1 ORDER BY s.secs, s.nanos",
        pv,
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


@pytest.fixture(scope="module")
async def aapy_reads(archive: tuple[RunningServer, asyncpg.Pool]) -> dict[str, dict[str, Any]]:
    """aapy's read of each channel of :data:`CHANNELS` over its whole range (one subprocess for all)."""
    srv, pool = archive
    requests = []
    for pv, (kind, _, _) in CHANNELS.items():
        rows = await db_rows(pool, pv)
        requests.append(aapy_request(srv, pv, rows[0][0] - 10, rows[-1][0] + 10, high_level=kind != "SCALAR_BYTE"))
    return dict(zip(CHANNELS, await aapy_many(requests), strict=True))


@pytest.mark.parametrize("pv", list(CHANNELS))
async def test_aapy_reads_each_type(
    archive: tuple[RunningServer, asyncpg.Pool], aapy_reads: dict[str, dict[str, Any]], pv: str
) -> None:
    _, pool = archive
    kind, labels, _ = CHANNELS[pv]
    rows = await db_rows(pool, pv)
    got = aapy_reads[pv]
    assert got["http_status"] == 200

    # chunks as aapy splits them: one per UTC year, header naming the PV, its type and the Appliance's headers
    by_year: dict[int, list[tuple[int, int, float, int, int]]] = {}
    for r in rows:
        by_year.setdefault(datetime.fromtimestamp(r[0], UTC).year, []).append(r)
    assert [c["year"] for c in got["chunks"]] == sorted(by_year)
    for chunk in got["chunks"]:
        assert chunk["pvname"] == pv and chunk["type"] == TYPE_NUMBERS[kind]
        assert chunk["headers"].get("PREC") == "3"
        assert chunk["headers"].get("EGU") == ("MW" if kind == "SCALAR_DOUBLE" else None)
        assert {k: v for k, v in chunk["headers"].items() if k.startswith("ENUM_")} == {
            f"ENUM_{i}": label for i, label in enumerate(labels)
        }
        base = int(datetime(chunk["year"], 1, 1, tzinfo=UTC).timestamp())
        expected = [(s - base, n, sev, st) for s, n, _, sev, st in by_year[chunk["year"]]]
        assert [(e[0], e[1], e[3], e[4]) for e in chunk["events"]] == expected  # exact seconds and nanoseconds
        if kind == "SCALAR_BYTE":  # ScalarByte's val is one byte
            assert [e[2] for e in chunk["events"]] == [[int(r[2])] for r in by_year[chunk["year"]]]
        else:
            assert [e[2] for e in chunk["events"]] == [r[2] for r in by_year[chunk["year"]]]
    if kind == "SCALAR_BYTE":
        return  # aapy 0.12's PbFetcher cannot hold a bytes value in its arrays (its limit, any server)

    # values and times through aapy's high-level API (PbFetcher.get_values)
    values = [v[0] for v in got["values"]]
    assert values == [r[2] for r in rows]  # exact: doubles round-trip, the rest are exactly representable
    assert got["severities"] == [float(r[3]) for r in rows]
    # aapy folds seconds and nanoseconds into one double (~0.2 us resolution at 1.8e9 s): compare within 1 us
    assert got["timestamps"] == pytest.approx([r[0] + r[1] * 1e-9 for r in rows], abs=1e-6, rel=0)
    assert got["enum_options"] == {str(i): label for i, label in enumerate(labels)}


async def test_new_year_gives_two_chunks_in_the_raw_body(archive: tuple[RunningServer, asyncpg.Pool]) -> None:
    srv, _ = archive
    async with httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.get(
            "/retrieval/data/getData.raw",
            params={"pv": "PB:DOUBLE", "from": iso(NEW_YEAR - 60), "to": iso(NEW_YEAR + 60)},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
        # escaped lines hold no raw newline: an empty line (two newlines) separates chunks and nothing else does
        assert r.content.count(b"\n\n") == 1
        assert r.content.count(b"\n") == 2 + 6 + 1  # two header lines, six samples, one empty line
        # only December's part: the sample at 23:59:59.999999999 is after to=23:59:59 (seconds and nanoseconds)
        r = await http.get(
            "/retrieval/data/getData.raw",
            params={"pv": "PB:DOUBLE", "from": iso(NEW_YEAR - 60), "to": iso(NEW_YEAR - 1)},
        )
        assert r.content.count(b"\n\n") == 0 and r.content.count(b"\n") == 1 + 2


async def test_binned_pb_is_scalar_double_means(archive: tuple[RunningServer, asyncpg.Pool]) -> None:
    srv, pool = archive
    rows = await db_rows(pool, "PB:INT")
    got = await aapy(srv, "mean_86400(PB:INT)", T1 - 10, T1 + 10)
    assert [c["type"] for c in got["chunks"]] == [TYPE_NUMBERS["SCALAR_DOUBLE"]]
    day = T1 - T1 % 86400
    assert got["values"] == [[sum(r[2] for r in rows) / len(rows)]]
    assert got["chunks"][0]["events"][0][0] == day - NEW_YEAR  # the bin's start, seconds into 2027


async def test_empty_range_and_unknown_pv_as_the_appliance(archive: tuple[RunningServer, asyncpg.Pool]) -> None:
    srv, _ = archive
    empty, unknown = await aapy_many(
        [aapy_request(srv, "PB:INT", T1 - 100, T1 - 50), aapy_request(srv, "NOT:ARCHIVED", T1 - 100, T1 + 100)]
    )
    assert empty["http_status"] == 200 and empty["values"] == [] and len(empty["chunks"]) == 1  # a header, no samples
    assert unknown["http_status"] == 404 and unknown["values"] == [] and unknown["chunks"] == []


async def test_pv_status_through_aapy(archive: tuple[RunningServer, asyncpg.Pool]) -> None:
    srv, pool = archive
    got = await aapy(srv, "PB:INT", T1, T1 + 1, status=["PB:DOUBLE", "NOT:ARCHIVED", "PB:?NUM"])
    last = max(r[0] for r in await db_rows(pool, "PB:DOUBLE"))
    assert got["status"] == [
        {
            "pvName": "PB:DOUBLE",
            "pvNameOnly": "PB:DOUBLE",
            "status": "Being archived",
            "appliance": "tern-embedded",
            "isMonitored": "true",
            "samplingPeriod": "0.0",
            "connectionState": "unknown",
            "lastEvent": datetime.fromtimestamp(last, UTC).strftime("%b/%d/%Y %H:%M:%S +00:00"),
        }
    ]
    assert [(s["pvName"], s["status"]) for s in got["statuses"]] == [
        ("PB:DOUBLE", "Being archived"),
        ("NOT:ARCHIVED", "Not being archived"),
        ("PB:ENUM", "Being archived"),
    ]


async def test_matching_pvs_and_appliance_info(archive: tuple[RunningServer, asyncpg.Pool]) -> None:
    srv, _ = archive
    names = sorted(CHANNELS)
    async with httpx.AsyncClient(base_url=srv.url) as http:

        async def matching(path: str = "/retrieval/bpl/getMatchingPVs", **params: Any) -> Any:
            r = await http.get(path, params=params)
            assert r.status_code == 200, r.text
            return r.json()

        assert await matching(pv="PB:*") == names
        assert await matching(pv="PB:?NT") == ["PB:INT"]
        assert await matching(regex="PB:(INT|ENUM)") == ["PB:ENUM", "PB:INT"]
        assert await matching(regex="INT") == []  # a regex matches the whole name, as Java's Pattern.matches
        assert await matching(pv="PB:*", limit=2) == names[:2]
        assert await matching(pv="PB:*", limit=-1) == names
        assert await matching("/mgmt/bpl/getAllPVs", regex=".*BYTE") == ["PB:BYTE"]
        info = (await http.get("/mgmt/bpl/getApplianceInfo")).json()
        assert info["retrievalURL"] == f"{srv.url}/retrieval/bpl" and info["mgmtURL"] == f"{srv.url}/mgmt/bpl"


@pytest.mark.parametrize(
    ("path", "params", "names"),
    [
        ("/retrieval/data/getData.raw", {"from": "2027-01-01T00:00:00Z"}, "pv="),
        ("/retrieval/data/getData.raw", {"pv": "PB:INT", "from": "yesterday"}, "from='yesterday'"),
        ("/retrieval/data/getData.raw", {"pv": "PB:INT", "to": "2027-13-01"}, "to='2027-13-01'"),
        ("/retrieval/data/getData.raw", {"pv": "PB:INT", "from": iso(T1 + 5), "to": iso(T1)}, "is after to"),
        ("/retrieval/data/getData.raw", {"pv": "foo_10(PB:INT)"}, "foo"),
        ("/retrieval/bpl/getMatchingPVs", {"regex": "PB:("}, "regex='PB:('"),
        ("/mgmt/bpl/getPVStatus", {}, "pv="),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    archive: tuple[RunningServer, asyncpg.Pool], path: str, params: dict[str, str], names: str
) -> None:
    srv, _ = archive
    async with httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.get(path, params=params)
    assert r.status_code == 400 and names in r.json()["detail"], r.text


def test_encode_decode_round_trip_and_escaping() -> None:
    """The encoder's lines hold no raw newline or CR whatever the message bytes; decode inverts encode."""
    rows = CHANNELS["PB:DOUBLE"][2]
    s = Series("PB:DOUBLE", secs=[r[0] for r in rows], nanos=[r[1] for r in rows], vals=[r[2] for r in rows],
               severity=[r[3] for r in rows], status=[r[4] for r in rows])  # fmt: skip
    body = pb.encode(s, "SCALAR_DOUBLE", {"PREC": "3"})
    assert b"\r" not in body
    assert b"\x1b\x02" in body and b"\x1b\x03" in body  # nanos 10 and 13 needed escaping
    chunks = pb.decode(body)
    assert [c.year for c in chunks] == [2026, 2027]
    assert [x for c in chunks for x in c.samples] == [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
    with pytest.raises(pb.PBError, match="not an integer"):
        pb.encode(s, "SCALAR_INT")
    with pytest.raises(pb.PBError, match="bad escape"):
        pb.unescape_line(b"ab\x1b\x07")


def test_monitor_maps_channel_access_types() -> None:
    from epics import dbr

    from tern.archiver.monitor import payload_type

    assert payload_type(dbr.TIME_DOUBLE) == payload_type(dbr.DOUBLE) == "SCALAR_DOUBLE"
    assert payload_type(dbr.TIME_LONG) == payload_type(dbr.CTRL_LONG) == "SCALAR_INT"
    assert payload_type(dbr.TIME_ENUM) == "SCALAR_ENUM"
    assert payload_type(dbr.TIME_SHORT) == "SCALAR_SHORT"
    assert payload_type(dbr.TIME_FLOAT) == "SCALAR_FLOAT"
    assert payload_type(dbr.TIME_CHAR) == "SCALAR_BYTE"
    assert payload_type(None) == payload_type(-1) == "SCALAR_DOUBLE"


@pytest.mark.parametrize("pv", ["PB:DOUBLE", "PB:INT", "PB:FLOAT"])
async def test_aaclient_reads_its_types(archive: tuple[RunningServer, asyncpg.Pool], pv: str) -> None:
    """A second client Tern did not write, with its own decoder (C++ over protobuf-lite): aaclient (M. Davidsaver,
    PyPI ``aaclient``), in a subprocess (aaclient_read.py). It starts from getApplianceInfo, searches with
    getAllPVs, and reads getData.raw. Not ScalarShort, ScalarEnum or ScalarByte: aaclient 0.0.5 writes their
    sint32 values into 16- and 8-bit arrays (wrong values, a segmentation fault for ScalarByte), whatever server sent;
    aapy decodes the same bytes right in test_aapy_reads_each_type."""
    srv, pool = archive
    rows = await db_rows(pool, pv)
    args = {"url": srv.url, "pv": pv, "from": rows[0][0] - 10, "to": rows[-1][0] + 10}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(AACLIENT), json.dumps(args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    got = json.loads(out)
    assert got["search"] == [pv]
    assert got["sec"] == [r[0] for r in rows]
    assert got["ns"] == [r[1] for r in rows]
    assert got["severity"] == [r[3] for r in rows]
    assert got["status"] == [r[4] for r in rows]
    assert got["values"] == [r[2] for r in rows]


@pytest.mark.load
async def test_fifty_pb_requests_in_flight(archive: tuple[RunningServer, asyncpg.Pool]) -> None:
    """50 getData.raw and getPVStatus requests at once (PostgreSQL behind each): all answered, each body exact."""
    srv, pool = archive
    names = list(CHANNELS) * 9  # 54 requests
    expected = {pv: await db_rows(pool, pv) for pv in CHANNELS}
    limits = httpx.Limits(max_connections=60)
    async with httpx.AsyncClient(base_url=srv.url, limits=limits, timeout=120) as http:

        async def one(pv: str) -> list[tuple[int, int, Any, int, int]]:
            rows = expected[pv]
            r = await http.get(
                "/retrieval/data/getData.raw",
                params={"pv": pv, "from": iso(rows[0][0] - 5), "to": iso(rows[-1][0] + 5)},
            )
            assert r.status_code == 200, r.text
            status = await http.get("/mgmt/bpl/getPVStatus", params={"pv": pv})
            assert status.json()[0]["status"] == "Being archived"
            return [x for c in pb.decode(r.content) for x in c.samples]

        got = await asyncio.gather(*(one(pv) for pv in names))
    for pv, samples in zip(names, got, strict=True):
        want = expected[pv]
        vals = [list(v) if isinstance(v, bytes) else v for _, _, v, _, _ in samples]
        assert [(s, n, sev, st) for s, n, _, sev, st in samples] == [(r[0], r[1], r[3], r[4]) for r in want]
        assert vals == [[int(r[2])] if CHANNELS[pv][0] == "SCALAR_BYTE" else r[2] for r in want]


@pytest.mark.ca
async def test_aapy_reads_what_the_monitor_archived(pg_dsn: str, ca_sim: int) -> None:
    """End to end: the monitor archives the simulated accelerator over Channel Access (a DBR_DOUBLE and a DBR_LONG
    channel), the server sends PB of the types it recorded, aapy reads exactly the rows in PostgreSQL."""
    import time

    from tern.archiver.monitor import ChannelMonitor

    channels = ["SR:RF:CAVITY:02:POWER:FWD", "SR:RF:CAVITY:01:STATUS:READY"]
    pool = await create_pool(pg_dsn)
    try:
        store = ArchiveStore(pool)
        mon = ChannelMonitor(store, channels, flush_period_s=0.2)
        try:
            await mon.start()
            task = asyncio.create_task(mon.run())
            deadline = time.monotonic() + 60
            while len(await db_rows(pool, channels[0])) < 2 or not await db_rows(pool, channels[1]):
                assert time.monotonic() < deadline, mon.written
                await asyncio.sleep(0.2)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            mon.stop()
        async with serving(store) as srv:
            rows_of = {pv: await db_rows(pool, pv) for pv in channels}
            reads = await aapy_many(
                [aapy_request(srv, pv, rows[0][0] - 1, rows[-1][0] + 2) for pv, rows in rows_of.items()]
            )
            for pv, type_number, got in zip(
                channels, [TYPE_NUMBERS["SCALAR_DOUBLE"], TYPE_NUMBERS["SCALAR_INT"]], reads, strict=True
            ):
                rows = rows_of[pv]
                assert [c["type"] for c in got["chunks"]] == [type_number]
                assert [v[0] for v in got["values"]] == [r[2] for r in rows]
                events = [(e[1], e[3], e[4]) for c in got["chunks"] for e in c["events"]]
                assert events == [(r[1], r[3], r[4]) for r in rows]  # nanoseconds of the IOC's timestamps
    finally:
        await pool.close()


def test_generated_module_matches_the_proto() -> None:
    """The committed EPICSEvent_pb2 was generated from the committed .proto: same messages, fields and enum."""
    import re

    from tern.archiver.proto import EPICSEvent_pb2 as ee

    text = (Path(pb.__file__).parent / "proto" / "EPICSEvent.proto").read_text()
    blocks = dict(re.findall(r"^(?:message|enum) (\w+) \{(.*?)^\}", text, flags=re.S | re.M))
    assert set(ee.DESCRIPTOR.message_types_by_name) | set(ee.DESCRIPTOR.enum_types_by_name) == set(blocks)
    for name, msg in ee.DESCRIPTOR.message_types_by_name.items():
        fields = {f: int(n) for f, n in re.findall(r"(\w+) = (\d+)", blocks[name]) if f != "default"}
        assert {f.name: f.number for f in msg.fields} == fields, name
    enum = {k: int(v) for k, v in re.findall(r"(\w+) = (\d+)", blocks["PayloadType"])}
    assert {v.name: v.number for v in ee.DESCRIPTOR.enum_types_by_name["PayloadType"].values} == enum


async def test_default_range_is_the_appliance_s(pg_dsn: str) -> None:
    """No from/to: to = now + 1 h, from = to - 1 day (DataRetrievalServlet.getRequestTimes)."""
    import time

    pool = await create_pool(pg_dsn)
    try:
        store = ArchiveStore(pool)
        info = await store.ensure_channel("PB:RECENT")
        now = int(time.time())
        times = [now - 26 * 3600, now - 23 * 3600 + 600, now + 1800, now + 2 * 3600]  # in range: the middle two
        await store.append(info.id, [(t, 0, float(i), 0, 0) for i, t in enumerate(times)])
        async with serving(store) as srv, httpx.AsyncClient(base_url=srv.url) as http:
            r = await http.get("/retrieval/data/getData.raw", params={"pv": "PB:RECENT"})
        assert r.status_code == 200
        assert [s[0] for c in pb.decode(r.content) for s in c.samples] == times[1:3]
    finally:
        await pool.close()
