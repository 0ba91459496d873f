"""The invariant checker (tern.audit.invariants, `tern verify`): each broken invariant is found, a clean record
passes, and the simulated IOC's put log records what it was told (real PostgreSQL, real IOC)."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import epics
import pytest

from tern.audit.invariants import IocPut, check_writes, read_put_log
from tern.audit.store import claim_write, finish_write, record_event
from tern.control.channel_access import read_value
from tern.db import create_pool
from tern.models import AuditEvent, WriteRecord
from tests.conftest import IOC_PUT_LOG

CH = "SR:MAG:QFA:14:CURRENT:SP"


def _put(value: float, processed: bool = True, channel: str = CH) -> IocPut:
    now = time.time()
    return IocPut(channel=channel, value=value, ioc_time=now, host_time=now, processed=processed)


async def _approved_write(conn: asyncpg.Connection, key: str, value: float, *, approve: bool = True) -> None:
    """A write as the activity records it: decision (when ``approve``), ledger claim, write event, done."""
    if approve:
        await record_event(
            conn,
            AuditEvent(
                event_kind="decision",
                workflow_id="r",
                event_key=f"d:{key}",
                request_id=f"q-{key}",
                actor="alice",
                decision="approved",
            ),
        )
    await claim_write(conn, key, "r", "s", CH, value)
    record = WriteRecord(
        channel=CH, previous_value=1.0, value=value, readback=value, verified=True, verification="readback"
    )
    event = AuditEvent(
        event_kind="write",
        workflow_id="r",
        event_key=f"write:{key}",
        request_id=f"q-{key}",
        channel=CH,
        value=value,
        verified=True,
    )
    await finish_write(conn, key, record, state="done", event=event)


async def test_each_broken_invariant_is_reported(settings) -> None:
    pool = await create_pool(settings.dsn)
    try:
        async with pool.acquire() as conn:
            await _approved_write(conn, "k-good", 351.0)
            await _approved_write(conn, "k-twice", 352.0)
            await _approved_write(conn, "k-unapproved", 353.0, approve=False)
            await _approved_write(conn, "k-never-put", 354.0)
            await record_event(  # the same approver's approval recorded twice under two keys
                conn,
                AuditEvent(
                    event_kind="decision",
                    workflow_id="r",
                    event_key="d:again",
                    request_id="q-k-good",
                    actor="alice",
                    decision="approved",
                ),
            )
            puts = [_put(351.0), _put(352.0), _put(352.0), _put(353.0), _put(355.0), _put(356.0, processed=False)]
            report = await check_writes(conn, puts)
    finally:
        await pool.close()
    kinds = sorted(v.kind for v in report.violations)
    assert kinds == [
        "approval_counted_twice",
        "duplicate_put",  # k-twice: two processed puts of 352
        "put_without_record",  # 355 has no ledger row (356 was not processed: not counted)
        "verified_without_put",  # k-never-put
        "write_without_approval",  # k-unapproved
    ], report.violations
    assert not report.ok and report.ledger_rows == 4 and report.verified_writes == 4 and report.ioc_puts == 6


async def test_a_clean_record_passes_and_a_reput_may_be_received_twice(settings) -> None:
    pool = await create_pool(settings.dsn)
    try:
        async with pool.acquire() as conn:
            await _approved_write(conn, "k-1", 361.0)
            await _approved_write(conn, "k-2", 362.0)
            # k-2 was re-put after its first put was dropped by the IOC: received twice, processed once
            report = await check_writes(conn, [_put(361.0), _put(362.0, processed=False), _put(362.0)])
    finally:
        await pool.close()
    assert report.ok, report.violations
    assert report.verified_writes == 2 and report.unverified_writes == 0


async def test_the_simulated_ioc_logs_every_put(settings) -> None:
    path = IOC_PUT_LOG["path"]
    before = read_value(CH)
    since = time.time()
    epics.caput(CH, before + 1.5, wait=True)
    epics.caput(CH, before, wait=True)
    await asyncio.sleep(0.2)
    puts = [p for p in read_put_log(path, since=since) if p.channel == CH]
    assert [p.value for p in puts] == [pytest.approx(before + 1.5), pytest.approx(before)]
    assert all(p.processed for p in puts)


def test_a_torn_last_line_is_skipped_and_a_bad_line_named(tmp_path) -> None:
    log = tmp_path / "puts.jsonl"
    good = json.dumps({"channel": CH, "value": 1.0, "ioc_time": 1.0, "host_time": 1.0, "processed": True})
    log.write_text(good + "\n" + '{"channel": "SR:')
    assert len(read_put_log(log)) == 1
    log.write_text('{"nope": 1}\n' + good + "\n")
    with pytest.raises(ValueError, match=r"puts\.jsonl:1: not a put record"):
        read_put_log(log)
    assert read_put_log(tmp_path / "absent.jsonl") == []


async def test_verify_counts_a_stopped_container_of_a_closed_run_as_orphan(
    pg_dsn, temporal_env, docker_backend, tmp_path, monkeypatch
) -> None:
    """`tern verify` (starters.verify_cli.collect) on a real engine and Temporal: a sandbox container that never ran
    (or stopped) but was not removed, labelled with a run that does not exist (closed), is an orphan. Before, only
    running containers were listed, and stopped leftovers were never counted."""
    import uuid

    from starters.verify_cli import collect
    from tern.sandbox.docker_backend import LABEL

    monkeypatch.setenv("TERN_DATABASE__URL", pg_dsn)
    monkeypatch.setenv("TERN_TEMPORAL__ADDRESS", temporal_env.client.service_client.config.target_host)
    monkeypatch.setenv("TERN_DATA_DIR", str(tmp_path))
    run_id = "verify-orphan-" + uuid.uuid4().hex[:8]
    container = docker_backend.client.containers.create(
        docker_backend.image, ["true"], labels={LABEL: "1", "tern.run_id": run_id}, network_mode="none"
    )
    try:
        report = await collect(None, tmp_path / "no-puts.jsonl")
    finally:
        container.remove(force=True)
    mine = [v for v in report["violations"] if v["workflow_id"] == run_id]
    assert [v["kind"] for v in mine] == ["orphan_container"], report
    assert "created" in mine[0]["detail"]
