"""The facility write freeze on real components (Temporal dev server, worker processes, PostgreSQL, the simulated
IOC over Channel Access): a freeze holds an approved write across a worker SIGKILL and the thaw releases it exactly
once; freeze and thaw are audited, refused when they do not fit the state, and shown by ``tern freeze --status``.

Each test has its own freeze workflow id (``control.freeze_workflow_id``): the dev server is shared by the
session, and a freeze is facility-wide by design."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from types import SimpleNamespace

import asyncpg
import pytest
from temporalio import activity
from temporalio.service import RPCError

from activities.freeze import FreezeActivities
from starters.client import TernClient, TernUserError
from tern.control.channel_access import read_value
from tern.models import Decision
from tern.models.freeze import FreezeAuthInput, FreezeState
from tern.models.identity import ProofCheck
from tests.agent_helpers import audit_rows, queue_workers, spawn_worker, start_run, wait_for_state, write_plan
from tests.test_workflows_fast import WRITE, Machine, plan, start
from tests.trigger_helpers import cli_env, tern
from workflows.agent_run import AgentRunWorkflow
from workflows.facility_freeze import FacilityFreezeWorkflow
from workflows.python_execution import PythonExecutionWorkflow


@pytest.fixture
def frozen_settings(settings):
    freeze_id = "freeze-" + uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={"control": settings.control.model_copy(update={"freeze_workflow_id": freeze_id})}
    )


async def _state_until(client, freeze_id: str, ok, within_s: float = 60) -> FreezeState:
    """Query the freeze workflow until ``ok(state)`` (bounded)."""

    async def poll() -> FreezeState:
        while True:
            try:
                st = await client.get_workflow_handle(freeze_id).query(FacilityFreezeWorkflow.state)
            except RPCError:  # a query that times out on a loaded machine is asked again
                st = None
            if st is not None and ok(st):
                return st
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), within_s)


async def _pending(handle, within_s: float = 120) -> str:
    """The pending request id once the run waits; a query that times out on a loaded machine is asked again."""
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            st = await handle.query(AgentRunWorkflow.status)
        except RPCError:
            st = None
        if st is not None and st.pending is not None:
            return st.pending.request_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {handle.id}: nothing pending within {within_s} s")


async def test_a_freeze_holds_a_write_across_a_worker_kill_and_the_thaw_releases_it_once(
    temporal_env, frozen_settings, tmp_path
) -> None:
    s = frozen_settings
    client = temporal_env.client
    freeze_id = s.control.freeze_workflow_id
    address = client.service_client.config.target_host
    env = {"TERN_CONTROL__FREEZE_WORKFLOW_ID": freeze_id, "TERN_CONTROL__READBACK_TIMEOUT_S": "2"}
    channel = "SR:MAG:QD:06:CURRENT:SP"
    before = read_value(channel)
    log = tmp_path / "worker.log"
    first = spawn_worker(s, address, log, **env)
    second = None
    tc = TernClient(client, s)
    try:
        frozen = await tc.change_freeze("freeze", "carol", "beam-loss investigation")
        assert frozen.frozen and frozen.by == "carol" and frozen.epoch == 1
        with pytest.raises(TernUserError, match="already frozen by carol"):
            await tc.change_freeze("freeze", "dave", "again")
        handle = await start_run(client, s, write_plan(channel, before + 1.0))
        st = await wait_for_state(handle, "awaiting_approval", within_s=60)  # new requests still get approval
        await handle.execute_update(
            AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
        )
        await wait_for_state(handle, "frozen", within_s=60)
        held = await _state_until(client, freeze_id, lambda x: len(x.held) == 1)
        assert (held.held[0].workflow_id, held.held[0].channel) == (handle.id, channel)
        assert held.held[0].request_id == st.pending.request_id
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        second = spawn_worker(s, address, log, **env)
        assert read_value(channel) == pytest.approx(before)  # nothing written while frozen
        thawed = await asyncio.wait_for(tc.change_freeze("thaw", "bob", "investigation over"), 90)
        assert not thawed.frozen and thawed.epoch == 2 and thawed.held == []
        result = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
        await client.get_workflow_handle(freeze_id).terminate("test over")
    assert result.status == "completed", (result.error, log.read_text()[-3000:])
    assert read_value(channel) == pytest.approx(before + 1.0, abs=1e-6)
    kinds = [r["event_kind"] for r in await audit_rows(s.dsn, handle.id)]
    assert kinds == ["approval_requested", "decision", "write_held", "write_released", "write"], kinds
    conn = await asyncpg.connect(s.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM write_ledger WHERE run_id = $1", handle.id) == 1
    finally:
        await conn.close()
    rows = await audit_rows(s.dsn, freeze_id)
    assert [(r["event_kind"], r["actor"]) for r in rows] == [("facility_frozen", "carol"), ("facility_thawed", "bob")]
    assert json.loads(rows[1]["details"])["released"] == 1


async def test_freeze_status_thaw_refusals_and_json(temporal_env, frozen_settings, tmp_path) -> None:
    s = frozen_settings
    client = temporal_env.client
    address = client.service_client.config.target_host
    env = cli_env(s, address, TERN_CONTROL__FREEZE_WORKFLOW_ID=s.control.freeze_workflow_id)
    worker = spawn_worker(
        s, address, tmp_path / "worker.log", TERN_CONTROL__FREEZE_WORKFLOW_ID=s.control.freeze_workflow_id
    )
    try:
        status = await asyncio.to_thread(tern, env, "freeze", "--status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["frozen"] is False  # never frozen: no workflow yet
        no_reason = await asyncio.to_thread(tern, env, "freeze")
        assert no_reason.returncode == 2 and "needs --reason" in no_reason.stderr
        thaw = await asyncio.to_thread(tern, env, "thaw", "--reason", "nothing to thaw")
        assert thaw.returncode == 2 and "not frozen" in thaw.stderr, thaw.stderr
        frozen = await asyncio.to_thread(tern, env, "freeze", "--reason", "RF conditioning", "--as", "carol", "--json")
        assert frozen.returncode == 0, frozen.stderr
        assert json.loads(frozen.stdout)["by"] == "carol" and json.loads(frozen.stdout)["frozen"] is True
        shown = await asyncio.to_thread(tern, env, "freeze", "--status")
        assert shown.stdout.startswith("frozen by carol since ") and "RF conditioning" in shown.stdout
        thawed = await asyncio.to_thread(tern, env, "thaw", "--reason", "done", "--as", "bob", "--json")
        assert thawed.returncode == 0 and json.loads(thawed.stdout)["frozen"] is False, thawed.stderr
    finally:
        worker.terminate()
        worker.wait(15)
        await client.get_workflow_handle(s.control.freeze_workflow_id).terminate("test over")


@pytest.mark.load
async def test_fifty_runs_held_by_one_freeze_are_each_released_once(temporal_env, frozen_settings) -> None:
    """50 runs in flight: each approved write is held (the freeze workflow serializes 50 concurrent ``hold``
    Updates), nothing is written while frozen, and the thaw's 50 Signals release each write exactly once. The real
    freeze workflow and ``hold_write`` activity; the machine, the audit and the proof check stood in by name
    (``tests.test_workflows_fast.Machine``)."""

    client = temporal_env.client
    queue = "freeze50-" + uuid.uuid4().hex[:8]
    s = frozen_settings.model_copy(
        update={"temporal": frozen_settings.temporal.model_copy(update={"task_queue": queue})}
    )
    freeze_id = s.control.freeze_workflow_id
    machine = Machine()

    @activity.defn(name="authorize_freeze")
    async def authorize_freeze(inp: FreezeAuthInput) -> ProofCheck:
        return ProofCheck(ok=True, mode="declared", principal=inp.change.by, signer=inp.change.by)

    real = FreezeActivities(SimpleNamespace(settings=s))  # type: ignore[arg-type] - hold_write reads settings only
    acts = [a for a in machine.activities() if a.__name__ != "hold_write"] + [real.hold_write, authorize_freeze]
    async with queue_workers(
        client,
        task_queue=queue,
        workflows=[AgentRunWorkflow, PythonExecutionWorkflow, FacilityFreezeWorkflow],
        activities=acts,
        max_concurrent_activities=100,
    ):
        tc = TernClient(client, s)
        try:
            await tc.change_freeze("freeze", "carol", "fifty writes wait")
            handles = await asyncio.gather(*(start(client, queue, plan(WRITE)) for _ in range(50)))
            rids = [await _pending(h) for h in handles]  # one query at a time: 50 at once time out on 2 cores
            await asyncio.gather(
                *(
                    h.execute_update(AgentRunWorkflow.decide, Decision(request_id=r, approver="bob", approved=True))
                    for h, r in zip(handles, rids, strict=True)
                )
            )
            held = await _state_until(client, freeze_id, lambda x: len(x.held) == 50, within_s=120)
            assert {h.workflow_id for h in held.held} == {h.id for h in handles}
            assert machine.writes == []
            await tc.change_freeze("thaw", "bob", "go")
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 180)
        finally:
            await client.get_workflow_handle(freeze_id).terminate("test over")
    assert [r.status for r in results] == ["completed"] * 50
    assert sorted(w.workflow_id for w in machine.writes) == sorted(h.id for h in handles)  # each once
    kinds = [e.event_kind for e in machine.audit]
    assert kinds.count("write_held") == 50 and kinds.count("write_released") == 50
    assert kinds.count("facility_frozen") == 1 and kinds.count("facility_thawed") == 1
