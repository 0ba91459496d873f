"""A worker killed in the middle of a write: the attempt's heartbeat lapses, a new worker's retry settles the
write by reading the machine (never a second put), and the audit row says so."""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg
import pytest
from temporalio.api.enums.v1 import TimeoutType

from tern.audit.invariants import check_writes, read_put_log
from tern.control.channel_access import read_value
from tern.models import Decision
from tests.agent_helpers import audit_rows, spawn_worker, start_run, wait_for_state, write_plan
from tests.conftest import IOC_PUT_LOG, SLOW_SETPOINT
from workflows.agent_run import AgentRunWorkflow


async def test_worker_killed_mid_write_is_settled_by_reading(temporal_env, settings, tmp_path) -> None:
    client = temporal_env.client
    address = client.service_client.config.target_host
    channel = SLOW_SETPOINT  # its readback lags 4 s: the write activity is still polling when killed
    target = read_value(channel) + 10.0
    log = tmp_path / "worker.log"
    since = time.time()
    first = spawn_worker(
        settings, address, log, TERN_CONTROL__READBACK_TIMEOUT_S="10", TERN_CONTROL__WRITE_SETTLE_DELAY_S="1"
    )
    second = None
    try:
        handle = await start_run(client, settings, write_plan(channel, target))
        st = await wait_for_state(handle, "awaiting_approval", within_s=60)
        await handle.execute_update(
            AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
        )
        deadline = time.monotonic() + 30
        while abs(read_value(channel) - target) > 1e-6:  # the put has happened ...
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)  # ... and the attempt is still waiting for the readback
        assert first.wait(10) == -signal.SIGKILL
        second = spawn_worker(
            settings, address, log, TERN_CONTROL__READBACK_TIMEOUT_S="10", TERN_CONTROL__WRITE_SETTLE_DELAY_S="1"
        )
        result = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
    assert result.status == "completed", (result.error, log.read_text()[-3000:])
    assert len(result.writes) == 1 and result.writes[0].verified
    assert "settled by reading" in result.writes[0].message
    # the dead worker was found by its missing heartbeats (WRITE_HEARTBEAT_TIMEOUT), not by the write's much longer
    # start-to-close timeout: the retry's started event carries the first attempt's failure (the history, not a
    # wall-clock bound that a loaded machine breaks: issue 28)
    events = [e async for e in handle.fetch_history_events()]
    writes_scheduled = {
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "write_channel"
    }
    [started] = [
        e.activity_task_started_event_attributes
        for e in events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id in writes_scheduled
    ]
    assert started.attempt == 2
    assert started.last_failure.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT
    assert read_value(channel) == pytest.approx(target)
    writes = [r for r in await audit_rows(settings.dsn, result.workflow_id) if r["event_kind"] == "write"]
    assert len(writes) == 1
    details = writes[0]["details"]
    if isinstance(details, str):
        import json

        details = json.loads(details)
    assert details["settled_by"] == "read_after_interrupt" and details["held"] == pytest.approx(target)
    # the IOC's own record agrees: one put, recorded, approved, settled by reading
    conn = await asyncpg.connect(settings.dsn)
    try:
        report = await check_writes(conn, read_put_log(IOC_PUT_LOG["path"], since=since))
    finally:
        await conn.close()
    assert report.ok, report.violations
    assert report.ioc_puts == 1 and report.settled_by == {"read_after_interrupt": 1}
