"""``tern up`` / ``tern down`` / ``tern status``: the embedded stack as child processes of one data directory.

Layout under ``TernSettings.data_dir``::

    run/<component>.pid     PID files (PostgreSQL keeps its own postmaster.pid; the worker's is its supervisor's)
    run/worker.state.json   the worker supervisor's state: worker PID, restart count, last exit
    run/ariel.api.json      the ARIEL API's PID, port and the database it serves (:mod:`tern.embedded.ariel_api`)
    logs/<component>.log    stdout and stderr of each component
    logs/ioc-puts.jsonl     every put the simulated IOC received, one JSON line each (``tern verify``)
    temporal/temporal.db    the Temporal dev server's SQLite file (runs survive down/up)
    postgres/data           the PostgreSQL cluster

Components, in start order: ``postgres``, ``temporal`` (dev server with Web UI and Tern's search attributes),
``sim`` (the simulated accelerator's Channel Access server), ``archiver`` (the embedded archiver,
:mod:`tern.archiver`: Appliance retrieval API on ``archiver_port`` over history in PostgreSQL), ``worker`` (a Tern
worker bound to the simulated accelerator, with control writes enabled for it, run under
:mod:`tern.embedded.supervise`, which restarts it with exponential backoff when it dies; ``down`` stops the
supervisor, which stops the worker gracefully), ``ariel`` (the ARIEL HTTP API), ``triggers`` (the trigger
monitor, :mod:`starters.trigger_monitor`: channel triggers of ``tern trigger``).
``up`` starts what is not running and restarts what died, and migrates the database once PostgreSQL is up
(:meth:`EmbeddedStack.migrate`: schema, roles; the worker, bridges and trigger monitor connect as ``tern_writer``, which
may only append to the audit);
a PID file whose process is gone or is not the expected program is stale and is replaced; a port held by
another program is reported, naming the setting that moves it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel

from tern.ariel.embedding_status import EmbeddingStatus, api_embedding_state, embedding_status
from tern.config import TernSettings
from tern.embedded.ariel_api import PROCESS_MARKER as ARIEL_MARKER
from tern.embedded.ariel_api import read_record, remove_record, write_record
from tern.embedded.net import port_in_use
from tern.embedded.pids import live_process, wait_gone
from tern.embedded.postgres import EmbeddedPostgres
from tern.embedded.supervise import SupervisorState
from tern.embedded.temporal_cli import TemporalCliMissing, serving, temporal_bin, workflow_pollers_since
from tern.models.search_attributes import NAMES as SEARCH_ATTRIBUTES

COMPONENTS = ("postgres", "temporal", "sim", "archiver", "worker", "ariel", "triggers")
OPTIONAL = ("matrix", "bridge", "bluesky")
"""Started only when asked (``tern up --with matrix``: Synapse, then the Matrix approval bridge); once running,
``status`` and ``down`` include them like the others."""
WITH = {"matrix": ("matrix", "bridge"), "bluesky": ("bluesky",)}
ComponentState = Literal["running", "stopped", "dead", "starting"]
WORKER_GRACE_S = 15.0  # the supervisor waits this long for a stopping worker to drain (worker.main: 10 s)

ONE_PARTITION = (
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
)
"""Dev server flags: one partition per task queue. Task priorities (``starters.priorities``) order tasks within a
partition; with the default four a poller draws from one partition at random and an operator's run can wait
behind background work queued in another. One machine needs no partitions for throughput."""


class StackError(RuntimeError):
    """A component could not be started or stopped; the message says which, why and where its log is."""


class ComponentStatus(BaseModel):
    """One component as ``tern status --json`` reports it."""

    name: str
    state: ComponentState
    pid: int | None = None
    address: str | None = None
    port: int | None = None
    log: str | None = None
    detail: str = ""
    child_pid: int | None = None  # supervised component (worker): the process the supervisor runs
    restarts: int | None = None  # supervised component: restarts since ``tern up`` started its supervisor
    last_exit: str | None = None  # supervised component: why the child last exited


class SandboxStatus(BaseModel):
    """Whether python steps can run: the Docker engine answers and the sandbox image exists."""

    available: bool
    backend: str
    detail: str = ""


class StackStatus(BaseModel):
    data_dir: str
    ui_url: str
    worker_urls: dict[str, str] = {}  # the worker's /healthz, /readyz, /metrics (none when its port is 0)
    components: list[ComponentStatus]
    sandbox: SandboxStatus | None = None
    embedding: EmbeddingStatus | None = None


def _temporal_bin() -> str:
    try:
        return temporal_bin()
    except TemporalCliMissing as exc:
        raise StackError(str(exc)) from exc


class EmbeddedStack:
    """Start, stop and inspect the embedded stack for ``settings`` (see module docstring)."""

    def __init__(
        self, settings: TernSettings, progress: Callable[[str], None] | None = None, extras: tuple[str, ...] = ()
    ) -> None:
        """``extras``: optional groups to start with the core (keys of ``WITH``, e.g. ``("matrix",)``).
        Raises :class:`StackError` for an unknown group."""
        self.s = settings
        unknown = [e for e in extras if e not in WITH]
        if unknown:
            raise StackError(f"unknown --with {', '.join(unknown)} (choose from {', '.join(WITH)})")
        self.extras = tuple(c for e in extras for c in WITH[e])
        self.root = Path(settings.data_dir).expanduser().resolve()
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "logs"
        self.put_log = self.log_dir / "ioc-puts.jsonl"  # the simulated IOC's own record of every put (tern verify)
        self.progress = progress or (lambda _msg: None)
        self.pg = EmbeddedPostgres(self.root / "postgres" / "data", settings.database.pg_port)
        self._starters: dict[str, Callable[[], None]] = {
            "postgres": self._start_postgres,
            "temporal": self._start_temporal,
            "sim": self._start_sim,
            "archiver": self._start_archiver,
            "worker": self._start_worker,
            "ariel": self._start_ariel,
            "matrix": self._start_matrix,
            "bluesky": self._start_bluesky,
            "bridge": self._start_bridge,
            "triggers": self._start_triggers,
        }

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    _MARKERS = {
        "temporal": "start-dev",
        "sim": "tern.sim",
        "archiver": "tern.archiver",
        "worker": "tern.embedded.supervise",
        "ariel": ARIEL_MARKER,
        "matrix": "synapse.app.homeserver",
        "bluesky": "tern.bluesky",
        "bridge": "bridge matrix",
        "triggers": "starters.trigger_monitor",
    }

    def _components(self) -> tuple[str, ...]:
        """The core components, then the optional ones asked for or running (a PID file exists)."""
        return COMPONENTS + tuple(c for c in OPTIONAL if c in self.extras or self._pidfile(c).exists())

    def _state_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.state.json"

    def _alive_pid(self, name: str) -> tuple[int | None, bool]:
        """``(pid, stale)``: the live PID of ``name`` (None if not running) and whether a stale PID file exists."""
        if name == "postgres":
            return self.pg.pid(), False
        path = self._pidfile(name)
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None, path.exists()
        if live_process(pid, self._MARKERS[name]):  # not gone, not a zombie, not another program on a reused PID
            return pid, False
        return None, True

    def _endpoint(self, name: str) -> tuple[str | None, int | None]:
        s = self.s
        if name == "postgres":
            return "127.0.0.1", s.database.pg_port
        if name == "temporal":
            host, _, port = s.temporal.address.rpartition(":")
            return host or "127.0.0.1", int(port)
        if name == "sim":
            return "127.0.0.1", s.control.ca_server_port
        if name == "ariel":
            return "127.0.0.1", s.ariel.api_port
        if name == "archiver":
            return "127.0.0.1", s.archiver.port
        if name == "matrix":
            return "127.0.0.1", s.chat.matrix_port
        if name == "bluesky":
            return s.bluesky.host, s.bluesky.control_port
        return None, None

    def status(self) -> StackStatus:
        """The state of every component (no side effects)."""
        comps = []
        for name in self._components():
            pid, stale = self._alive_pid(name)
            addr, port = self._endpoint(name)
            state: ComponentState = "running" if pid else ("dead" if stale else "stopped")
            detail = ""
            if name == "temporal" and pid:
                detail = f"Web UI {self.s.ui_url}"
            if name == "ariel" and pid:
                record = read_record(self.root)
                served = record.database if record is not None and record.database else "an unrecorded database"
                detail = f"ARIEL HTTP API on {served}: tern ariel search goes through it for that database"
            if name == "archiver" and pid:
                detail = f"retrieval API {self.s.archiver.base_url}/retrieval/data/getData.json"
            if name == "triggers" and pid:
                detail = "trigger monitor: channel triggers (tern trigger add --channel)"
            if name == "bluesky" and pid:
                detail = f"Bluesky queue server, 0MQ control tcp://{self.s.bluesky.host}:{self.s.bluesky.control_port}"
            if name == "matrix" and pid:
                detail = (
                    f"Synapse, room #control-room:localhost; credentials in {self.root / 'matrix' / 'credentials.json'}"
                )
            if stale:
                detail = "PID file left by a process that is gone (restarted by `tern up`)"
            sup = SupervisorState.read(self._state_file(name)) if name == "worker" and pid else None
            extra: dict[str, object] = {}
            if sup is not None:
                extra = {"child_pid": sup.child_pid, "restarts": sup.restarts, "last_exit": sup.last_exit}
                detail = f"supervised; worker pid {sup.child_pid or '-'} ({sup.phase}); restarts: {sup.restarts}"
                if sup.last_exit:
                    detail += f"; last exit: {sup.last_exit}"
                    if sup.last_exit_at:
                        detail += f" at {sup.last_exit_at:%H:%M:%S} UTC"
            comps.append(
                ComponentStatus(
                    name=name,
                    state=state,
                    pid=pid,
                    address=addr,
                    port=port,
                    log=str(self._log(name)),
                    detail=detail,
                    **extra,
                )
            )
        return StackStatus(
            data_dir=str(self.root),
            ui_url=self.s.ui_url,
            worker_urls=self.worker_urls(),
            components=comps,
            sandbox=self.sandbox_status(),
            embedding=self.embedding_status(ariel_running=any(c.name == "ariel" and c.pid for c in comps)),
        )

    def embedding_status(self, *, ariel_running: bool) -> EmbeddingStatus:
        """The configured embedding provider; whether the model is loaded is asked of the stack's ARIEL API
        (``/health``) when it runs."""
        st = embedding_status(self.s)
        if ariel_running and st.provider != "none":
            state = api_embedding_state(self.s.ariel.api_port)
            if state is not None:
                st.loaded = bool(state.get("loaded"))
                st.loads_in = "the stack's ARIEL API (loaded at its start), the worker on first use"
                if state.get("error"):
                    st.detail = f"the ARIEL API could not load it: {state['error']}"
        return st

    def sandbox_status(self) -> SandboxStatus:
        """Check the sandbox backend (Docker engine reachable, image present); never raises."""
        from tern.sandbox import unavailable_reason

        problem = unavailable_reason(self.s)
        return SandboxStatus(
            available=problem is None,
            backend=self.s.sandbox.backend,
            detail=problem or "engine reachable, image present",
        )

    # -- up ------------------------------------------------------------------------------------------
    def up(self, only: Sequence[str] = COMPONENTS) -> StackStatus:
        """Start every component of ``only`` (default all, in start order) that is not running; returns the
        resulting status. ``only`` without ``worker`` leaves the polling to workers started elsewhere (the
        worker image, another host). Raises ``ValueError`` for a name that is not a component."""
        unknown = set(only) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"no stack component named {', '.join(sorted(unknown))}; components: {COMPONENTS}")
        for d in (self.run_dir, self.log_dir, self.root / "temporal"):
            d.mkdir(parents=True, exist_ok=True)
        for name in (c for c in self._components() if c in only or c in OPTIONAL):
            pid, _stale = self._alive_pid(name)
            if pid:
                self.progress(f"{name}: running (pid {pid})")
            else:
                self.progress(f"{name}: starting")
                self._starters[name]()
                self.progress(f"{name}: started")
            if name == "postgres":
                self.migrate()
        return self.status()

    def migrate(self) -> list[int]:
        """Bring the schema up to date as the owner (``settings.dsn``): migrations, the ``tern_writer`` and
        ``tern_reader`` roles and their grants (:func:`tern.db.migrate_dsn`); on the embedded server
        (``database.url`` unset) the two roles may then log in, and the worker and bridges connect as
        ``tern_writer``, the read-only CLIs as ``tern_reader``. Returns the versions applied; raises
        ``StackError`` naming the cause."""
        import asyncio

        from tern.db import DatabaseError, migrate_dsn

        try:
            applied = asyncio.run(migrate_dsn(self.s.dsn, login_roles=self.s.database.url is None))
        except DatabaseError as exc:
            raise StackError(str(exc)) from exc
        if applied:
            self.progress(f"postgres: migrated ({', '.join(f'{v:03d}' for v in applied)})")
        return applied

    def _db_env(self) -> dict[str, str]:
        """The database DSNs a child gets: the owner's (``TERN_DATABASE__URL``, for the tools that load data) and,
        set explicitly so that the owner URL does not become their default, the writer's and the reader's."""
        return {
            "TERN_DATABASE__URL": self.s.dsn,
            "TERN_DATABASE__WRITER_URL": self.s.writer_dsn,
            "TERN_DATABASE__READER_URL": self.s.reader_dsn,
        }

    def _check_port(self, name: str, setting: str) -> None:
        addr, port = self._endpoint(name)
        if port is not None and port_in_use(port, addr or "127.0.0.1"):
            raise StackError(
                f"cannot start {name}: {addr}:{port} is busy (held by a program that is not this "
                f"stack's {name}); stop it or choose another port with {setting}"
            )

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self._log(name), "ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            cwd=self.root,
        )
        self._pidfile(name).write_text(str(proc.pid))
        return proc

    @staticmethod
    def _logged(log: Path, since: int, message: str) -> bool:
        """Whether ``message`` appears in ``log`` after byte offset ``since``."""
        with open(log, "rb") as fh:
            fh.seek(since)
            return message.encode() in fh.read()

    def _wait(self, name: str, proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._pidfile(name).unlink(missing_ok=True)
                raise StackError(
                    f"{name} exited with status {proc.returncode} while starting; last log lines:\n" + self._tail(name)
                )
            if ready():
                return
            time.sleep(0.2)
        raise StackError(
            f"{name} did not become ready within {timeout:g} s; see {self._log(name)}\n" + self._tail(name)
        )

    def _tail(self, name: str, n: int = 15) -> str:
        try:
            return "\n".join(self._log(name).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _start_postgres(self) -> None:
        self._check_port("postgres", "TERN_DATABASE__PG_PORT")
        try:
            self.pg.start()
        except Exception as exc:
            raise StackError(f"PostgreSQL did not start: {exc}") from exc

    def _start_temporal(self) -> None:
        self._check_port("temporal", "TERN_TEMPORAL__ADDRESS")
        if port_in_use(self.s.temporal.ui_port):
            raise StackError(
                f"cannot start the Temporal Web UI: 127.0.0.1:{self.s.temporal.ui_port} is busy; "
                "choose another port with TERN_TEMPORAL__UI_PORT"
            )
        host, port = self._endpoint("temporal")
        cmd = [
            _temporal_bin(),
            "server",
            "start-dev",
            "--ip",
            host or "127.0.0.1",
            "--port",
            str(port),
            "--ui-port",
            str(self.s.temporal.ui_port),
            "--db-filename",
            str(self.root / "temporal" / "temporal.db"),
            "--namespace",
            self.s.temporal.namespace,
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
            *ONE_PARTITION,
        ]
        for sa in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", f"{sa}=Keyword"]
        proc = self._spawn("temporal", cmd)
        self._wait("temporal", proc, lambda: port_in_use(port or 7233, host or "127.0.0.1"), 60)
        self._wait("temporal", proc, self._temporal_ready, 60)

    def _temporal_ready(self) -> bool:
        return serving(self.s.temporal.address, self.s.temporal.namespace)

    def _child_env(self) -> dict[str, str]:
        return {"TERN_DATA_DIR": str(self.root), "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}

    def _start_sim(self) -> None:
        self._check_port("sim", "TERN_CONTROL__CA_SERVER_PORT")
        if self.s.sim.pva and port_in_use(self.s.control.pva_server_port):
            raise StackError(
                f"cannot start sim over PVAccess: 127.0.0.1:{self.s.control.pva_server_port} is busy; choose another "
                "port with TERN_CONTROL__PVA_SERVER_PORT, or serve Channel Access only with TERN_SIM__PVA=false"
            )
        env = {
            **self._child_env(),
            "TERN_CONTROL__CA_SERVER_PORT": str(self.s.control.ca_server_port),
            "TERN_CONTROL__PVA_SERVER_PORT": str(self.s.control.pva_server_port),
            "TERN_SIM__PVA": "true" if self.s.sim.pva else "false",
            "TERN_CONTROL__LIMITS_PATH": str(self.s.control.limits_path),
            "TERN_SIM__PUT_LOG_PATH": str(self.s.sim.put_log_path or self.put_log),
        }
        proc = self._spawn("sim", [sys.executable, "-m", "tern.sim"], env)
        self._wait("sim", proc, lambda: port_in_use(self.s.control.ca_server_port), 60)

    def _start_archiver(self) -> None:
        """The embedded archiver (``python -m tern.archiver``): generates its first-start history, monitors the
        archived channels of the simulated accelerator and serves the Appliance retrieval API."""
        self._check_port("archiver", "TERN_ARCHIVER__PORT")
        env = {
            **self._child_env(),
            **self._db_env(),
            "TERN_CONTROL__CA_ADDR_LIST": "127.0.0.1",
            "TERN_CONTROL__CA_AUTO_ADDR_LIST": "false",
            "TERN_CONTROL__CA_SERVER_PORT": str(self.s.control.ca_server_port),
            "TERN_ARCHIVER__PORT": str(self.s.archiver.port),
            "TERN_ARCHIVER__CHANNELS": json.dumps(self.s.archiver.channels),
            "TERN_ARCHIVER__BACKFILL_DAYS": str(self.s.archiver.backfill_days),
            "TERN_ARCHIVER__BACKFILL_PERIOD_S": str(self.s.archiver.backfill_period_s),
            "TERN_CONTROL__LIMITS_PATH": str(self.s.control.limits_path),
        }
        proc = self._spawn("archiver", [sys.executable, "-m", "tern.archiver"], env)
        self._wait("archiver", proc, lambda: port_in_use(self.s.archiver.port), 180)

    def _run_starter_env(self) -> dict[str, str]:
        """Environment of the processes that start and carry out runs (worker, trigger monitor): the stack's
        PostgreSQL, the simulated accelerator on loopback only, the stack's Temporal and task queue, the limits."""
        return {
            **self._child_env(),
            "TERN_CONTROL__CA_ADDR_LIST": "127.0.0.1",
            "TERN_CONTROL__CA_AUTO_ADDR_LIST": "false",
            "TERN_CONTROL__CA_SERVER_PORT": str(self.s.control.ca_server_port),
            "TERN_CONTROL__PVA_ADDR_LIST": "127.0.0.1",
            "TERN_CONTROL__PVA_SERVER_PORT": str(self.s.control.pva_server_port),
            **self._db_env(),
            "TERN_TEMPORAL__ADDRESS": self.s.temporal.address,
            # The standard TEMPORAL_* variables take precedence over TERN_TEMPORAL_* (worker/connection.py): pin
            # them, so a shell set up for another cluster (address, TLS) does not lead the stack's processes away.
            "TEMPORAL_ADDRESS": self.s.temporal.address,
            "TEMPORAL_NAMESPACE": self.s.temporal.namespace,
            "TEMPORAL_TLS": "false",
            "TERN_TEMPORAL__TASK_QUEUE": self.s.temporal.task_queue,
            "TERN_CONTROL__LIMITS_PATH": str(self.s.control.limits_path),
        }

    def _start_worker(self) -> None:
        # The embedded worker talks only to the simulated accelerator on loopback, and may write to it.
        env = {
            **self._run_starter_env(),
            "TERN_CONTROL__WRITES_ENABLED": "true",
            "TERN_ARCHIVER__URL": self.s.archiver.base_url,
            "TERN_ARCHIVER__FACILITY_TIMEZONE": self.s.archiver.facility_timezone,
            "TERN_WORKER__HTTP_HOST": self.s.worker.http_host,
            "TERN_WORKER__HTTP_PORT": str(self.s.worker.http_port),
            # the stack's one worker is the deployment's current version at once (docs/concepts/deployments.md)
            "TERN_WORKER__PROMOTE_ON_START": "always",
            **(
                {"TERN_WORKER__CA_PROBE_CHANNEL": self.s.worker.ca_probe_channel}
                if self.s.worker.ca_probe_channel
                else {}
            ),
        }
        if self.s.worker.http_port and port_in_use(self.s.worker.http_port, self.s.worker.http_host):
            raise StackError(
                f"cannot start the worker: {self.s.worker.http_host}:{self.s.worker.http_port} (its HTTP endpoint) "
                "is busy; choose another port with TERN_WORKER__HTTP_PORT"
            )
        started = datetime.now(UTC)
        state = self._state_file("worker")
        state.unlink(missing_ok=True)
        s = self.s
        proc = self._spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "tern.embedded.supervise",
                "--state",
                str(state),
                "--initial",
                str(s.stack.worker_restart_initial_s),
                "--max",
                str(s.stack.worker_restart_max_s),
                "--stable",
                str(s.stack.worker_stable_s),
                "--grace",
                str(WORKER_GRACE_S),
                "--",
                sys.executable,
                "-m",
                "worker.main",
            ],
            env,
        )

        if not s.worker.http_port:  # no endpoint: Temporal's own view of the task queue's pollers

            def polling() -> bool:
                return bool(
                    workflow_pollers_since(s.temporal.address, s.temporal.namespace, s.temporal.task_queue, started)
                )

            self._wait("worker", proc, polling, 60)
            return
        self._wait("worker", proc, self._worker_ready, 60)

    def worker_urls(self) -> dict[str, str]:
        """The worker's HTTP endpoints (``healthz``, ``readyz``, ``metrics``); empty when its port is 0."""
        if not self.s.worker.http_port:
            return {}
        base = f"http://{self.s.worker.http_host}:{self.s.worker.http_port}"
        return {name: f"{base}/{name}" for name in ("healthz", "readyz", "metrics")}

    def _worker_ready(self) -> bool:
        """The worker's ``/readyz`` answers and every dependency but the sandbox is ok: the stack runs without
        a sandbox (python steps fail until it is there; ``tern status`` reports it)."""
        import httpx

        try:
            resp = httpx.get(self.worker_urls()["readyz"], timeout=5)
            deps = resp.json()["dependencies"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        return all(state["ok"] for name, state in deps.items() if name != "sandbox")

    def _start_ariel(self) -> None:
        """The ARIEL HTTP API (``python -m tern.ariel.api``) on loopback: ``tern ariel search`` sends searches
        there when its settings name the same database (``run/ariel.api.json`` records which), so the CLI loads
        no embedding model; the API loads it once, at start."""
        self._check_port("ariel", "TERN_ARIEL__API_PORT")
        env = {
            **self._child_env(),
            **self._db_env(),
            "TERN_ARIEL__API_PORT": str(self.s.ariel.api_port),
        }
        remove_record(self.root)
        proc = self._spawn("ariel", [sys.executable, "-m", "tern.ariel.api"], env)
        self._wait("ariel", proc, lambda: port_in_use(self.s.ariel.api_port), 60)
        # which database it serves: `tern ariel search` uses this API only for the same database
        write_record(self.root, pid=proc.pid, port=self.s.ariel.api_port, dsn=self.s.dsn)

    def _start_matrix(self) -> None:
        from tern.embedded import matrix

        self._check_port("matrix", "TERN_CHAT__MATRIX_PORT")
        root = matrix.matrix_dir(self.root)
        try:
            config = matrix.write_config(root, self.s.chat.matrix_port)
        except matrix.MatrixError as exc:
            raise StackError(str(exc)) from exc
        proc = self._spawn("matrix", matrix.command(config))
        self._wait("matrix", proc, lambda: matrix.healthy(self.s.chat.matrix_port), 120)
        try:
            matrix.provision(root, self.s.chat.matrix_port)
        except (matrix.MatrixError, OSError) as exc:
            raise StackError(f"matrix: provisioning the accounts and room failed: {exc}") from exc

    def _start_bluesky(self) -> None:
        """The Bluesky queue server (``python -m tern.bluesky``: Redis and the RE Manager with ophyd's simulated
        devices, in its own process group, so ``down`` stops all three)."""
        self._check_port("bluesky", "TERN_BLUESKY__CONTROL_PORT")
        if port_in_use(self.s.bluesky.redis_port):
            raise StackError(
                f"cannot start bluesky: Redis port 127.0.0.1:{self.s.bluesky.redis_port} is busy; choose another with "
                "TERN_BLUESKY__REDIS_PORT"
            )
        env = {
            **self._child_env(),
            "TERN_BLUESKY__CONTROL_PORT": str(self.s.bluesky.control_port),
            "TERN_BLUESKY__INFO_PORT": str(self.s.bluesky.info_port),
            "TERN_BLUESKY__REDIS_PORT": str(self.s.bluesky.redis_port),
        }
        proc = self._spawn("bluesky", [sys.executable, "-m", "tern.bluesky"], env)
        self._wait("bluesky", proc, lambda: port_in_use(self.s.bluesky.control_port), 180)

    def _start_bridge(self) -> None:
        # `tern bridge matrix` (starters/): spawned by module name, so tern/ imports nothing above it.
        env = {
            **self._child_env(),
            **self._db_env(),
            "TERN_TEMPORAL__ADDRESS": self.s.temporal.address,
            "TERN_CHAT__MATRIX_PORT": str(self.s.chat.matrix_port),
        }
        proc = self._spawn("bridge", [sys.executable, "-m", "starters.cli", "bridge", "matrix"], env)
        settle = time.monotonic() + 3.0  # it logs in and reconciles; a bad credential or database exits at once
        self._wait("bridge", proc, lambda: time.monotonic() > settle, 30)

    def _start_triggers(self) -> None:
        """The trigger monitor (``python -m starters.trigger_monitor``, spawned by module name so ``tern/``
        imports nothing above it): channel triggers over Channel Access on the simulated accelerator, runs
        started on the stack's Temporal."""
        from tern.triggers.monitor import READY_MESSAGE

        proc = self._spawn("triggers", [sys.executable, "-m", "starters.trigger_monitor"], self._run_starter_env())
        since = self._log("triggers").stat().st_size  # this start's lines only: the log is appended to
        self._wait("triggers", proc, lambda: self._logged(self._log("triggers"), since, READY_MESSAGE), 60)

    # -- down ----------------------------------------------------------------------------------------
    def down(self, timeout: float = 20) -> StackStatus:
        """Stop every component (worker first, PostgreSQL last): SIGTERM to its process group (the worker's
        supervisor and the worker), then SIGKILL to the group after ``timeout`` s, and to anything of the group
        still there once its leader has exited."""
        for name in reversed(self._components()):
            pid, _stale = self._alive_pid(name)
            if name == "postgres":
                if pid:
                    self.progress("postgres: stopping")
                    self.pg.stop()
                continue
            if pid:
                self.progress(f"{name}: stopping (pid {pid})")
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                wait_gone([pid], timeout)
                _kill_group(pid)
            self._pidfile(name).unlink(missing_ok=True)
            if name == "ariel":
                remove_record(self.root)
        return self.status()


def _kill_group(pgid: int, wait_s: float = 5.0) -> None:
    """SIGKILL whatever is left in process group ``pgid`` and wait (up to ``wait_s``) for it to go."""
    left = [p for p in psutil.process_iter() if _pgid(p) == pgid]
    if not left:
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_gone([p.pid for p in left], wait_s)


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None
