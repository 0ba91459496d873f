"""Shared fixtures: real PostgreSQL (embedded), real Temporal servers, real Channel Access.

When ``TERN_REQUIRE_ALL=1`` (CI), a component that cannot start fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tern.embedded.net import free_port
from tern.embedded.postgres import EmbeddedPostgres

REQUIRE_ALL = os.environ.get("TERN_REQUIRE_ALL", "") not in ("", "0", "false")


def unavailable(what: str) -> None:
    """Skip (locally) or fail (CI, ``TERN_REQUIRE_ALL=1``) because ``what`` cannot run here."""
    if REQUIRE_ALL:
        pytest.fail(f"required test component unavailable: {what}", pytrace=False)
    pytest.skip(f"{what} (set TERN_REQUIRE_ALL=1 to make this a failure)")


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL server for the whole session, on a free loopback port."""
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port())
    try:
        pg.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        unavailable(f"embedded PostgreSQL did not start: {exc}")
    yield pg
    pg.stop()


@pytest.fixture
async def pg_dsn(embedded_pg: EmbeddedPostgres) -> AsyncIterator[str]:
    """A DSN to a fresh, empty database (dropped after the test)."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = f"postgresql://postgres@127.0.0.1:{embedded_pg.port}/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield f"postgresql://postgres@127.0.0.1:{embedded_pg.port}/{name}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
