"""Databases for the tests on the session's embedded PostgreSQL (tests/conftest.py ``embedded_pg``): templates made
once per session (:func:`template_database`) and each test's own copy of one (:func:`fresh_database`)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from tern.embedded.postgres import EmbeddedPostgres


def dsn(embedded_pg: EmbeddedPostgres, database: str) -> str:
    """The owner DSN of ``database`` on ``embedded_pg`` (trust authentication for ``postgres`` on loopback)."""
    return f"postgresql://postgres@127.0.0.1:{embedded_pg.port}/{database}"


async def admin(embedded_pg: EmbeddedPostgres, sql: str) -> None:
    """Run ``sql`` on the ``postgres`` database of ``embedded_pg`` (CREATE, ALTER, DROP DATABASE)."""
    conn = await asyncpg.connect(dsn(embedded_pg, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(embedded_pg: EmbeddedPostgres, template: str | None = None) -> AsyncIterator[str]:
    """A new database on ``embedded_pg`` (its owner DSN), dropped on exit: empty, or a copy of ``template``
    (``CREATE DATABASE ... TEMPLATE``: schema, rows, grants and default privileges; roles are cluster-wide).
    Raises what ``CREATE DATABASE`` raised (asyncpg errors), e.g. for a template that does not exist."""
    name = "t_" + uuid.uuid4().hex[:12]
    await admin(embedded_pg, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield dsn(embedded_pg, name)
    finally:
        await admin(embedded_pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def template_database(
    embedded_pg: EmbeddedPostgres,
    prefix: str,
    fill: Callable[[str], Awaitable[object]],
    template: str | None = None,
) -> str:
    """Create a database (empty, or a copy of ``template``), run ``fill(owner_dsn)`` on it, and make it a template
    nobody may connect to (a test that did would make every later copy fail: PostgreSQL copies a template only while
    it has no sessions). Returns its name, ``<prefix><8 hex>``; it lives as long as the session's server. For the
    work that many tests would otherwise repeat: the migrations, the bundled channels, a loaded logbook."""
    name = prefix + uuid.uuid4().hex[:8]
    await admin(embedded_pg, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    await fill(dsn(embedded_pg, name))
    await admin(embedded_pg, f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
    return name
