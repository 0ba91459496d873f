"""Sandboxed Python execution: policy analysis, then isolated execution of analysis code.

The calls an activity needs (settings are always passed in, never read from the environment here)::

    report = analyze(code)                      # PolicyReport: findings, risk, needs_approval(mode)
    backend = get_backend(settings)             # once per worker: keeps its engine connection
    result = await execute(request, backend, heartbeat=activity.heartbeat, cancel_event=event)

Backends: ``docker`` (default; a fresh hardened container per execution) and ``process`` (a subprocess
with rlimits, no isolation, refused unless ``sandbox_allow_process_backend``); both are followed while they
run by one ``Supervisor`` (``tern.sandbox.supervision``: deadline, heartbeats, cancellation). Maintenance:
``kill`` a step's container on cancellation, ``reap_orphans`` at worker start and every
``sandbox_reap_period_s``, ``image.build_image`` once per machine. The container's seccomp profile is in
``tern.sandbox.seccomp``, the Docker engine client in ``tern.sandbox.engine``. The result and policy-report
types live in ``tern.models.execution`` and ``tern.models.code_policy`` and are re-exported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from tern.config import TernSettings
from tern.models.approval import ApprovalMode
from tern.models.code_policy import Finding, PolicyReport, RiskLevel
from tern.models.execution import Backend, ExecutionResult, ExecutionStatus, Figure, Timings
from tern.sandbox.job import SandboxError, SandboxUnavailable, limits_from_settings
from tern.sandbox.models import ExecutionRequest, InputFile, ProposedWrite, SandboxLimits
from tern.sandbox.policy import analyze
from tern.sandbox.supervision import Supervisor


class SandboxBackend(Protocol):
    """What ``execute`` needs from a backend (``DockerBackend``, ``ProcessBackend``): the settings it was
    made with (for the default limits) and ``run``, which reports every failure of the code in the result."""

    settings: TernSettings

    async def run(self, request: ExecutionRequest, limits: SandboxLimits, supervisor: Supervisor) -> ExecutionResult:
        """Run ``request`` within ``limits``, followed by ``supervisor``; see ``DockerBackend.run``."""
        ...


def get_backend(settings: TernSettings, kind: Backend | None = None) -> SandboxBackend:
    """A backend of ``kind`` (default ``settings.sandbox.backend``) made with ``settings``.

    Raises ``SandboxUnavailable`` for the process backend unless ``sandbox_allow_process_backend``, and for
    the Docker backend when no image is named and this is not a source checkout (``image.content_hash``).
    """
    kind = kind or settings.sandbox.backend
    if kind == "process":
        from tern.sandbox.process_backend import ProcessBackend

        return ProcessBackend(settings)
    from tern.sandbox.docker_backend import DockerBackend

    return DockerBackend(settings)


async def execute(
    request: ExecutionRequest,
    backend: SandboxBackend,
    *,
    heartbeat: Callable[[], None] | None = None,
    cancel_event: asyncio.Event | None = None,
) -> ExecutionResult:
    """Run ``request`` in the sandbox and return what it produced.

    ``backend``: from ``get_backend`` (reuse one to keep its engine connection). Limits are
    ``request.limits`` or the ones configured in ``backend.settings``.
    ``heartbeat()`` is called about once a second while the code runs (pass ``activity.heartbeat``);
    setting ``cancel_event`` kills the execution (status ``killed``), as does cancelling the calling task
    (the container is removed, then ``CancelledError`` propagates).

    Failures of the code (exceptions, timeouts, limits) come back as a result with ``status != "ok"``.
    Raises ``SandboxUnavailable`` (no engine, no image) or ``SandboxError`` (the engine failed) when the
    sandbox itself cannot run: retrying may help only for the latter.
    """
    limits = request.limits or limits_from_settings(backend.settings)
    return await backend.run(request, limits, Supervisor(heartbeat=heartbeat, cancel_event=cancel_event))


def unavailable_reason(settings: TernSettings) -> str | None:
    """Why python steps cannot run with ``settings`` (Docker engine unreachable, image missing), or None when
    they can. The process backend is always available to this check (its own permission is checked at use)."""
    if settings.sandbox.backend != "docker":
        return None
    from tern.sandbox.docker_backend import DockerBackend

    try:
        DockerBackend(settings).check()
    except SandboxError as exc:
        return str(exc)
    return None


def kill(settings: TernSettings, workflow_id: str, step_id: str | None = None) -> int:
    """Kill and remove the sandbox containers of a run (and step) on the engine of ``settings``; returns how
    many. For cancellation from outside the executing task. Raises ``SandboxUnavailable`` when the engine is
    unreachable."""
    from tern.sandbox.docker_backend import DockerBackend

    return DockerBackend(settings).kill(workflow_id, step_id)


def reap_orphans(settings: TernSettings, max_age_s: float | None = None) -> int:
    """Remove sandbox containers past their deadline or older than ``max_age_s`` seconds (default
    ``settings.sandbox.orphan_age_s``) and stale job directories; returns how many containers (rules in
    ``DockerBackend.reap_orphans``). Workers call it at start and every ``sandbox_reap_period_s`` seconds.

    Raises ``SandboxUnavailable`` when the engine is unreachable."""
    from tern.sandbox.docker_backend import DockerBackend

    return DockerBackend(settings).reap_orphans(max_age_s)


__all__ = [
    "ApprovalMode",
    "Backend",
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionStatus",
    "Figure",
    "Finding",
    "InputFile",
    "PolicyReport",
    "ProposedWrite",
    "RiskLevel",
    "SandboxBackend",
    "SandboxError",
    "SandboxLimits",
    "SandboxUnavailable",
    "Supervisor",
    "Timings",
    "analyze",
    "execute",
    "get_backend",
    "kill",
    "limits_from_settings",
    "reap_orphans",
    "unavailable_reason",
]
