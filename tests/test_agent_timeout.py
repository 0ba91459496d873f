"""Approval timeout on the time-skipping test server: expiry rejects, nothing is written."""

from __future__ import annotations

import pytest

from tern.control.channel_access import read_value
from tests.agent_helpers import audit_rows, running_worker, start_run, write_plan


async def test_approval_timeout_rejects_without_writing(time_skipping_env, settings) -> None:
    channel = "SR:MAG:SHF:04:CURRENT:SP"
    before = read_value(channel)
    client = time_skipping_env.client
    async with running_worker(client, settings):
        handle = await start_run(client, settings, write_plan(channel, before + 1.0), timeout_s=6 * 3600)
        result = await handle.result()  # the test server skips the six hours
    assert result.status == "timed_out"
    assert result.writes == []
    assert result.approvals[0].decision == "timed_out" and result.approvals[0].via == "timeout"
    assert read_value(channel) == pytest.approx(before)
    rows = await audit_rows(settings.dsn, result.workflow_id)
    assert [r["event_kind"] for r in rows] == ["approval_requested", "approval_timed_out"]
