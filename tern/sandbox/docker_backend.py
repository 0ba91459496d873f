"""Docker backend: each execution in a fresh, hardened container that is always removed afterwards.

Isolation of one container: no network (``network_mode="none"``), read-only root filesystem, size-limited
tmpfs work directory (/work) and /tmp, memory limit with no swap, CPU quota, PID limit, ``no-new-privileges``,
Tern's seccomp allow-list (``tern.sandbox.seccomp``: no ptrace, no namespaces, no keyrings, ...), inputs
bind-mounted read-only at /inputs, no log driver (the output is read over an attach stream with a hard size
cap, so nothing piles up on the host's disk), a wall-clock deadline after which the container is killed.

Processes inside, and who owns them: PID 1 is Docker's init (``init=True``: docker-init, i.e. tini, which
reaps zombies), as root; its child ``timeout --signal=KILL`` enforces the container's own deadline (a few
seconds after the worker's), as root; ``setpriv`` (util-linux) then drops to the sandbox user (uid/gid
10001, no supplementary groups, empty bounding, inheritable and ambient capability sets) and execs the
runner. The container keeps only CAP_SETUID, CAP_SETGID and CAP_SETPCAP, which those root helpers need to
drop privileges; the code holds no capability and runs under another uid than its deadline process, so it
can neither signal nor trace it (and seccomp refuses ``ptrace`` anyway).

Deadline enforcement outside the container, independent of the process that started it: containers carry
the labels ``tern.sandbox=1``, ``tern.run_id``, ``tern.step_id``, ``tern.created_at`` and ``tern.deadline``
(epoch seconds), so ``kill`` can stop the one of a cancelled step and ``reap_orphans`` (run by every worker
at start and then every ``sandbox_reap_period_s``) removes those past their deadline, whoever started them
(a worker or ``tern sandbox run``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import LogConfig, Ulimit

from tern.config import TernSettings
from tern.models.execution import ExecutionResult, Timings
from tern.sandbox.engine import (
    ENGINE_ERRORS,
    docker_client,
    engine_failed,
    image_exists,
    image_missing,
    kill_quietly,
)
from tern.sandbox.image import image_ref
from tern.sandbox.job import EndedBy, Outcome, SandboxError, build_result, reap_jobs, remove_job, write_job
from tern.sandbox.models import ExecutionRequest, SandboxLimits
from tern.sandbox.seccomp import profile_json
from tern.sandbox.supervision import Supervisor

SANDBOX_UID = 10001
"""The code's uid and gid (the image's ``sandbox`` user, infra/sandbox/Dockerfile); PID 1 runs as root."""
CONTAINER_USER = "0:0"
CONTAINER_CAPS = ["SETUID", "SETGID", "SETPCAP"]
"""What the root helpers need to drop to ``SANDBOX_UID``: setresuid/setresgid/setgroups, and PR_CAPBSET_DROP
to empty the bounding set (capabilities(7)). The code ends with none of them."""
DROP_PRIVILEGES = [
    "setpriv",
    f"--reuid={SANDBOX_UID}",
    f"--regid={SANDBOX_UID}",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--",
]
"""setpriv(1), util-linux: change uid/gid, clear groups, inheritable and bounding sets, then exec. Going from
uid 0 to a non-zero uid clears the permitted, effective and ambient sets (capabilities(7))."""
RUNNER_COMMAND = ["python3", "-I", "/opt/tern/runner.py", "--job", "/inputs", "--work", "/work"]
SELF_KILL_MARGIN_S = 5.0
"""The container kills its own code this long after the wall-clock limit (if the worker did not), s."""
LABEL = "tern.sandbox"
KILL_GRACE_S = 30.0
"""After a kill, how long to wait for the engine to report the container stopped, seconds; the reaper
leaves a stopped container this long after its deadline for the worker that may still be reading it."""
REMOVE_RETRY_S = 300.0
"""How long a container the engine could not remove (it was restarting) is retried, seconds."""
REMOVE_RETRY_INTERVAL_S = 2.0
"""Interval between those retries, seconds."""
START_SLACK_S = 5.0
"""The deadline label is written at creation, the container's own timer starts at start: the reaper gives a
still-running container this much longer before it counts its own deadline as failed, seconds."""


class _Reader(threading.Thread):
    """Reads a container's attach stream; keeps stdout/stderr up to ``cap`` bytes in total, else kills it."""

    def __init__(self, client: docker.DockerClient, container_id: str, cap: int) -> None:
        super().__init__(daemon=True, name=f"sandbox-reader-{container_id[:12]}")
        self.client, self.container_id, self.cap = client, container_id, cap
        self.stdout, self.stderr = bytearray(), bytearray()
        self.overflow = False
        self.stream = client.api.attach(container_id, stdout=True, stderr=True, stream=True, demux=True)

    def run(self) -> None:
        try:
            for out, err in self.stream:
                if self.overflow:
                    continue  # keep draining: the engine only finishes the kill once the stream is read
                if out:
                    self.stdout += out
                if err:
                    self.stderr += err[: max(0, self.cap - len(self.stderr))]
                if len(self.stdout) > self.cap:
                    self.overflow = True
                    self.stdout.clear()
                    args = (self.client, self.container_id)
                    threading.Thread(target=kill_quietly, args=args, daemon=True).start()
        except Exception:  # the stream ends abruptly when the container is killed or removed
            pass
        finally:
            self.stream.close()


def _in_thread(fn: Callable[[], Any]) -> asyncio.Future[Any]:
    """Run a blocking call in its own daemon thread (not the shared executor, which a long wait would hog)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def target() -> None:
        def settle(value: Any = None, error: BaseException | None = None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)

        try:
            value = fn()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, value)

    threading.Thread(target=target, daemon=True, name="sandbox-wait").start()
    return future


class DockerBackend:
    """Runs ``ExecutionRequest``s in hardened containers of the sandbox image.

    ``settings``: the sandbox settings (``sandbox_image``, ``sandbox_orphan_age_s``; the limits of
    ``execute`` when a request has none). ``image`` defaults to ``settings.sandbox.image`` or the locally
    built content-hash tag (``tern.sandbox.image.image_ref()``, which raises ``SandboxUnavailable`` outside a
    source checkout).
    """

    def __init__(self, settings: TernSettings, *, image: str | None = None) -> None:
        self.settings = settings
        self.image = image or self.settings.sandbox.image or image_ref()
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        """The engine client (created on first use). Raises ``SandboxUnavailable``."""
        if self._client is None:
            self._client = docker_client()
        return self._client

    def check(self) -> None:
        """Raise ``SandboxUnavailable`` unless the engine answers and the image exists."""
        if not image_exists(self.client, self.image):
            raise image_missing(self.image)

    def container_kwargs(self, request: ExecutionRequest, limits: SandboxLimits, job_dir: str) -> dict[str, Any]:
        """The ``containers.create`` arguments for one execution (all isolation settings live here)."""
        threads = str(max(1, int(limits.cpus)))
        now = time.time()
        return {
            "image": self.image,
            "command": [
                "timeout",
                "--signal=KILL",
                f"{limits.timeout_s + SELF_KILL_MARGIN_S:g}s",
                *DROP_PRIVILEGES,
                *RUNNER_COMMAND,
            ],
            "init": True,
            "user": CONTAINER_USER,
            "working_dir": "/work",
            "network_mode": "none",
            "network_disabled": True,
            "read_only": True,
            "tmpfs": {
                "/work": f"rw,nosuid,nodev,noexec,size={limits.tmpfs_bytes},"
                f"uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0700",
                "/tmp": f"rw,nosuid,nodev,noexec,size={limits.tmpfs_bytes},mode=1777",
            },
            "volumes": {job_dir: {"bind": "/inputs", "mode": "ro"}},
            "mem_limit": limits.memory_bytes,
            "memswap_limit": limits.memory_bytes,
            "nano_cpus": int(limits.cpus * 1e9),
            "pids_limit": limits.pids,
            "cap_drop": ["ALL"],
            "cap_add": CONTAINER_CAPS,
            "security_opt": ["no-new-privileges", f"seccomp={profile_json()}"],
            "ulimits": [Ulimit(name="core", soft=0, hard=0), Ulimit(name="nofile", soft=256, hard=256)],
            "log_config": LogConfig(type="none"),
            "environment": {
                "HOME": "/work",
                "MPLBACKEND": "Agg",
                "MPLCONFIGDIR": "/work/.matplotlib",
                "OMP_NUM_THREADS": threads,
                "OPENBLAS_NUM_THREADS": threads,
            },
            "labels": {
                LABEL: "1",
                "tern.run_id": request.workflow_id,
                "tern.step_id": request.step_id,
                "tern.created_at": f"{now:.0f}",
                "tern.deadline": f"{now + limits.timeout_s + SELF_KILL_MARGIN_S:.0f}",
            },
            "detach": True,
            "stdin_open": False,
            "tty": False,
        }

    def _create(self, request: ExecutionRequest, limits: SandboxLimits, job_dir: str) -> Container:
        try:
            return self.client.containers.create(**self.container_kwargs(request, limits, job_dir))
        except docker.errors.ImageNotFound as exc:
            raise image_missing(self.image) from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"docker could not create the sandbox container: {exc}") from exc

    def _remove(self, container_id: str, *, engine_may_be_gone: bool = False) -> None:
        """Remove a container (force). With ``engine_may_be_gone`` an engine that fails or is away is not an
        error: the removal is retried in the background (``_remove_later``) until the engine is back."""
        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except ENGINE_ERRORS as exc:
            if isinstance(exc, docker.errors.APIError) and "already in progress" in str(exc):
                return
            if not engine_may_be_gone:
                raise
            self._remove_later(container_id)

    def _remove_later(self, container_id: str) -> None:
        """Retry removing ``container_id`` every ``REMOVE_RETRY_INTERVAL_S`` for up to ``REMOVE_RETRY_S`` seconds,
        in a daemon thread (an engine restart: the container stays, stopped, until the engine answers again). If
        this worker dies meanwhile, the next attempt's ``kill`` or any worker's ``reap_orphans`` removes it."""

        def retry() -> None:
            deadline = time.monotonic() + REMOVE_RETRY_S
            while time.monotonic() < deadline:
                time.sleep(REMOVE_RETRY_INTERVAL_S)
                try:
                    self._remove(container_id)
                    return
                except ENGINE_ERRORS:
                    continue

        threading.Thread(target=retry, daemon=True, name=f"sandbox-remove-{container_id[:12]}").start()

    async def run(self, request: ExecutionRequest, limits: SandboxLimits, supervisor: Supervisor) -> ExecutionResult:
        """Run one request in a fresh container and return its result.

        ``supervisor`` heartbeats while the container runs and, when its ``cancel_event`` is set, has the
        container killed (status ``killed``); the wall-clock limit is ``limits.timeout_s``. If the calling
        task is cancelled, the container is removed before ``CancelledError`` propagates.
        Raises ``SandboxUnavailable`` (no engine, no image) or ``SandboxError`` (the engine failed); all
        failures of the code itself are reported in the result.
        """
        t0 = time.perf_counter()
        job = await asyncio.to_thread(write_job, request, limits)
        container_id: str | None = None
        try:
            container = await asyncio.to_thread(self._create, request, limits, str(job))
            container_id = str(container.id)
            outcome, t2 = await self._follow(container_id, limits, supervisor, t0)
        except ENGINE_ERRORS as exc:  # the engine failed or went away (a restart) after the container existed
            raise engine_failed(container_id, exc) from exc
        finally:
            if container_id is not None:
                # the engine may go away after the code ended too: the result stands, the removal is retried
                await asyncio.shield(asyncio.to_thread(self._remove, container_id, engine_may_be_gone=True))
            await asyncio.to_thread(remove_job, job)
        t3 = time.perf_counter()
        outcome.timings = outcome.timings.model_copy(update={"teardown_s": t3 - t2, "total_s": t3 - t0})
        return build_result(outcome, request, limits, "docker")

    async def _follow(
        self, cid: str, limits: SandboxLimits, supervisor: Supervisor, t0: float
    ) -> tuple[Outcome, float]:
        """Start container ``cid``, follow it to its end and collect its outcome; returns it with the time it
        ended (``perf_counter``). Raises ``ENGINE_ERRORS`` when the engine fails meanwhile."""
        reader = await asyncio.to_thread(_Reader, self.client, cid, limits.frame_bytes())
        reader.start()
        await asyncio.to_thread(self.client.api.start, cid)
        t1 = time.perf_counter()
        supervisor.beat()
        wait_future = _in_thread(lambda: self.client.api.wait(cid, timeout=limits.timeout_s + KILL_GRACE_S + 30))
        ended_by: EndedBy = await supervisor.watch(wait_future, limits.timeout_s)
        if ended_by != "exit":
            await asyncio.to_thread(kill_quietly, self.client, cid)
        waited = await asyncio.wait_for(asyncio.shield(wait_future), KILL_GRACE_S)
        t2 = time.perf_counter()
        await asyncio.to_thread(reader.join, 10.0)
        try:
            state = (await asyncio.to_thread(self.client.api.inspect_container, cid))["State"]
        except docker.errors.NotFound:  # removed by a kill (tern sandbox kill, a cancelled run) meanwhile:
            state = {"ExitCode": (waited or {}).get("StatusCode")}  # the engine's wait result says how it ended
        exit_code = state.get("ExitCode")
        if reader.overflow:
            ended_by = "output_limit"
        elif ended_by == "exit" and state.get("OOMKilled"):
            ended_by = "oom"
        outcome = Outcome(
            exit_code=exit_code,
            stdout=bytes(reader.stdout),
            stderr=bytes(reader.stderr),
            ended_by=ended_by,
            detail=(
                f"the output exceeded {limits.frame_bytes()} bytes; the container was killed"
                if ended_by == "output_limit"
                else ""
            ),
            timings=Timings(setup_s=t1 - t0, run_s=t2 - t1),
        )
        return outcome, t2

    def kill(self, workflow_id: str, step_id: str | None = None) -> int:
        """Kill and remove the sandbox containers of ``workflow_id`` (label ``tern.run_id``; and ``step_id``); returns
        how many."""
        labels = [f"{LABEL}=1", f"tern.run_id={workflow_id}"]
        if step_id is not None:
            labels.append(f"tern.step_id={step_id}")
        return self._remove_matching(labels)

    def reap_orphans(self, max_age_s: float | None = None) -> int:
        """Remove the sandbox containers past their deadline, whoever started them, and stale job directories;
        returns how many containers.

        Removed (running or not): a container still running more than ``START_SLACK_S`` seconds after its
        ``tern.deadline`` label (its own timeout failed; any worker watching it gave up at its own deadline,
        ``SELF_KILL_MARGIN_S`` earlier); any container more than ``KILL_GRACE_S`` seconds past its deadline
        (no live worker still reads it); any container older than ``max_age_s`` seconds (default
        ``settings.sandbox.orphan_age_s``, longer than any allowed timeout), or without a deadline label once
        that old. Workers call it at start and every ``sandbox_reap_period_s`` seconds. Raises
        ``SandboxUnavailable`` when the engine is unreachable, ``docker.errors.APIError`` when it fails.
        """
        age = self.settings.sandbox.orphan_age_s if max_age_s is None else max_age_s
        reap_jobs(age)
        now = time.time()
        removed = 0
        for item in self.client.api.containers(all=True, filters={"label": [f"{LABEL}=1"]}):
            labels = item.get("Labels") or {}
            try:
                created = float(labels.get("tern.created_at") or item.get("Created") or 0)
                deadline = float(labels.get("tern.deadline") or "inf")
            except ValueError:  # a label someone else wrote: judge by age alone
                created, deadline = float(item.get("Created") or 0), float("inf")
            running = item.get("State") == "running"
            overdue = now > deadline + (START_SLACK_S if running else KILL_GRACE_S)
            if overdue or now - created > age:
                self._remove(item["Id"])
                removed += 1
        return removed

    def _remove_matching(self, labels: list[str]) -> int:
        removed = 0
        for item in self.client.api.containers(all=True, filters={"label": labels}):
            self._remove(item["Id"])
            removed += 1
        return removed
