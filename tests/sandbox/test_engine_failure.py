"""The Docker engine going away while code runs (issue 13, "a failed Docker wait re-runs the code").

The engine is the real one; what fails is the connection to it: the backend talks to the engine through a
Unix-socket relay that the test cuts mid-execution, exactly as a restarting engine closes its socket (the
machine's dockerd itself stays up for everyone else). Before the fix the wait's ``requests`` error escaped
raw, the removal in ``finally`` raised over it, and the activity's retry ran the code again without a trace;
now the backend raises a ``SandboxError`` that says the code may have run, the container is left for the next
attempt's ``kill``, and ``execute_python`` records how often the code ran before (``reruns``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.sandbox import CODE_RUNS, SandboxActivities
from tern.config import get_settings
from tern.models.python_step import ExecuteInput
from tern.sandbox import ExecutionRequest, SandboxError, SandboxLimits, execute
from tern.sandbox.docker_backend import LABEL, DockerBackend
from tests.conftest import unavailable
from tests.sandbox.conftest import TEST_RUN_ID
from workflows.python_execution import EXECUTE_RETRY

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leftovers")]


class SocketRelay:
    """Relays connections from a Unix socket at ``path`` to the engine's socket ``target``; ``cut()`` closes
    the listener and every relayed connection at once (an engine that went away)."""

    def __init__(self, path: Path, target: str) -> None:
        self.path, self.target = path, target
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # cut
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.path.unlink(missing_ok=True)  # new connections find no socket
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (Linux), which then ends
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


@pytest.fixture
def relayed(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[SocketRelay]:
    """``DOCKER_HOST`` pointed at a relay to the machine's engine (a Unix socket only)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        unavailable(f"the relay needs a Unix-socket engine, DOCKER_HOST is {host}")
    path = Path("/tmp") / f"tern-relay-{os.getpid()}-{id(tmp_path_factory)}.sock"  # AF_UNIX paths are short
    relay = SocketRelay(path, host.removeprefix("unix://"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    yield relay
    relay.cut()
    path.unlink(missing_ok=True)


async def _running(backend: DockerBackend, step_id: str) -> str:
    for _ in range(200):
        found = backend.client.api.containers(filters={"label": [f"tern.step_id={step_id}", f"{LABEL}=1"]})
        if found:
            return str(found[0]["Id"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no running container for step {step_id}")


SLEEPER = "import time\ntime.sleep(60)\nresults = {}"


async def test_an_engine_gone_mid_run_is_a_sandbox_error_that_says_the_code_may_have_run(
    docker_backend: DockerBackend, relayed: SocketRelay
) -> None:
    through_relay = DockerBackend(get_settings(), image=docker_backend.image)
    request = ExecutionRequest(
        code=SLEEPER, workflow_id=TEST_RUN_ID, step_id="engine-gone", limits=SandboxLimits(timeout_s=60)
    )
    task = asyncio.create_task(execute(request, backend=through_relay))
    container_id = await _running(docker_backend, "engine-gone")  # seen on the engine directly
    relayed.cut()
    with pytest.raises(SandboxError) as err:
        await asyncio.wait_for(task, 30)
    message = str(err.value)
    assert "Docker engine failed" in message and container_id[:12] in message
    assert "may have run" in message and "runs it again" in message
    # The container could not be removed through the dead connection; once the engine answers again the backend
    # removes it by itself (no retry may come: the step's last attempt), without anyone calling kill.
    assert docker_backend.client.api.containers(all=True, filters={"id": container_id})
    back = SocketRelay(relayed.path, relayed.target)
    try:
        for _ in range(100):
            if not docker_backend.client.api.containers(all=True, filters={"id": container_id}):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"container {container_id[:12]} still there after the engine came back")
    finally:
        back.cut()


async def test_an_engine_gone_just_after_the_code_ended_keeps_the_result(
    docker_backend: DockerBackend, relayed: SocketRelay
) -> None:
    """The code ran to its end, then the engine went away before the container was removed: before the fix the
    removal's connection error replaced the result (and the retry ran the code again)."""
    through_relay = DockerBackend(get_settings(), image=docker_backend.image)
    real_remove = through_relay.client.api.remove_container  # through the relay: fails once it is cut
    cut_first = threading.Event()

    def remove_after_cut(container: str, **kw: object) -> None:
        relayed.cut()  # the engine goes away between the code's end and the removal
        cut_first.set()
        return real_remove(container, **kw)

    through_relay.client.api.remove_container = remove_after_cut
    request = ExecutionRequest(code="results = {'done': 1}", workflow_id=TEST_RUN_ID, step_id="gone-after")
    result = await asyncio.wait_for(execute(request, backend=through_relay), 60)
    assert cut_first.is_set() and result.ok and result.results == {"done": 1}
    assert docker_backend.kill(TEST_RUN_ID, "gone-after") == 1  # left for the retry thread, the reaper or a kill


async def test_a_retried_execution_records_that_the_code_ran_before(docker_backend: DockerBackend, pg_dsn: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        acts = SandboxActivities(get_settings(), pool, backend=docker_backend)
        inp = ExecuteInput(
            workflow_id=TEST_RUN_ID, step_id="rerun", attempt=1, code="results = {'x': 1}", expected_keys=["x"]
        )
        beats: list[object] = []
        first = ActivityEnvironment()
        first.on_heartbeat = lambda *details: beats.extend(details)
        fresh = await first.run(acts.execute_python, inp)
        assert fresh.ok and fresh.attempt == 1 and fresh.reruns == 0
        assert beats and beats[-1] == {CODE_RUNS: 1}  # what the next attempt will read

        # Attempt 3 of the activity; attempt 2 started the code (its last heartbeat said 2 runs so far).
        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, attempt=3, heartbeat_details=[{CODE_RUNS: 2}])
        beats.clear()
        retry.on_heartbeat = lambda *details: beats.extend(details)
        again = await retry.run(acts.execute_python, inp)
        assert again.ok and again.results == {"x": 1}
        assert again.attempt == 3 and again.reruns == 2
        assert beats and beats[-1] == {CODE_RUNS: 3}
    finally:
        await pool.close()


async def test_an_engine_that_does_not_answer_yet_is_retried_not_fatal(
    docker_backend: DockerBackend, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker (re)started while the engine restarts: before the fix its first execution raised
    ``SandboxUnavailable``, non-retryable by ``EXECUTE_RETRY``, and the step failed for good."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        unavailable(f"the relay needs a Unix-socket engine, DOCKER_HOST is {host}")
    path = Path("/tmp") / f"tern-late-{os.getpid()}.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")  # nothing listens there yet: the engine is down
    monkeypatch.setenv("TERN_SANDBOX__IMAGE", docker_backend.image)
    from tern.config import TernSettings

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    relay: SocketRelay | None = None
    try:
        acts = SandboxActivities(TernSettings(), pool)  # its backend is made on first use, as in a worker
        inp = ExecuteInput(workflow_id=TEST_RUN_ID, step_id="late-engine", attempt=1, code="results = {'x': 2}")
        with pytest.raises(ApplicationError) as err:
            await ActivityEnvironment().run(acts.execute_python, inp)
        assert err.value.type == "EngineUnreachable" and not err.value.non_retryable
        assert "docker engine not reachable" in str(err.value)
        assert err.value.type not in (EXECUTE_RETRY.non_retryable_error_types or [])

        relay = SocketRelay(path, host.removeprefix("unix://"))  # the engine is back
        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, attempt=2)
        result = await retry.run(acts.execute_python, inp)
        assert result.ok and result.results == {"x": 2} and result.attempt == 2 and result.reruns == 0
    finally:
        if relay is not None:
            relay.cut()
        path.unlink(missing_ok=True)
        await pool.close()
