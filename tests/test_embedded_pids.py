"""PID liveness for the embedded stack's records (``tern.embedded.pids.live_process``): the ARIEL API record, the
component PID files and ``postmaster.pid`` share one check. A zombie answers ``kill(pid, 0)``, and so does a PID
reused by another program; neither counts as the recorded process (the blind spot the old ``ariel_api._alive``
had, after ``EmbeddedPostgres.pid`` lost it: tests/test_embedded_postgres_pid.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tern.embedded.ariel_api import PROCESS_MARKER, running_record, write_record
from tern.embedded.pids import live_process, running, wait_gone

DSN = "postgresql://postgres@127.0.0.1:55432/tern"


@contextmanager
def child(*argv: str, code: str = "import time; time.sleep(600)") -> Iterator[subprocess.Popen[bytes]]:
    """A Python child running ``code``; ``argv`` is appended to its command line (where a marker shows). Yielded
    once the child has exec'd: until then its command line is the forking parent's, and a marker check fails (seen
    under a parallel run's load)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *argv])
    try:
        deadline = time.monotonic() + 60
        while argv and not _exec_done(proc.pid, list(argv)):
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _exec_done(pid: int, argv: list[str]) -> bool:
    """Whether ``pid``'s command line ends with ``argv``, or it has already exited (a zombie has no command line
    left: a ``code="pass"`` child can exit before the first look)."""
    try:
        return psutil.Process(pid).cmdline()[-len(argv) :] == argv
    except psutil.ZombieProcess:
        return True


def zombie(proc: subprocess.Popen[bytes]) -> int:
    """Wait until ``proc`` has exited but is not reaped (psutil's wait would reap it); its PID."""
    p = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while p.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.01)
    os.kill(proc.pid, 0)  # what the old check relied on: a zombie still answers
    return proc.pid


@contextmanager
def listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_live_process_showing_the_marker_is_live() -> None:
    with child(PROCESS_MARKER) as proc:
        assert live_process(proc.pid, PROCESS_MARKER)
        assert live_process(proc.pid, "python", where="name")  # psutil's name of the interpreter


def test_a_zombie_is_not_live() -> None:
    with child(PROCESS_MARKER, code="pass") as proc:
        assert not live_process(zombie(proc), PROCESS_MARKER)


def test_a_reused_pid_is_not_live() -> None:
    # this pytest process is alive, but it is not the ARIEL API: as a PID the API once had and the OS gave again
    assert not live_process(os.getpid(), PROCESS_MARKER)
    assert not live_process(os.getpid(), "postgres", where="name")


def test_a_vanished_or_impossible_pid_is_not_live() -> None:
    with child(code="pass") as proc:
        proc.wait()
        gone = proc.pid
    assert not live_process(gone, "")  # even an empty marker (shown by any process) needs a process
    assert not live_process(0, "") and not live_process(-1, "")


def test_the_ariel_api_record_of_a_zombie_does_not_count(tmp_path: Path) -> None:
    with listening() as port, child(PROCESS_MARKER, code="pass") as proc:
        write_record(tmp_path, pid=zombie(proc), port=port, dsn=DSN)
        assert running_record(tmp_path) is None


def test_the_ariel_api_record_of_a_reused_pid_does_not_count(tmp_path: Path) -> None:
    with listening() as port:  # the port answers (as another program's might), the PID is pytest's
        write_record(tmp_path, pid=os.getpid(), port=port, dsn=DSN)
        assert running_record(tmp_path) is None


def test_the_ariel_api_record_without_a_listener_does_not_count(tmp_path: Path) -> None:
    with listening() as closed:
        pass  # a port that was free a moment ago, closed now
    with child(PROCESS_MARKER) as proc:
        write_record(tmp_path, pid=proc.pid, port=closed, dsn=DSN)
        assert running_record(tmp_path) is None


def test_the_ariel_api_record_of_a_live_api_counts(tmp_path: Path) -> None:
    with listening() as port, child(PROCESS_MARKER) as proc:
        written = write_record(tmp_path, pid=proc.pid, port=port, dsn=DSN)
        assert running_record(tmp_path) == written


def test_an_exited_process_is_gone_before_it_is_reaped_and_a_running_one_is_waited_for() -> None:
    """``tern down`` waits for each component with ``wait_gone``: an exited process whose parent has not reaped
    it (as init had not, for up to ~2 s a process) is gone; one still running is returned after the timeout."""
    with child(PROCESS_MARKER, code="pass") as exited, child(PROCESS_MARKER) as sleeping:
        dead = zombie(exited)
        assert not running(dead) and running(sleeping.pid)
        assert wait_gone([dead], timeout_s=60) == []  # at once: psutil's wait would wait for the reaping
        assert psutil.Process(dead).status() == psutil.STATUS_ZOMBIE  # still not reaped: nothing waited for it
        assert wait_gone([dead, sleeping.pid], timeout_s=0.2) == [sleeping.pid]
        sleeping.kill()
        assert wait_gone([sleeping.pid], timeout_s=60) == []
