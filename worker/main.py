"""The Tern worker: one process polling the Tern task queue and its long-work queue (``<queue>-long``:
:mod:`workflows.queues`), each with every workflow and activity registered and activity slots of its own.

``tern worker`` (or ``python -m worker.main``) runs it until SIGINT/SIGTERM, then drains gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.agent import AgentActivities
from activities.approval import ApprovalActivities, policy_source
from activities.archiver import ArchiverActivities
from activities.ariel import ariel_activities
from activities.bluesky import BlueskyActivities
from activities.channel_finder import ChannelActivities
from activities.freeze import FreezeActivities
from activities.logbook import LogbookActivities
from activities.memory import MemoryActivities
from activities.planning import PlanningActivities
from activities.sandbox import SandboxActivities
from tern.approval.policy import ApprovalPolicyError
from tern.config import TernSettings, process_backend_refusal
from tern.control.ca_client import ChannelAccessClient
from tern.control.channel_access import configure_environment
from tern.db import create_pool
from worker.connection import TemporalUnreachable, connect, connect_options
from worker.health import HealthChecks, HttpEndpoint, HttpEndpointError, bind, build_app
from worker.logs import LogContextInterceptor, configure_logging
from worker.sdk_metrics import metrics_runtime
from worker.telemetry import TelemetryConfigError, configure_tracing
from worker.versioning import DeploymentError, deployment_config, promote_on_start
from workflows.agent_run import AgentRunWorkflow
from workflows.facility_freeze import FacilityFreezeWorkflow
from workflows.logbook_ingestion import ARIEL_WORKFLOWS
from workflows.logbook_reembed import LogbookReembedWorkflow
from workflows.python_execution import PythonExecutionWorkflow
from workflows.queues import long_queue
from workflows.run_writes import WRITE_TIMEOUT
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

SEARCH_ATTRIBUTE_NAMES = tuple(k.name for k in SEARCH_ATTRIBUTES)

log = logging.getLogger("tern.worker")

WORKFLOWS: Sequence[type] = (
    AgentRunWorkflow,
    PythonExecutionWorkflow,
    *ARIEL_WORKFLOWS,
    LogbookReembedWorkflow,
    FacilityFreezeWorkflow,
)
GRACEFUL_SHUTDOWN = timedelta(seconds=75)  # the default of worker.graceful_shutdown_s; longer than WRITE_TIMEOUT
MAX_CONCURRENT_ACTIVITIES = 50  # activity slots of one worker; benchmarks.floors gives its bare worker the same
LONG_CONCURRENT_ACTIVITIES = 20  # activity slots for the long-work queue (sandbox runs, ingestion, re-embedding)


class TernWorker:
    """The worker process's two Temporal workers: ``main`` on ``temporal.task_queue`` (agent runs, approvals,
    writes, every short activity) and ``long`` on its long-work queue (:func:`workflows.queues.long_queue`: python
    steps' children with their sandbox runs, ingestion, re-embedding). Each has its own activity slots (the SDK's
    fixed-size slot supplier, ``max_concurrent_activities``), so long work holding all of its slots leaves the
    main queue's free for the write path. Both register every workflow and activity (a history started on either
    queue before or after ``long-work-queue-1`` finds its code). ``async with`` runs both; the attributes below
    are what the health checks read."""

    def __init__(self, main: Worker, long: Worker) -> None:
        self.main = main
        self.long = long
        self._stack = contextlib.AsyncExitStack()

    @property
    def is_running(self) -> bool:
        """Both workers poll."""
        return self.main.is_running and self.long.is_running

    @property
    def is_shutdown(self) -> bool:
        """Either worker has shut down."""
        return self.main.is_shutdown or self.long.is_shutdown

    async def __aenter__(self) -> TernWorker:
        await self._stack.enter_async_context(self.main)
        await self._stack.enter_async_context(self.long)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()  # the long worker drains first, then the main one (each graceful)


def build_worker(
    client: Client,
    settings: TernSettings,
    pool: asyncpg.Pool,
    overrides: Mapping[str, Callable[..., Any]] | None = None,
    deployment: WorkerDeploymentConfig | None = None,
    *,
    activity_slots: int = MAX_CONCURRENT_ACTIVITIES,
    long_activity_slots: int = LONG_CONCURRENT_ACTIVITIES,
) -> TernWorker:
    """The workers on ``settings.temporal.task_queue`` and its long-work queue (:class:`TernWorker`) with all
    Tern workflows and activities, sharing ``pool``; ``activity_slots`` and ``long_activity_slots`` activities at
    once on each.

    ``overrides`` maps activity names to callables (``@activity.defn(name=...)``) that replace Tern's activity
    of that name: an LLM provider such as ``generate_code`` or ``compose_answer``; tests register scripted ones
    this way. Tern's activity callables are named as their activities. ``deployment``: the worker's version of
    a Worker Deployment (:func:`worker.versioning.deployment_config`); None polls unversioned (tests on their own
    task queues). Raises ``ValueError`` for a name that
    is not one of Tern's activities, and when ``worker.graceful_shutdown_s`` does not exceed the control write's
    timeout (a rollout would cancel writes in flight).
    """
    graceful = timedelta(seconds=settings.worker.graceful_shutdown_s)
    if graceful <= WRITE_TIMEOUT:
        raise ValueError(
            f"worker.graceful_shutdown_s (TERN_WORKER__GRACEFUL_SHUTDOWN_S) is {graceful.total_seconds():g} s: it must "
            f"exceed the control write's timeout ({WRITE_TIMEOUT.total_seconds():g} s), or a rollout cuts writes off"
        )
    agent = AgentActivities(settings, pool)
    approvals = ApprovalActivities(settings, agent.pool)
    activities = [
        *agent.all(),
        *approvals.all(),
        *FreezeActivities(approvals).all(),
        *SandboxActivities(settings, pool).all(),
        *ArchiverActivities(settings, pool).all(),
        *MemoryActivities(settings, pool).all(),
        *LogbookActivities(settings, pool).all(),
        *ariel_activities(settings, pool),
        *ChannelActivities(settings, pool).all(),
        *PlanningActivities(settings).all(),
        *BlueskyActivities(settings).all(),
    ]
    overrides = dict(overrides or {})
    unknown = set(overrides) - {a.__name__ for a in activities}
    if unknown:
        raise ValueError(f"no Tern activity named {', '.join(sorted(unknown))} to override")
    registered = [*(a for a in activities if a.__name__ not in overrides), *overrides.values()]

    def on(task_queue: str, slots: int) -> Worker:
        return Worker(
            client,
            task_queue=task_queue,
            workflows=list(WORKFLOWS),
            activities=registered,
            graceful_shutdown_timeout=graceful,
            interceptors=[LogContextInterceptor()],
            max_concurrent_activities=slots,
            deployment_config=deployment,  # one version of the deployment spans both task queues
        )

    return TernWorker(
        on(settings.temporal.task_queue, activity_slots),
        on(long_queue(settings.temporal.task_queue), long_activity_slots),
    )


class MissingSearchAttributes(RuntimeError):
    """The namespace lacks Tern's search attributes; every run's first workflow task would fail."""


async def check_search_attributes(client: Client, required: Sequence[str] = SEARCH_ATTRIBUTE_NAMES) -> None:
    """Raise :class:`MissingSearchAttributes` naming the attributes to create when any is missing."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    resp = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
    missing = [name for name in required if name not in resp.custom_attributes]
    if missing:
        cmds = "; ".join(f"temporal operator search-attribute create --name {n} --type Keyword" for n in missing)
        raise MissingSearchAttributes(
            f"namespace {client.namespace!r} lacks the search attributes {', '.join(missing)}; runs would fail "
            f"on their first workflow task. Create them: {cmds}"
        )


def reap_sandbox_orphans(settings: TernSettings) -> None:
    """Remove sandbox containers a crashed worker left past their deadline; a warning when there is no engine."""
    if settings.sandbox.backend != "docker":
        return
    from tern.sandbox import SandboxUnavailable, reap_orphans

    try:
        n = reap_orphans(settings)
    except SandboxUnavailable as exc:
        log.warning("sandbox unavailable, python steps will fail until it is: %s", exc)
        return
    if n:
        log.info("removed %d orphaned sandbox container(s)", n)


def check_approval_policy(settings: TernSettings) -> None:
    """Load the approval policy once at start: an invalid file stops the worker with the reason, and so does a
    policy whose python approval floor lets unapproved code run on the unisolated process sandbox backend
    (:func:`tern.config.process_backend_refusal`); an open policy (nobody named) is logged as a warning.
    Raises :class:`tern.approval.ApprovalPolicyError`."""
    policy, version = policy_source(settings).current()
    refusal = process_backend_refusal(settings.sandbox.backend, settings.approval.python_mode) or (
        process_backend_refusal(settings.sandbox.backend, policy.python_approval_mode)
    )
    if refusal:
        raise ApprovalPolicyError(f"approval policy {version}: {refusal}")
    if policy.is_open:
        log.warning(
            "approval policy %s is open: no approvers are configured (TERN_APPROVAL__APPROVERS or "
            "TERN_APPROVAL__POLICY_PATH), so each run names its own approvers; fit for a single-user stack "
            "only",
            version,
        )
    else:
        log.info(
            "approval policy %s: %d rule(s), default approvers %s",
            version,
            len(policy.rules),
            ", ".join(policy.default_approvers) or "none",
        )


async def reap_sandbox_periodically(settings: TernSettings, stop: asyncio.Event) -> None:
    """Every ``settings.sandbox.reap_period_s`` seconds until ``stop`` is set, remove sandbox containers past
    their deadline label, whoever started them (another worker, a killed ``tern sandbox run``); the deadline
    holds even when the container's own timeout and the process that started it both failed. A failed pass
    is logged and the next one tried; returns at once for the process backend."""
    if settings.sandbox.backend != "docker":
        return
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), settings.sandbox.reap_period_s)
        except TimeoutError:
            pass
        if stop.is_set():
            return
        try:
            await asyncio.to_thread(reap_sandbox_orphans, settings)
        except Exception as exc:  # an engine hiccup must not end the reaper for the worker's lifetime
            log.warning("sandbox reaper pass failed: %s", exc)


async def load_channels(settings: TernSettings, pool: asyncpg.Pool) -> None:
    """Load the bundled channel database now (``channels_load_bundled``), so that ``tern up`` leaves it ready; a
    failure is logged and left to the first ``channel_find`` step to report."""
    from tern.channel_finder.finder import ChannelFinder
    from tern.control.limits import LimitsDatabaseError

    try:
        counts = await ChannelFinder(settings, pool, embedder=None).ensure_loaded()
    except LimitsDatabaseError as exc:
        log.warning("bundled channel database not loaded: %s", exc)
        return
    if counts is not None:
        log.info("bundled channel database loaded: %d added, %d updated", counts.added, counts.updated)


async def run_worker(
    settings: TernSettings, stop: asyncio.Event | None = None, on_ready: Callable[[str | None], None] | None = None
) -> None:
    """Reap sandbox orphans, connect (as the writer role, ``settings.writer_dsn``; the schema must be migrated:
    ``tern migrate``), load the bundled channel database, and poll until
    ``stop`` is set (or SIGINT/SIGTERM), reaping sandbox containers past their deadline every
    ``sandbox_reap_period_s`` meanwhile. The HTTP endpoint (:mod:`worker.health`: ``/healthz``, ``/readyz``,
    ``/metrics``) is bound first, so a busy port stops the worker at once naming TERN_WORKER__HTTP_PORT, and serves
    while the worker polls; ``on_ready`` is called with its base URL (None when ``worker_http_port`` is 0) once the
    worker polls. With ``worker.versioning`` (default) the worker polls as its version of the Worker Deployment
    ``worker.deployment_name`` (:mod:`worker.versioning`) and, before ``on_ready``, makes that version current as
    ``worker.promote_on_start`` says."""
    sock = bind(settings.worker.http_host, settings.worker.http_port) if settings.worker.http_port else None
    try:
        connect_options(settings)  # an unusable TLS file or profile stops the worker before anything starts
        configure_environment(settings.ca_environment())
        await asyncio.to_thread(reap_sandbox_orphans, settings)
        pool = await create_pool(settings.writer_dsn)
        await load_channels(settings, pool)
        runtime, sdk_metrics = metrics_runtime()
        client = await connect(settings, runtime=runtime)
        await check_search_attributes(client)
        check_approval_policy(settings)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reaper = asyncio.create_task(reap_sandbox_periodically(settings, stop))
    drainer = asyncio.create_task(sdk_metrics.drain_periodically(stop))
    probe_ca = ChannelAccessClient(1, settings.ca_environment()) if settings.worker.ca_probe_channel else None
    checks = HealthChecks(settings, client, pool, probe_ca)
    try:
        async with contextlib.AsyncExitStack() as stack:
            endpoint = await stack.enter_async_context(HttpEndpoint(build_app(checks), sock)) if sock else None
            deployment = deployment_config(settings)
            worker = build_worker(client, settings, pool, deployment=deployment)
            async with worker:
                version = f" as {deployment.version.to_canonical_string()}" if deployment else " unversioned"
                log.info("worker polling %s on %s%s", settings.temporal.task_queue, settings.temporal.address, version)
                promoted = await promote_on_start(client, settings)
                if promoted:
                    log.info("%s (worker.promote_on_start=%s)", promoted, settings.worker.promote_on_start)
                checks.worker = worker  # ready (/readyz) once its version serves
                if on_ready is not None:
                    on_ready(endpoint.url if endpoint else None)
                await stop.wait()
    finally:
        reaper.cancel()
        drainer.cancel()
        if probe_ca is not None:
            probe_ca.close(wait=False)
        if settings.ariel.backend == "opensearch":  # the process's shared OpenSearch client (ARIEL activities)
            from tern.ariel.backends.opensearch_client import close_shared_clients

            await close_shared_clients()
        await pool.close()


def startup_errors() -> tuple[type[Exception], ...]:
    """Errors that stop a worker at start with a message naming the setting or the fix (no traceback)."""
    from asyncpg import PostgresError

    from tern.approval import ApprovalPolicyError
    from tern.build_id import BuildIdError
    from tern.db import DatabaseError

    return (
        DatabaseError,
        MissingSearchAttributes,
        HttpEndpointError,
        TelemetryConfigError,
        TemporalUnreachable,
        ApprovalPolicyError,
        BuildIdError,
        DeploymentError,
        PostgresError,
        OSError,
    )


def main() -> None:
    """``python -m worker.main``: run a worker with the environment's settings; exit 1 with the reason on one
    line (stderr) when it cannot start (:func:`startup_errors`, invalid settings)."""
    from pydantic import ValidationError

    try:
        settings = TernSettings()
        configure_logging(settings)
        configure_tracing(settings)
        asyncio.run(run_worker(settings))
    except (ValidationError, *startup_errors()) as exc:  # type: ignore[misc]  # a tuple built at run time
        print(f"tern worker: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
