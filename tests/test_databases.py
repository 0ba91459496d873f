"""The session's PostgreSQL (tests/conftest.py ``embedded_pg``) and its test databases (tests/databases.py): the
server gets its settings and keeps its data in memory when the machine has a tmpfs to spare; each test's database
is a new copy of its template, dropped afterwards; a template that does not exist is named in the error."""

from __future__ import annotations

import asyncpg
import pytest

from tern.embedded.postgres import EmbeddedPostgres
from tests.conftest import TEST_PG_SETTINGS, _memory_fs
from tests.databases import dsn, fresh_database, template_database


async def _fetchval(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_the_server_gets_its_settings_and_its_data_lies_in_memory_when_it_can(embedded_pg: EmbeddedPostgres):
    for name, value in TEST_PG_SETTINGS.items():
        assert await _fetchval(dsn(embedded_pg, "postgres"), f"SHOW {name}") == value
    memory = _memory_fs()
    assert (memory in embedded_pg.pgdata.parents) == (memory is not None)


async def test_each_copy_holds_the_templates_rows_and_is_dropped_after(embedded_pg: EmbeddedPostgres) -> None:
    async def fill(url: str) -> None:
        await _fetchval(url, "CREATE TABLE marks AS SELECT 1 AS n")

    template = await template_database(embedded_pg, "tern_test_marks_", fill)
    names = []
    for _ in range(2):
        async with fresh_database(embedded_pg, template) as url:
            names.append(url.rsplit("/", 1)[1])
            assert await _fetchval(url, "SELECT n FROM marks") == 1  # the template's row, not the last copy's
            await _fetchval(url, "UPDATE marks SET n = 2")
    assert len(set(names)) == 2
    left = await _fetchval(
        dsn(embedded_pg, "postgres"), f"SELECT count(*) FROM pg_database WHERE datname IN ('{names[0]}', '{names[1]}')"
    )
    assert left == 0


async def test_a_template_that_does_not_exist_is_named(embedded_pg: EmbeddedPostgres) -> None:
    with pytest.raises(asyncpg.InvalidCatalogNameError, match="no_such_template"):
        async with fresh_database(embedded_pg, "no_such_template"):
            pass
