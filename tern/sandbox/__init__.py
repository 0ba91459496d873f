"""Sandboxed Python execution: policy analysis, then isolated execution of analysis code.

The two calls an activity needs::

    report = analyze(code)                      # PolicyReport: findings, risk, needs_approval(mode)
    result = await execute(request, heartbeat=activity.heartbeat, cancel_event=event)   # ExecutionResult

Backends: ``docker`` (default; a fresh hardened container per execution) and ``process`` (a subprocess
with rlimits, no isolation, refused unless ``sandbox_allow_process_backend``). Maintenance: ``kill`` a
step's container on cancellation, ``reap_orphans`` at worker start and every ``sandbox_reap_period_s``,
``build_image`` once per machine. The container's seccomp profile is in ``tern.sandbox.seccomp``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from tern.config import TernSettings, get_settings
from tern.sandbox.job import SandboxError, SandboxUnavailable, limits_from_settings
from tern.sandbox.models import (
    Backend,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    Figure,
    InputFile,
    ProposedWrite,
    SandboxLimits,
    Timings,
)
from tern.sandbox.policy import ApprovalMode, Finding, PolicyReport, RiskLevel, analyze


class SandboxBackend(Protocol):
    """What ``execute`` needs from a backend (``DockerBackend``, ``ProcessBackend``)."""

    async def run(
        self,
        request: ExecutionRequest,
        limits: SandboxLimits,
        *,
        heartbeat: Callable[[], None] | None = None,
        cancel_event: asyncio.Event | None = None,
        heartbeat_interval_s: float = 1.0,
    ) -> ExecutionResult: ...


def get_backend(kind: Backend | None = None, settings: TernSettings | None = None) -> SandboxBackend:
    """A backend of ``kind`` (default ``settings.sandbox_backend``).

    Raises ``SandboxUnavailable`` for the process backend unless ``sandbox_allow_process_backend``.
    """
    settings = settings or get_settings()
    kind = kind or settings.sandbox_backend
    if kind == "process":
        from tern.sandbox.process_backend import ProcessBackend

        return ProcessBackend(settings)
    from tern.sandbox.docker_backend import DockerBackend

    return DockerBackend(settings)


async def execute(
    request: ExecutionRequest,
    *,
    backend: Backend | SandboxBackend | None = None,
    settings: TernSettings | None = None,
    heartbeat: Callable[[], None] | None = None,
    cancel_event: asyncio.Event | None = None,
) -> ExecutionResult:
    """Run ``request`` in the sandbox and return what it produced.

    ``backend``: "docker", "process", a backend instance (reuse one to keep its engine connection), or
    None for ``settings.sandbox_backend``. Limits are ``request.limits`` or the configured ones.
    ``heartbeat()`` is called about once a second while the code runs (pass ``activity.heartbeat``);
    setting ``cancel_event`` kills the execution (status ``killed``), as does cancelling the calling task
    (the container is removed, then ``CancelledError`` propagates).

    Failures of the code (exceptions, timeouts, limits) come back as a result with ``status != "ok"``.
    Raises ``SandboxUnavailable`` (no engine, no image, process backend not permitted) or ``SandboxError``
    (the engine failed) when the sandbox itself cannot run: retrying may help only for the latter.
    """
    settings = settings or get_settings()
    runner = get_backend(backend, settings) if backend is None or isinstance(backend, str) else backend
    limits = request.limits or limits_from_settings(settings)
    return await runner.run(request, limits, heartbeat=heartbeat, cancel_event=cancel_event)


def unavailable_reason(settings: TernSettings | None = None) -> str | None:
    """Why python steps cannot run with ``settings`` (Docker engine unreachable, image missing), or None when
    they can. The process backend is always available to this check (its own permission is checked at use)."""
    settings = settings or get_settings()
    if settings.sandbox_backend != "docker":
        return None
    from tern.sandbox.docker_backend import DockerBackend

    try:
        DockerBackend(settings).check()
    except SandboxError as exc:
        return str(exc)
    return None


def kill(run_id: str, step_id: str | None = None, settings: TernSettings | None = None) -> int:
    """Kill and remove the sandbox containers of a run (and step); returns how many. For cancellation
    from outside the executing task. Raises ``SandboxUnavailable`` when the engine is unreachable."""
    from tern.sandbox.docker_backend import DockerBackend

    return DockerBackend(settings).kill(run_id, step_id)


def reap_orphans(max_age_s: float | None = None, settings: TernSettings | None = None) -> int:
    """Remove sandbox containers past their deadline or older than ``max_age_s`` seconds (default
    ``sandbox_orphan_age_s``) and stale job directories; returns how many containers (rules in
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
    "Timings",
    "analyze",
    "execute",
    "get_backend",
    "kill",
    "limits_from_settings",
    "reap_orphans",
    "unavailable_reason",
]
