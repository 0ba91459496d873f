"""Write verification proves the new value arrived (issue 16, defect 2), on the real simulated IOC.

The IOC's clock runs ``SIM_CLOCK_OFFSET_S`` ahead of this host's (tests/conftest.py), as an IOC on another
host may: a rule that compared IOC timestamps with the local clock would take readbacks that never moved for
fresh ones. The channels here span 280..360 A with a 1 % tolerance (about 3.2 A), so a change of 1 A is
"small": the value before the write is itself within tolerance of the target.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import asyncpg
import epics
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.agent import AgentActivities
from tern.control import channel_access as ca
from tern.control.verification import SMALL_CHANGE_FRACTION, UnverifiableChange, effective_tolerance
from tern.models import Verification
from tern.models.activity_io import WriteCheckInput, WriteInput
from tests.conftest import (
    IGNORED_SETPOINT,
    SIM_CLOCK_OFFSET_S,
    SLOW_READBACK_LAG_S,
    SLOW_SETPOINT,
    STUCK_WIDE_SETPOINT,
)

STAMP = r"\d\d:\d\d:\d\d\.\d{3} UTC"


def _inp(channel: str, value: float, key: str, approved_from: float | None = None) -> WriteInput:
    return WriteInput(
        workflow_id="rv",
        step_id="s1",
        idempotency_key=key,
        channel=channel,
        value=value,
        request_id="q1",
        approver="alice",
        approved_from=approved_from,
    )


async def _write(settings, channel: str, value: float, key: str):
    acts = AgentActivities(settings)
    try:
        return await ActivityEnvironment().run(acts.write_channel, _inp(channel, value, key))
    finally:
        await acts.close()


async def _audit_verified(dsn: str, key: str) -> bool | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT verified FROM audit_events WHERE event_key = $1", f"write:{key}")
    finally:
        await conn.close()


async def test_stuck_readback_with_a_small_change_is_not_verified(settings) -> None:
    before = ca.read_value(STUCK_WIDE_SETPOINT)
    record = await _write(settings, STUCK_WIDE_SETPOINT, before + 1.0, "k-stuck-small")
    assert record.verified is False, record.message
    assert "did not reach" in record.message and "not updated after the put" in record.message
    assert record.readback == pytest.approx(before)  # the readback never moved
    assert await _audit_verified(settings.dsn, "k-stuck-small") is False


async def test_readback_lagging_past_the_timeout_is_not_verified(settings) -> None:
    assert settings.control.readback_timeout_s < SLOW_READBACK_LAG_S
    before = ca.read_value(SLOW_SETPOINT)
    record = await _write(settings, SLOW_SETPOINT, before + 1.0, "k-slow")
    assert record.verified is False, record.message
    assert f"within {settings.control.readback_timeout_s:g} s" in record.message
    await asyncio.sleep(SLOW_READBACK_LAG_S)  # it does follow, later: the simulator's lag is what was tested
    assert ca.read_value(ca.readback_name(SLOW_SETPOINT)) == pytest.approx(before + 1.0)


async def test_small_change_on_a_healthy_channel_is_verified_with_a_tightened_tolerance(settings) -> None:
    channel = "BR:MAG:DIPOLE:05:CURRENT:SP"
    before = ca.read_value(channel)
    record = await _write(settings, channel, before + 1.0, "k-small")
    assert record.verified is True, record.message
    assert record.tolerance == pytest.approx(SMALL_CHANGE_FRACTION * 1.0)
    assert "tightened from ±3.2" in record.message


async def test_small_change_is_refused_when_the_setting_says_refuse(settings) -> None:
    channel = "BR:MAG:DIPOLE:04:CURRENT:SP"
    strict = settings.model_copy(
        update={"control": settings.control.model_copy(update={"small_change_verification": "refuse"})}
    )
    acts = AgentActivities(strict)
    env = ActivityEnvironment()
    before = ca.read_value(channel)
    try:
        check = await env.run(
            acts.check_write, WriteCheckInput(workflow_id="rv", step_id="s", channel=channel, value=before + 1.0)
        )
        assert not check.allowed and check.violation == "unverifiable_change"
        assert "within the verification tolerance" in check.message
        with pytest.raises(ApplicationError, match="within the verification tolerance") as exc:
            await env.run(acts.write_channel, _inp(channel, before + 1.0, "k-refuse"))
        assert exc.value.non_retryable and exc.value.type == "WriteRefused"
        assert ca.read_value(channel) == pytest.approx(before)  # nothing was put
        big = await env.run(
            acts.check_write, WriteCheckInput(workflow_id="rv", step_id="s", channel=channel, value=before + 10.0)
        )
        assert big.allowed
    finally:
        await acts.close()


async def test_normal_write_is_verified_by_a_readback_stamped_after_the_put(settings) -> None:
    channel = "BR:MAG:DIPOLE:03:CURRENT:SP"
    before = ca.read_value(channel)
    record = await _write(settings, channel, before + 10.0, "k-normal")
    assert record.verified is True, record.message
    rb = ca.readback_name(channel)
    assert re.fullmatch(
        rf"RB {rb} = {before + 10.0:g} at {STAMP}, after the put at {STAMP}, within ±3\.\d+ "
        rf"of {before + 10.0:g}",
        record.message,
    ), record.message
    assert record.setpoint_timestamp is not None and record.readback_timestamp is not None
    assert record.readback_timestamp >= record.setpoint_timestamp
    # the stamps are the IOC's (its clock runs ahead of ours), not this host's
    assert record.setpoint_timestamp - record.written_at > timedelta(seconds=SIM_CLOCK_OFFSET_S - 30)
    assert await _audit_verified(settings.dsn, "k-normal") is True


def test_callback_level_needs_the_setpoint_to_hold_the_new_value(ca_sim) -> None:
    """An IOC that completes the put without processing it: a small change must not pass as verified."""
    level = Verification(level="callback", tolerance_percent=1.0)
    before = ca.read_value(IGNORED_SETPOINT)
    record = ca.write_channel(IGNORED_SETPOINT, before + 1.0, level, previous_value=before)
    assert record.verified is False, record.message
    assert "did not advance" in record.message or record.message.startswith(f"IOC holds {before:g}")


def test_callback_level_needs_the_setpoint_timestamp_to_advance(ca_sim) -> None:
    """Writing the value it already holds: the value rule cannot tell, the IOC's timestamp must."""
    level = Verification(level="callback", tolerance_percent=1.0)
    before = ca.read_value(IGNORED_SETPOINT)
    record = ca.write_channel(IGNORED_SETPOINT, before, level, previous_value=before)
    assert record.verified is False, record.message
    assert re.fullmatch(
        rf"{IGNORED_SETPOINT} timestamp {STAMP} did not advance past {STAMP} \(before the put\): "
        "the IOC did not process the put",
        record.message,
    ), record.message


def test_callback_level_verified_by_the_setpoint_stamped_by_the_put(ca_sim) -> None:
    channel = "BR:MAG:DIPOLE:02:CURRENT:SP"
    level = Verification(level="callback", tolerance_percent=1.0)
    before = ca.read_value(channel)
    record = ca.write_channel(channel, before + 1.0, level, previous_value=before)
    assert record.verified is True, record.message
    assert re.fullmatch(
        rf"{channel} = {before + 1.0:g} at {STAMP}, processed by the put \(last processed "
        rf"before at {STAMP}\), within ±0\.4 \(tightened .*\) of {before + 1.0:g}",
        record.message,
    ), record.message
    epics.caput(channel, before, wait=True)


def test_tolerance_rules() -> None:
    v = Verification(level="readback", tolerance_percent=1.0)
    assert effective_tolerance(100.0, 50.0, v).tightened is False  # change 50 > 1
    t = effective_tolerance(100.0, 99.5, v)
    assert t.tightened and t.value == pytest.approx(0.2) and t.base == pytest.approx(1.0)
    assert not t.holds(99.5, 100.0) and t.holds(99.9, 100.0)  # the old value no longer passes
    assert effective_tolerance(100.0, None, v).value == pytest.approx(1.0)  # previous unknown: base
    with pytest.raises(UnverifiableChange, match="within the verification tolerance"):
        effective_tolerance(100.0, 99.5, v, mode="refuse")
    assert effective_tolerance(100.0, 100.0, v).value == 0.0  # no change: only an exact reading passes
