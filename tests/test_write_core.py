"""The write protocol as plain async code (``tern.control.write``), called without Temporal, as the MCP server's
pre-check and any other caller do: real PostgreSQL (ledger and audit) and the real simulated IOC over Channel
Access, through the protocol-neutral ``ChannelIO`` the CA client implements."""

from __future__ import annotations

import json

import asyncpg
import epics
import pytest

from tern.control import write as core
from tern.control.ca_client import ChannelAccessClient
from tern.control.channel_access import read_value
from tern.db import create_pool
from tern.models.activity_io import WriteCheckInput, WriteInput

CHANNEL = "SR:MAG:QFA:10:CURRENT:SP"


def _inp(value: float, key: str, approved_from: float | None) -> WriteInput:
    return WriteInput(
        workflow_id="core-run",
        step_id="s1",
        idempotency_key=key,
        channel=CHANNEL,
        value=value,
        request_id="q1",
        approver="alice",
        approved_from=approved_from,
    )


def _max_value(settings) -> float:
    """The channel's upper limit, read from the limits file itself (not through LimitsDatabase)."""
    return float(json.loads(settings.control.limits_path.read_text())[CHANNEL]["max_value"])


async def test_core_write_is_recorded_once_and_a_second_call_returns_the_ledger_result(settings) -> None:
    io = ChannelAccessClient(2, settings.ca_environment())
    pool = await create_pool(settings.writer_dsn)
    beats: list[int] = []
    before = read_value(CHANNEL)
    try:
        first = await core.write(
            io, pool, settings.control, _inp(before + 5.0, "core-k1", before), lambda: beats.append(1)
        )
        again = await core.write(io, pool, settings.control, _inp(before + 5.0, "core-k1", before))
    finally:
        await pool.close()
        io.close()
    assert first.verified and first.readback == pytest.approx(before + 5.0, abs=0.01 * (before + 5.0))
    assert read_value(CHANNEL) == pytest.approx(before + 5.0)
    assert beats, "the heartbeat callback was not called while the put was awaited"
    assert again == first  # from the ledger: no second put, no second audit row
    conn = await asyncpg.connect(settings.dsn)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM audit_events WHERE event_key = 'write:core-k1'")
        state = await conn.fetchval("SELECT state FROM write_ledger WHERE idempotency_key = 'core-k1'")
    finally:
        await conn.close()
    assert (rows, state) == (1, "done")
    epics.caput(CHANNEL, before, wait=True)


async def test_core_refusals_are_tern_exceptions_typed_for_retrying(settings) -> None:
    """Above the limit: ``WriteRefused`` (non-retryable), ledger row failed, nothing put. Writes switched off:
    ``WritesDisabled`` before anything is claimed."""
    io = ChannelAccessClient(2, settings.ca_environment())
    pool = await create_pool(settings.writer_dsn)
    before = read_value(CHANNEL)
    too_high = _max_value(settings) + 1.0
    off = settings.control.model_copy(update={"writes_enabled": False})
    try:
        with pytest.raises(core.WriteRefused) as refused:
            await core.write(io, pool, settings.control, _inp(too_high, "core-k2", before))
        with pytest.raises(core.WritesDisabled) as disabled:
            await core.write(io, pool, off, _inp(before + 1.0, "core-k3", before))
    finally:
        await pool.close()
        io.close()
    assert refused.value.non_retryable and disabled.value.non_retryable
    assert read_value(CHANNEL) == pytest.approx(before)
    conn = await asyncpg.connect(settings.dsn)
    try:
        states = dict(await conn.fetch("SELECT idempotency_key, state FROM write_ledger WHERE run_id = 'core-run'"))
    finally:
        await conn.close()
    assert states == {"core-k2": "failed"}


async def test_core_check_of_a_silent_channel_is_retryable_within_the_grace_then_refused(settings) -> None:
    control = settings.control.model_copy(
        update={"ca_timeout_s": 0.3, "ca_unreachable_grace_s": 60.0, "allow_unlisted_channels": True}
    )
    io = ChannelAccessClient(2, settings.ca_environment())
    silent = WriteCheckInput(workflow_id="r", step_id="s", channel="TEST:NOBODY:HOME:SP", value=1.0)
    try:
        with pytest.raises(core.ChannelUnreachable) as early:
            await core.check_write(io, control, silent, lambda: 1.0)
        late = await core.check_write(io, control, silent, lambda: 61.0)
        fine = await core.check_write(io, control, silent.model_copy(update={"channel": CHANNEL, "value": 350.0}))
    finally:
        io.close()
    assert not early.value.non_retryable
    assert not late.allowed and late.violation == "channel_unreachable"
    assert fine.allowed and fine.current_value == pytest.approx(read_value(CHANNEL))
