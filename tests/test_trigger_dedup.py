"""Issue 26 finding 3: trigger dedup holds after the first run closed, and without a racing pre-check.

Real servers: the Temporal dev server, PostgreSQL, Tern's webhook API under uvicorn. A triggered start with a
deterministic Workflow ID must start nothing when a run of that id already *closed* (Temporal's default id-reuse
policy, ALLOW_DUPLICATE, would start a second one), and two concurrent posts of one body must start one run (the
start is the one check). A duplicate does not use up the rate limit.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
from temporalio.client import WorkflowExecutionStatus

from starters.approvals_api import create_app
from starters.triggers import start_triggered, trigger_request
from tern.chat.signing import signed_headers
from tern.models import Plan
from tern.models.trigger import TriggerAction
from tern.triggers.detect import channel_run_id
from tests.test_chat_webhook import serving
from tests.trigger_helpers import READ_PLAN, WEBHOOK_SECRETS, runs_with_prefix, webhook_trigger


async def _closed(client, workflow_id: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    await handle.terminate("a fast run: closed")
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


async def test_a_channel_event_crossing_after_a_fast_run_closed_starts_nothing_new(temporal_env, settings) -> None:
    client = temporal_env.client
    name = "dedup-" + uuid.uuid4().hex[:6]
    action = TriggerAction(plan=Plan.model_validate(READ_PLAN), user="ops")
    req = trigger_request(settings, name, "channel", action, {"channel": "SR:X", "value": 1.0})
    now = time.time()
    window = settings.triggers.dedup_window_s
    first_id = channel_run_id(name, "SR:X", now, window)
    assert await start_triggered(client, settings, req, first_id) == first_id
    await _closed(client, first_id)
    # the same channel crosses again inside the same window (same bucket, so the same id): a duplicate
    assert channel_run_id(name, "SR:X", now + 0.001, window) == first_id
    assert await start_triggered(client, settings, req, first_id) is None
    runs = [wf async for wf in client.list_workflows(f'WorkflowId = "{first_id}"')]
    assert len(runs) == 1 and runs[0].status == WorkflowExecutionStatus.TERMINATED


async def test_webhook_dedups_concurrent_and_after_close_and_duplicates_keep_the_rate_limit(
    temporal_env, settings
) -> None:
    client = temporal_env.client
    # one window of a day: the test's posts all fall in one bucket unless it runs across midnight UTC
    s, name = await webhook_trigger(
        settings,
        client.service_client.config.target_host,
        "hookd",
        max_runs_per_minute=2,
        dedup_window_s=86400,
        webhook_status_wait_s=1,
    )
    body = json.dumps({"alert": "RF trip", "n": 1}).encode()
    t0 = time.time()

    def sign(b: bytes, at: float) -> dict[str, str]:
        return signed_headers("ops-bot", WEBHOOK_SECRETS["ops-bot"], b, target=f"/triggers/{name}", now=at)

    async with serving(create_app(s)) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        racing = await asyncio.gather(
            *(http.post(f"/triggers/{name}", content=body, headers=sign(body, t0 - i)) for i in range(4))
        )
        codes = sorted(r.status_code for r in racing)
        assert codes == [200, 200, 200, 202], [r.text for r in racing]
        run_id = next(r.json()["workflow_id"] for r in racing if r.status_code == 202)
        assert all(r.json()["workflow_id"] == run_id for r in racing)
        await _closed(client, run_id)
        after = await http.post(f"/triggers/{name}", content=body, headers=sign(body, t0 - 5))
        assert after.status_code == 200 and after.json()["status"] == "duplicate", after.text
        # the limit is 2 a minute: one run started, five duplicates; one more distinct body still starts
        other = json.dumps({"alert": "RF trip", "n": 2}).encode()
        second = await http.post(f"/triggers/{name}", content=other, headers=sign(other, t0 - 6))
        assert second.status_code == 202, second.text
        third_body = json.dumps({"alert": "RF trip", "n": 3}).encode()
        third = await http.post(f"/triggers/{name}", content=third_body, headers=sign(third_body, t0 - 7))
        assert third.status_code == 429, third.text
        await client.get_workflow_handle(second.json()["workflow_id"]).terminate("test over")
    started = await runs_with_prefix(client, f"trigger-{name}-")
    assert sorted(started) == sorted([run_id, second.json()["workflow_id"]])
