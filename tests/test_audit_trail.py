"""``tern audit RUN_ID`` shows the run's own events and those of its python steps (child workflows
``RUN_ID.STEP``), in time order: on real PostgreSQL, through the store and through the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tern.audit.store import events_for_run, record_event
from tern.db import Conn, create_pool
from tern.embedded.net import free_port
from tern.models import AuditEvent

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 3, 20, 12, 0, tzinfo=UTC)

# (run_id, event_kind, minutes after T0); inserted in this order, so ids do not follow time.
ROWS = [
    ("run_1", "approval_requested", 5),  # the write request, after the child's code approval
    ("run_1", "decision", 6),
    ("run_1", "write", 7),
    ("run_1.analyse", "approval_requested", 1),
    ("run_1.analyse", "decision", 2),
    ("run_10", "decision", 3),  # another run whose id merely starts with "run_1"
    ("runX1.analyse", "decision", 3),  # "_" is not a wildcard
    ("run_1x.analyse", "decision", 3),  # a child of run_1x, not of run_1
]


async def _seed(conn: Conn) -> None:
    for n, (workflow_id, kind, minutes) in enumerate(ROWS):
        await record_event(
            conn,
            AuditEvent(
                event_kind=kind, workflow_id=workflow_id, event_key=f"k{n}", actor="operator", comment=f"row {n}"
            ),
        )
        await conn.execute(
            "UPDATE audit_events SET occurred_at = $1 WHERE event_key = $2", T0 + timedelta(minutes=minutes), f"k{n}"
        )


async def test_events_for_run_include_children_in_time_order(pg_dsn: str) -> None:
    pool = await create_pool(pg_dsn)
    try:
        async with pool.acquire() as conn:
            await _seed(conn)
            rows = await events_for_run(conn, "run_1")
            assert [(r["run_id"], r["event_kind"]) for r in rows] == [
                ("run_1.analyse", "approval_requested"),
                ("run_1.analyse", "decision"),
                ("run_1", "approval_requested"),
                ("run_1", "decision"),
                ("run_1", "write"),
            ]
            child = await events_for_run(conn, "run_1.analyse")
            assert [r["event_kind"] for r in child] == ["approval_requested", "decision"]
    finally:
        await pool.close()


async def test_cli_audit_shows_child_rows_with_their_id(pg_dsn: str, tmp_path) -> None:
    pool = await create_pool(pg_dsn)
    try:
        async with pool.acquire() as conn:
            await _seed(conn)
    finally:
        await pool.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TERN_DATA_DIR": str(tmp_path),
        "TERN_DATABASE__URL": pg_dsn,
        "TERN_TEMPORAL__ADDRESS": f"127.0.0.1:{free_port()}",
        "COLUMNS": "200",
    }

    def tern(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "starters.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    as_json = await asyncio.to_thread(tern, "audit", "run_1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert [r["run_id"] for r in json.loads(as_json.stdout)] == ["run_1.analyse"] * 2 + ["run_1"] * 3
    table = await asyncio.to_thread(tern, "audit", "run_1")
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if "2024-03-20" in line]
    assert len(lines) == 5 and ".analyse" in lines[0] and ".analyse" in lines[1] and ".analyse" not in lines[2]
