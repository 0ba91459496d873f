"""The write activity on its own (real PostgreSQL and IOC): a retried key never puts twice, and an
interrupted attempt is settled by reading the machine, never by writing again."""

from __future__ import annotations

import time

import asyncpg
import epics
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.agent import AgentActivities
from tern.control.channel_access import read_value
from tern.models.activity_io import WriteCheckInput, WriteInput


def _inp(channel: str, value: float, key: str, approved_from: float | None = None) -> WriteInput:
    return WriteInput(
        workflow_id="r1",
        step_id="s1",
        idempotency_key=key,
        channel=channel,
        value=value,
        request_id="q1",
        approver="alice",
        approved_from=approved_from,
    )


async def _interrupted_claim(acts: AgentActivities, dsn: str, key: str, channel: str, value: float, state: str) -> None:
    """A ledger row as an attempt killed between its claim and its record leaves it."""
    await acts.pool()  # open the pool (pg_dsn is migrated by its fixture)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO write_ledger (idempotency_key, run_id, step_id, channel, value, state)"
            " VALUES ($1, 'r1', 's1', $2, $3, $4)",
            key,
            channel,
            value,
            state,
        )
    finally:
        await conn.close()


async def test_interrupted_write_whose_put_never_landed_is_put_again(settings) -> None:
    """Killed between claim and put: after the settle delay the channel still holds the value the approver was
    shown, so the retry puts once more under the same approval, and the audit says how it was settled."""
    acts = AgentActivities(
        settings.model_copy(update={"control": settings.control.model_copy(update={"write_settle_delay_s": 1.0})})
    )
    channel = "SR:MAG:QFA:10:CURRENT:SP"
    before = read_value(channel)
    await _interrupted_claim(acts, settings.dsn, "k-reput", channel, before + 10.0, "claimed")
    try:
        record = await ActivityEnvironment().run(
            acts.write_channel, _inp(channel, before + 10.0, "k-reput", approved_from=before)
        )
    finally:
        await acts.close()
    assert record.verified and record.readback == pytest.approx(before + 10.0)
    assert "put again under the same approval" in record.message
    assert read_value(channel) == pytest.approx(before + 10.0)
    row = await _audit_row(settings.dsn, "write:k-reput")
    assert row["verified"] is True and row["details"]["settled_by"] == "reput_after_interrupt"
    assert row["details"]["held"] == pytest.approx(before) and row["details"]["holds_target"] is False
    conn = await asyncpg.connect(settings.dsn)
    try:
        assert await conn.fetchval("SELECT state FROM write_ledger WHERE idempotency_key = 'k-reput'") == "done"
    finally:
        await conn.close()
    epics.caput(channel, before, wait=True)


async def test_an_interrupted_reput_is_never_put_a_third_time(settings) -> None:
    """The re-put itself was interrupted (ledger row ``reput``): however the channel looks, the retry only reads."""
    acts = AgentActivities(
        settings.model_copy(update={"control": settings.control.model_copy(update={"write_settle_delay_s": 1.0})})
    )
    channel = "SR:MAG:QFA:11:CURRENT:SP"
    before = read_value(channel)
    await _interrupted_claim(acts, settings.dsn, "k-reput2", channel, before + 10.0, "reput")
    try:
        with pytest.raises(ApplicationError, match="interrupted") as exc:
            await ActivityEnvironment().run(
                acts.write_channel, _inp(channel, before + 10.0, "k-reput2", approved_from=before)
            )
    finally:
        await acts.close()
    assert exc.value.type == "WriteOutcomeUnknown" and exc.value.non_retryable
    assert read_value(channel) == pytest.approx(before)


async def test_interrupted_write_on_a_channel_that_moved_is_not_put_again(settings) -> None:
    """The channel holds neither the target nor the value shown to the approver: fail closed, no put."""
    acts = AgentActivities(
        settings.model_copy(update={"control": settings.control.model_copy(update={"write_settle_delay_s": 1.0})})
    )
    channel = "SR:MAG:QFA:12:CURRENT:SP"
    before = read_value(channel)
    await _interrupted_claim(acts, settings.dsn, "k-moved", channel, before + 10.0, "claimed")
    try:
        with pytest.raises(ApplicationError, match="interrupted") as exc:
            await ActivityEnvironment().run(
                acts.write_channel, _inp(channel, before + 10.0, "k-moved", approved_from=before - 10.0)
            )
    finally:
        await acts.close()
    assert exc.value.type == "WriteOutcomeUnknown"
    assert read_value(channel) == pytest.approx(before)


async def test_a_put_whose_window_closed_is_not_sent(settings) -> None:
    """A put that waited past its window (Channel Access queue, slow connect) is dropped before libca sends it."""
    from tern.control.channel_access import ChannelAccessError
    from tern.models import Verification

    acts = AgentActivities(settings)
    channel = "SR:MAG:QFA:13:CURRENT:SP"
    before = read_value(channel)
    try:
        with pytest.raises(ChannelAccessError, match="window closed"):
            await acts.ca.write_channel(
                channel,
                before + 1.0,
                Verification(level="callback"),
                previous_value=before,
                put_not_after=time.monotonic() - 0.1,
            )
    finally:
        await acts.close()
    assert read_value(channel) == pytest.approx(before)


async def test_same_key_writes_once(settings) -> None:
    acts = AgentActivities(settings)
    env = ActivityEnvironment()
    channel = "SR:MAG:QFA:07:CURRENT:SP"
    before = read_value(channel)
    first = await env.run(acts.write_channel, _inp(channel, before + 1.0, "k-once"))
    assert first.verified
    epics.caput(channel, before, wait=True)  # someone moves it back by hand
    again = await env.run(acts.write_channel, _inp(channel, before + 1.0, "k-once"))
    assert again == first  # the recorded result, not a second put
    assert read_value(channel) == pytest.approx(before)
    await acts.close()
    conn = await asyncpg.connect(settings.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM audit_events WHERE event_kind = 'write'") == 1
    finally:
        await conn.close()


async def test_a_ledger_row_forged_to_done_is_not_reported_as_written(settings) -> None:
    """A ``done`` ledger row with a verified result and no audited write (set by hand, issue 22): the activity
    fails closed, reports no write and puts nothing."""
    from tern.models import WriteRecord

    acts = AgentActivities(settings)
    channel = "SR:MAG:QFA:06:CURRENT:SP"
    before = read_value(channel)
    forged = WriteRecord(channel=channel, previous_value=before, value=before + 1.0, verified=True, verification="none")
    await _interrupted_claim(acts, settings.dsn, "k-forged", channel, before + 1.0, "claimed")
    conn = await asyncpg.connect(settings.dsn)
    try:
        await conn.execute(
            "UPDATE write_ledger SET state = 'done', result = $1::jsonb WHERE idempotency_key = 'k-forged'",
            forged.model_dump_json(),
        )
    finally:
        await conn.close()
    try:
        with pytest.raises(ApplicationError, match="the audit has no write for it") as caught:
            await ActivityEnvironment().run(acts.write_channel, _inp(channel, before + 1.0, "k-forged"))
        assert caught.value.type == "WriteOutcomeUnknown" and caught.value.non_retryable
        assert read_value(channel) == pytest.approx(before)
    finally:
        await acts.close()


async def test_interrupted_attempt_is_never_written_again(settings) -> None:
    # a 1 s settle delay (from the claim) instead of the default: the retry still reads before it decides
    settle = settings.model_copy(update={"control": settings.control.model_copy(update={"write_settle_delay_s": 1.0})})
    acts = AgentActivities(settle)
    channel = "SR:MAG:QFA:08:CURRENT:SP"
    before = read_value(channel)
    conn = await asyncpg.connect(settings.dsn)
    try:
        await acts.pool()  # open the pool (pg_dsn is migrated by its fixture)
        await conn.execute(
            "INSERT INTO write_ledger (idempotency_key, run_id, step_id, channel, value, state)"
            " VALUES ('k-crash', 'r1', 's1', $1, $2, 'claimed')",
            channel,
            before + 20.0,
        )
    finally:
        await conn.close()
    with pytest.raises(ApplicationError, match="interrupted") as exc:
        await ActivityEnvironment().run(acts.write_channel, _inp(channel, before + 20.0, "k-crash"))
    assert exc.value.non_retryable
    assert read_value(channel) == pytest.approx(before)
    await acts.close()
    row = await _audit_row(settings.dsn, "write:k-crash")
    assert row["verified"] is False
    assert row["details"]["settled_by"] == "read_after_interrupt"
    assert row["details"]["held"] == pytest.approx(before) and row["details"]["holds_target"] is False


async def test_interrupted_attempt_is_settled_after_the_settle_delay(settings) -> None:
    """The put of the interrupted attempt did land: the retry waits TERN_CONTROL__WRITE_SETTLE_DELAY_S from the claim,
    reads the channel, and records the write as done, saying how it was settled."""
    settle = settings.model_copy(update={"control": settings.control.model_copy(update={"write_settle_delay_s": 2.0})})
    acts = AgentActivities(settle)
    channel = "SR:MAG:QFA:09:CURRENT:SP"
    target = read_value(channel) + 3.0
    await acts.pool()  # open the pool (pg_dsn is migrated by its fixture)
    conn = await asyncpg.connect(settings.dsn)
    started = time.monotonic()  # before the claim: the settle delay runs from the claim, so it cannot end sooner
    try:
        await conn.execute(
            "INSERT INTO write_ledger (idempotency_key, run_id, step_id, channel, value, state)"
            " VALUES ('k-landed', 'r1', 's1', $1, $2, 'claimed')",
            channel,
            target,
        )
    finally:
        await conn.close()
    epics.caput(channel, target, wait=True)  # the interrupted attempt's put
    env = ActivityEnvironment()
    heartbeats: list[object] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    record = await env.run(acts.write_channel, _inp(channel, target, "k-landed"))
    waited = time.monotonic() - started
    await acts.close()
    assert record.verified and record.readback == pytest.approx(target)
    assert "settled by reading" in record.message
    assert waited >= 1.95, waited  # never before the settle delay (no upper bound: a loaded machine is slow)
    assert heartbeats  # the wait heartbeats, so the retry is not itself taken for dead
    assert read_value(channel) == pytest.approx(target)
    row = await _audit_row(settings.dsn, "write:k-landed")
    assert row["verified"] is True
    assert row["details"]["settled_by"] == "read_after_interrupt"
    assert row["details"]["held"] == pytest.approx(target) and row["details"]["settle_delay_s"] == 2.0


async def _audit_row(dsn: str, event_key: str) -> dict:
    import json

    conn = await asyncpg.connect(dsn)
    try:
        row = dict(await conn.fetchrow("SELECT * FROM audit_events WHERE event_key = $1", event_key))
    finally:
        await conn.close()
    if isinstance(row["details"], str):
        row["details"] = json.loads(row["details"])
    return row


async def test_invalid_limits_database_blocks_all_writes(settings, tmp_path) -> None:
    bad = tmp_path / "limits.json"
    bad.write_text('{"SR:RF:CAVITY:01:VOLTAGE:SP": {"writable": true, "min_value": 5, "max_value": 1}}')
    acts = AgentActivities(
        settings.model_copy(update={"control": settings.control.model_copy(update={"limits_path": bad})})
    )
    check = await ActivityEnvironment().run(
        acts.check_write, WriteCheckInput(workflow_id="r", step_id="s", channel="SR:RF:CAVITY:01:VOLTAGE:SP", value=1.0)
    )
    assert not check.allowed and check.violation == "invalid_limits_database"
    assert "min_value 5.0 > max_value 1.0" in check.message
    with pytest.raises(ApplicationError, match="all writes blocked"):
        await ActivityEnvironment().run(acts.write_channel, _inp("SR:RF:CAVITY:01:VOLTAGE:SP", 1.0, "k-bad"))


async def test_interrupted_write_whose_readback_never_moved_is_not_verified(settings) -> None:
    """The setpoint holds the target after an interrupted attempt, but its readback never followed: settling
    by reading must not call that verified (readback level)."""
    from tests.conftest import STUCK_SETPOINT

    acts = AgentActivities(
        settings.model_copy(update={"control": settings.control.model_copy(update={"write_settle_delay_s": 0.0})})
    )
    before = read_value(STUCK_SETPOINT)
    target = before + 2.0
    await acts.pool()  # open the pool (pg_dsn is migrated by its fixture)
    conn = await asyncpg.connect(settings.dsn)
    try:
        await conn.execute(
            "INSERT INTO write_ledger (idempotency_key, run_id, step_id, channel, value, state)"
            " VALUES ('k-stuck', 'r1', 's1', $1, $2, 'claimed')",
            STUCK_SETPOINT,
            target,
        )
    finally:
        await conn.close()
    epics.caput(STUCK_SETPOINT, target, wait=True)  # the interrupted attempt's put landed on the setpoint
    try:
        with pytest.raises(ApplicationError, match="interrupted") as exc:
            await ActivityEnvironment().run(acts.write_channel, _inp(STUCK_SETPOINT, target, "k-stuck"))
        assert exc.value.type == "WriteOutcomeUnknown"
    finally:
        epics.caput(STUCK_SETPOINT, before, wait=True)
        await acts.close()


async def test_cancelled_mid_put_still_records_the_write(settings) -> None:
    """The run is cancelled while the put is under way (its readback lags): the put finishes in its Channel
    Access thread, the ledger and the audit record it, and only then does the cancellation go through."""
    import asyncio

    from tests.conftest import SLOW_SETPOINT

    acts = AgentActivities(
        settings.model_copy(update={"control": settings.control.model_copy(update={"readback_timeout_s": 10.0})})
    )
    env = ActivityEnvironment()
    before = read_value(SLOW_SETPOINT)
    task = asyncio.ensure_future(env.run(acts.write_channel, _inp(SLOW_SETPOINT, before + 1.0, "k-cancel")))
    deadline = time.monotonic() + 60
    while read_value(SLOW_SETPOINT) != pytest.approx(before + 1.0, abs=1e-6):  # the put landed on the IOC ...
        assert not task.done() and time.monotonic() < deadline, "the put never reached the IOC"
        await asyncio.sleep(0.05)
    assert not task.done()  # ... and the activity still waits for the lagging readback
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    conn = await asyncpg.connect(settings.dsn)
    try:
        state = await conn.fetchval("SELECT state FROM write_ledger WHERE idempotency_key = 'k-cancel'")
        rows = await conn.fetch("SELECT comment FROM audit_events WHERE event_key = 'write:k-cancel'")
    finally:
        await conn.close()
        await acts.close()
    assert state == "done" and len(rows) == 1 and "cancelled" in rows[0]["comment"]
    assert read_value(SLOW_SETPOINT) == pytest.approx(before + 1.0, abs=1e-6)
    epics.caput(SLOW_SETPOINT, before, wait=True)


async def test_channel_access_activities_wait_for_an_ioc_that_does_not_answer(settings) -> None:
    """Within ``ca_unreachable_grace_s`` of the first attempt, a read with a silent channel and a limits check of a
    silent channel raise retryable errors (the workflow's retry policy waits for the IOC); afterwards the read
    returns the readings with their errors and the check refuses (channel_unreachable)."""
    import dataclasses
    from datetime import UTC, datetime, timedelta

    from tern.models.activity_io import ChannelReadInput

    both = ChannelReadInput(workflow_id="r", step_id="s", channels=["TEST:NOBODY:HOME:RB", "SR:MAG:QFA:07:CURRENT:SP"])
    check = WriteCheckInput(workflow_id="r", step_id="s", channel="SR:MAG:QFA:07:CURRENT:SP", value=350.0)
    silent = check.model_copy(update={"channel": "TEST:NOBODY:HOME:SP"})
    early = ActivityEnvironment()
    early.info = dataclasses.replace(early.info, scheduled_time=datetime.now(UTC))
    late = ActivityEnvironment()
    late.info = dataclasses.replace(late.info, scheduled_time=datetime.now(UTC) - timedelta(seconds=61))
    acts = AgentActivities(
        settings.model_copy(
            update={
                "control": settings.control.model_copy(
                    update={"ca_timeout_s": 0.3, "ca_unreachable_grace_s": 60.0, "allow_unlisted_channels": True}
                )
            }
        )
    )
    try:
        with pytest.raises(ApplicationError, match="1 of 2 channels did not answer") as read_exc:
            await early.run(acts.read_channels, both)
        assert read_exc.value.type == "ChannelsUnreachable" and not read_exc.value.non_retryable
        with pytest.raises(ApplicationError, match="cannot read the current value") as check_exc:
            await early.run(acts.check_write, silent)
        assert check_exc.value.type == "ChannelUnreachable" and not check_exc.value.non_retryable
        partial = await late.run(acts.read_channels, both)
        assert [r.error is None for r in partial] == [False, True]  # past the grace: the readings, with the error
        refused = await late.run(acts.check_write, silent)
        assert not refused.allowed and refused.violation == "channel_unreachable"
        assert (await early.run(acts.check_write, check)).allowed  # a channel that answers is checked as usual
    finally:
        await acts.close()
