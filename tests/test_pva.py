"""PVAccess channels (issue 24): the simulator's channels over p4p's server, read and written with verification by
Tern's p4p client, checked against the same channels read over Channel Access (pyepics) as the independent view.

The session's simulator (``ca_sim``, ``python -m tern.sim``) serves every channel over both protocols, from one
model. Its IOC clock runs ``SIM_CLOCK_OFFSET_S`` ahead of this host's, so a verification that compared server
stamps with the local clock would fail here.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tern.control import channel_access as ca
from tern.control import pva
from tern.control.addressing import ChannelAddressError, bare_name, parse_address
from tern.control.ca_context import attach_thread
from tern.control.channel_io import readback_name
from tern.control.limits import LimitsDatabase, LimitsDatabaseError
from tern.models import Verification
from tests.conftest import (
    CA_SIM_PVA_PORT,
    IGNORED_SETPOINT,
    SIM_CLOCK_OFFSET_S,
    STUCK_WIDE_SETPOINT,
)

BURST = [f"SR:MAG:HCM:{n:02d}:CURRENT:SP" for n in range(21, 71)]  # 50 setpoints no other test writes


@pytest.fixture
def ctx(ca_sim: int):
    c = pva.make_context(pva.client_config("127.0.0.1", CA_SIM_PVA_PORT["port"]))
    yield c
    c.close()


def _wait_ca(name: str, target: float, tol: float, timeout_s: float = 5.0) -> float:
    """Poll ``name`` over Channel Access until it is within ``tol`` of ``target`` (or time out); return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = ca.read_value(name)
        if abs(v - target) <= tol or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


# --- addresses and configuration -----------------------------------------------------------------------------
def test_addresses() -> None:
    assert parse_address("pva://X:SP") == parse_address("PVA://X:SP")
    assert parse_address("pva://X:SP").protocol == "pva" and bare_name("pva://X:SP") == "X:SP"
    assert parse_address("X:SP").protocol == "ca" and parse_address("ca://X:SP").name == "X:SP"
    assert parse_address("X:SP", default="pva").protocol == "pva"
    assert str(parse_address("pva://X:SP")) == "pva://X:SP" and str(parse_address("ca://X:SP")) == "X:SP"
    for bad in ("pva://", "http://X:SP", "  "):
        with pytest.raises(ChannelAddressError):
            parse_address(bad)


def test_client_config() -> None:
    conf = pva.client_config("127.0.0.1 10.0.0.5:5999", 5075)
    assert conf["EPICS_PVA_NAME_SERVERS"] == "127.0.0.1:5075 10.0.0.5:5999"
    assert conf["EPICS_PVA_AUTO_ADDR_LIST"] == "NO" and conf["EPICS_PVA_ADDR_LIST"] == ""
    with pytest.raises(ValueError, match="empty"):
        pva.client_config(" ", 5075)
    with pytest.raises(ValueError, match="port"):
        pva.client_config("host:70000", 5075)


# --- reads -----------------------------------------------------------------------------------------------------
def test_reads_match_channel_access(ctx) -> None:
    """Value, control limits and timestamp over PVAccess are those Channel Access reports for the same channel."""
    name = "SR:MAG:QF:03:CURRENT:SP"
    (r,) = pva.read_channels(ctx, [name])
    (c,) = ca.read_channels([name])
    assert r.channel == f"pva://{name}" and r.connected and r.error is None
    assert r.value == pytest.approx(c.value)
    assert (r.lower_ctrl_limit, r.upper_ctrl_limit) == pytest.approx((c.lower_ctrl_limit, c.upper_ctrl_limit))
    assert r.units == c.units == "A"
    epics = attach_thread()
    md = epics.get_pv(name, form="time").get_with_metadata(form="time", use_monitor=False, timeout=2.0)
    assert r.timestamp is not None
    assert r.timestamp.timestamp() == pytest.approx(md["timestamp"], abs=1e-6)  # one model, one IOC clock


def test_unreachable_channel_is_reported_not_raised(ctx) -> None:
    readings = pva.read_channels(ctx, ["SR:MAG:QF:03:CURRENT:SP", "NO:SUCH:CHANNEL"], timeout_s=0.5)
    assert readings[0].connected and not readings[1].connected
    assert readings[1].error == "not connected within 0.5 s"
    with pytest.raises(pva.PVAccessError, match="NO:SUCH:CHANNEL"):
        pva.read_value(ctx, "NO:SUCH:CHANNEL", timeout_s=0.5)


def test_image_and_table(ctx) -> None:
    """An NTNDArray image and an NTTable come back as data, summarised in the reading."""
    img = pva.structured_value(pva._get(ctx, "SIM:CAMERA:IMAGE", 2.0))
    assert img is not None and img["kind"] == "image"
    a = img["array"]
    assert a.shape == (48, 64) and a.dtype == np.uint16
    # the simulator draws a Gaussian spot at (20, 30), peak 4000 over a floor of 100, sigma 6: check it directly
    assert np.unravel_index(np.argmax(a), a.shape) == (20, 30)
    assert int(a[20, 30]) == 4100 and int(a[0, 0]) == int(100 + 4000 * np.exp(-(20**2 + 30**2) / 72))
    table = pva.structured_value(pva._get(ctx, "SIM:BPM:TABLE", 2.0))
    assert table is not None and list(table["columns"]) == ["name", "x", "y"]
    assert list(table["columns"]["name"][:2]) == ["SR:BPM:01", "SR:BPM:02"]
    assert table["columns"]["x"][11] == pytest.approx(0.12)
    readings = pva.read_channels(ctx, ["SIM:CAMERA:IMAGE", "SIM:BPM:TABLE"])
    assert readings[0].value == "NTNDArray image 48x64 uint16, min 100, max 4100"
    assert readings[1].value == "NTTable 12 rows x 3 columns (name, x, y)"


# --- writes ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["callback", "readback"])
def test_verified_write_lands_on_the_model(ctx, level: str) -> None:
    name = "SR:MAG:QD:11:CURRENT:SP" if level == "callback" else "SR:MAG:QD:12:CURRENT:SP"
    before = pva.read_value(ctx, name)
    target = round(before + 5.0, 3)
    record = pva.write_channel(
        ctx,
        name,
        target,
        Verification(level=level, tolerance_percent=1.0),
        previous_value=before,
        readback_timeout_s=5.0,
    )
    assert record.verified, record.message
    assert record.channel == f"pva://{name}" and record.verification == level
    assert record.setpoint_timestamp is not None
    # the IOC's clock, not this host's: the stamp is SIM_CLOCK_OFFSET_S ahead
    assert record.setpoint_timestamp.timestamp() > time.time() + SIM_CLOCK_OFFSET_S - 60
    assert ca.read_value(name) == pytest.approx(target)  # the independent view: the same channel over CA
    if level == "readback":
        assert record.readback == pytest.approx(target, rel=0.01)
        assert _wait_ca(readback_name(name), target, 0.01 * target) == pytest.approx(target, rel=0.01)


def test_ignored_put_is_not_verified(ctx) -> None:
    """A server that completes the put without processing it: the timestamp did not advance, so not verified."""
    before = pva.read_value(ctx, IGNORED_SETPOINT)
    record = pva.write_channel(
        ctx, IGNORED_SETPOINT, before + 10.0, Verification(level="callback"), previous_value=before
    )
    assert not record.verified
    assert "did not advance" in record.message
    assert ca.read_value(IGNORED_SETPOINT) == pytest.approx(before)


def test_stuck_readback_is_not_verified(ctx) -> None:
    """The readback never follows. The setpoint is put back afterwards: other tests of the session expect the
    stuck setpoint to equal its readback."""
    before = pva.read_value(ctx, STUCK_WIDE_SETPOINT)
    try:
        record = pva.write_channel(
            ctx,
            STUCK_WIDE_SETPOINT,
            before + 10.0,
            Verification(level="readback"),
            previous_value=before,
            readback_timeout_s=0.6,
        )
    finally:
        ctx.put(STUCK_WIDE_SETPOINT, before, wait=True)
    assert not record.verified
    assert "was not updated after the put" in record.message
    assert ca.read_value(STUCK_WIDE_SETPOINT) == pytest.approx(before)


def test_unreachable_write_writes_nothing(ctx) -> None:
    with pytest.raises(pva.PVAccessError, match="NO:SUCH:SP"):
        pva.write_channel(
            ctx, "NO:SUCH:SP", 1.0, Verification(level="callback"), previous_value=None, connect_timeout_s=0.5
        )


def test_closed_put_window_writes_nothing(ctx) -> None:
    name = "SR:MAG:QD:13:CURRENT:SP"
    before = pva.read_value(ctx, name)
    with pytest.raises(pva.PVAccessError, match="window closed"):
        pva.write_channel(
            ctx,
            name,
            before + 5.0,
            Verification(level="callback"),
            previous_value=before,
            put_not_after=time.monotonic() - 1.0,
        )
    assert ca.read_value(name) == pytest.approx(before)


# --- concurrency -----------------------------------------------------------------------------------------------
@pytest.mark.load
async def test_fifty_concurrent_reads_and_writes(ca_sim: int) -> None:
    """50 callers at once through one client: each reads its channel and writes a distinct value, verified at
    level readback; every value is then read over Channel Access."""
    client = pva.PVAccessClient(pva.client_config("127.0.0.1", CA_SIM_PVA_PORT["port"]), max_concurrency=8)
    try:
        befores = await asyncio.gather(*(client.read_value(n) for n in BURST))
        targets = [round(max(-11.0, min(11.0, b + 1.0 + i / 100)), 3) for i, b in enumerate(befores)]
        records = await asyncio.gather(
            *(
                client.write_channel(
                    n,
                    t,
                    Verification(level="readback", tolerance_percent=0.5),
                    previous_value=b,
                    readback_timeout_s=10.0,
                )
                for n, t, b in zip(BURST, targets, befores, strict=True)
            )
        )
        readings = await asyncio.gather(*(client.read_channels([n]) for n in BURST))
    finally:
        client.close()
    bad = [r for r in records if not r.verified]
    assert not bad, [r.message for r in bad[:3]]
    assert [r[0].value for r in readings] == pytest.approx(targets)
    assert [ca.read_value(n) for n in BURST] == pytest.approx(targets)


# --- one interface, two protocols ------------------------------------------------------------------------------
def test_limits_protocol_field_and_addresses() -> None:
    db = LimitsDatabase.from_mapping(
        {"A:SP": {"writable": True, "max_value": 5.0}, "B:SP": {"writable": True, "protocol": "pva"}}
    )
    assert db.protocol("A:SP") == "ca" and db.protocol("B:SP") == "pva" and db.protocol("B:SP.VAL") == "pva"
    assert db.protocol("pva://A:SP") == "pva" and db.protocol("ca://B:SP") == "ca" and db.protocol("C:SP") == "ca"
    assert "pva://A:SP" in db and db.get("pva://A:SP") is db.channels["A:SP"]
    refused = db.check("pva://A:SP", 6.0, current=1.0)
    assert not refused.allowed and refused.violation == "above_max" and refused.channel == "pva://A:SP"
    assert db.check("pva://A:SP.DRVH", 1.0, current=1.0).violation == "read_only_channel"
    assert db.check("xyz://A:SP", 1.0, current=1.0).violation == "unlisted_channel"
    with pytest.raises(LimitsDatabaseError, match="protocol"):
        LimitsDatabase.from_mapping({"A:SP": {"protocol": "tcp"}})


async def test_router_reads_and_writes_both_protocols(ca_sim: int) -> None:
    """Mixed reads keep order and names; a pva:// write goes over PVAccess, a bare name whose entry says pva too."""
    from tern.control.ca_client import ChannelAccessClient
    from tern.control.routing import ChannelRouter

    pva_name, by_limits = "SR:MAG:QD:14:CURRENT:SP", "SR:MAG:QD:15:CURRENT:SP"
    db = LimitsDatabase.from_mapping({by_limits: {"writable": True, "protocol": "pva"}})
    ca_client = ChannelAccessClient(2)
    pva_client = pva.PVAccessClient(pva.client_config("127.0.0.1", CA_SIM_PVA_PORT["port"]), 2)
    used: list[str] = []

    def use(kind: str, client: object) -> object:
        used.append(kind)
        return client

    router = ChannelRouter(lambda: use("ca", ca_client), lambda: use("pva", pva_client), lambda: db)
    try:
        names = [f"pva://{pva_name}", "SR:MAG:QF:09:CURRENT:SP", by_limits, "ca://SR:MAG:QF:09:CURRENT:SP"]
        readings = await router.read_channels(names)
        assert [r.channel for r in readings] == names and all(r.connected for r in readings)
        assert readings[1].value == pytest.approx(readings[3].value)
        assert sorted(set(used)) == ["ca", "pva"]
        for address in (f"pva://{pva_name}", by_limits):
            bare = bare_name(address)
            before = await router.read_value(address)
            used.clear()
            record = await router.write_channel(
                address, before + 2.0, Verification(level="callback"), previous_value=before
            )
            assert used == ["pva"] and record.verified and record.channel == address, record.message
            assert ca.read_value(bare) == pytest.approx(before + 2.0)
    finally:
        ca_client.close()
        pva_client.close()
