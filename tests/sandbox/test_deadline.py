"""The container's deadline holds against the code and without the process that started it (issue 16).

Sandboxed code must not be able to trace, stop or signal the container's deadline process (``timeout``,
under docker-init), and a container whose starter was SIGKILLed must still end: by its own deadline, and
failing that by the workers' periodic reaper. Real Docker engine, real sandbox image, real CLI process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import docker.errors
import pytest
from docker.models.containers import Container

from tern.config import get_settings
from tern.sandbox import ExecutionRequest, SandboxLimits, execute
from tern.sandbox.docker_backend import LABEL, START_SLACK_S, DockerBackend
from tests.sandbox.conftest import TEST_RUN_ID

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leftovers")]

ATTACK = r"""
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
PTRACE_ATTACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 16, 0x4206, 0x4207

def outcome(ret):
    return "ok" if ret != -1 else os.strerror(ctypes.get_errno())

deadline_pids = sorted({1, os.getppid()})   # docker-init and timeout (timeout alone as PID 1 before)
outcomes = {}
for pid in deadline_pids:
    outcomes[f"ptrace seize {pid}"] = outcome(libc.ptrace(PTRACE_SEIZE, pid, 0, 0))
    libc.ptrace(PTRACE_INTERRUPT, pid, 0, 0)   # stop it, if the seize worked, and never let it go
    outcomes[f"ptrace attach {pid}"] = outcome(libc.ptrace(PTRACE_ATTACH, pid, 0, 0))
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        try:
            os.kill(pid, sig)
            outcomes[f"kill {sig.name} {pid}"] = "ok"
        except OSError as exc:
            outcomes[f"kill {sig.name} {pid}"] = exc.strerror
buf = ctypes.create_string_buffer(8)
iov = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 8)
outcomes["process_vm_readv self"] = outcome(libc.process_vm_readv(os.getpid(), iov, 1, iov, 1, 0))
outcomes["personality query"] = outcome(libc.personality(ctypes.c_ulong(0xFFFFFFFF)))
NUMBERS = {  # linux/arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h (arm64)
    "x86_64": {"keyctl": 250, "add_key": 248, "request_key": 249, "unshare": 272, "setns": 308, "mount": 165,
               "umount2": 166, "pivot_root": 155, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
               "kexec_load": 246, "init_module": 175, "io_uring_setup": 425},
    "aarch64": {"keyctl": 219, "add_key": 217, "request_key": 218, "unshare": 97, "setns": 268, "mount": 40,
                "umount2": 39, "pivot_root": 41, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
                "kexec_load": 104, "init_module": 105, "io_uring_setup": 425},
}
for name, nr in NUMBERS.get(os.uname().machine, {}).items():
    outcomes[name] = outcome(libc.syscall(nr, 0, 0, 0, 0, 0))
"""
"""Everything sandboxed code could try against its deadline; each must fail with EPERM."""

HOLD = """
import time
while True:   # if the deadline process is stopped, nothing ends this but the reaper
    time.sleep(0.2)
"""


async def test_code_can_neither_trace_nor_signal_its_deadline_process(docker_backend: DockerBackend) -> None:
    code = (
        ATTACK
        + """
def owner(pid):
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return {"uid": int(status["Uid"].split()[0]), "name": status["Name"].strip()}
results = {"outcomes": outcomes, "me": owner(os.getpid()), "pid1": owner(1), "parent": owner(os.getppid())}
"""
    )
    request = ExecutionRequest(
        code=code, workflow_id=TEST_RUN_ID, step_id="trace-pid1", limits=SandboxLimits(timeout_s=10)
    )
    result = await execute(request, backend=docker_backend)
    assert result.status == "ok", result.feedback()
    outcomes = result.results["outcomes"]
    assert isinstance(outcomes, dict) and len(outcomes) >= 8
    assert {k: v for k, v in outcomes.items() if v != "Operation not permitted"} == {}, outcomes
    assert result.results["me"] == {"uid": 10001, "name": "python3"}
    assert result.results["pid1"] == {"uid": 0, "name": "docker-init"}
    assert result.results["parent"] == {"uid": 0, "name": "timeout"}


def _container(backend: DockerBackend, step_id: str, workflow_id: str = TEST_RUN_ID) -> dict | None:
    found = backend.client.api.containers(
        all=True, filters={"label": [f"{LABEL}=1", f"tern.run_id={workflow_id}", f"tern.step_id={step_id}"]}
    )
    return found[0] if found else None


async def test_a_container_whose_starter_was_sigkilled_ends_by_its_deadline(
    docker_backend: DockerBackend, tmp_path: Path
) -> None:
    """`tern sandbox run` (a real CLI process) runs code that attacks its deadline and is SIGKILLed; the
    container must end within deadline + reaper slack + reaper period, with the reaper running as a worker
    runs it."""
    from worker.main import reap_sandbox_periodically

    step = f"deadline-{uuid.uuid4().hex[:8]}.py"
    (tmp_path / step).write_text(ATTACK + HOLD)
    env = {**os.environ, "TERN_SANDBOX__BACKEND": "docker", "TERN_SANDBOX__TIMEOUT_S": "2"}
    cli = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "starters.cli", "sandbox", "run", str(tmp_path / step)],
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    period = 0.5
    base = get_settings()
    settings = base.model_copy(update={"sandbox": base.sandbox.model_copy(update={"reap_period_s": period})})
    stop = asyncio.Event()
    reaper = asyncio.create_task(reap_sandbox_periodically(settings, stop))
    item = None
    try:
        for _ in range(600):
            item = _container(docker_backend, step, workflow_id="cli")
            if (item is not None and item["State"] == "running") or cli.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert item is not None and item["State"] == "running", f"the CLI started no container (exit {cli.returncode})"
        await asyncio.sleep(1.0)  # the code has made its attempts on its deadline process
        cli.send_signal(signal.SIGKILL)
        await asyncio.wait_for(cli.wait(), 10)
        deadline = float(item["Labels"]["tern.deadline"])
        limit = deadline + START_SLACK_S + period + 3.0  # 3 s for polling and the engine
        while time.time() < limit:
            now = _container(docker_backend, step, workflow_id="cli")
            if now is None or now["State"] != "running":
                break
            await asyncio.sleep(0.2)
        ended_at = time.time()
        now = _container(docker_backend, step, workflow_id="cli")
        assert now is None or now["State"] != "running", (
            f"the container still runs {ended_at - deadline:.1f} s after its deadline"
        )
    finally:
        stop.set()
        await asyncio.wait_for(reaper, 10)
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
        if item is not None:
            try:
                docker_backend.client.api.remove_container(item["Id"], force=True)
            except docker.errors.NotFound:
                pass


async def test_the_periodic_reaper_removes_running_containers_past_their_deadline(
    docker_backend: DockerBackend,
) -> None:
    """A still-running container past its deadline (its own timeout failed) goes within a reaper period; one
    inside its deadline stays, and so does a stopped one its worker may still be reading (grace period)."""
    from worker.main import reap_sandbox_periodically

    client = docker_backend.client
    now = time.time()

    def labelled(step: str, deadline: float) -> Container:
        labels = {
            LABEL: "1",
            "tern.run_id": TEST_RUN_ID,
            "tern.step_id": step,
            "tern.created_at": f"{now - 30:.0f}",
            "tern.deadline": f"{deadline:.0f}",
        }
        return client.containers.create(docker_backend.image, ["sleep", "300"], labels=labels, network_mode="none")

    overdue = labelled("overdue", now - START_SLACK_S - 2)
    in_time = labelled("in-time", now + 600)
    just_stopped = labelled("just-stopped", now - 5)  # created, never started: not running
    base = get_settings()
    settings = base.model_copy(update={"sandbox": base.sandbox.model_copy(update={"reap_period_s": 0.3})})
    stop = asyncio.Event()
    reaper = None
    try:
        overdue.start()
        in_time.start()
        reaper = asyncio.create_task(reap_sandbox_periodically(settings, stop))
        for _ in range(100):
            if not client.api.containers(all=True, filters={"id": overdue.id}):
                break
            await asyncio.sleep(0.1)
        remaining = {c["Id"] for c in client.api.containers(all=True)}
        assert overdue.id not in remaining, "the periodic reaper did not remove the overdue container"
        assert in_time.id in remaining and just_stopped.id in remaining
        stop.set()
        await asyncio.wait_for(reaper, 5)  # stops at once when the worker stops
    finally:
        stop.set()
        if reaper is not None and not reaper.done():
            reaper.cancel()
        for c in (overdue, in_time, just_stopped):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
