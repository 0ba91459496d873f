"""The embedded stack's bookkeeping: stale PID files are recognised (no services needed)."""

from __future__ import annotations

import os

from tern.config import TernSettings
from tern.embedded.ariel_api import database_identity, read_record
from tern.embedded.net import free_port
from tern.embedded.stack import COMPONENTS, EmbeddedStack


def test_stale_pid_files_are_reported_dead(tmp_path) -> None:
    settings = TernSettings(
        data_dir=tmp_path,
        database={"pg_port": free_port()},
        control={"ca_server_port": free_port()},
        temporal={"address": f"127.0.0.1:{free_port()}"},
    )
    stack = EmbeddedStack(settings)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "sim.pid").write_text("999999")  # no such process
    (tmp_path / "run" / "worker.pid").write_text(str(os.getpid()))  # alive, but not a Tern worker
    (tmp_path / "run" / "temporal.pid").write_text("not a pid")
    states = {c.name: (c.state, c.detail) for c in stack.status().components}
    assert set(states) == set(COMPONENTS)
    assert states["sim"][0] == "dead" and "PID file" in states["sim"][1]
    assert states["worker"][0] == "dead"
    assert states["temporal"][0] == "dead"
    assert states["postgres"][0] == "stopped"


def test_status_lists_the_worker_endpoint_urls(tmp_path) -> None:
    port = free_port()
    urls = EmbeddedStack(TernSettings(data_dir=tmp_path, worker={"http_port": port})).status().worker_urls
    assert urls == {name: f"http://127.0.0.1:{port}/{name}" for name in ("healthz", "readyz", "metrics")}
    assert EmbeddedStack(TernSettings(data_dir=tmp_path, worker={"http_port": 0})).status().worker_urls == {}


async def test_worker_is_supervised_restarted_after_sigkill_and_down_leaves_nothing(tmp_path, monkeypatch) -> None:
    """``tern up`` on free ports (the shell's TEMPORAL_* variables do not lead the stack's worker away); the
    worker connects to PostgreSQL as ``tern_writer``; its /readyz answers at the URL ``tern status`` lists;
    SIGKILL the worker: its supervisor restarts it (restart count 1, the exit reason recorded), a run completes on
    the new worker, and ``tern down`` leaves no process behind."""
    import asyncio
    import signal
    import time

    import httpx
    import psutil
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from tern.models import Plan
    from tests.agent_helpers import start_run

    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # as if the shell were set up for another cluster
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "no-such-cert.pem"))
    settings = TernSettings(
        data_dir=tmp_path / "tern",
        database={"pg_port": free_port()},
        control={"ca_server_port": free_port()},
        archiver={"port": free_port(), "backfill_days": 0.05},
        temporal={"address": f"127.0.0.1:{free_port()}", "ui_port": free_port(), "task_queue": "tq-supervised"},
        ariel={"api_port": free_port()},
        worker={"http_port": free_port()},
        stack={"worker_restart_initial_s": 0.5},
    )
    stack = EmbeddedStack(settings)
    seen: set[int] = set()
    try:
        st = await asyncio.to_thread(stack.up)
        worker = next(c for c in st.components if c.name == "worker")
        assert worker.state == "running" and worker.restarts == 0 and worker.child_pid, worker
        ariel = next(c for c in st.components if c.name == "ariel")
        record = read_record(settings.data_dir)  # which database its ARIEL API serves (`tern ariel search`)
        assert record is not None and (record.pid, record.port) == (ariel.pid, settings.ariel.api_port), record
        assert record.database == database_identity(settings.dsn) and "@localhost:" in record.database
        assert f"on {record.database}:" in ariel.detail  # tern status says which database its API serves
        archiver = next(c for c in st.components if c.name == "archiver")
        assert archiver.state == "running" and archiver.detail.endswith(
            f":{settings.archiver.port}/retrieval/data/getData.json"
        )
        import httpx

        async with httpx.AsyncClient() as http:  # the first-start history is served (archiver_backfill_days=0.05)
            r = await http.get(
                f"http://127.0.0.1:{settings.archiver.port}/retrieval/data/getData.json",
                params={"pv": "SR:RF:CAVITY:01:POWER:REV", "from": "2000-01-01T00:00:00Z"},
            )
        assert r.status_code == 200 and len(r.json()[0]["data"]) >= 0.05 * 86400 / 10 - 1
        assert st.worker_urls["readyz"] == f"http://127.0.0.1:{settings.worker.http_port}/readyz"
        async with httpx.AsyncClient(timeout=30) as http:
            ready = (await http.get(st.worker_urls["readyz"])).json()["dependencies"]
        assert ready["temporal"]["ok"] and ready["postgres"]["ok"], ready
        first = worker.child_pid
        assert first is not None and worker.pid is not None
        seen |= {worker.pid, first}
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            worker = next(c for c in stack.status().components if c.name == "worker")
            if worker.restarts == 1 and worker.child_pid and worker.child_pid != first:
                break
            assert time.monotonic() < deadline, (worker, stack._tail("worker"))
            await asyncio.sleep(0.2)
        assert worker.last_exit == "killed by SIGKILL" and "restarts: 1" in worker.detail
        seen.add(worker.child_pid)
        client = await Client.connect(settings.temporal.address, data_converter=pydantic_data_converter)
        plan = Plan.model_validate(
            {
                "steps": [
                    {"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:SP"]},
                    {"id": "answer", "kind": "respond"},
                ]
            }
        )
        handle = await start_run(client, settings, plan)
        result = await asyncio.wait_for(handle.result(), timeout=90)
        assert result.status == "completed", (result.error, stack._tail("worker", 40))
        # `up` migrated and the worker connects as the insert-only role, not as the owner (issue 22)
        import asyncpg

        owner = await asyncpg.connect(settings.dsn)
        try:
            users = {
                r["usename"] for r in await owner.fetch("SELECT usename FROM pg_stat_activity WHERE datname = 'tern'")
            }
        finally:
            await owner.close()
        assert "tern_writer" in users, users
        assert settings.writer_dsn.startswith("postgresql://tern_writer@")
    finally:
        await asyncio.to_thread(stack.down)
    assert all(c.state == "stopped" for c in stack.status().components)
    assert read_record(settings.data_dir) is None
    left = [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not left, left
    marker = str(tmp_path)
    strays = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []) or marker in str(
                (p.info["environ"] or {}).get("TERN_DATA_DIR", "")
            ):
                strays.append((p.pid, p.info["cmdline"]))
        except psutil.Error:
            pass
    assert not strays, strays
