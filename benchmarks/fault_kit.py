"""The moving parts of ``benchmarks.load``'s fault kinds that are more than a signal (issue 13): a second worker
process on the stack's task queue, a private Docker engine that can be restarted, and the sandbox containers
of the load's runs on an engine.

The private engine never touches the machine's own ``dockerd`` (other people's tests use it): it has its own
data root, exec root, PID file and Unix socket, its own bridge device and no iptables rules (sandbox containers run
with ``network_mode=none``), the way ``scripts/system-deps.sh`` starts the main one but isolated. Not
``--bridge=none``: a dockerd started with it deletes the host's ``docker0`` (moby removes the default bridge
interface when the bridge is disabled), which breaks the machine engine's builds and bridged containers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from tern.embedded.net import free_port

PRIVATE_BRIDGE = "tern-pd0"
"""The private engine's bridge device (link-local address, no iptables rules, no container uses it)."""
PRIVATE_BRIDGE_ADDR = "169.254.77.1/24"

LOAD_RUN_PREFIX = "load-"
"""Workflow IDs of the load's runs start with this (``benchmarks.load._plans``)."""


def sandbox_containers(engine: Any, *, running_only: bool = True) -> list[dict[str, Any]]:
    """The sandbox containers of load runs on ``engine`` (a ``docker.DockerClient``): the engine's list entries
    (``Id``, ``State``, ``Labels``; label ``tern.sandbox=1`` and ``tern.run_id`` starting with ``load-``)."""
    items = engine.api.containers(all=not running_only, filters={"label": ["tern.sandbox=1"]})
    return [c for c in items if (c.get("Labels") or {}).get("tern.run_id", "").startswith(LOAD_RUN_PREFIX)]


class SecondWorker:
    """Another ``worker.main`` process on the stack's task queue, with the stack worker's environment (read
    from ``/proc/<pid>/environ`` of the supervised worker) and its own HTTP port. Not supervised: ``start``
    it again after a kill.

    ``template_pid``: PID of the stack's running worker process; ``log``: file the worker's output goes to.
    Raises ``psutil.Error`` when the template process is gone.
    """

    def __init__(self, template_pid: int, log: Path) -> None:
        self.env = dict(psutil.Process(template_pid).environ())
        self.env["TERN_WORKER__HTTP_PORT"] = str(free_port())
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> int:
        """Start the worker process (after a kill: again); returns its PID."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.main"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.starts += 1
        return self.proc.pid

    @property
    def pid(self) -> int | None:
        """PID of the running process, None when it is not running."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def stop(self) -> None:
        """SIGTERM (the worker drains), SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def ensure_bridge() -> None:
    """Create the private engine's bridge device :data:`PRIVATE_BRIDGE` (``ip link add ... type bridge``) with a
    link-local address, unless it exists. Raises ``RuntimeError`` when ``ip`` fails (not root, no iproute2)."""
    if Path(f"/sys/class/net/{PRIVATE_BRIDGE}").exists():
        return
    for cmd in (
        ["ip", "link", "add", "name", PRIVATE_BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", PRIVATE_BRIDGE_ADDR, "dev", PRIVATE_BRIDGE],
        ["ip", "link", "set", PRIVATE_BRIDGE, "up"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"could not set up the private engine's bridge ({' '.join(cmd)}): {done.stderr.strip()}")


class PrivateDockerd:
    """A ``dockerd`` of the benchmark's own, reachable at ``host`` (``unix:///tmp/tld-*/d.sock``).

    ``data_root``: its image and container store; ``keep_data``: leave it in place at ``stop`` (a later run
    then finds the image there and skips the copy, which takes minutes for the 1.2 GB image); ``log``: its output. State
    that must stay short-pathed (socket, exec root with containerd's sockets, PID file) lives in a fresh
    ``/tmp/tld-*`` directory. Needs root (as the main engine does). Raises ``RuntimeError`` when it does not
    answer within ``start``'s timeout or an image cannot be loaded.
    """

    def __init__(self, data_root: Path, log: Path, *, keep_data: bool = False) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="tld-", dir="/tmp"))
        self.data_root = data_root
        self.keep_data = keep_data
        self.log = log
        self.host = f"unix://{self.run_dir / 'd.sock'}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def command(self) -> list[str]:
        """The ``dockerd`` command line (dockerd(8) options; its own bridge device, no iptables rules)."""
        return [
            "dockerd",
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.run_dir / "exec"),
            "--pidfile",
            str(self.run_dir / "d.pid"),
            "-H",
            self.host,
            f"--bridge={PRIVATE_BRIDGE}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--shutdown-timeout=5",
        ]

    def client(self, timeout_s: int = 30) -> Any:
        """A ``docker.DockerClient`` for this engine."""
        import docker

        return docker.DockerClient(base_url=self.host, timeout=timeout_s)

    def start(self, timeout_s: float = 90.0) -> None:
        """Start the engine and wait until it answers a ping."""
        self.data_root.mkdir(parents=True, exist_ok=True)
        ensure_bridge()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the private dockerd exited with {self.proc.returncode}; see {self.log}")
            try:
                self.client(5).ping()
                return
            except Exception:  # not listening yet
                time.sleep(0.5)
        raise RuntimeError(f"the private dockerd did not answer within {timeout_s:g} s; see {self.log}")

    def load_image(self, ref: str) -> None:
        """Copy image ``ref`` from the machine's engine into this one (``docker save | docker -H ... load``),
        unless it is there already."""
        import docker.errors

        try:
            self.client().images.get(ref)
            return
        except docker.errors.ImageNotFound:
            pass
        save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "-H", self.host, "load"], stdin=save.stdout, capture_output=True)
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or load.returncode != 0:
            raise RuntimeError(f"could not load {ref} into the private dockerd: {load.stderr.decode()[-500:]}")

    def restart(self, sig: signal.Signals = signal.SIGTERM, down_s: float = 2.0) -> float:
        """Stop the engine with ``sig`` (SIGKILL after 30 s), stay down ``down_s`` seconds, start it again;
        returns how long it was unreachable, seconds."""
        t0 = time.monotonic()
        self._stop(sig)
        time.sleep(down_s)
        self.start()
        self.restarts += 1
        return time.monotonic() - t0

    def _stop(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the engine (SIGTERM: it stops its containers and unmounts) and remove its state."""
        self._stop(signal.SIGTERM)
        if os.path.ismount(self.data_root):  # dockerd bind-mounts its data root on itself; a killed one leaves it
            subprocess.run(["umount", str(self.data_root)], check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if not self.keep_data:
            shutil.rmtree(self.data_root, ignore_errors=True)


RUN_ID = re.compile(r"load-[0-9a-f]{6}-\d{4}")
"""A load run's workflow id (``benchmarks.load``: ``load-<tag>-<nnnn>``), as it appears in its question."""


class FaultyLLM:
    """The scripted OpenAI-compatible server of ``tests/llm_script.py`` that plans every question as a read-only
    plan (``channel_read`` of ``reads`` + ``respond``) and, for ``window_s`` seconds after ``open_window()``,
    fails every request, in turn: HTTP 500, HTTP 429 (rate limited), a hang of ``hang_s`` seconds (longer than
    the worker's ``llm_timeout_s``: the client times out; the reply that follows goes nowhere). ``injected``
    counts the failed requests by kind; ``hits`` maps each load run id named in a failed request's body (the
    question ``load run <id>``, :data:`RUN_ID`) to the kinds served to it, so an excused failure names its fault.
    """

    KINDS = ("500", "429", "timeout")

    def __init__(self, reads: list[str], window_s: float, hang_s: float = 12.0) -> None:
        from tests.llm_script import ScriptedLLM, plan_json

        self.window_s, self.hang_s = window_s, hang_s
        self.opened: float | None = None
        self.injected = dict.fromkeys(self.KINDS, 0)
        self.hits: dict[str, list[str]] = {}
        self._turn = 0
        plan = plan_json({"id": "read", "kind": "channel_read", "channels": reads}, {"id": "answer", "kind": "respond"})
        self.llm = ScriptedLLM()
        self.llm.default.update({"planner": plan, "answer": "load answer", "other": "load"})

    def in_window(self) -> bool:
        """Whether the fault window is open now."""
        return self.opened is not None and time.monotonic() - self.opened < self.window_s

    def open_window(self) -> None:
        """Start the fault window now."""
        self.opened = time.monotonic()

    async def serve(self) -> Any:
        """An async context manager serving the app on a free loopback port; yields the base URL."""
        import asyncio

        from fastapi.responses import JSONResponse

        from tests.ariel.conftest import serve

        app = self.llm.app()

        @app.middleware("http")
        async def faults(request: Any, call_next: Any) -> Any:
            if self.in_window():
                kind = self.KINDS[self._turn % 3]
                self._turn += 1
                self.injected[kind] += 1
                for run in dict.fromkeys(RUN_ID.findall((await request.body()).decode(errors="replace"))):
                    self.hits.setdefault(run, []).append(kind)
                if kind == "timeout":
                    await asyncio.sleep(self.hang_s)
                else:
                    body = {"error": {"message": f"load: injected {kind}", "type": "server_error", "code": None}}
                    return JSONResponse(body, status_code=int(kind))
            return await call_next(request)

        return serve(app)

    def worker_env(self, base: str, timeout_s: float = 5.0, sdk_retries: int = 2) -> dict[str, str]:
        """TERN_LLM_* variables pointing the stack's worker at this server (``base``: ``http://127.0.0.1:PORT``)."""
        return {
            "TERN_LLM__PROVIDER": "openai",
            "TERN_LLM__URL": f"{base}/v1",
            "TERN_LLM__MODEL": "scripted",
            "TERN_LLM__API_KEY": "load",
            "TERN_LLM__TIMEOUT_S": f"{timeout_s:g}",
            "TERN_LLM__MAX_RETRIES": str(sdk_retries),
        }
