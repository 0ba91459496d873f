"""Activities of ``python`` steps: policy analysis, code generation, sandboxed execution.

``execute_python`` heartbeats while the container runs; when Temporal cancels it, the container is removed.
Before running, it removes any container left by an earlier attempt of the same step (a worker that died).

Re-runs are recorded, never silent: an attempt that was interrupted after its code started (the worker was
killed, the Docker engine restarted) is retried by Temporal and runs the same code again. That is acceptable
for an analysis step (no network, no writes: proposed writes still go through their own approval), so the
retry runs it, and the result says how often it ran before (``ExecutionResult.reruns``, counted in the
heartbeat details, which Temporal keeps across attempts of one activity) and which attempt produced it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tern import metrics, tracing
from tern.approval.policy import ApprovalPolicyError, PolicySource
from tern.config import TernSettings, process_backend_refusal
from tern.llm.chat import LLMError, make_chat_provider
from tern.models.code_policy import PolicyReport
from tern.models.execution import ExecutionResult
from tern.models.python_step import AnalyzeInput, ExecuteInput, GenerateCodeInput, GeneratedCode
from tern.sandbox import ExecutionRequest, SandboxBackend, SandboxError, SandboxUnavailable, analyze, get_backend
from tern.sandbox import execute as sandbox_execute
from tern.sandbox.artifacts import load_artifact, store_figures
from tern.sandbox.codegen import generate
from tern.sandbox.docker_backend import DockerBackend
from tern.sandbox.engine import ENGINE_ERRORS, engine_failed
from tern.sandbox.job import EngineUnreachable
from tern.sandbox.models import InputFile
from tern.sandbox.process_backend import ProcessBackend

CODE_RUNS = "code_runs"
"""Key of ``execute_python``'s heartbeat details: how many attempts of this activity started the code."""


def code_runs_before(details: Sequence[Any]) -> int:
    """How many earlier attempts started the code, from ``activity.info().heartbeat_details`` (the last
    heartbeat of the previous attempt, ``[{"code_runs": n}]``; empty when none heartbeated)."""
    if details and isinstance(details[-1], dict):
        runs = details[-1].get(CODE_RUNS)
        if isinstance(runs, int) and runs >= 0:
            return runs
    return 0


class SandboxActivities:
    """Activities bound to one worker's settings, pool and sandbox backend.

    Args:
        settings: the worker's settings (sandbox backend and limits, LLM provider).
        pool: asyncpg pool (figures are stored as artifacts).
        backend: the sandbox backend to use (default: ``get_backend(settings)``, made on first use and kept
            for the worker's lifetime, with its engine connection).
    """

    def __init__(self, settings: TernSettings, pool: asyncpg.Pool, backend: SandboxBackend | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self._backend = backend

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.analyze_code, self.generate_code, self.execute_python]

    def backend(self) -> SandboxBackend:
        """The sandbox backend, made from ``settings`` on first use and kept. Raises ``SandboxUnavailable``
        when the configured backend cannot be made (process backend not permitted)."""
        if self._backend is None:
            self._backend = get_backend(self.settings)
        return self._backend

    @activity.defn(name="analyze_code")
    async def analyze_code(self, inp: AnalyzeInput) -> PolicyReport:
        """Syntax check and AST policy analysis (never raises for bad code)."""
        return analyze(inp.code)

    @activity.defn(name="generate_code")
    async def generate_code(self, inp: GenerateCodeInput) -> GeneratedCode:
        """Generate code with the configured LLM. Tests register a scripted activity under this name."""
        provider = make_chat_provider(self.settings, "code")
        if provider is None:
            raise ApplicationError(
                "no code generator is configured (llm_provider=none): give the python step its 'code'",
                type="NoCodeGenerator",
                non_retryable=True,
            )
        try:
            return await generate(provider, inp)
        except ValueError as exc:
            raise ApplicationError(str(exc), type="NoCode") from exc
        except LLMError as exc:
            raise ApplicationError(f"code generation failed: {exc}", type="LLMError") from exc

    async def _files(self, inp: ExecuteInput) -> dict[str, InputFile]:
        """The artifacts named in ``inp.files`` (archived series, structured PVAccess values of this run) as read-only
        file inputs. An artifact
        that is missing or belongs to another run is refused (non-retryable)."""
        files: dict[str, InputFile] = {}
        for name, ref in inp.files.items():
            art = await load_artifact(self.pool, ref)
            if art is None or art.workflow_id != inp.workflow_id:
                raise ApplicationError(
                    f"input {name}: artifact {ref} is not an artifact of run {inp.workflow_id}",
                    type="BadInputArtifact",
                    non_retryable=True,
                )
            suffix = ".npz" if art.media_type == "application/x-npz" else ".json.gz"  # PVA structured value
            files[name] = InputFile(data=art.content, filename=f"{name}{suffix}")
        return files

    @activity.defn(name="execute_python")
    async def execute_python(self, inp: ExecuteInput) -> ExecutionResult:
        """Run the code in a fresh sandbox; figures go to the artifact table. Failures of the code are in the
        result; ``SandboxUnavailable`` (no engine or image) is non-retryable, ``SandboxError`` (the engine failed,
        e.g. restarted mid-run) retryable. The result records the attempt and the earlier runs of the same code
        (``attempt``, ``reruns``); heartbeats carry ``{"code_runs": n}`` once the code has started."""
        info = activity.info()
        before = code_runs_before(info.heartbeat_details)
        try:
            return await self._execute(inp, info.attempt, before)
        except EngineUnreachable as exc:  # may be restarting: retried (SandboxUnavailable is not)
            raise ApplicationError(f"sandbox failure: {exc}", type="EngineUnreachable") from exc

    def _check_isolation(self) -> None:
        """Refuse to run code on the unisolated process backend unless the python approval floor in force is
        ``all_code`` (:func:`tern.config.process_backend_refusal`), read from the policy file when one is set,
        else the settings. Settings validation refuses the same combination, but settings can be built
        without it (``model_copy``) and a policy file can lower the floor after the worker started: this is
        the check on the path that runs the code. A policy that does not load refuses too (fail closed).
        Raises a non-retryable ``ApplicationError`` of type ``SandboxUnavailable``."""
        process = isinstance(self._backend, ProcessBackend) or (
            self._backend is None and self.settings.sandbox.backend == "process"
        )
        if not process:
            return
        a = self.settings.approval
        try:
            policy, _ = PolicySource(a.policy_path, list(a.approvers), a.python_mode).current()
            refusal = process_backend_refusal("process", a.python_mode) or process_backend_refusal(
                "process", policy.python_approval_mode
            )
        except ApprovalPolicyError as exc:
            refusal = f"the process sandbox backend needs the approval policy's python mode, which does not load: {exc}"
        if refusal:
            raise ApplicationError(f"sandbox unavailable: {refusal}", type="SandboxUnavailable", non_retryable=True)

    async def _execute(self, inp: ExecuteInput, attempt: int, before: int) -> ExecutionResult:
        """``execute_python``'s work for activity attempt ``attempt`` after ``before`` earlier starts of the code.
        Raises ``EngineUnreachable`` when the Docker engine does not answer."""
        self._check_isolation()
        if self._backend is not None or self.settings.sandbox.backend == "docker":
            backend = self.backend()
            if isinstance(backend, DockerBackend):
                try:  # leftovers of a dead worker or of an engine restart
                    await asyncio.to_thread(backend.kill, inp.workflow_id, inp.step_id)
                except ENGINE_ERRORS as exc:
                    raise ApplicationError(f"sandbox failure: {engine_failed(None, exc)}", type="SandboxError") from exc
        request = ExecutionRequest(
            code=inp.code,
            inputs=inp.inputs,
            files=await self._files(inp),
            expected_keys=inp.expected_keys,
            workflow_id=inp.workflow_id,
            step_id=inp.step_id,
        )
        started = time.monotonic()
        outcome = "sandbox_error"
        span_attrs = {"sandbox.backend": self.settings.sandbox.backend, "sandbox.image": self.settings.sandbox.image}
        try:
            with tracing.span("sandbox.execute", span_attrs) as span:
                result = await sandbox_execute(
                    request, self.backend(), heartbeat=lambda: activity.heartbeat({CODE_RUNS: before + 1})
                )
                outcome = result.status
                span.set_attributes({"sandbox.outcome": outcome, "sandbox.duration_s": time.monotonic() - started})
        except EngineUnreachable:
            outcome = "sandbox_unavailable"
            raise
        except SandboxUnavailable as exc:
            outcome = "sandbox_unavailable"
            raise ApplicationError(
                f"sandbox unavailable: {exc}", type="SandboxUnavailable", non_retryable=True
            ) from exc
        except SandboxError as exc:
            raise ApplicationError(f"sandbox failure: {exc}", type="SandboxError") from exc
        finally:  # a cancelled execution counts as sandbox_error: it has no result
            metrics.sandbox_executions.labels(outcome=outcome).inc()
            metrics.sandbox_duration.labels(outcome=outcome).observe(time.monotonic() - started)
        if attempt > 1 or before:
            result = result.model_copy(update={"attempt": attempt, "reruns": before})
            activity.logger.warning(
                "step %s of %s: attempt %d; the code ran %d time(s) before in interrupted attempts",
                inp.step_id,
                inp.workflow_id,
                attempt,
                before,
            )
        return await store_figures(self.pool, result, workflow_id=inp.workflow_id, step_id=inp.step_id)
