"""Whether a PID read from a PID file (or a record) is still the process that wrote it.

``kill(pid, 0)`` is not enough: it succeeds for a zombie (a child that exited and that its parent has not reaped
yet: a killed postmaster or API server answers while nothing listens on its port), and for an unrelated process
that was given the same PID after the recorded one ended. So a PID counts as live only when psutil finds it, not
a zombie, and showing the expected program in its name or command line (found by the fault campaign in
``EmbeddedPostgres.pid``; tests/test_embedded_postgres_pid.py, tests/test_embedded_pids.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

import psutil


def live_process(
    pid: int, marker: str, *, where: Literal["name", "cmdline"] = "cmdline", if_denied: bool = False
) -> bool:
    """True when ``pid`` is a running process (not a zombie) that shows ``marker``.

    Args:
        pid: the recorded process id (<= 0 is never live).
        marker: a substring of the expected program's process name (``where="name"``, e.g. ``postgres``) or of its
            command line joined with spaces (``where="cmdline"``, e.g. ``tern.ariel.api``).
        if_denied: the answer when the OS does not let this user read the process (psutil ``AccessDenied``; it
            exists, but whose it is cannot be told).

    Returns False when the process is gone, a zombie, or another program. Never raises for a bad PID.
    """
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        shown = proc.name() if where == "name" else " ".join(proc.cmdline())
    except psutil.NoSuchProcess:  # gone (ZombieProcess is one too)
        return False
    except psutil.AccessDenied:
        return if_denied
    return marker in shown


def running(pid: int) -> bool:
    """True while ``pid`` is a process that has not exited: gone and zombie processes are not running; one this user
    may not inspect is (psutil ``AccessDenied``)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def wait_gone(pids: Iterable[int], timeout_s: float, poll_s: float = 0.05) -> list[int]:
    """Wait up to ``timeout_s`` seconds until none of ``pids`` is :func:`running`; returns those still running.

    An exited process counts as gone even before its parent reaps it. ``psutil.Process.wait`` on a process that is
    not this one's child waits for the reaping too, and the stack's processes are init's once ``tern up`` has exited:
    on this project's virtual machines init reaped every ~2 s, so ``tern down`` took 13 s for six components."""
    deadline = time.monotonic() + timeout_s
    left = list(pids)
    while True:
        left = [pid for pid in left if running(pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(poll_s)
