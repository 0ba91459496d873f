"""``python -m tern.embedded.supervise --state FILE [options] -- COMMAND...``: keep one process running.

The embedded stack runs its worker under this supervisor (``tern up``), so a worker that dies is restarted
without anyone running ``tern up`` again:

- runs COMMAND as a child (same environment, stdout/stderr and process group; on Linux the child also gets
  ``PR_SET_PDEATHSIG`` = SIGTERM, so it never outlives a supervisor that is itself killed);
- when the child exits abnormally (non-zero status or a signal), restarts it after a delay that starts at
  ``--initial`` seconds and doubles up to ``--max`` seconds; a child that ran ``--stable`` seconds or more
  resets the delay. A child that exits with status 0 (it was asked to stop) ends the supervisor;
- on SIGTERM or SIGINT, forwards SIGTERM to the child, waits up to ``--grace`` seconds for it to drain, then
  SIGKILLs it, and exits 0 (``tern down`` stops the stack this way);
- records its state in the JSON file ``--state`` (:class:`SupervisorState`, replaced atomically): the
  child's PID, the restart count, the last exit and its reason.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

SupervisorPhase = Literal["running", "backoff", "stopping", "stopped"]


class SupervisorState(BaseModel):
    """The supervisor's state file (``run/<name>.state.json`` in the embedded stack's data directory)."""

    supervisor_pid: int
    child_pid: int | None = None
    phase: SupervisorPhase = "running"
    restarts: int = 0
    started_at: datetime | None = None  # the current child's start (UTC)
    last_exit: str | None = None  # e.g. "killed by SIGKILL", "exited with status 1"
    last_exit_at: datetime | None = None
    next_restart_in_s: float | None = None

    @classmethod
    def read(cls, path: Path) -> SupervisorState | None:
        """The state in ``path``, or None when missing or unreadable."""
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return None

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically (write a sibling, then ``os.replace``)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        os.replace(tmp, path)


def exit_reason(returncode: int) -> str:
    """A Popen return code in words: ``exited with status N`` or ``killed by SIGNAME``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Runs ``command`` and restarts it (see module docstring). Times in seconds."""

    def __init__(
        self,
        command: list[str],
        state_path: Path,
        *,
        initial_s: float = 1.0,
        max_s: float = 60.0,
        stable_s: float = 60.0,
        grace_s: float = 15.0,
    ) -> None:
        if not command:
            raise ValueError("no command to supervise")
        self.command = command
        self.state_path = state_path
        self.initial_s, self.max_s, self.stable_s, self.grace_s = initial_s, max_s, stable_s, grace_s
        self.state = SupervisorState(supervisor_pid=os.getpid())
        self._stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None

    def _log(self, msg: str) -> None:
        print(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor: {msg}", flush=True)

    def request_stop(self, *_args: object) -> None:
        """Signal handler: stop the child gracefully and end the supervisor."""
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Supervise until asked to stop or the child exits with status 0; returns the exit status (0)."""
        delay = self.initial_s
        while not self._stop.is_set():
            started = time.monotonic()
            self._child = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            if self._stop.is_set():  # a stop request that came while starting it
                break
            self.state = self.state.model_copy(
                update={
                    "child_pid": self._child.pid,
                    "phase": "running",
                    "started_at": datetime.now(UTC),
                    "next_restart_in_s": None,
                }
            )
            self.state.write(self.state_path)
            self._log(f"started {' '.join(self.command)} (pid {self._child.pid})")
            code = self._child.wait()
            if self._stop.is_set():
                break
            reason = exit_reason(code)
            ran = time.monotonic() - started
            if code == 0:
                self._log(f"child {reason} after {ran:.1f} s; not restarting")
                self.state = self.state.model_copy(
                    update={"child_pid": None, "last_exit": reason, "last_exit_at": datetime.now(UTC)}
                )
                break
            if ran >= self.stable_s:
                delay = self.initial_s
            self.state = self.state.model_copy(
                update={
                    "child_pid": None,
                    "phase": "backoff",
                    "restarts": self.state.restarts + 1,
                    "last_exit": reason,
                    "last_exit_at": datetime.now(UTC),
                    "next_restart_in_s": delay,
                }
            )
            self.state.write(self.state_path)
            self._log(f"child {reason} after {ran:.1f} s; restart {self.state.restarts} in {delay:g} s")
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.max_s)
        self._finish()
        return 0

    def _finish(self) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            self.state = self.state.model_copy(update={"phase": "stopping"})
            self.state.write(self.state_path)
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(self.grace_s)
            except subprocess.TimeoutExpired:
                self._log(f"child did not stop within {self.grace_s:g} s; killing it")
                child.kill()
                child.wait()
        self.state = self.state.model_copy(update={"phase": "stopped", "child_pid": None})
        self.state.write(self.state_path)
        self._log("stopped")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments (see module docstring) and supervise; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tern.embedded.supervise", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True, help="state file (JSON) to maintain")
    parser.add_argument("--initial", type=float, default=1.0, help="first restart delay, seconds")
    parser.add_argument("--max", type=float, default=60.0, help="longest restart delay, seconds")
    parser.add_argument("--stable", type=float, default=60.0, help="run time that resets the delay, seconds")
    parser.add_argument("--grace", type=float, default=15.0, help="wait for the child to stop, seconds")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    sup = Supervisor(
        command, args.state, initial_s=args.initial, max_s=args.max, stable_s=args.stable, grace_s=args.grace
    )
    signal.signal(signal.SIGTERM, sup.request_stop)
    signal.signal(signal.SIGINT, sup.request_stop)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
