"""Schedule triggers on the Temporal dev server (the time-skipping test server does not implement Schedules:
``CreateSchedule is unimplemented``): a schedule fires and its run records the trigger; a run still open when
the next action is due makes that action skipped (overlap policy SKIP); the CLI lists, pauses and removes it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from starters.triggers import create_schedule
from tern.models import AgentRunResult, Plan
from tern.models.trigger import TriggerAction, schedule_id
from tests.agent_helpers import audit_rows, running_worker
from tests.trigger_helpers import READ_PLAN, WAITING_PLAN, cli_env, tern, write_plan


async def _wait(pred: Any, within_s: float, what: str) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = await pred()
        if got:
            return got
        await asyncio.sleep(0.5)
    pytest.fail(f"timed out after {within_s} s waiting for {what}")


async def test_schedule_fires_records_its_trigger_and_the_cli_lists_pauses_and_removes_it(
    temporal_env, settings, tmp_path
) -> None:
    client = temporal_env.client
    name = "sched-" + uuid.uuid4().hex[:6]
    env = cli_env(settings, client.service_client.config.target_host)
    plan = write_plan(tmp_path / "read.json", READ_PLAN)
    added = tern(env, "trigger", "add", name, "--every", "2s", "--plan", str(plan), "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["schedule_id"] == schedule_id(name)
    handle = client.get_schedule_handle(schedule_id(name))
    async with running_worker(client, settings):

        async def first_done() -> str | None:
            desc = await handle.describe()
            for action in desc.info.recent_actions:
                wf = client.get_workflow_handle(action.action.workflow_id)
                if (await wf.describe()).status == WorkflowExecutionStatus.COMPLETED:
                    return wf.id
            return None

        run_id = await _wait(first_done, 60, "the schedule's first run to complete")
    assert run_id.startswith(f"trigger-{name}")
    result = await client.get_workflow_handle(run_id, result_type=AgentRunResult).result()
    assert result.status == "completed", result.error
    history = await client.get_workflow_handle(run_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    request = json.loads(started.input.payloads[0].data)
    assert request["trigger"] == {"name": name, "kind": "schedule", "event": {"spec": "every 2s"}, "source": ""}
    rows = [r for r in await audit_rows(settings.dsn, run_id) if r["event_kind"] == "run_triggered"]
    assert len(rows) == 1 and rows[0]["actor"] == f"trigger:{name}"

    listed = tern(env, "trigger", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = [t for t in json.loads(listed.stdout) if t["name"] == name]
    assert mine and mine[0]["kind"] == "schedule" and mine[0]["when"] == "every 2s" and not mine[0]["paused"]
    assert tern(env, "trigger", "pause", name, "--json").returncode == 0
    assert (await handle.describe()).schedule.state.paused
    again = tern(env, "trigger", "add", name, "--every", "5m", "--plan", str(plan))
    assert again.returncode == 2 and "exists" in again.stderr
    assert tern(env, "trigger", "remove", name, "--json").returncode == 0
    with pytest.raises(RPCError) as exc:
        await handle.describe()
    assert exc.value.status == RPCStatusCode.NOT_FOUND
    gone = tern(env, "trigger", "remove", name)
    assert gone.returncode == 2 and f"no trigger named {name!r}" in gone.stderr


async def test_a_run_still_open_makes_the_next_action_skipped(temporal_env, settings) -> None:
    """No worker polls: the first run stays open, so every later action is skipped (overlap policy SKIP)."""
    client = temporal_env.client
    name = "overlap-" + uuid.uuid4().hex[:6]
    action = TriggerAction(plan=Plan.model_validate(WAITING_PLAN), plan_file="waiting.json", user="alice")
    await create_schedule(client, settings, name, action, every=timedelta(seconds=1), when="every 1s")
    handle = client.get_schedule_handle(schedule_id(name))
    try:

        async def skipped() -> bool:
            return (await handle.describe()).info.num_actions_skipped_overlap >= 3

        await _wait(skipped, 30, "three skipped actions")
        desc = await handle.describe()
        assert desc.info.num_actions == 1
        assert len(desc.info.running_actions) == 1
        await client.get_workflow_handle(desc.info.running_actions[0].workflow_id).terminate("test over")
    finally:
        await handle.delete()
