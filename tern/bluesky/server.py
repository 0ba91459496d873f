"""A real Bluesky queue server on loopback: Debian's ``redis-server`` and ``start-re-manager``
(bluesky-queueserver) with Tern's simulated-device profile (``tern/bluesky/profile``: ophyd's simulated motors and
detectors, the standard plans, a permissions file allowing ``count``, ``scan``, ``rel_scan`` and ``list_scan`` on
``det*``/``motor*``/``noisy_det`` for the default group ``primary``).

Used by ``tern up --with bluesky`` and the tests. The profile is copied into ``root`` first (the queue server
rewrites its plans-and-devices list when the environment opens). Redis keys get a prefix of their own, so a
queue server never shares state with another on the same Redis.

Queue server: https://blueskyproject.io/bluesky-queueserver/ (``start-re-manager`` options ``--startup-dir``,
``--redis-addr``, ``--redis-name-prefix``, ``--zmq-control-addr``, ``--zmq-info-addr``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROFILE = Path(__file__).resolve().parent / "profile"


class QueueServerError(RuntimeError):
    """The queue server or its Redis could not be started; the message says which and shows its log's tail."""


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _manager_bin() -> str:
    found = shutil.which("start-re-manager") or str(Path(sys.executable).parent / "start-re-manager")
    if not Path(found).exists():
        raise QueueServerError("start-re-manager not found: install the bluesky extra (pip install 'tern[bluesky]')")
    return found


@dataclass
class QueueServer:
    """One Redis and one RE Manager, children of this process.

    Args:
        root: directory for the profile copy, Redis' files and the logs.
        redis_port, control_port, info_port: loopback TCP ports (Redis; the manager's 0MQ control and info).
    Attributes:
        control_addr, info_addr: the 0MQ addresses to give ``REManagerAPI``.
    """

    root: Path
    redis_port: int
    control_port: int
    info_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def control_addr(self) -> str:
        return f"tcp://127.0.0.1:{self.control_port}"

    @property
    def info_addr(self) -> str:
        return f"tcp://127.0.0.1:{self.info_port}"

    def commands(self) -> dict[str, list[str]]:
        """The two command lines (``redis``, ``manager``)."""
        redis = shutil.which("redis-server")
        if redis is None:
            raise QueueServerError("redis-server not found: install Debian's redis-server (scripts/system-deps.sh)")
        startup = self.root / "profile"
        return {
            "redis": [
                redis,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            "manager": [
                _manager_bin(),
                "--startup-dir",
                str(startup),
                "--redis-addr",
                f"127.0.0.1:{self.redis_port}",
                "--redis-name-prefix",
                f"tern_{self.control_port}",
                "--zmq-control-addr",
                self.control_addr,
                "--zmq-info-addr",
                self.info_addr,
                "--zmq-publish-console",
                "OFF",
                "--use-ipython-kernel",
                "OFF",
                "--user-group-permissions-reload",
                "ON_STARTUP",
            ],
        }

    def start(self, timeout_s: float = 60.0) -> None:
        """Start Redis, then the manager; return when the manager answers ``status``. Raises
        :class:`QueueServerError` (both stopped) when either exits or does not answer within ``timeout_s``."""
        self.root.mkdir(parents=True, exist_ok=True)
        startup = self.root / "profile"
        if not startup.exists():
            shutil.copytree(PROFILE, startup, ignore=shutil.ignore_patterns("__pycache__"))
        cmds = self.commands()
        for name in ("redis", "manager"):
            log = open(self.root / f"{name}.log", "ab")
            self.procs[name] = subprocess.Popen(cmds[name], stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        from bluesky_queueserver_api.zmq import REManagerAPI

        deadline = time.monotonic() + timeout_s
        api = REManagerAPI(zmq_control_addr=self.control_addr, zmq_info_addr=self.info_addr, timeout_recv=2.0)
        try:
            while True:
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        raise QueueServerError(f"{name} exited ({proc.returncode}): {_tail(self.root / f'{name}.log')}")
                try:
                    api.status()
                    return
                except Exception:  # not answering yet
                    if time.monotonic() > deadline:
                        raise QueueServerError(
                            f"the queue server did not answer within {timeout_s:g} s: "
                            f"{_tail(self.root / 'manager.log')}"
                        ) from None
        finally:
            api.close()

    def stop(self) -> None:
        """Stop the manager (it stops its worker), then Redis; kill what does not exit within 20 s."""
        for name in ("manager", "redis"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
