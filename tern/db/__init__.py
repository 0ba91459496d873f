"""PostgreSQL access: connection pools and ordered SQL migrations (asyncpg).

Migrations are the files ``tern/db/migrations/NNN_name.sql``, applied once each in numeric order inside one
transaction per file, under a PostgreSQL advisory lock so that concurrent workers do not race. Numbering:
001-099 core (audit, write ledger), 100-199 ARIEL, 200-299 sandbox and artifacts, 300-399 archived history,
operator memory, the channel table, trigger definitions and logbook write-back.
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection, plain or borrowed from a pool (the asyncpg stubs tell them apart)."""
_LOCK_KEY = 0x7E2A_0001  # advisory lock id for migrations
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class DatabaseError(RuntimeError):
    """The database could not be reached or migrated; the message says which and why."""


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """The migration files in order as ``(version, path)``. Raises ``DatabaseError`` on a bad name or clash."""
    found: dict[int, Path] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise DatabaseError(f"migration file name {path.name!r} does not match NNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise DatabaseError(f"two migrations share version {version}: {found[version].name}, {path.name}")
        found[version] = path
    return sorted(found.items())


async def migrate(conn: Conn, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations; returns the versions applied now (empty when up to date)."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied: list[int] = []
        for version, path in migration_files(directory):
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, path.name)
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, migrate_schema: bool = True) -> asyncpg.Pool:
    """Open a pool to ``dsn`` and (by default) bring the schema up to date. Each query is traced as a ``db.query``
    span (no-op without a tracer provider; :mod:`tern.tracing`).

    Raises ``DatabaseError`` when the server cannot be reached, naming the DSN without its password.
    """
    try:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=10, init=_traced)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact(dsn)}: {exc}") from exc
    if migrate_schema:
        async with pool.acquire() as conn:
            await migrate(conn)
    return pool


async def _traced(conn: asyncpg.Connection) -> None:
    """Every query of the pool's connections becomes a ``db.query`` span (:func:`tern.tracing.query_span`)."""
    from tern.tracing import query_span

    conn.add_query_logger(query_span)


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)
