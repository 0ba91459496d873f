"""The audit cannot be edited silently (issue 22): the writer and reader roles on real PostgreSQL, the hash chain
under concurrent writers, ``tern verify --audit`` as a subprocess naming an edited or a deleted row and a ledger
forged to ``done``, and CLIs refusing an unmigrated database."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tern.audit.chain import verify_chain
from tern.audit.store import claim_write, finish_write, mark_reput, record_event, release_claim
from tern.db import MIGRATIONS_DIR, READER_ROLE, WRITER_ROLE, create_pool, migrate, migrate_dsn
from tern.db.audit_chain import GENESIS
from tern.models import AuditEvent, WriteRecord
from tests.conftest import env_without_services


def as_role(dsn: str, role: str) -> str:
    """``dsn`` with its user replaced by ``role`` (the embedded server trusts loopback logins)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


def event(n: int | str, **kw: object) -> AuditEvent:
    return AuditEvent(
        event_kind=kw.pop("event_kind", "decision"),
        workflow_id="chain-run",
        event_key=kw.pop("event_key", f"ev-{n}"),
        request_id="req-1",
        actor="alice",
        decision="approved",
        comment=f"row {n}",
        details={"n": n, "proof": {"kind": "ssh", "sig": "AAAA"}, "x": 0.1},
        **kw,
    )


def tern(dsn: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, its database at ``dsn`` (as owner: writer and reader default to it)."""
    env = env_without_services(tmp_path / "data", TERN_DATABASE__URL=dsn)
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def _ids(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM audit_events ORDER BY id")]
    finally:
        await conn.close()


@pytest.fixture
async def login_roles(pg_dsn: str) -> str:
    """``pg_dsn`` migrated with the two roles allowed to log in, as ``tern up`` does on the embedded server."""
    await migrate_dsn(pg_dsn, login_roles=True)
    return pg_dsn


async def test_writer_may_only_append_to_the_audit_and_move_the_ledger(login_roles: str) -> None:
    """As ``tern_writer``: recording events and the whole ledger protocol work; UPDATE, DELETE and TRUNCATE of
    ``audit_events`` and changing a ledger row's identity columns are refused by PostgreSQL."""
    pool = await create_pool(as_role(login_roles, WRITER_ROLE), max_size=2)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == WRITER_ROLE
            assert await record_event(conn, event(1))
            assert not await record_event(conn, event(1))  # idempotent by event_key, as before
            for sql in (
                "UPDATE audit_events SET comment = 'forged'",
                "DELETE FROM audit_events",
                "TRUNCATE audit_events",
                "UPDATE write_ledger SET channel = 'X'",
                "DELETE FROM schema_migrations",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute(sql)
            # the ledger's own state moves (tern.audit.store): claim, re-put, finish; release a claim
            assert await claim_write(conn, "k1", "chain-run", "s1", "SR:X:SP", 1.0) is None
            assert await mark_reput(conn, "k1")
            record = WriteRecord(channel="SR:X:SP", previous_value=0.0, value=1.0, verified=True, verification="none")
            await finish_write(
                conn, "k1", record, state="done", event=event("w", event_kind="write", channel="SR:X:SP", value=1.0)
            )
            assert await claim_write(conn, "k2", "chain-run", "s2", "SR:X:SP", 2.0) is None
            await release_claim(conn, "k2")
            assert await conn.fetchval("SELECT state FROM write_ledger WHERE idempotency_key = 'k1'") == "done"
            assert (await verify_chain(conn)).ok
    finally:
        await pool.close()


async def test_reader_cannot_write(login_roles: str) -> None:
    pool = await create_pool(as_role(login_roles, READER_ROLE), max_size=1)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM audit_events") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await record_event(conn, event(1))
            for sql in (
                "INSERT INTO write_ledger (idempotency_key, run_id, step_id, channel, value, state)"
                " VALUES ('k', 'r', 's', 'c', 1, 'done')",
                "UPDATE write_ledger SET state = 'done'",
                "DELETE FROM audit_events",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute(sql)
    finally:
        await pool.close()


@pytest.mark.load
async def test_fifty_concurrent_writers_build_one_valid_chain(pg_dsn: str) -> None:
    """50 writers on 50 connections at once (and each event sent twice): one chain, each event once."""
    pool = await create_pool(pg_dsn, min_size=50, max_size=50)
    try:

        async def write(n: int) -> bool:
            async with pool.acquire() as conn:
                return await record_event(conn, event(n % 50))

        results = await asyncio.gather(*(write(n) for n in range(100)))
        assert sum(results) == 50
        async with pool.acquire() as conn:
            report = await verify_chain(conn)
            assert report.ok and report.rows == 50, report
            hashes = await conn.fetch("SELECT prev_hash, row_hash FROM audit_events ORDER BY id")
    finally:
        await pool.close()
    assert hashes[0]["prev_hash"] == GENESIS
    assert len({r["prev_hash"] for r in hashes}) == 50  # no fork: no two rows chained to the same predecessor


async def _three_rows(dsn: str) -> list[int]:
    pool = await create_pool(dsn, max_size=1)
    try:
        async with pool.acquire() as conn:
            for n in range(3):
                await record_event(conn, event(n))
    finally:
        await pool.close()
    return await _ids(dsn)


async def test_verify_audit_names_a_row_updated_by_hand(pg_dsn: str, tmp_path: Path) -> None:
    ids = await _three_rows(pg_dsn)
    ok = await asyncio.to_thread(tern, pg_dsn, tmp_path, "verify", "--audit", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rows"] == 3 and json.loads(ok.stdout)["first_break"] is None
    plain = await asyncio.to_thread(tern, pg_dsn, tmp_path, "verify", "--audit")
    assert plain.returncode == 0 and "3 rows" in plain.stdout, plain.stdout + plain.stderr

    conn = await asyncpg.connect(pg_dsn)  # the owner edits the middle row's comment
    try:
        await conn.execute("UPDATE audit_events SET comment = 'nothing to see' WHERE id = $1", ids[1])
    finally:
        await conn.close()
    bad = await asyncio.to_thread(tern, pg_dsn, tmp_path, "verify", "--audit", "--json")
    assert bad.returncode == 1, bad.stderr
    brk = json.loads(bad.stdout)["first_break"]
    assert (brk["id"], brk["event_key"], brk["problem"]) == (ids[1], "ev-1", "content")
    text = await asyncio.to_thread(tern, pg_dsn, tmp_path, "verify", "--audit")
    assert text.returncode == 1
    assert f"row id {ids[1]}" in text.stdout and "'ev-1'" in text.stdout and "edited" in text.stdout


async def test_verify_audit_names_the_row_after_a_deleted_one(pg_dsn: str, tmp_path: Path) -> None:
    ids = await _three_rows(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("DELETE FROM audit_events WHERE id = $1", ids[1])
    finally:
        await conn.close()
    bad = await asyncio.to_thread(tern, pg_dsn, tmp_path, "verify", "--audit", "--json")
    assert bad.returncode == 1, bad.stderr
    brk = json.loads(bad.stdout)["first_break"]
    assert (brk["id"], brk["event_key"], brk["problem"]) == (ids[2], "ev-2", "link")
    assert str(ids[0]) in brk["detail"]


async def test_verify_audit_names_a_ledger_forged_to_done(pg_dsn: str, tmp_path: Path) -> None:
    """A claim set to ``done`` by hand (no audited write) and a done write whose result was turned into a verified
    one: both named, exit 1."""
    record = WriteRecord(channel="SR:X:SP", previous_value=0.0, value=1.0, verified=False, verification="readback")
    conn = await asyncpg.connect(pg_dsn)
    try:
        await claim_write(conn, "forged", "run-f", "s1", "SR:X:SP", 5.0)
        await claim_write(conn, "real", "run-r", "s1", "SR:X:SP", 1.0)
        write = event("w", event_kind="write", event_key="write:real", channel="SR:X:SP", value=1.0, verified=False)
        await finish_write(conn, "real", record, state="done", event=write)
        await conn.execute(
            "UPDATE write_ledger SET state = 'done', result = $1::jsonb WHERE idempotency_key = 'forged'",
            record.model_copy(update={"value": 5.0, "verified": True}).model_dump_json(),
        )
        await conn.execute(
            "UPDATE write_ledger SET result = $1::jsonb WHERE idempotency_key = 'real'",
            record.model_copy(update={"verified": True}).model_dump_json(),
        )
    finally:
        await conn.close()
    out = await asyncio.to_thread(tern, pg_dsn, tmp_path, "verify", "--audit", "--json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["first_break"] is None  # the audit itself is intact: the ledger is what lies
    found = {(v["kind"], v["workflow_id"]) for v in report["violations"]}
    assert ("unrecorded_write", "run-f") in found
    assert ("ledger_audit_mismatch", "run-r") in found


async def test_cli_against_an_unmigrated_database_says_run_tern_migrate(unmigrated_pg_dsn: str, tmp_path) -> None:
    """No command migrates any more but ``tern migrate`` (and ``tern up``): the others say so, and nothing was
    created behind their back; after ``tern migrate`` they work."""
    for args in (("audit", "some-run"), ("verify", "--audit")):
        out = await asyncio.to_thread(tern, unmigrated_pg_dsn, tmp_path, *args)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "database not migrated: no schema found; run tern migrate" in out.stderr, out.stderr
    conn = await asyncpg.connect(unmigrated_pg_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('audit_events')") is None
    finally:
        await conn.close()
    migrated = await asyncio.to_thread(tern, unmigrated_pg_dsn, tmp_path, "migrate")
    assert migrated.returncode == 0 and "migrated: applied 001, 002" in migrated.stdout, migrated.stderr
    again = await asyncio.to_thread(tern, unmigrated_pg_dsn, tmp_path, "migrate")
    assert again.returncode == 0 and "schema up to date" in again.stdout
    out = await asyncio.to_thread(tern, unmigrated_pg_dsn, tmp_path, "verify", "--audit")
    assert out.returncode == 0 and "0 rows" in out.stdout, out.stdout + out.stderr


async def test_an_older_schema_is_refused_naming_the_missing_migrations(unmigrated_pg_dsn: str, tmp_path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(MIGRATIONS_DIR / "001_audit.sql", old)
    conn = await asyncpg.connect(unmigrated_pg_dsn)
    try:
        await migrate(conn, old)
    finally:
        await conn.close()
    out = await asyncio.to_thread(tern, unmigrated_pg_dsn, tmp_path, "verify", "--audit")
    assert out.returncode == 1
    assert "database not migrated: schema is older than this code (missing migrations 002," in out.stderr


async def test_rows_from_before_the_chain_are_sealed_by_the_migration(unmigrated_pg_dsn: str, tmp_path) -> None:
    """Rows recorded before the chain existed are chained by the migration that adds it, in id order; an edit made
    after that is named, and so is a row written around the chain later (never sealed silently)."""
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(MIGRATIONS_DIR / "001_audit.sql", old)
    conn = await asyncpg.connect(unmigrated_pg_dsn)
    try:
        await migrate(conn, old)
        for n in range(3):
            await conn.execute(
                "INSERT INTO audit_events (event_kind, run_id, actor, comment, details, event_key)"
                " VALUES ('decision', 'legacy', 'bob', $1, $2::jsonb, $3)",
                f"legacy {n}",
                json.dumps({"n": n}),
                f"legacy-{n}",
            )
        await migrate(conn)
        await record_event(conn, event("new"))
        report = await verify_chain(conn)
        assert report.ok and report.rows == 4, report
        await migrate(conn)  # a later migration run changes nothing
        assert (await verify_chain(conn)).head == report.head
        await conn.execute(
            "INSERT INTO audit_events (event_kind, run_id, event_key) VALUES ('decision', 'around', 'around-1')"
        )
        await migrate(conn)
        brk = (await verify_chain(conn)).first_break
        assert brk is not None and (brk.event_key, brk.problem) == ("around-1", "unhashed")
        await conn.execute("DELETE FROM audit_events WHERE event_key = 'around-1'")
        await conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE event_key = 'legacy-1'")
        brk = (await verify_chain(conn)).first_break
        assert brk is not None and (brk.event_key, brk.problem) == ("legacy-1", "content")
    finally:
        await conn.close()


def test_settings_default_the_writer_and_reader_to_the_embedded_roles_or_the_owner_url() -> None:
    from tern.config import TernSettings

    embedded = TernSettings(database={"pg_port": 5999})
    assert embedded.dsn == "postgresql://postgres@127.0.0.1:5999/tern"
    assert embedded.writer_dsn == "postgresql://tern_writer@127.0.0.1:5999/tern"
    assert embedded.reader_dsn == "postgresql://tern_reader@127.0.0.1:5999/tern"
    owner = "postgresql://owner:pw@db/tern"
    declared = TernSettings(database={"url": owner})
    assert declared.writer_dsn == declared.reader_dsn == owner
    split = TernSettings(database={"url": owner, "writer_url": "postgresql://w@db/tern", "reader_url": "r"})
    assert (split.writer_dsn, split.reader_dsn) == ("postgresql://w@db/tern", "r")
