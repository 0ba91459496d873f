"""The archiver connector against the embedded archiver over real HTTP (uvicorn on loopback, PostgreSQL):
the Appliance JSON shape, binning, empty range, unknown channel, bad operator, a server that goes away
(retries, then a clear failure) and comes back (the retry succeeds); the first-start history with the demo trip;
Channel Access monitoring of the simulated accelerator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tern.archiver.backfill import backfill
from tern.archiver.binning import Binning
from tern.archiver.client import ArchiverClient, ArchiverError, ArchiverUnavailable, EmptyRange, UnknownChannel
from tern.archiver.store import ArchiveStore
from tern.config import TernSettings
from tern.db import create_pool
from tern.sim.history import demo_events
from tests.archiver.helpers import RunningServer, serving

pytestmark = pytest.mark.postgres
T0 = 1_800_000_000 - 1_800_000_000 % 3600  # an hour boundary (2027-01-15T08:00:00Z)
CH = "TEST:RAMP"


@pytest.fixture
async def store(pg_dsn: str) -> AsyncIterator[ArchiveStore]:
    pool = await create_pool(pg_dsn)
    try:
        st = ArchiveStore(pool)
        info = await st.ensure_channel(CH, prec=3, units="kW")
        # 1 Hz for an hour: value = seconds since T0; severity MINOR during the last minute
        await st.append(info.id, [(T0 + i, 250_000_000, float(i), 1 if i >= 3540 else 0, 4 if i >= 3540 else 0)
                                  for i in range(3600)])  # fmt: skip
        yield st
    finally:
        await pool.close()


def at(secs: float) -> datetime:
    return datetime.fromtimestamp(secs, UTC)


async def test_json_shape_is_the_appliance_s(store: ArchiveStore) -> None:
    async with serving(store) as srv, httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.get(
            "/retrieval/data/getData.json",
            params={"pv": CH, "from": "2027-01-15T08:00:00.000Z", "to": "2027-01-15T08:00:02.500Z"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == [
            {
                "meta": {"name": CH, "PREC": "3", "EGU": "kW"},
                "data": [
                    {"secs": T0, "nanos": 250_000_000, "val": 0.0, "severity": 0, "status": 0},
                    {"secs": T0 + 1, "nanos": 250_000_000, "val": 1.0, "severity": 0, "status": 0},
                    {"secs": T0 + 2, "nanos": 250_000_000, "val": 2.0, "severity": 0, "status": 0},
                ],
            }
        ]
        multi = await http.get(
            "/retrieval/data/getDataForPVs.json",
            params=[
                ("pv", CH),
                ("pv", "NOT:ARCHIVED"),
                ("from", "2027-01-15T08:00:00Z"),
                ("to", "2027-01-15T08:00:00Z"),
            ],
        )
        assert [el["meta"]["name"] for el in multi.json()] == [CH]
        assert (await http.get("/retrieval/bpl/getMatchingPVs", params={"pv": "TEST:*"})).json() == [CH]


async def test_client_raw_binned_empty_unknown(store: ArchiveStore) -> None:
    async with serving(store) as srv, ArchiverClient(srv.url, attempts=2, backoff_s=0.05) as c:
        raw = await c.get(CH, at(T0), at(T0 + 3599.5))
        assert len(raw) == 3600 and raw.vals[:3] == [0.0, 1.0, 2.0] and raw.binning is None
        s = raw.summary()
        assert (s.count, s.min, s.max, s.max_severity, s.units) == (3600, 0.0, 3599.0, 1, "kW")
        mean = await c.get(CH, at(T0), at(T0 + 3599.5), Binning("mean", 600))
        assert mean.secs == [T0 + 600 * k for k in range(6)] and mean.binning == "mean_600"
        assert mean.vals == [299.5 + 600 * k for k in range(6)]
        assert (await c.get(CH, at(T0), at(T0 + 3599.5), Binning("firstSample", 1200))).vals == [0.0, 1200.0, 2400.0]
        assert (await c.get(CH, at(T0), at(T0 + 3599.5), Binning("lastSample", 1800))).vals == [1799.0, 3599.0]
        assert (await c.get(CH, at(T0), at(T0 + 3599.5), Binning("count", 3600))).vals == [3600.0]
        assert (await c.get(CH, at(T0), at(T0 + 3599.5), Binning("max", 3600))).severity == [1]
        with pytest.raises(EmptyRange, match=r"no archived sample between 2027-01-15T09:00:00\.000Z"):
            await c.get(CH, at(T0 + 3600), at(T0 + 7200))
        with pytest.raises(UnknownChannel, match="'NO:SUCH:PV' is not archived"):
            await c.get("NO:SUCH:PV", at(T0), at(T0 + 10))
        many = await c.get_many([CH, "NO:SUCH:PV"], at(T0), at(T0 + 9.5))
        assert len(many[CH]) == 10 and isinstance(many["NO:SUCH:PV"], UnknownChannel)  # type: ignore[arg-type]
        each = await c.get_each([CH, "NO:SUCH:PV"], at(T0 + 7200), at(T0 + 7300))
        assert isinstance(each[CH], EmptyRange) and isinstance(each["NO:SUCH:PV"], UnknownChannel)


def count_requests(c: ArchiverClient) -> list[str]:
    """The requests ``c`` sends from now on (their URLs), recorded by an httpx request hook."""
    sent: list[str] = []

    async def hook(request: httpx.Request) -> None:
        sent.append(str(request.url))

    c._http.event_hooks["request"].append(hook)
    return sent


async def test_bad_requests_are_refused_not_retried(store: ArchiveStore) -> None:
    async with serving(store) as srv, ArchiverClient(srv.url, attempts=5, backoff_s=2) as c:
        sent = count_requests(c)
        with pytest.raises(ArchiverError, match=r"HTTP 400.*unknown binning operator 'avg'"):
            await c._get_json("/retrieval/data/getData.json", [("pv", f"avg_60({CH})")], CH)
        with pytest.raises(ArchiverError, match=r"HTTP 400.*after to"):
            await c._get_json(
                "/retrieval/data/getData.json",
                [("pv", CH), ("from", "2027-01-02T00:00Z"), ("to", "2027-01-01T00:00Z")],
                CH,
            )
        assert len(sent) == 2, sent  # a 4xx is final: one request each, none repeated


async def test_server_down_mid_run_retries_then_fails_clearly(store: ArchiveStore) -> None:
    srv = RunningServer(store)
    await srv.start()
    async with ArchiverClient(srv.url, attempts=3, backoff_s=0.1, timeout_s=2) as c:
        assert len(await c.get(CH, at(T0), at(T0 + 9.5))) == 10
        await srv.stop()  # the archiver goes away between two requests of the same client
        sent = count_requests(c)
        t = time.monotonic()
        with pytest.raises(ArchiverUnavailable, match=f"archiver at {srv.url} did not answer after 3 attempts"):
            await c.get(CH, at(T0), at(T0 + 9.5))
        assert len(sent) == 3, sent
        assert time.monotonic() - t >= 0.3  # a lower bound only: waited 0.1 + 0.2 s between the three attempts

    async with ArchiverClient(srv.url, attempts=6, backoff_s=0.2, timeout_s=2) as c:
        sent = count_requests(c)
        second = asyncio.Event()

        async def retrying(_request: httpx.Request) -> None:
            if len(sent) >= 2:
                second.set()

        c._http.event_hooks["request"].append(retrying)

        async def come_back() -> None:  # once the first attempt was refused and the client retries (no fixed sleep)
            await second.wait()
            await srv.start()

        back = asyncio.create_task(come_back())
        try:
            assert len(await c.get(CH, at(T0), at(T0 + 9.5))) == 10  # refused at first, answered on a retry
            assert len(sent) >= 2, sent
        finally:
            await back
            await srv.stop()


async def test_first_start_history_holds_the_demo_trip(pg_dsn: str) -> None:
    settings = TernSettings(database={"url": pg_dsn})
    end = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    channels = ["SR:RF:CAVITY:01:TEMPERATURE:RB", "SR:RF:CAVITY:01:POWER:REV", "SR:RF:CAVITY:01:POWER:FWD",
                "SR:DIAG:DCCT:01:CURRENT:RB", "NOT:SERVED"]  # fmt: skip
    pool = await create_pool(pg_dsn)
    try:
        st = ArchiveStore(pool)

        async def run() -> dict[str, int]:
            return await backfill(
                st, channels, end=end, days=7, period_s=30.0, limits_path=settings.control.limits_path
            )

        written = await run()
        assert written["SR:RF:CAVITY:01:POWER:REV"] == 7 * 86400 // 30 and "NOT:SERVED" not in written
        assert await run() == {}  # once only
        trip = demo_events(end)[0][-1]
        assert trip.peak == datetime(2026, 11, 19, 3, 15, tzinfo=UTC)  # DEMO-026: 4 days ago, 03:15
        async with serving(st) as srv, ArchiverClient(srv.url) as c:
            before = await c.get_many(channels[:3], trip.peak - timedelta(hours=3), trip.peak - timedelta(seconds=1))
            temp, rev, fwd = (before[ch] for ch in channels[:3])
            assert not isinstance(temp, Exception) and not isinstance(rev, Exception)
            assert temp.vals[0] < 28 and max(temp.vals) > 33.5 and rev.vals[0] < 10 and max(rev.vals) > 80
            assert max(rev.severity) == 2 and max(temp.severity) == 1
            after = await c.get(channels[2], trip.peak, trip.peak + timedelta(minutes=30))
            assert set(after.vals) == {0.0}  # forward power off after the interlock trip
            assert not isinstance(fwd, Exception) and min(fwd.vals) > 400
    finally:
        await pool.close()


@pytest.mark.ca
async def test_monitor_archives_channel_access_updates(pg_dsn: str, ca_sim: int) -> None:
    from tern.archiver.monitor import ChannelMonitor
    from tests.conftest import SIM_CLOCK_OFFSET_S

    channels = ["SR:RF:CAVITY:02:POWER:FWD", "SR:DIAG:DCCT:01:CURRENT:RB", "SR:RF:CAVITY:01:STATUS:READY"]
    pool = await create_pool(pg_dsn)
    st = ArchiveStore(pool)
    mon = ChannelMonitor(st, channels, flush_period_s=0.2)

    async def archived(channel: str) -> int:
        info = await st.channel(channel)
        return 0 if info is None else len(await st.read(info, 0, time.time() + 3600, None))

    try:
        await mon.start()
        task = asyncio.create_task(mon.run())
        deadline = time.monotonic() + 60
        # the value on connection, then the simulator's drift once a second; READY does not drift: its first value
        while await archived(channels[0]) < 3 or not await archived(channels[2]):
            assert time.monotonic() < deadline, (mon.written, await archived(channels[0]))
            await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        mon.stop()
    try:
        info = await st.channel("SR:RF:CAVITY:02:POWER:FWD")
        assert info is not None and info.prec == 4 and info.units and info.dbr_type == "SCALAR_DOUBLE"
        now = time.time()
        s = await st.read(info, now - 3600, now + 3600, None)
        assert len(s) >= 3  # the value on connection, then one update a second
        # camonitor semantics: the IOC's timestamps (the simulated IOC's clock runs SIM_CLOCK_OFFSET_S ahead)
        assert all(abs(t - (now + SIM_CLOCK_OFFSET_S)) < 30 for t in s.times())
        assert set(s.severity) == {0} and set(s.status) == {0}
        ready = await st.channel("SR:RF:CAVITY:01:STATUS:READY")
        assert ready is not None and (await st.read(ready, 0, now + 3600, None)).vals[:1] == [1.0]
        assert ready.dbr_type == "SCALAR_INT"  # caproto's ChannelInteger is DBR_LONG: the Appliance's ScalarInt
        assert mon.written >= len(s)
    finally:
        await pool.close()


async def test_migration_is_applied(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        pool = await create_pool(pg_dsn)
        await pool.close()
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 300") == 1
    finally:
        await conn.close()


async def test_a_range_ends_at_its_end_to_the_nanosecond(store: ArchiveStore) -> None:
    """Samples are stored as (seconds, nanoseconds): one at T0+10.25 s is after a range ending at T0+10 s (the
    demo's binned night gained a 241st minute when a 10 s sample fell 0.3 s after the range's end)."""
    info = await store.ensure_channel(CH)
    raw = await store.read(info, T0, T0 + 10, None)
    assert raw.secs == [T0 + i for i in range(10)]  # T0+0.25 .. T0+9.25; T0+10.25 is out
    inner = await store.read(info, T0 + 0.5, T0 + 10.5, None)
    assert inner.secs == [T0 + i for i in range(1, 11)]
    binned = await store.read(info, T0, T0 + 120, Binning.parse("mean_60"))
    assert binned.secs == [T0, T0 + 60]  # no third bin from the sample at T0+120.25
