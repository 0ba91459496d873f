"""``bluesky_plan`` steps in agent runs (issue 24), on the Temporal dev server with a real queue server: checked
before approval (a plan outside the allowed list is refused and no approval is asked), shown to the approver,
submitted only after approval and followed to its end; a rejected plan is never queued."""

from __future__ import annotations

import pytest

from tern.bluesky.plans import KEY_FIELD
from tern.models import Decision, Plan
from tests.agent_helpers import audit_rows, running_worker, start_run, wait_for_state
from workflows.agent_run import AgentRunWorkflow


@pytest.fixture
def bs_settings(settings, queue_server):
    return settings.model_copy(
        update={
            "bluesky": settings.bluesky.model_copy(
                update={"control_port": queue_server.control_port, "info_port": queue_server.info_port}
            )
        }
    )


@pytest.fixture
async def worker(temporal_env, bs_settings):
    async with running_worker(temporal_env.client, bs_settings):
        yield temporal_env.client


@pytest.fixture
async def api(queue_server):
    from bluesky_queueserver_api.zmq.aio import REManagerAPI

    client = REManagerAPI(zmq_control_addr=queue_server.control_addr, zmq_info_addr=queue_server.info_addr)
    yield client
    await client.close()


def _plan(name: str, args: list, kwargs: dict | None = None) -> Plan:
    return Plan.model_validate(
        {
            "steps": [
                {
                    "id": "scan",
                    "kind": "bluesky_plan",
                    "plan": name,
                    "args": args,
                    "kwargs": kwargs or {},
                    "reason": "test",
                },
                {"id": "answer", "kind": "respond"},
            ]
        }
    )


async def _items_for(api, workflow_id: str) -> list[dict]:
    queue, history = await api.queue_get(), await api.history_get()
    items = [queue.get("running_item") or {}, *queue.get("items", []), *history.get("items", [])]
    return [i for i in items if str((i.get("meta") or {}).get(KEY_FIELD, "")).startswith(f"{workflow_id}/")]


async def test_approved_plan_runs_once_and_its_outcome_is_in_the_result(worker, bs_settings, api) -> None:
    handle = await start_run(worker, bs_settings, _plan("count", [["det1", "det2"]], {"num": 3}))
    st = await wait_for_state(handle, "awaiting_approval", within_s=60)
    assert st.pending is not None and st.pending.kind == "bluesky"
    assert st.pending.summary == "Bluesky plan count(['det1', 'det2'], num=3)"
    assert "Take one or more readings from detectors" in st.pending.reason
    assert await _items_for(api, handle.id) == []  # nothing queued before approval
    await handle.execute_update(
        AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
    )
    result = await handle.result()
    assert result.status == "completed", result.error
    step = next(s for s in result.steps if s.step_id == "scan")
    assert step.status == "completed" and step.bluesky is not None
    assert step.bluesky.exit_status == "completed" and len(step.bluesky.run_uids) == 1
    items = await _items_for(api, handle.id)
    assert len(items) == 1 and items[0]["item_uid"] == step.bluesky.item_uid
    assert items[0]["result"]["run_uids"] == step.bluesky.run_uids  # the queue server's own record
    kinds = [r["event_kind"] for r in await audit_rows(bs_settings.dsn, handle.id)]
    assert kinds == ["approval_requested", "decision", "bluesky_plan"]


async def test_rejected_plan_is_never_queued(worker, bs_settings, api) -> None:
    handle = await start_run(worker, bs_settings, _plan("scan", [["det1"], "motor1", -1.0, 1.0, 3]))
    st = await wait_for_state(handle, "awaiting_approval", within_s=60)
    await handle.execute_update(
        AgentRunWorkflow.decide,
        Decision(request_id=st.pending.request_id, approver="alice", approved=False, comment="not now"),
    )
    result = await handle.result()
    assert result.status == "rejected"
    assert await _items_for(api, handle.id) == []
    kinds = [r["event_kind"] for r in await audit_rows(bs_settings.dsn, handle.id)]
    assert kinds == ["approval_requested", "decision"]


async def test_plan_outside_the_allowed_list_is_refused_before_approval(worker, bs_settings, api) -> None:
    handle = await start_run(worker, bs_settings, _plan("mv", ["motor1", 1.0]))
    result = await handle.result()
    step = next(s for s in result.steps if s.step_id == "scan")
    assert step.status == "refused" and "plan 'mv' is not allowed" in step.message
    assert result.approvals == []
    assert await _items_for(api, handle.id) == []
    rows = await audit_rows(bs_settings.dsn, handle.id)
    assert [r["event_kind"] for r in rows] == ["bluesky_refused"]


async def test_worker_killed_mid_plan_resumes_following_and_never_submits_twice(
    temporal_env, bs_settings, api, queue_server, tmp_path
) -> None:
    """SIGKILL the worker while the approved plan runs: the activity's retry (after its heartbeat lapses, on a new
    worker) finds the queue item by its idempotency key and follows it; one submission, and the plan completes.
    The workers are ``tests.quick_worker`` (a 6 s heartbeat timeout on the run activity, production 20 s: the
    lapse is waited out in real time, and the retry now starts while the 10 s plan still runs); the history
    shows that timeout and the retry."""
    import asyncio
    import os
    import signal

    from tests.agent_helpers import spawn_worker
    from tests.workflow_variants import ShortHeartbeatAgentRun

    env = {
        "TERN_BLUESKY__CONTROL_PORT": str(queue_server.control_port),
        "TERN_BLUESKY__INFO_PORT": str(queue_server.info_port),
    }
    address = temporal_env.client.service_client.config.target_host
    quick = "tests.quick_worker"
    first = spawn_worker(bs_settings, address, tmp_path / "worker1.log", module=quick, **env)
    second = None
    try:
        plan = _plan("count", [["det1"]], {"num": 40, "delay": 0.25})  # about 10 s
        handle = await start_run(temporal_env.client, bs_settings, plan)
        st = await wait_for_state(handle, "awaiting_approval", within_s=90)
        await handle.execute_update(
            AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
        )
        while True:  # wait until the plan runs on the queue server
            running = (await api.queue_get()).get("running_item") or {}
            if str((running.get("meta") or {}).get(KEY_FIELD, "")).startswith(f"{handle.id}/"):
                break
            assert first.poll() is None, (tmp_path / "worker1.log").read_text()[-2000:]
            await asyncio.sleep(0.1)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        second = spawn_worker(bs_settings, address, tmp_path / "worker2.log", module=quick, **env)
        result = await asyncio.wait_for(handle.result(), 180)
        events = (await handle.fetch_history()).events
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert result.status == "completed", result.error
    step = next(s for s in result.steps if s.step_id == "scan")
    assert step.bluesky is not None and step.bluesky.exit_status == "completed"
    assert step.bluesky.submitted_here is False  # the retry found the item the killed attempt added
    items = await _items_for(api, handle.id)
    assert len(items) == 1 and items[0]["item_uid"] == step.bluesky.item_uid
    assert len(items[0]["result"]["run_uids"]) == 1
    runs = [
        e.activity_task_scheduled_event_attributes
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "run_bluesky_plan"
    ]
    assert [a.heartbeat_timeout.ToTimedelta() for a in runs] == [ShortHeartbeatAgentRun.bluesky_heartbeat]
    started = [
        e.activity_task_started_event_attributes for e in events if e.HasField("activity_task_started_event_attributes")
    ]
    assert any(a.attempt >= 2 for a in started)  # the run activity was retried on the second worker
