"""Issue 28: the suite neither reads the user's data directory nor reaches a default port (tests/conftest.py's
``pytest_configure``), and the identity of a database by which ``tern ariel search`` decides whether the
embedded stack's ARIEL API serves the CLI's database (:mod:`tern.embedded.ariel_api`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tern.config import TernSettings
from tern.embedded.ariel_api import database_identity, read_record, same_database, write_record
from tern.embedded.net import free_port, port_in_use
from tests.databases import dsn as owner_dsn

DEFAULT_PORTS = {7233, 8233, 55432, 5064, 8765, 17668, 8008, 9464, 3000}


def test_the_session_reaches_nothing_of_the_users() -> None:
    """Default settings in a test name the session's data directory and ports held for the session with nothing
    listening: no test finds ~/.tern, ./tern.toml or a stack left running on the default ports."""
    s = TernSettings()
    assert s.data_dir.resolve() != (Path.home() / ".tern").resolve() and s.data_dir.is_dir()
    assert Path(os.environ["TERN_CONFIG"]).parent == s.data_dir and not Path(os.environ["TERN_CONFIG"]).exists()
    assert not Path(os.environ["TEMPORAL_CONFIG_FILE"]).exists()
    assert not [name for name in os.environ if name.startswith("TEMPORAL_") and name != "TEMPORAL_CONFIG_FILE"]
    ports = {
        s.database.pg_port,
        s.control.ca_server_port,
        s.ariel.api_port,
        s.archiver.port,
        s.chat.matrix_port,
        s.chat.slack_port,
        s.temporal.ui_port,
        int(s.temporal.address.rpartition(":")[2]),
    }
    assert len(ports) == 8 and not ports & DEFAULT_PORTS, ports
    assert s.worker.http_port == 0  # no endpoint unless a test gives it a port
    assert s.dsn.endswith(f":{s.database.pg_port}/tern")
    assert not [p for p in ports if port_in_use(p)]  # held, not listening: a connection is refused
    assert not {free_port() for _ in range(200)} & ports  # and no fixture is handed one of them


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("postgresql://postgres@127.0.0.1:55432/tern", "postgres://postgres@localhost:55432/tern"),
        ("postgresql://postgres:secret@[::1]:55432/tern?sslmode=disable", "postgresql://postgres@127.0.0.1:55432/tern"),
        ("postgresql://tern@db.example/tern", "postgresql://tern@DB.example:5432/tern"),
        ("postgresql://tern@db.example:6000", "postgresql://tern@db.example:6000/tern"),
        ("postgresql:///tern?host=/run/postgresql&user=ops", "postgresql://ops@/tern?host=/run/postgresql"),
    ],
)
def test_one_database_spelled_two_ways(a: str, b: str) -> None:
    assert database_identity(a) == database_identity(b) and same_database(a, b)
    assert "secret" not in database_identity(a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("postgresql://postgres@127.0.0.1:55432/tern", "postgresql://postgres@127.0.0.1:55432/t_1234"),
        ("postgresql://postgres@127.0.0.1:55432/tern", "postgresql://postgres@127.0.0.1:55433/tern"),
        ("postgresql://postgres@127.0.0.1:55432/tern", "postgresql://ops@127.0.0.1:55432/tern"),
        ("postgresql://postgres@127.0.0.1:55432/tern", "postgresql://postgres@db.example:55432/tern"),
        ("host=127.0.0.1 port=55432 dbname=tern", "host=127.0.0.1 port=55432 dbname=tern"),  # not read: not same
        ("postgresql://postgres@h1:5432,h2:5432/tern", "postgresql://postgres@h1:5432,h2:5432/tern"),
        ("postgresql://postgres@127.0.0.1:port/tern", "postgresql://postgres@127.0.0.1:port/tern"),
    ],
)
def test_other_databases_and_unreadable_ones_are_not_the_same(a: str, b: str) -> None:
    assert not same_database(a, b)


def test_unreadable_dsns_are_refused_naming_why() -> None:
    for dsn, why in (
        ("host=127.0.0.1 dbname=tern", "not a postgresql:// URL"),
        ("postgresql://u@h1,h2/tern", "several hosts"),
        ("postgresql://u@h:port/tern", "port is not a number"),
    ):
        with pytest.raises(ValueError, match=why):
            database_identity(dsn)


def test_the_record_round_trips_and_keeps_no_password(tmp_path: Path) -> None:
    assert read_record(tmp_path) is None
    write_record(tmp_path, pid=123, port=4567, dsn="postgresql://postgres:hunter2@127.0.0.1:55432/tern")
    text = (tmp_path / "run" / "ariel.api.json").read_text()
    assert "hunter2" not in text
    record = read_record(tmp_path)
    assert record is not None and (record.pid, record.port) == (123, 4567)
    assert record.database == "postgresql://postgres@localhost:55432/tern"
    (tmp_path / "run" / "ariel.api.json").write_text("{not json")
    assert read_record(tmp_path) is None  # unreadable: no stack API is used


async def test_another_pytest_run_leaves_the_sessions_postgresql_its_data(embedded_pg, tmp_path: Path) -> None:
    """Every pytest run that uses ``tmp_path`` resets ``/tmp/pytest-of-<user>`` to mode 0700. When the suite runs
    as root its embedded PostgreSQL runs as another user: with the session's files under that directory, a focused
    run started beside ``./dev test`` cut the server off its data directory (PANIC opening ``pg_control`` at the
    next checkpoint; every later test refused). The session's ``--basetemp`` lies elsewhere; a checkpoint after
    such a run still succeeds."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "test_nothing.py").write_text("def test_nothing(tmp_path):\n    assert tmp_path.is_dir()\n")
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(elsewhere)],
        cwd=elsewhere,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    conn = await asyncpg.connect(owner_dsn(embedded_pg, "postgres"))
    try:
        await conn.execute("CHECKPOINT")  # opens global/pg_control
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
