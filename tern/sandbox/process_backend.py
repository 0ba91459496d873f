"""Process backend: the runner in a plain subprocess with rlimits and a timeout. NO ISOLATION.

For machines without Docker (a laptop, a quick check). The code runs as the worker's user on the host:
it can read the user's files and reach the network. rlimits bound its address space, CPU time, process
count and file sizes; a wall-clock timeout kills its whole process group. Refused unless
``sandbox_allow_process_backend`` is true, and every result says ``isolation: "none"``.
Note: RLIMIT_NPROC counts all processes of the user and does not apply to root.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable

import psutil

from tern.config import TernSettings
from tern.models.execution import ExecutionResult, Timings
from tern.sandbox.job import RUNNER_PATH, EndedBy, Outcome, SandboxUnavailable, build_result, remove_job, write_job
from tern.sandbox.models import ExecutionRequest, SandboxLimits
from tern.sandbox.supervision import Supervisor

log = logging.getLogger(__name__)
WARNING = "process sandbox backend: the code runs on the host WITHOUT isolation (no container, network reachable)"


def _rlimits(limits: SandboxLimits, nproc: int) -> Callable[[], None]:
    cpu_s = max(1, int(limits.timeout_s * limits.cpus) + 1)

    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.tmpfs_bytes, limits.tmpfs_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class ProcessBackend:
    """Runs requests as subprocesses of this Python.

    ``settings``: the sandbox settings (``sandbox_allow_process_backend``; the limits of ``execute`` when a
    request has none). Raises ``SandboxUnavailable`` unless ``settings.sandbox.allow_process_backend``.
    """

    def __init__(self, settings: TernSettings) -> None:
        self.settings = settings
        if not self.settings.sandbox.allow_process_backend:
            raise SandboxUnavailable(
                "the process sandbox backend runs code WITHOUT isolation and is disabled; "
                "set TERN_SANDBOX__ALLOW_PROCESS_BACKEND=true to permit it"
            )

    async def run(self, request: ExecutionRequest, limits: SandboxLimits, supervisor: Supervisor) -> ExecutionResult:
        """Run one request in a subprocess: as ``DockerBackend.run``, but ``isolation="none"``."""
        log.warning(WARNING)
        t0 = time.perf_counter()
        job = write_job(request, limits)
        work = str(job / ".work")
        os.mkdir(work, 0o700)
        user_procs = sum(
            1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == os.getuid()
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": work,
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": os.path.join(work, ".matplotlib"),
            "OMP_NUM_THREADS": str(max(1, int(limits.cpus))),
            "OPENBLAS_NUM_THREADS": str(max(1, int(limits.cpus))),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            str(RUNNER_PATH),
            "--job",
            str(job),
            "--work",
            work,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            cwd=work,
            env=env,
            start_new_session=True,
            preexec_fn=_rlimits(limits, user_procs + limits.pids),
        )
        t1 = time.perf_counter()
        cap = limits.frame_bytes()
        out, err = bytearray(), bytearray()
        ended_by: EndedBy = "exit"

        async def pump(stream: asyncio.StreamReader | None, buf: bytearray) -> None:
            nonlocal ended_by
            assert stream is not None
            while chunk := await stream.read(65536):
                buf += chunk[: max(0, cap + 1 - len(buf))]
                if len(buf) > cap:
                    ended_by = "output_limit"
                    _killpg(proc.pid)

        pumps = asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err))
        try:
            ended = await supervisor.watch(asyncio.ensure_future(proc.wait()), limits.timeout_s)
            if ended != "exit":
                ended_by = ended
            _killpg(proc.pid)  # also ends children the code left behind
            await proc.wait()
            await asyncio.wait_for(pumps, 10)
        finally:
            _killpg(proc.pid)
            remove_job(job)
        t2 = time.perf_counter()
        if ended_by == "exit" and proc.returncode == -signal.SIGXCPU:
            ended_by = "timeout"
        outcome = Outcome(
            exit_code=proc.returncode,
            stdout=bytes(out),
            stderr=bytes(err),
            ended_by=ended_by,
            detail=f"the output exceeded {cap} bytes; the process was killed" if ended_by == "output_limit" else "",
            timings=Timings(setup_s=t1 - t0, run_s=t2 - t1, total_s=time.perf_counter() - t0),
        )
        result = build_result(outcome, request, limits, "process")
        result.stderr = f"[{WARNING}]\n{result.stderr}"
        return result


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
