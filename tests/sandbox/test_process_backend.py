"""The process backend (no isolation): refused unless permitted, labelled loudly, limits still apply."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import psutil
import pytest

from tern.config import TernSettings
from tern.sandbox import ExecutionRequest, SandboxLimits, SandboxUnavailable, execute, get_backend
from tern.sandbox.process_backend import ProcessBackend


def _running(select: Callable[[psutil.Process], bool], within_s: float = 5.0) -> list[psutil.Process]:
    """The processes matching ``select`` that are still running (not zombies) after up to ``within_s`` seconds:
    a SIGKILLed process closes its pipes a moment before the kernel marks it dead, so poll, don't glance."""
    deadline = time.monotonic() + within_s
    while True:
        running = [
            p
            for p in psutil.process_iter(["pid", "cmdline", "status"])
            if select(p) and p.info["status"] != psutil.STATUS_ZOMBIE
        ]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


@pytest.fixture
def allowed() -> TernSettings:
    return TernSettings(sandbox={"allow_process_backend": True, "backend": "process"})


async def test_process_backend_is_refused_unless_permitted() -> None:
    settings = TernSettings(sandbox={"allow_process_backend": False})
    with pytest.raises(SandboxUnavailable, match="TERN_SANDBOX_ALLOW_PROCESS_BACKEND"):
        get_backend(settings, "process")
    with pytest.raises(SandboxUnavailable, match="WITHOUT isolation"):
        ProcessBackend(settings)


async def test_process_backend_runs_code_and_says_there_is_no_isolation(allowed: TernSettings) -> None:
    code = "import numpy as np\nprint('hi')\nresults = {'mean': np.mean(values), 'n': len(values)}"
    request = ExecutionRequest(code=code, inputs={"values": [1, 2, 3, 6]}, expected_keys=["mean"])
    result = await execute(request, get_backend(allowed))
    assert result.status == "ok", result.feedback()
    assert result.results == {"mean": 3.0, "n": 4}
    assert result.backend == "process" and result.isolation == "none"
    assert "WITHOUT isolation" in result.stderr
    assert result.stdout == "hi\n"


async def test_process_backend_timeout_kills_the_process_group(allowed: TernSettings) -> None:
    marker = f"{300 + random.random():.6f}"  # a unique sleep duration identifies the child
    code = f"import subprocess, time\nsubprocess.Popen(['sleep', '{marker}'])\ntime.sleep(60)\n"
    request = ExecutionRequest(code=code, limits=SandboxLimits(timeout_s=2))
    result = await execute(request, backend=ProcessBackend(allowed))
    assert result.status == "timeout" and result.isolation == "none"
    survivors = _running(lambda p: p.info["cmdline"] == ["sleep", marker])
    assert not survivors, "the code's child process survived the timeout"


async def test_process_backend_leaves_no_child_behind(allowed: TernSettings) -> None:
    code = "import subprocess\nchild = subprocess.Popen(['sleep', '300'])\nresults = {'pid': child.pid}"
    result = await execute(ExecutionRequest(code=code), backend=ProcessBackend(allowed))
    assert result.status == "ok", result.feedback()
    pid = result.results["pid"]
    assert isinstance(pid, int)
    assert not _running(lambda p: p.info["pid"] == pid), f"child process {pid} survived the execution"


async def test_process_backend_memory_limit(allowed: TernSettings) -> None:
    code = "x = bytearray(2 * 1024**3)\nresults = {}"
    result = await execute(
        ExecutionRequest(code=code, limits=SandboxLimits(memory_bytes=512 * 2**20)),
        backend=ProcessBackend(allowed),
    )
    assert result.status == "error" and result.error_type == "MemoryError"


async def test_process_backend_cancel_event_kills_the_code(allowed: TernSettings) -> None:
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, cancel.set)
    request = ExecutionRequest(code="import time\ntime.sleep(60)\nresults = {}", limits=SandboxLimits(timeout_s=30))
    result = await asyncio.wait_for(execute(request, ProcessBackend(allowed), cancel_event=cancel), 20)
    assert result.status == "killed" and result.error_type == "Cancelled", result.feedback()
