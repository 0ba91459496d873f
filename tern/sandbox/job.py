"""What both backends share: laying out a job directory for the runner, and turning what came back (the
runner's JSON document, exit code, kill reason) into an ``ExecutionResult``."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from tern.config import TernSettings
from tern.models.execution import Backend, ExecutionResult, ExecutionStatus, Figure, Timings
from tern.sandbox.models import ExecutionRequest, ProposedWrite, SandboxLimits

RUNNER_PATH = Path(__file__).resolve().parent / "runner.py"
JOB_PREFIX = "job-"


class SandboxError(RuntimeError):
    """The sandbox could not run the code at all (not a failure of the code); the message says why."""


class SandboxUnavailable(SandboxError):
    """The backend is missing or unreachable: no Docker engine, no image, process backend not permitted."""


class EngineUnreachable(SandboxUnavailable):
    """The Docker engine does not answer (its socket is gone or refuses): it may be restarting, so unlike a missing
    image this may pass; activities retry it (issue 13: an engine restart failed python steps for good)."""


def limits_from_settings(settings: TernSettings) -> SandboxLimits:
    """The configured per-execution limits (``TERN_SANDBOX_*``)."""
    return SandboxLimits(
        timeout_s=settings.sandbox.timeout_s,
        memory_bytes=settings.sandbox.memory_bytes,
        cpus=settings.sandbox.cpus,
        pids=settings.sandbox.pids,
        tmpfs_bytes=settings.sandbox.tmpfs_bytes,
        stdout_bytes=settings.sandbox.stdout_bytes,
        stderr_bytes=settings.sandbox.stderr_bytes,
        result_bytes=settings.sandbox.result_bytes,
        max_figures=settings.sandbox.max_figures,
        figure_bytes=settings.sandbox.figure_bytes,
    )


def jobs_root() -> Path:
    """Host directory holding job directories: traversable but not listable by other users (0711)."""
    root = Path(tempfile.gettempdir()) / f"tern-sandbox-{os.getuid()}"
    root.mkdir(mode=0o711, exist_ok=True)
    root.chmod(0o711)
    return root


def write_job(request: ExecutionRequest, limits: SandboxLimits) -> Path:
    """Create a job directory for the runner: ``NAME.json`` per input, ``files/``, ``.tern/code.py`` and
    ``.tern/meta.json``. World-readable (the sandbox user is not the host user), under a 0711 parent with
    an unguessable name. The caller removes it (``remove_job``)."""
    job = Path(tempfile.mkdtemp(prefix=JOB_PREFIX, dir=jobs_root()))
    try:
        (job / ".tern").mkdir()
        (job / "files").mkdir()
        for name, value in request.inputs.items():
            (job / f"{name}.json").write_text(json.dumps(value), encoding="utf-8")
        file_names: dict[str, str] = {}
        for name, item in request.files.items():
            file_names[name] = item.filename or name
            (job / "files" / file_names[name]).write_bytes(item.data)
        (job / ".tern" / "code.py").write_text(request.code, encoding="utf-8")
        meta = {"limits": limits.model_dump(), "files": file_names, "expected_keys": request.expected_keys}
        (job / ".tern" / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        for path in [job, *job.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    except BaseException:
        shutil.rmtree(job, ignore_errors=True)
        raise
    return job


def remove_job(job: Path) -> None:
    """Remove a job directory (no error if it is gone)."""
    shutil.rmtree(job, ignore_errors=True)


def reap_jobs(max_age_s: float) -> int:
    """Remove job directories older than ``max_age_s`` seconds (a crashed worker's); returns how many."""
    root = jobs_root()
    removed = 0
    for job in root.glob(f"{JOB_PREFIX}*"):
        try:
            if time.time() - job.stat().st_mtime > max_age_s:
                shutil.rmtree(job, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


MAX_CLAIMED_DROPPED = 10**6
"""Largest ``figures_dropped`` a result document may claim (the rest of a forged count is ignored)."""

EndedBy = Literal["exit", "timeout", "oom", "cancel", "output_limit"]
"""How an execution ended as the backend saw it; ``exit`` means by itself."""


@dataclass
class Outcome:
    """What a backend observed: ``stdout`` holds the runner's document, ``stderr`` anything else."""

    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    ended_by: EndedBy = "exit"
    detail: str = ""
    timings: Timings = field(default_factory=Timings)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The first 8 bytes of every PNG file (PNG specification, section 5.2 "PNG signature")."""


def _figures(doc: dict[str, Any], limits: SandboxLimits) -> tuple[list[Figure], int]:
    """The figures of the runner document within ``limits``, and how many were dropped.

    The runner applies the same limits inside the sandbox, but the code can write its own document (print one
    and end the interpreter), so the host checks again whatever the document claims: at most
    ``limits.max_figures`` figures are kept, each a PNG (by its signature) of at most ``limits.figure_bytes``
    bytes; the rest are dropped and counted. Raises (``KeyError``, ``TypeError``, ``binascii.Error``) for an
    item that is not a figure at all, which :func:`build_result` turns into an invalid-document result."""
    raw = doc.get("figures") or []
    if not isinstance(raw, list):
        raise TypeError(f"figures must be a list, got {type(raw).__name__}")
    figures: list[Figure] = []
    dropped = 0
    for item in raw:
        name, encoded = str(item["name"])[:200], item["png_b64"]
        if not isinstance(encoded, str | bytes):
            raise TypeError(f"png_b64 must be a string, got {type(encoded).__name__}")
        # base64 is 4/3 of the bytes: a figure over the limit is dropped without decoding it
        if len(figures) >= limits.max_figures or len(encoded) > (limits.figure_bytes + 2) // 3 * 4:
            dropped += 1
            continue
        png = base64.b64decode(encoded, validate=True)
        if len(png) > limits.figure_bytes or not png.startswith(PNG_SIGNATURE):
            dropped += 1
            continue
        figures.append(
            Figure(
                name=name,
                png=png,
                size_bytes=len(png),
                sha256=hashlib.sha256(png).hexdigest(),
            )
        )
    return figures, dropped


def _clip(text: Any, limit: int) -> tuple[str, bool]:
    """``text`` (a string, else it raises ``TypeError``) cut to at most ``limit`` UTF-8 bytes, and whether it
    was cut."""
    if not isinstance(text, str):
        raise TypeError(f"captured output must be a string, got {type(text).__name__}")
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text, False
    return data[:limit].decode("utf-8", "ignore"), True


def _captured_within(captured: dict[str, Any], limits: SandboxLimits) -> dict[str, Any]:
    """The document's stdout/stderr cut to ``limits.stdout_bytes``/``stderr_bytes`` (as the runner does),
    with their byte counts at least what was kept and the truncated flags set when the host cut them."""
    out = dict(captured)
    for name, limit in (("stdout", limits.stdout_bytes), ("stderr", limits.stderr_bytes)):
        if name not in out:
            continue
        text, cut = _clip(out[name], limit)
        claimed = out.get(f"{name}_bytes")
        claimed = claimed if isinstance(claimed, int) and not isinstance(claimed, bool) else 0
        out[name] = text
        out[f"{name}_bytes"] = max(claimed, len(captured[name].encode("utf-8", "replace")))
        if cut:
            out[f"{name}_truncated"] = True
    return out


def _results_size(results: dict[str, Any]) -> int:
    """Bytes of ``results`` serialised as the runner measures them (JSON, UTF-8)."""
    return len(json.dumps(results, allow_nan=True, ensure_ascii=False).encode("utf-8"))


def _proposals(results: dict[str, Any]) -> tuple[list[ProposedWrite], str | None]:
    raw = results.pop("proposed_writes", None)
    if raw is None:
        return [], None
    if not isinstance(raw, list):
        return (
            [],
            f'results["proposed_writes"] must be a list of {{"channel": ..., "value": ...}}, got {raw!r}'[:500],
        )
    writes = []
    for i, item in enumerate(raw):
        value = item.get("value") if isinstance(item, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and not _finite_float(value):
            shown = f"an integer of {len(str(abs(value)))} digits" if isinstance(value, int) else repr(value)
            return [], (
                f'results["proposed_writes"][{i}].value is not a finite float: {shown} (a write value must be '
                f"a finite number within ±{sys.float_info.max:.6g})"
            )
        try:
            writes.append(ProposedWrite.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'item'}: {e['msg']}" for e in exc.errors())
            return [], f'results["proposed_writes"][{i}] is invalid: {problems}'
    return writes, None


def _finite_float(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond the float range, e.g. 10**400
        return False


def build_result(
    outcome: Outcome, request: ExecutionRequest, limits: SandboxLimits, backend: Backend
) -> ExecutionResult:
    """Turn a backend's ``Outcome`` into an ``ExecutionResult``: parse and check the runner document,
    extract and validate proposed writes, check expected keys.

    ``limits`` are applied here to whatever the document claims, not only by the runner inside the sandbox:
    figures past ``max_figures``, over ``figure_bytes`` or not PNG are dropped and counted; results over
    ``result_bytes`` give ``status="output_limit"`` (``ResultTooLarge``); stdout, stderr and the error text
    are cut to ``stdout_bytes``/``stderr_bytes``.

    Never raises for anything the code did: the code can write its own document to the runner's stdout, so
    a document that cannot be read (wrong types, bad base64) becomes a ``status="error"`` result with
    ``error_type="InvalidResultDocument"``, fed back like any code error; a raise here would make the
    activity retry the whole container run."""
    try:
        return _interpret(outcome, request, limits, backend)
    except Exception as exc:
        return ExecutionResult(
            status="error",
            error=f"the sandbox's result document could not be read: {type(exc).__name__}: {exc}"[:2000],
            error_type="InvalidResultDocument",
            backend=backend,
            isolation="container" if backend == "docker" else "none",
            exit_code=outcome.exit_code,
            timings=outcome.timings,
        )


def _interpret(outcome: Outcome, request: ExecutionRequest, limits: SandboxLimits, backend: Backend) -> ExecutionResult:
    isolation: Literal["container", "none"] = "container" if backend == "docker" else "none"
    base: dict[str, Any] = {
        "backend": backend,
        "isolation": isolation,
        "exit_code": outcome.exit_code,
        "timings": outcome.timings,
    }
    doc: dict[str, Any] | None = None
    if outcome.stdout:
        try:
            parsed = json.loads(outcome.stdout)
            if isinstance(parsed, dict) and parsed.get("tern_runner") == 1:
                doc = parsed
        except (ValueError, RecursionError):
            doc = None
    captured: dict[str, Any] = {}
    if doc is not None:
        captured = {
            k: doc.get(k)
            for k in (
                "stdout",
                "stderr",
                "stdout_bytes",
                "stderr_bytes",
                "stdout_truncated",
                "stderr_truncated",
            )
            if doc.get(k) is not None
        }
        captured = _captured_within(captured, limits)
        base["timings"] = outcome.timings.model_copy(update={"code_s": doc.get("code_s")})
    else:
        tail = outcome.stderr[-limits.stderr_bytes :].decode("utf-8", "replace")
        captured = {
            "stderr": tail,
            "stderr_bytes": len(outcome.stderr),
            "stderr_truncated": len(outcome.stderr) > limits.stderr_bytes,
        }

    def fail(status: ExecutionStatus, message: str, error_type: str | None = None, **extra: Any) -> ExecutionResult:
        return ExecutionResult(status=status, error=message, error_type=error_type, **base, **captured, **extra)

    mib = limits.memory_bytes / 2**20
    if outcome.ended_by == "timeout":
        return fail("timeout", f"killed after the wall-clock limit of {limits.timeout_s:g} s", "Timeout")
    if outcome.ended_by == "oom":
        return fail("killed", f"killed for exceeding the memory limit of {mib:g} MiB", "MemoryLimit")
    if outcome.ended_by == "cancel":
        return fail("killed", "cancelled: the execution was stopped on request" + _sep(outcome.detail), "Cancelled")
    if outcome.ended_by == "output_limit":
        return fail("output_limit", outcome.detail or "the sandbox output exceeded its size limit", "OutputLimit")
    if doc is None:
        if outcome.exit_code == 137:
            return fail(
                "killed",
                "the code was killed (SIGKILL) before it reported: stopped from outside (kill, cancellation, "
                f"the container's own deadline) or by the kernel (memory limit {mib:g} MiB)",
                "Killed",
            )
        return fail(
            "error",
            f"the sandbox produced no result document (exit code {outcome.exit_code}); the code "
            "may have ended the interpreter itself (os._exit, a signal, a crash)" + _sep(outcome.detail),
            "NoResult",
        )

    figures, dropped_here = _figures(doc, limits)
    claimed = doc.get("figures_dropped") or 0
    claimed = min(max(int(claimed), 0), MAX_CLAIMED_DROPPED)
    common = {"figures": figures, "figures_dropped": claimed + dropped_here}
    if doc.get("status") != "ok":
        return fail(
            "output_limit" if doc.get("status") == "output_limit" else "error",
            _clip(str(doc.get("error") or "unknown error"), limits.stderr_bytes)[0],
            None if doc.get("error_type") is None else str(doc.get("error_type"))[:200],
            error_line=doc.get("error_line"),
            **common,
        )
    results = doc.get("results")
    if not isinstance(results, dict):
        return fail("error", "the result document has no results dict", "NoResult", **common)
    size = _results_size(results)
    if size > limits.result_bytes:
        return fail(
            "output_limit",
            f"`results` is {size} bytes when serialised, over the limit of {limits.result_bytes} bytes; return "
            "summaries, not raw data",
            "ResultTooLarge",
            **common,
        )
    writes, problem = _proposals(results)
    if problem:
        return fail("error", problem, "InvalidProposedWrite", results=results, **common)
    missing = [k for k in request.expected_keys if k not in results]
    if missing:
        return fail(
            "error",
            f"results lacks the expected key(s) {missing}; it has {sorted(results)[:50]}",
            "MissingResultKeys",
            results=results,
            proposed_writes=writes,
            **common,
        )
    return ExecutionResult(status="ok", results=results, proposed_writes=writes, **base, **captured, **common)


def _sep(detail: str) -> str:
    return f": {detail}" if detail else ""
