"""A stale ``postmaster.pid`` never counts as a running server (found by the fault campaign: after the postmaster
was killed, ``tern up`` reported "postgres: running" while nothing listened, because the unreaped zombie still
answered ``kill(pid, 0)``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tern.embedded.postgres import EmbeddedPostgres


def _pidfile(pgdata: Path, pid: int) -> EmbeddedPostgres:
    pgdata.mkdir(parents=True, exist_ok=True)
    (pgdata / "postmaster.pid").write_text(f"{pid}\n{pgdata}\n")
    return EmbeddedPostgres(pgdata, port=1)


def test_a_zombie_postmaster_is_not_running(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        proc = psutil.Process(child.pid)
        deadline = time.monotonic() + 60
        while proc.status() != psutil.STATUS_ZOMBIE:  # exited, not reaped (psutil's wait would reap it)
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        os.kill(child.pid, 0)  # what the old check relied on: a zombie still answers
        assert _pidfile(tmp_path / "pg", child.pid).pid() is None
    finally:
        child.wait()


def test_a_pid_reused_by_another_program_is_not_running(tmp_path: Path) -> None:
    assert _pidfile(tmp_path / "pg", os.getpid()).pid() is None  # pytest's python, not postgres


def test_a_vanished_pid_is_not_running(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert _pidfile(tmp_path / "pg", child.pid).pid() is None
