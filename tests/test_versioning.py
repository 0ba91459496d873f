"""Worker Deployment Versioning on the real dev server (``worker/versioning.py``, docs/concepts/deployments.md).

Two builds, A and B, of one deployment poll one task queue. A Pinned run started on A finishes on A's code after B
becomes current; an AutoUpgrade run (every Tern workflow type: here an agent run waiting for approval) moves to B at
its next task, which the history's WorkflowTaskCompleted events show. ``tern status --json`` and ``tern deploy
status --json`` report the versions, their roles and the open runs each holds, counted independently here.
Each test has its own deployment name, so nothing else in the session routes through it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker, WorkerDeploymentConfig

from tern.build_id import BuildIdError, resolve_build_id, source_digest
from tern.config import TernSettings
from tern.db import create_pool
from tern.models import Decision
from tests.versioned_workflows import AutoA, AutoB, PinnedA, PinnedB
from worker.main import WORKFLOWS, build_worker
from worker.versioning import DeploymentError, _not_ready, describe, set_current, set_ramping
from workflows.agent_run import AgentRunWorkflow

ROOT = Path(__file__).resolve().parent.parent


def _version(deployment: str, build: str) -> WorkerDeploymentVersion:
    return WorkerDeploymentVersion(deployment, build)


def _worker(client: Client, tq: str, version: WorkerDeploymentVersion, workflows: list[type]) -> Worker:
    return Worker(
        client,
        task_queue=tq,
        workflows=workflows,
        deployment_config=WorkerDeploymentConfig(version=version, use_worker_versioning=True),
    )


async def _task_builds(handle: WorkflowHandle, *, with_ids: bool = False) -> list[Any]:
    """The build id of each completed workflow task (the worker that ran it) in history order; with ``with_ids``
    pairs of (event id, build id)."""
    builds: list[Any] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            build = event.workflow_task_completed_event_attributes.deployment_version.build_id
            builds.append((event.event_id, build) if with_ids else build)
    return builds


async def _wait_count(client: Client, query: str, expected: int, within_s: float = 30) -> None:
    """Wait until visibility (eventually consistent) counts ``expected`` executions for ``query``."""

    async def poll() -> None:
        while True:
            if (await client.count_workflows(query)).count == expected:
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(poll(), within_s)


def _status_cli(address: str, deployment: str, tmp_path: Path, *args: str) -> dict:
    from tests.conftest import env_without_services

    env = env_without_services(
        tmp_path / "data", TERN_TEMPORAL__ADDRESS=address, TERN_WORKER__DEPLOYMENT_NAME=deployment
    )
    proc = subprocess.run(
        [sys.executable, "-m", "starters.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def test_pinned_run_stays_on_its_build_auto_upgrade_moves_and_status_counts(temporal_env, tmp_path) -> None:
    client = temporal_env.client
    deployment, tq = f"dep-{uuid.uuid4().hex[:8]}", f"tq-{uuid.uuid4().hex[:8]}"
    a, b = _version(deployment, "A"), _version(deployment, "B")
    async with _worker(client, tq, a, [PinnedA, AutoA]):
        assert await set_current(client, a, timeout_s=30) is None  # runs were unversioned before
        pinned = [await client.start_workflow("VersionedPinned", id=f"p{i}-{tq}", task_queue=tq) for i in range(3)]
        auto = await client.start_workflow("VersionedAuto", id=f"a-{tq}", task_queue=tq)
        await _wait_count(client, f'TemporalWorkerDeploymentVersion = "{deployment}:A"', 4)
        async with _worker(client, tq, b, [PinnedB, AutoB]):
            assert await set_current(client, b, timeout_s=30) == "A"
            fresh = await client.start_workflow("VersionedPinned", id=f"new-{tq}", task_queue=tq)
            await pinned[0].signal("proceed")
            await auto.signal("proceed")
            await fresh.signal("proceed")
            assert await pinned[0].result() == "A"  # started on A: A's code ends it, B being current
            assert await auto.result() == "B"  # AutoUpgrade: its next task went to the current version
            assert await fresh.result() == "B"
            assert await _task_builds(pinned[0]) == ["A", "A"]
            assert await _task_builds(auto) == ["A", "B"]

            # two Pinned runs still open on A, none on B; a ramp of 30 % to A shows in the routing
            running = 'ExecutionStatus = "Running" AND TemporalWorkerDeploymentVersion = '
            await _wait_count(client, running + f'"{deployment}:A"', 2)
            await _wait_count(client, running + f'"{deployment}:B"', 0)
            await set_ramping(client, deployment, "A", 30)
            info = await describe(client, deployment)
            assert info is not None
            roles = {v.build_id: (v.role, v.open_runs) for v in info.versions}
            assert roles == {"A": ("ramping", 2), "B": ("current", 0)}
            assert (info.current_build_id, info.ramping_build_id, info.ramp_percentage) == ("B", "A", 30)

            address = client.service_client.config.target_host
            status = await asyncio.to_thread(_status_cli, address, deployment, tmp_path, "status")
            dep = status["deployment"]
            assert dep["name"] == deployment and dep["current_build_id"] == "B"
            assert {v["build_id"]: (v["role"], v["open_runs"]) for v in dep["versions"]} == roles

            await set_ramping(client, deployment, None, 0)
            info = await describe(client, deployment)
            assert info is not None and info.ramping_build_id is None
            assert {v.build_id: v.role for v in info.versions}["A"] in ("draining", "drained", "inactive")
            for h in pinned[1:]:
                await h.signal("proceed")
                assert await h.result() == "A"


@asynccontextmanager
async def _tern_worker(client: Client, settings: TernSettings, version: WorkerDeploymentVersion) -> AsyncIterator[None]:
    """A Tern worker as ``worker.main.run_worker`` builds it: its deployment config from the settings."""
    from worker.versioning import deployment_config

    pool = await create_pool(settings.dsn)
    names = {"deployment_name": version.deployment_name, "build_id": version.build_id}
    worker = settings.worker.model_copy(update=names)
    try:
        deployment = deployment_config(settings.model_copy(update={"worker": worker}))
        async with build_worker(client, settings, pool, deployment=deployment):
            yield
    finally:
        await pool.close()


async def test_agent_run_waiting_for_approval_moves_to_the_new_build(temporal_env, settings) -> None:
    """AutoUpgrade, Tern's choice for a run that may wait 30 days: the decision is handled by build B's worker."""
    from tern.control.channel_access import read_value
    from tests.agent_helpers import start_run, wait_for_state, write_plan

    client = temporal_env.client
    deployment = f"dep-{uuid.uuid4().hex[:8]}"
    a, b = _version(deployment, "A"), _version(deployment, "B")
    channel = "SR:MAG:QD:07:CURRENT:SP"
    before = read_value(channel)
    async with _tern_worker(client, settings, a):
        await set_current(client, a, timeout_s=30)
        handle = await start_run(client, settings, write_plan(channel, before + 1.0))
        st = await wait_for_state(handle, "awaiting_approval", within_s=60)
        builds_before = await _task_builds(handle)
        async with _tern_worker(client, settings, b):
            await set_current(client, b, timeout_s=30)
            await asyncio.wait_for(
                handle.execute_update(
                    AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="bob", approved=True)
                ),
                timeout=60,
            )
            result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status == "completed", result.error
    assert read_value(channel) == pytest.approx(before + 1.0, abs=1e-6)
    builds = await _task_builds(handle)
    assert set(builds_before) == {"A"} and builds[: len(builds_before)] == builds_before
    first_b = builds.index("B")  # a task in flight when B became current (a notification's result) may end on A
    assert set(builds[:first_b]) == {"A"} and set(builds[first_b:]) == {"B"}  # once moved, never back
    accepted = [
        e.event_id
        async for e in handle.fetch_history_events()
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    after = [b for eid, b in await _task_builds(handle, with_ids=True) if eid > accepted[0]]
    assert after and set(after) == {"B"}  # the decision and everything after it ran on build B
    desc = await handle.describe()
    info = desc.raw_description.workflow_execution_info.versioning_info
    assert info.behavior == VersioningBehavior.AUTO_UPGRADE.value
    assert info.deployment_version.build_id == "B"


def test_tern_workflow_types_are_auto_upgrade_through_the_worker_default(tmp_path: Path) -> None:
    """No Tern type names a behaviour on its ``@workflow.defn`` (an unversioned worker's completion naming one is
    refused by the server); the versioned worker's default makes each AutoUpgrade (docs/concepts/deployments.md)."""
    from temporalio.workflow import _Definition

    from worker.versioning import deployment_config

    for t in WORKFLOWS:
        assert _Definition.must_from_class(t).versioning_behavior == VersioningBehavior.UNSPECIFIED, t.__name__
    s = TernSettings(data_dir=tmp_path, worker={"build_id": "b-1", "deployment_name": "d"})
    config = deployment_config(s)
    assert config is not None and config.use_worker_versioning
    assert config.default_versioning_behavior == VersioningBehavior.AUTO_UPGRADE
    assert config.version == WorkerDeploymentVersion("d", "b-1")
    off = s.model_copy(update={"worker": s.worker.model_copy(update={"versioning": False})})
    assert deployment_config(off) is None


async def test_promote_refuses_a_version_without_workers(temporal_env) -> None:
    with pytest.raises(DeploymentError, match="polling worker"):
        await set_current(temporal_env.client, _version(f"dep-{uuid.uuid4().hex[:8]}", "nobody"))
    with pytest.raises(ValueError, match="0-100"):
        await set_ramping(temporal_env.client, "x", "y", 101)


# --- the build id's order of sources ------------------------------------------------------------------------------
def test_build_id_order(tmp_path: Path) -> None:
    import hashlib

    assert resolve_build_id("cfg-1", {"TERN_IMAGE_TAG": "1.2.0"}) == "cfg-1"
    assert resolve_build_id(None, {"TERN_IMAGE_TAG": "1.2.0"}) == "1.2.0"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "workflows"], capture_output=True, text=True, check=True
    ).stdout.strip()
    got = resolve_build_id(None, {})
    assert got.startswith(head.stdout.strip()[:12]) and (got.endswith(source_digest()) if dirty else len(got) == 12)
    # no git checkout: the package version and a digest of workflows/*.py, computed here from the files
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "b.py").write_text("B = 2\n")
    (tmp_path / "workflows" / "a.py").write_text("A = 1\n")
    expected = hashlib.sha256(b"a.py\0A = 1\n\0b.py\0B = 2\n\0").hexdigest()[:12]
    version = resolve_build_id(None, {}, root=tmp_path)
    assert version.endswith("-" + expected) and version.count("-") >= 1
    for bad in ("", "has space", "a/b"):
        with pytest.raises(BuildIdError, match="TERN_IMAGE_TAG" if bad else "worker.build_id"):
            resolve_build_id(None if bad else "", {"TERN_IMAGE_TAG": bad} if bad else {})


async def test_promote_on_start_newest_keeps_a_newer_current_version(temporal_env, tmp_path: Path) -> None:
    """``newest`` (the Kubernetes manifest's mode): a new build takes the routing once it polls; an old build's pod
    restarting afterwards leaves it; ``always`` takes it back (a rollback), ``never`` does nothing."""
    from worker.versioning import promote_on_start

    client = temporal_env.client
    deployment, tq = f"dep-{uuid.uuid4().hex[:8]}", f"tq-{uuid.uuid4().hex[:8]}"

    def settings(build: str, mode: str) -> TernSettings:
        return TernSettings(
            data_dir=tmp_path, worker={"deployment_name": deployment, "build_id": build, "promote_on_start": mode}
        )

    async def current() -> str | None:
        info = await describe(client, deployment)
        return info.current_build_id if info else None

    async with _worker(client, tq, _version(deployment, "A"), [AutoA]):
        assert (
            await promote_on_start(client, settings("A", "newest")) == f"made {deployment}.A current (was unversioned)"
        )
        assert await current() == "A"
        async with _worker(client, tq, _version(deployment, "B"), [AutoB]):
            assert await promote_on_start(client, settings("B", "never")) is None
            assert await current() == "A"
            assert await promote_on_start(client, settings("B", "newest")) == f"made {deployment}.B current (was A)"
            assert await current() == "B"
            left = await promote_on_start(client, settings("A", "newest"))  # an old pod restarting
            assert left is not None and left.startswith("left B current")
            assert await current() == "B"
            assert await promote_on_start(client, settings("B", "always")) is None  # already current: no change
            assert await promote_on_start(client, settings("A", "always")) == f"made {deployment}.A current (was B)"
            assert await current() == "A"


async def test_a_routing_change_never_reported_complete_fails_commands_but_not_the_worker_start(
    temporal_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """temporalio/temporal#11842: the server can accept a routing change and leave ``routing_config_update_state``
    IN_PROGRESS for good (seen once in a full run here: the worker refused to start after 60 s, and ``tern up`` with
    it). Replayed at the response boundary, the real server doing the rest: ``set_current`` (``tern deploy current``)
    raises :class:`RoutingNotPropagated` naming the deployment; ``promote_on_start`` logs it and the worker starts,
    the version being current."""
    import logging

    from temporalio.api.enums.v1 import RoutingConfigUpdateState

    from worker import versioning

    client = temporal_env.client
    deployment, tq = f"dep-{uuid.uuid4().hex[:8]}", f"tq-{uuid.uuid4().hex[:8]}"
    real = client.workflow_service.describe_worker_deployment

    async def never_complete(req: Any, **kwargs: Any) -> Any:
        resp = await real(req, **kwargs)
        resp.worker_deployment_info.routing_config_update_state = (
            RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_IN_PROGRESS
        )
        return resp

    settings = TernSettings(
        data_dir=tmp_path, worker={"deployment_name": deployment, "build_id": "B", "promote_on_start": "always"}
    )
    async with (
        _worker(client, tq, _version(deployment, "A"), [AutoA]),
        _worker(client, tq, _version(deployment, "B"), [AutoB]),
    ):
        await set_current(client, _version(deployment, "A"), timeout_s=30)
        monkeypatch.setattr(client.workflow_service, "describe_worker_deployment", never_complete)
        with pytest.raises(versioning.RoutingNotPropagated, match=f"deployment '{deployment}'.*after 0.3 s"):
            await set_current(client, _version(deployment, "A"), routed_timeout_s=0.3)
        monkeypatch.setattr(versioning, "START_PROPAGATION_WAIT_S", 0.3)
        with caplog.at_level(logging.WARNING, logger="tern.worker.versioning"):
            done = await versioning.promote_on_start(client, settings)
        assert done == f"made {deployment}.B current; the routing change was still propagating"
        assert "after 0.3 s" in caplog.text and "the worker starts anyway" in caplog.text
        monkeypatch.setattr(client.workflow_service, "describe_worker_deployment", real)
        info = await describe(client, deployment)
        assert info is not None and info.current_build_id == "B"  # the server took the change


def _cli(address: str, deployment: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from tests.conftest import env_without_services

    env = env_without_services(
        tmp_path / "data", TERN_TEMPORAL__ADDRESS=address, TERN_WORKER__DEPLOYMENT_NAME=deployment
    )
    cmd = [sys.executable, "-m", "starters.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


async def test_deploy_current_and_ramp_commands(temporal_env, tmp_path: Path) -> None:
    """``tern deploy current/ramp --json`` change the routing the server reports (read back with the describe RPC
    here); bad input exits 2 before any call, a version without workers exits 1 naming it."""
    client = temporal_env.client
    address = client.service_client.config.target_host
    deployment, tq = f"dep-{uuid.uuid4().hex[:8]}", f"tq-{uuid.uuid4().hex[:8]}"

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(_cli, address, deployment, tmp_path, "deploy", *args)

    async def routing() -> tuple[str | None, str | None, float | None]:
        info = await describe(client, deployment)
        assert info is not None
        return info.current_build_id, info.ramping_build_id, info.ramp_percentage

    async with (
        _worker(client, tq, _version(deployment, "A"), [AutoA]),
        _worker(client, tq, _version(deployment, "B"), [AutoB]),
    ):
        await set_current(client, _version(deployment, "A"), timeout_s=30)
        proc = await cli("current", "B", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"deployment": deployment, "current_build_id": "B", "previous": "A"}
        assert await routing() == ("B", None, None)

        proc = await cli("ramp", "A", "25", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"deployment": deployment, "ramping_build_id": "A", "percentage": 25}
        assert await routing() == ("B", "A", 25)

        proc = await cli("ramp", "--off", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["ramping_build_id"] is None
        assert await routing() == ("B", None, None)

        for args, message in (
            (("ramp", "A", "101"), "PERCENTAGE must be 0-100, got 101"),
            (("ramp", "A"), "needs BUILD and PERCENTAGE"),
            (("ramp", "--off", "A"), "--off takes no BUILD"),
            (("current", "a/b"), "build id 'a/b'"),
        ):
            proc = await cli(*args)
            assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        proc = await cli("current", "nobody")
        assert proc.returncode == 1 and f"{deployment}.nobody" in proc.stderr, proc.stderr
        assert await routing() == ("B", None, None)


@pytest.mark.parametrize(
    ("status", "message", "retried"),
    [
        (RPCStatusCode.NOT_FOUND, "deployment not found", True),
        (RPCStatusCode.FAILED_PRECONDITION, "version has no pollers", True),
        (RPCStatusCode.CANCELLED, "operation was canceled", True),  # the server's wait for user data gave up
        (RPCStatusCode.DEADLINE_EXCEEDED, "deadline exceeded", True),
        (RPCStatusCode.INVALID_ARGUMENT, "build id is invalid", False),
        (RPCStatusCode.PERMISSION_DENIED, "not allowed", False),
    ],
)
def test_set_current_retries_only_what_a_version_still_registering_answers(
    status: RPCStatusCode, message: str, retried: bool
) -> None:
    """CI met CANCELLED "operation was canceled" from SetWorkerDeploymentCurrentVersion while the server logged
    "timed out waiting for worker deployment version to appear in user data": retried within ``timeout_s``."""
    assert _not_ready(RPCError(message, status, b"")) is retried
