"""The Docker sandbox on the real engine: the happy path, the abuse battery, cancellation, reaping.

Every abuse case must end safely (never ``ok`` with the attempted effect), say clearly what happened,
leave the host unaffected and leave no container behind.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import docker.errors
import psutil
import pytest
from docker.models.containers import Container

from tern.sandbox import ExecutionRequest, ExecutionResult, InputFile, SandboxLimits, analyze, execute
from tern.sandbox.docker_backend import LABEL, DockerBackend
from tern.sandbox.job import remove_job, write_job
from tern.sandbox.seccomp import profile_json
from tests.sandbox.conftest import TEST_RUN_ID

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leftovers")]


async def run(backend: DockerBackend, code: str, limits: SandboxLimits | None = None, **kw: object) -> ExecutionResult:
    request = ExecutionRequest(code=code, limits=limits, workflow_id=TEST_RUN_ID, step_id=uuid.uuid4().hex[:8], **kw)
    return await execute(request, backend=backend)


# The happy path ---------------------------------------------------------------------------------------

TIME_SERIES_ANALYSIS = """
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

df = pd.DataFrame({"t": series["t"], "temp": series["temp"]})
before_trip = df[df["t"] < trip_time]
rate, offset = np.polyfit(before_trip["t"], before_trip["temp"], 1)
fig, ax = plt.subplots()
ax.plot(df["t"], df["temp"], label="CAVITY01 temperature")
ax.axvline(trip_time, color="r")
ax.set_xlabel("time [s]")
fig.suptitle("heating before trip")
limits = pd.read_csv(limits_csv)
print(f"heating rate {rate:.3f} K/s over {len(before_trip)} samples")
results = {
    "heating_rate_k_per_s": rate,                      # numpy.float64
    "samples": len(before_trip),
    "peak": df["temp"].max(),
    "stats": df["temp"].describe()[["mean", "std"]],  # pandas Series
    "limit_max": limits["max"].iloc[0],               # numpy.int64
    "proposed_writes": [{"channel": "CAV01:HEATER:SP", "value": 0.5 * float(rate), "reason": "slow heating"}],
}
"""


async def test_time_series_analysis_returns_numbers_a_figure_and_a_proposed_write(
    docker_backend: DockerBackend,
) -> None:
    t = [i * 0.5 for i in range(200)]
    temp = [300.0 + 0.8 * x if x < 60 else 300.0 + 0.8 * 60 - (x - 60) for x in t]
    beats: list[float] = []
    request = ExecutionRequest(
        code=TIME_SERIES_ANALYSIS,
        inputs={"series": {"t": t, "temp": temp}, "trip_time": 60.0},
        files={"limits_csv": InputFile(data=b"channel,max\nCAV01:HEATER:SP,5\n", filename="limits.csv")},
        expected_keys=["heating_rate_k_per_s", "samples"],
        workflow_id=TEST_RUN_ID,
        step_id="happy",
    )
    result = await execute(request, backend=docker_backend, heartbeat=lambda: beats.append(time.monotonic()))
    assert result.status == "ok", result.feedback()
    assert result.isolation == "container" and result.backend == "docker" and result.exit_code == 0
    assert result.results["heating_rate_k_per_s"] == pytest.approx(0.8)
    assert result.results["samples"] == 120
    assert result.results["peak"] == pytest.approx(348.0, abs=0.5)
    assert set(result.results["stats"]) == {"mean", "std"}  # type: ignore[arg-type]
    assert result.results["limit_max"] == 5
    assert "proposed_writes" not in result.results
    [write] = result.proposed_writes
    assert write.channel == "CAV01:HEATER:SP" and write.value == pytest.approx(0.4)
    assert result.stdout.startswith("heating rate 0.800 K/s over 120 samples")
    [figure] = result.figures
    assert figure.png is not None and figure.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert figure.size_bytes == len(figure.png) > 1000
    assert beats, "the heartbeat callback was never called"
    assert result.timings.total_s >= result.timings.run_s > 0 and result.timings.code_s is not None
    assert analyze(TIME_SERIES_ANALYSIS).risk == "low"


async def test_code_errors_come_back_with_type_line_and_traceback(docker_backend: DockerBackend) -> None:
    result = await run(docker_backend, "x = 1\ny = [1, 2]\nresults = {'v': y[x + 5]}\n")
    assert result.status == "error"
    assert result.error_type == "IndexError" and result.error_line == 3
    assert result.error is not None and 'File "analysis.py", line 3' in result.error
    assert "runner.py" not in result.error  # the runner's own frames are not shown
    assert "IndexError" in result.feedback()


@pytest.mark.parametrize(
    ("code", "error_type", "message"),
    [
        ("x = 1", "NameError", "did not assign `results`"),
        ("results = [1, 2]", "TypeError", "must be a dict"),
        ("results = {'f': open}", "NotSerialisable", "results['f']"),
        (
            "results = {'proposed_writes': [{'channel': 'A:B', 'value': float('nan')}]}",
            "InvalidProposedWrite",
            "finite",
        ),
        (
            "results = {'proposed_writes': [{'channel': 'A:B', 'value': 10**400}]}",
            "InvalidProposedWrite",
            'results["proposed_writes"][0].value is not a finite float: an integer of 401 digits',
        ),
        (
            "results = {'proposed_writes': [{'channel': 'A B', 'value': 1}]}",
            "InvalidProposedWrite",
            "channel",
        ),
        ("results = {'a': 1}", "MissingResultKeys", "'b'"),
        ("def f(:\n  pass", "SyntaxError", "invalid syntax"),
    ],
)
async def test_invalid_results_are_errors_that_say_what_is_wrong(
    docker_backend: DockerBackend, code: str, error_type: str, message: str
) -> None:
    result = await run(docker_backend, code, expected_keys=["a", "b"] if error_type == "MissingResultKeys" else [])
    assert result.status == "error"
    assert result.error_type == error_type
    assert result.error is not None and message in result.error
    assert not result.proposed_writes


async def test_figure_count_limit_drops_extra_figures(docker_backend: DockerBackend) -> None:
    code = "import matplotlib.pyplot as plt\nfor i in range(3):\n    plt.figure()\nresults = {}"
    result = await run(docker_backend, code, limits=SandboxLimits(max_figures=2))
    assert result.status == "ok", result.feedback()
    assert len(result.figures) == 2 and result.figures_dropped == 1


async def test_concurrent_executions_are_independent(docker_backend: DockerBackend) -> None:
    codes = [
        f"import os\nopen('mine', 'w').write('{i}')\nresults = {{'i': {i}, 'files': os.listdir('.')}}" for i in range(3)
    ]
    results = await asyncio.gather(*(run(docker_backend, c) for c in codes))
    for i, result in enumerate(results):
        assert result.status == "ok", result.feedback()
        assert result.results["i"] == i
        assert "mine" in result.results["files"]  # type: ignore[operator]


# The abuse battery --------------------------------------------------------------------------------------


async def test_socket_connect_has_no_network(docker_backend: DockerBackend, limits: SandboxLimits) -> None:
    code = "import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=3)\nresults = {'up': True}"
    result = await run(docker_backend, code, limits)
    assert result.status == "error" and result.error_type == "OSError"
    assert "Network is unreachable" in (result.error or "")
    assert "network" in analyze(code).categories()


async def test_dns_lookup_fails(docker_backend: DockerBackend, limits: SandboxLimits) -> None:
    code = "import socket\nresults = {'ip': socket.gethostbyname('example.org')}"
    result = await run(docker_backend, code, limits)
    assert result.status == "error" and result.error_type == "gaierror"
    assert "name resolution" in (result.error or "")


class HostListener:
    """A TCP and a UDP socket on the host (all interfaces, one free port) that record anything arriving."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("0.0.0.0", 0))
        self.port = self.tcp.getsockname()[1]
        self.tcp.listen(5)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("0.0.0.0", self.port))
        self.received: list[str] = []
        self.tcp.settimeout(0.2)
        self.udp.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            for sock, kind in ((self.tcp, "tcp"), (self.udp, "udp")):
                try:
                    if kind == "tcp":
                        conn, addr = sock.accept()
                        conn.close()
                    else:
                        _, addr = sock.recvfrom(2048)
                    self.received.append(f"{kind} from {addr}")
                except (TimeoutError, OSError):
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.tcp.close()
        self.udp.close()


async def test_channel_access_to_the_host_cannot_get_out(docker_backend: DockerBackend, limits: SandboxLimits) -> None:
    """A raw Channel Access search (UDP) and a TCP circuit attempt towards a port the host listens on:
    the host's listener must receive nothing. 127.0.0.1 inside the container is the container's own
    loopback; the bridge gateway and the host's addresses are unreachable without a network."""
    listener = HostListener()
    try:
        host_ips = sorted(
            {  # every host address, the Docker bridge (docker0) included
                a.address
                for addrs in psutil.net_if_addrs().values()
                for a in addrs
                if a.family == socket.AF_INET and not a.address.startswith("127.")
            }
        )
        targets = [*host_ips, "255.255.255.255"]
        code = f"""
import socket, struct
search = struct.pack("!HHHHII", 6, 8, 0, 13, 1, 1) + b"SR:C01:SP\\0\\0\\0\\0\\0\\0\\0"
outcomes = {{}}
for target in ["127.0.0.1", *{targets!r}]:
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        u.sendto(search, (target, {listener.port}))
        outcomes["udp " + target] = "sent"
    except OSError as exc:
        outcomes["udp " + target] = str(exc)
    try:
        socket.create_connection((target, {listener.port}), timeout=2)
        outcomes["tcp " + target] = "connected"
    except OSError as exc:
        outcomes["tcp " + target] = str(exc)
results = outcomes
"""
        result = await run(docker_backend, code, limits)
        await asyncio.sleep(0.5)
        assert result.status == "ok", result.feedback()
        assert "connected" not in result.results.values(), result.results
        for target in targets:
            assert "unreachable" in str(result.results[f"udp {target}"]), result.results
        assert listener.received == [], f"the host received traffic from the sandbox: {listener.received}"
    finally:
        listener.close()


async def test_aliased_pyepics_caput_is_flagged_and_cannot_run(
    docker_backend: DockerBackend, limits: SandboxLimits
) -> None:
    code = "from epics import caput as _w\n_w('SR:C01:SP', 5.0)\nresults = {'written': True}\n"
    report = analyze(code)
    assert report.attempts_control_write and report.risk == "critical"
    assert report.needs_approval("control_writes")
    result = await run(docker_backend, code, limits)
    assert result.status == "error"
    assert result.error_type == "ModuleNotFoundError"  # no EPICS client in the image, and no network anyway
    assert "written" not in result.results


async def test_writes_outside_the_work_dir_fail_and_never_reach_the_host(
    docker_backend: DockerBackend, limits: SandboxLimits
) -> None:
    canary = f"tern-canary-{uuid.uuid4().hex}"
    code = f"""
import os
outcomes = {{}}
for path in ("/etc/{canary}", "/usr/{canary}", "/inputs/{canary}", "/opt/tern/runner.py", "/{canary}"):
    try:
        with open(path, "w") as f:
            f.write("pwned")
        outcomes[path] = "written"
    except OSError as exc:
        outcomes[path] = type(exc).__name__ + ": " + exc.strerror
with open("/tmp/{canary}", "w") as f:  # the container's own tmpfs: allowed, and gone afterwards
    f.write("scratch")
with open("scratch.txt", "w") as f:   # the work directory
    f.write("scratch")
results = outcomes
"""
    result = await run(docker_backend, code, limits)
    assert result.status == "ok", result.feedback()
    assert "written" not in result.results.values(), result.results
    assert all("Read-only file system" in str(v) or "Permission denied" in str(v) for v in result.results.values())
    for host_dir in ("/etc", "/usr", "/tmp", "/"):
        assert not (Path(host_dir) / canary).exists()
    assert "file_write" in analyze(code).categories()


async def test_host_files_are_not_visible(docker_backend: DockerBackend, limits: SandboxLimits, tmp_path: Path) -> None:
    secret = f"host-secret-{uuid.uuid4().hex}"
    host_file = tmp_path / "secret.txt"
    host_file.write_text(secret)
    code = f"""
import os
outcomes = {{}}
for path in ("{host_file}", "/etc/shadow", "/root/.bashrc", "/var/run/docker.sock", "/proc/1/environ"):
    try:
        with open(path, "rb") as f:
            outcomes[path] = f.read(200).decode("latin-1")
    except OSError as exc:
        outcomes[path] = "refused: " + type(exc).__name__
outcomes["mounts"] = open("/proc/self/mounts").read()
results = outcomes
"""
    result = await run(docker_backend, code, limits)
    assert result.status == "ok", result.feedback()
    text = str(result.results)
    assert secret not in text
    assert result.results[str(host_file)] == "refused: FileNotFoundError"
    assert result.results["/etc/shadow"] == "refused: PermissionError"  # the image's, unreadable anyway
    assert result.results["/var/run/docker.sock"] == "refused: FileNotFoundError"
    assert str(tmp_path) not in str(result.results["mounts"])
    assert "file_read" in analyze(code).categories()


async def test_fork_bomb_hits_the_pid_limit(docker_backend: DockerBackend, limits: SandboxLimits) -> None:
    host_before = len(os.listdir("/proc"))
    code = "import os\nwhile True:\n    os.fork()\n"
    result = await run(docker_backend, code, limits)
    # the PID limit refuses a fork ("Resource temporarily unavailable"): the code fails with that error, rather
    # than running into the wall-clock timeout or being killed for something else (issue 28)
    assert (result.status, result.error_type) == ("error", "BlockingIOError"), result.feedback()
    assert len(os.listdir("/proc")) < host_before + limits.pids  # no runaway processes left on the host
    assert "process" in analyze(code).categories()


async def test_memory_bomb_is_killed_by_the_memory_limit(docker_backend: DockerBackend, limits: SandboxLimits) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024 * 1024))\n"
    result = await run(docker_backend, code, limits)
    assert result.status in ("killed", "error"), result.feedback()
    if result.status == "killed":
        assert result.error_type == "MemoryLimit" and "memory limit of 192 MiB" in (result.error or "")
    else:
        assert result.error_type == "MemoryError"


async def test_infinite_loop_is_killed_at_the_timeout(docker_backend: DockerBackend) -> None:
    beats: list[float] = []
    request = ExecutionRequest(
        code="while True:\n    pass\n",
        limits=SandboxLimits(timeout_s=2.5),
        workflow_id=TEST_RUN_ID,
        step_id="loop",
    )
    result = await execute(request, backend=docker_backend, heartbeat=lambda: beats.append(time.monotonic()))
    assert result.status == "timeout" and result.error_type == "Timeout"
    assert "wall-clock limit of 2.5 s" in (result.error or "")
    assert len(beats) >= 2, "expected heartbeats while the container ran"


async def test_megabytes_of_stdout_are_truncated(docker_backend: DockerBackend, limits: SandboxLimits) -> None:
    code = """
import os, sys
for _ in range(50_000):
    print("x" * 99)                      # 5 MB through sys.stdout
os.write(1, b"y" * 3_000_000)            # 3 MB straight to the file descriptor
sys.stderr.write("e" * 2_000_000)
results = {"done": True}
"""
    result = await run(docker_backend, code, limits)
    assert result.status == "ok", result.feedback()
    assert result.results == {"done": True}
    assert result.truncated and result.stdout_truncated and result.stderr_truncated
    assert result.stdout_bytes == 8_000_000 and result.stderr_bytes == 2_000_000
    assert len(result.stdout.encode()) == limits.stdout_bytes
    assert len(result.stderr.encode()) == limits.stderr_bytes


async def test_oversized_result_is_refused(docker_backend: DockerBackend, limits: SandboxLimits) -> None:
    code = "results = {'raw': list(range(1_000_000))}"
    result = await run(docker_backend, code, limits)
    assert result.status == "output_limit" and result.error_type == "ResultTooLarge"
    assert f"over the limit of {limits.result_bytes} bytes" in (result.error or "")
    assert result.results == {}


async def test_flooding_the_result_channel_is_cut_and_killed(docker_backend: DockerBackend) -> None:
    """Code that finds the runner's real stdout and floods it: the host stops reading at its cap."""
    code = """
import os
for fd in range(3, 20):
    try:
        os.write(fd, b"z" * 1_000_000)
        while True:
            os.write(fd, b"z" * 1_000_000)
    except OSError:
        pass
results = {}
"""
    small = SandboxLimits(timeout_s=10, result_bytes=4096, max_figures=0, stdout_bytes=1024, stderr_bytes=1024)
    result = await run(docker_backend, code, small)
    assert result.status == "output_limit", result.feedback()
    assert f"exceeded {small.frame_bytes()} bytes" in (result.error or "")


async def test_setuid_root_fails(docker_backend: DockerBackend, limits: SandboxLimits) -> None:
    code = "import os\nos.setuid(0)\nresults = {'uid': os.getuid()}"
    result = await run(docker_backend, code, limits)
    assert result.status == "error" and result.error_type == "PermissionError"
    assert "Operation not permitted" in (result.error or "")
    probe = await run(
        docker_backend,
        "import os\nresults = {'ids': [os.getuid(), os.geteuid(), os.getgid()], "
        "'caps': open('/proc/self/status').read()}",
        limits,
    )
    assert probe.results["ids"] == [10001, 10001, 10001]
    status = str(probe.results["caps"])
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status
    assert analyze(code).risk == "critical"


# Cancellation, kill and reaping --------------------------------------------------------------------------


async def _wait_for_container(backend: DockerBackend, step_id: str) -> str:
    for _ in range(100):
        found = backend.client.api.containers(filters={"label": [f"tern.step_id={step_id}", f"{LABEL}=1"]})
        if found:
            return str(found[0]["Id"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no running container for step {step_id}")


def sleeper(step_id: str) -> ExecutionRequest:
    """Code that would run for a minute."""
    code = "import time\ntime.sleep(60)\nresults = {}"
    return ExecutionRequest(code=code, workflow_id=TEST_RUN_ID, step_id=step_id, limits=SandboxLimits(timeout_s=60))


async def test_cancel_event_kills_the_container(docker_backend: DockerBackend) -> None:
    cancel = asyncio.Event()
    task = asyncio.create_task(execute(sleeper("cancel-ev"), backend=docker_backend, cancel_event=cancel))
    await _wait_for_container(docker_backend, "cancel-ev")
    cancel.set()
    result = await asyncio.wait_for(task, 20)
    assert result.status == "killed" and result.error_type == "Cancelled"


async def test_cancelling_the_task_removes_the_container(docker_backend: DockerBackend) -> None:
    task = asyncio.create_task(execute(sleeper("cancel-task"), backend=docker_backend))
    container_id = await _wait_for_container(docker_backend, "cancel-task")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 20)
    assert not docker_backend.client.api.containers(all=True, filters={"id": container_id})


async def test_kill_by_run_and_step_ends_a_running_execution(docker_backend: DockerBackend) -> None:
    task = asyncio.create_task(execute(sleeper("kill-me"), backend=docker_backend))
    await _wait_for_container(docker_backend, "kill-me")
    assert docker_backend.kill(TEST_RUN_ID, "other-step") == 0
    assert await asyncio.to_thread(docker_backend.kill, TEST_RUN_ID, "kill-me") == 1
    result = await asyncio.wait_for(task, 20)
    assert result.status == "killed" and result.error_type == "Killed", result.feedback()


def test_reap_orphans_removes_containers_past_their_deadline_or_too_old(docker_backend: DockerBackend) -> None:
    client = docker_backend.client
    now = time.time()

    def labelled(step: str, created: float, deadline: float | None) -> Container:
        labels = {LABEL: "1", "tern.run_id": TEST_RUN_ID, "tern.step_id": step, "tern.created_at": f"{created:.0f}"}
        if deadline is not None:
            labels["tern.deadline"] = f"{deadline:.0f}"
        return client.containers.create(docker_backend.image, ["sleep", "300"], labels=labels, network_mode="none")

    past_deadline = labelled("past-deadline", now - 120, now - 60)  # a crashed worker's, still running
    too_old = labelled("too-old", now - 7200, None)
    in_time = labelled("in-time", now - 120, now + 600)  # a live worker's long execution
    unrelated = client.containers.create(docker_backend.image, ["sleep", "300"], network_mode="none")
    try:
        past_deadline.start()
        assert docker_backend.reap_orphans(max_age_s=3600) >= 2
        remaining = {c["Id"] for c in client.api.containers(all=True)}
        assert past_deadline.id not in remaining and too_old.id not in remaining
        assert in_time.id in remaining and unrelated.id in remaining
    finally:
        for c in (past_deadline, too_old, in_time, unrelated):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass


def test_a_container_whose_worker_died_kills_its_code_at_its_own_deadline(docker_backend: DockerBackend) -> None:
    """No worker watches this container (as after a worker crash): it must still stop by itself."""
    request = ExecutionRequest(code="while True:\n    pass\n", workflow_id=TEST_RUN_ID, step_id="no-worker")
    limits = SandboxLimits(timeout_s=1)
    job = write_job(request, limits)
    container = docker_backend.client.containers.create(**docker_backend.container_kwargs(request, limits, str(job)))
    try:
        container.start()
        status = container.wait(timeout=60)  # returns when the container stops
        assert status["StatusCode"] == 137  # SIGKILL from its own deadline
        labels = container.labels
        assert float(labels["tern.deadline"]) - float(labels["tern.created_at"]) == pytest.approx(6, abs=1)
    finally:
        container.remove(force=True)
        remove_job(job)


def test_the_container_configuration_is_hardened(docker_backend: DockerBackend) -> None:
    """Inspect a created (never started) container: every isolation setting is what the engine got."""
    request = ExecutionRequest(code="results = {}", workflow_id=TEST_RUN_ID, step_id="inspect")
    limits = SandboxLimits(memory_bytes=256 * 2**20, cpus=0.5, pids=40)
    kwargs = docker_backend.container_kwargs(request, limits, "/nonexistent-job-dir")
    container = docker_backend.client.containers.create(**kwargs)
    try:
        host = container.attrs["HostConfig"]
        config = container.attrs["Config"]
        assert host["NetworkMode"] == "none" and config.get("NetworkDisabled") is True
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == ["SETUID", "SETGID", "SETPCAP"]
        assert host["SecurityOpt"] == ["no-new-privileges", f"seccomp={profile_json()}"]
        assert host["Init"] is True
        assert host["Memory"] == host["MemorySwap"] == 256 * 2**20
        assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 40
        assert host["Privileged"] is False
        assert host["LogConfig"]["Type"] == "none"
        assert host["Binds"] == ["/nonexistent-job-dir:/inputs:ro"]
        assert set(host["Tmpfs"]) == {"/work", "/tmp"}
        assert config["User"] == "0:0"  # PID 1 and the deadline process; the code runs as 10001 (setpriv)
        assert config["Cmd"][3:7] == ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups"]
        assert config["Labels"]["tern.run_id"] == TEST_RUN_ID and config["Labels"]["tern.step_id"] == "inspect"
    finally:
        container.remove(force=True)


async def test_a_document_forged_in_the_container_is_held_to_the_limits(docker_backend: DockerBackend) -> None:
    """Issue 22: the code writes its own result document to the runner's stdout and ends the interpreter; the
    host applies the figure and size limits to what the document claims."""
    from tests.sandbox.test_process_backend import FORGE

    limits = SandboxLimits(timeout_s=20, max_figures=1, figure_bytes=8192)
    result = await run(docker_backend, FORGE, limits=limits)
    assert result.status == "ok" and result.results == {"blob": "x" * 100}, result.feedback()
    assert len(result.figures) == 1 and result.figures_dropped == 3
    small = limits.model_copy(update={"figure_bytes": 4096, "result_bytes": 1024})
    result = await run(docker_backend, FORGE.replace("* 100", "* 2000"), limits=small)
    assert result.status == "output_limit" and result.error_type == "ResultTooLarge" and result.figures == []
