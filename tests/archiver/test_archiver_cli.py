"""``tern archiver get`` as a subprocess against the embedded archiver's HTTP server: JSON, CSV, table; exit 2
for bad input (unknown channel, reversed or unparsable range, too long a span, unknown operator); exit 1 when
the archiver does not answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tern.archiver.store import ArchiveStore
from tern.db import create_pool
from tern.embedded.net import free_port
from tests.archiver.helpers import RunningServer
from tests.conftest import env_without_services

pytestmark = pytest.mark.postgres
T0 = 1_800_000_000 - 1_800_000_000 % 3600  # 2027-01-15T08:00:00Z
CH = "TEST:CLI"


@pytest.fixture
async def server(pg_dsn: str) -> AsyncIterator[RunningServer]:
    pool = await create_pool(pg_dsn)
    store = ArchiveStore(pool)
    info = await store.ensure_channel(CH, prec=1, units="A")
    await store.append(info.id, [(T0 + i, 0, 100.0 + i, 0, 0) for i in range(600)])
    srv = RunningServer(store)
    await srv.start()
    yield srv
    await srv.stop()
    await pool.close()


async def tern(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = env_without_services(
        tmp_path, TERN_ARCHIVER__URL=url, TERN_ARCHIVER__ATTEMPTS="2", TERN_ARCHIVER__TIMEOUT_S="2"
    )
    cmd = [sys.executable, "-m", "starters.cli", "archiver", "get", *args]
    return await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True, timeout=120)


async def test_json_csv_and_table(server: RunningServer, tmp_path: Path) -> None:
    span = ["--from", "2027-01-15T08:00:00Z", "--to", "2027-01-15T08:00:02Z"]
    js = await tern(tmp_path, server.url, CH, *span, "--json")
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout) == [
        {
            "meta": {"name": CH, "PREC": "1", "EGU": "A"},
            "data": [{"secs": T0 + i, "nanos": 0, "val": 100.0 + i, "severity": 0, "status": 0} for i in range(3)],
        }
    ]
    csv = await tern(tmp_path, server.url, CH, *span, "--csv")
    assert csv.stdout.splitlines() == [
        "channel,time,secs,nanos,value,severity,status",
        *(f"{CH},2027-01-15T08:00:0{i}.000Z,{T0 + i},0,{100.0 + i},0,0" for i in range(3)),
    ]
    table = await tern(
        tmp_path, server.url, CH, "--from", "2027-01-15T08:00Z", "--to", "2027-01-15T09:00Z", "--binning", "mean_300"
    )
    assert table.returncode == 0 and "mean_300" in table.stdout and "249.5" in table.stdout  # mean of the first bin


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NO:SUCH", "--from", "2027-01-15T08:00Z", "--to", "2027-01-15T09:00Z"], "'NO:SUCH' is not archived"),
        ([CH, "--from", "2027-01-16T08:00Z", "--to", "2027-01-16T09:00Z"], "no archived sample between"),
        ([CH, "--from", "2027-01-15T09:00Z", "--to", "2027-01-15T08:00Z"], "reversed"),
        ([CH, "--range", "the other day"], "cannot read"),
        ([CH, "--range", "last 400 d"], "exceeds the maximum"),
        ([CH, "--range", "last 1 h", "--binning", "avg_60"], "unknown binning operator 'avg'"),
        ([CH], "a time range is required"),
    ],
)
async def test_bad_input_exits_2(server: RunningServer, tmp_path: Path, args: list[str], message: str) -> None:
    proc = await tern(tmp_path, server.url, *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and not proc.stdout


async def test_archiver_down_exits_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = await tern(tmp_path, url, CH, "--range", "last 1 h")
    assert proc.returncode == 1 and f"archiver at {url} did not answer after 2 attempts" in proc.stderr
