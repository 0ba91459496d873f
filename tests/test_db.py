"""Migrations on a real PostgreSQL server."""

from __future__ import annotations

import asyncpg
import pytest

from tern.db import DatabaseError, create_pool, migrate, migration_files, redact


async def test_migrations_apply_once(pg_dsn: str) -> None:
    pool = await create_pool(pg_dsn)
    try:
        async with pool.acquire() as conn:
            versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
            assert versions == [v for v, _ in migration_files()]
            assert await migrate(conn) == []  # second run applies nothing
            assert await conn.fetchval("SELECT to_regclass('audit_events')::text") == "audit_events"
    finally:
        await pool.close()


async def test_unreachable_database_names_the_dsn() -> None:
    with pytest.raises(DatabaseError, match=r"127\.0\.0\.1:1/"):
        await create_pool("postgresql://u:secret@127.0.0.1:1/x")


def test_redact_hides_password() -> None:
    assert redact("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    assert "secret" not in redact("postgresql://u:secret@h/db")


def test_bad_migration_name_is_refused(tmp_path) -> None:
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(DatabaseError, match=r"NNN_name\.sql"):
        migration_files(tmp_path)


async def test_failed_migration_leaves_nothing_half_applied(unmigrated_pg_dsn: str, tmp_path) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE b (x int); SELECT nope FROM nowhere;")
    conn = await asyncpg.connect(unmigrated_pg_dsn)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT to_regclass('b')") is None
        assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")] == [1]
    finally:
        await conn.close()
