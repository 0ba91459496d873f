"""PostgreSQL access: connection pools and ordered SQL migrations (asyncpg).

Migrations are the files ``tern/db/migrations/NNN_name.sql``, applied once each in numeric order inside one
transaction per file, under a PostgreSQL advisory lock so that concurrent ``tern migrate`` runs (the replicas'
init containers) do not race. Numbering: 001-099 core (audit, write ledger), 100-199 ARIEL, 200-299 sandbox and
artifacts, 300-399 archived history, operator memory, the channel table, trigger definitions and logbook
write-back.

Migrations run once, by ``tern up`` or ``tern migrate`` (:func:`migrate_dsn`), as the database owner; the one
that adds the audit hash chain seals the rows recorded before it (:func:`tern.db.audit_chain.seal_unchained`), and
after them :func:`migrate` applies ``roles.sql`` (the ``tern_writer`` and ``tern_reader`` roles and their grants).
Every other process opens its pool with :func:`create_pool`, which refuses a schema that is missing or older than
the code (:class:`NotMigrated`: "database not migrated: run tern migrate").
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
ROLES_SQL = Path(__file__).resolve().parent / "roles.sql"
WRITER_ROLE = "tern_writer"
"""Group role of the worker and the services that record decisions: INSERT-only on ``audit_events``."""
READER_ROLE = "tern_reader"
"""Group role of the read-only tools (``tern audit``, ``tern verify``): SELECT only."""
AUDIT_CHAIN_VERSION = 2
"""``002_audit_chain.sql``: adds ``prev_hash``/``row_hash`` to ``audit_events``."""
MIGRATE_HINT = "run tern migrate (or tern up) as the database owner"


class DatabaseError(RuntimeError):
    """The database could not be reached or migrated; the message says which and why."""


class NotMigrated(DatabaseError):
    """The schema is missing or older than this code: ``database not migrated: run tern migrate ...``."""


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


async def migrate(conn: Conn, directory: Path = MIGRATIONS_DIR, *, roles: bool = True) -> list[int]:
    """Apply pending migrations; returns the versions applied now (empty when up to date). The migration that
    adds the audit hash chain (:data:`AUDIT_CHAIN_VERSION`) also seals, in its transaction, the rows recorded
    before it (:func:`tern.db.audit_chain.seal_unchained`). Then (``roles``, the default; only for the real
    migrations directory) apply ``roles.sql``. Needs the owner role (DDL; CREATE ROLE when the roles do not exist
    yet)."""
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
                if version == AUDIT_CHAIN_VERSION and directory == MIGRATIONS_DIR:
                    # In the migration's own transaction: its ALTER TABLE holds audit_events until commit, so no
                    # writer can chain a row before the old ones are sealed.
                    from tern.db.audit_chain import seal_unchained

                    await seal_unchained(conn)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, path.name)
            applied.append(version)
        if roles and directory == MIGRATIONS_DIR:
            async with conn.transaction():
                await conn.execute(ROLES_SQL.read_text())
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def allow_login(conn: Conn) -> None:
    """Let :data:`WRITER_ROLE` and :data:`READER_ROLE` log in themselves (``ALTER ROLE ... LOGIN``): for the
    embedded stack only, whose server listens on loopback with trust authentication (``tern up``). Production
    keeps them NOLOGIN and grants them to its own login roles."""
    for role in (WRITER_ROLE, READER_ROLE):
        await conn.execute(f"ALTER ROLE {role} LOGIN")


async def migrate_dsn(dsn: str, *, login_roles: bool = False) -> list[int]:
    """Connect to ``dsn`` (the owner), :func:`migrate`, and with ``login_roles`` :func:`allow_login`; returns
    the versions applied. Raises ``DatabaseError`` naming the DSN (without password) and the cause."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact(dsn)}: {exc}") from exc
    try:
        applied = await migrate(conn)
        if login_roles:
            await allow_login(conn)
        return applied
    except asyncpg.PostgresError as exc:
        raise DatabaseError(f"migrating {redact(dsn)} failed: {exc}") from exc
    finally:
        await conn.close()


async def check_schema(conn: Conn, directory: Path = MIGRATIONS_DIR) -> None:
    """Raise :class:`NotMigrated` unless every migration of ``directory`` is recorded in ``schema_migrations``
    (the message names the missing versions). Needs only SELECT."""
    try:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    except asyncpg.UndefinedTableError:
        raise NotMigrated(f"database not migrated: no schema found; {MIGRATE_HINT}") from None
    except asyncpg.InsufficientPrivilegeError:
        raise NotMigrated(f"database not migrated: this role may not read schema_migrations; {MIGRATE_HINT}") from None
    missing = [v for v, _ in migration_files(directory) if v not in done]
    if missing:
        raise NotMigrated(
            f"database not migrated: schema is older than this code (missing migrations "
            f"{', '.join(f'{v:03d}' for v in missing)}); {MIGRATE_HINT}"
        )


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, check: bool = True) -> asyncpg.Pool:
    """Open a pool to ``dsn`` and (by default, ``check``) refuse a schema that is missing or older than the code
    (:func:`check_schema`; migrations are run by ``tern migrate``, never here). Each query is traced as a
    ``db.query`` span (no-op without a tracer provider; :mod:`tern.tracing`).

    Raises ``DatabaseError`` when the server cannot be reached, naming the DSN without its password (and saying
    to run ``tern migrate`` when the role of the DSN does not exist or may not log in: ``tern up`` creates the
    embedded stack's roles), :class:`NotMigrated` when the schema is behind.
    """
    try:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=10, init=_traced)
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact(dsn)}: {exc}; {MIGRATE_HINT}") from exc
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact(dsn)}: {exc}") from exc
    if check:
        try:
            async with pool.acquire() as conn:
                await check_schema(conn)
        except BaseException:
            await pool.close()
            raise
    return pool


async def _traced(conn: asyncpg.Connection) -> None:
    """Every query of the pool's connections becomes a ``db.query`` span (:func:`tern.tracing.query_span`)."""
    from tern.tracing import query_span

    conn.add_query_logger(query_span)


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)
