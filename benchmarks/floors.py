"""The agent run's overheads against their floors on the same Temporal server (issue 13)::

    .venv/bin/python -m benchmarks.floors --repeat 30 --json benchmarks/results/floors.json

- **agent run vs bare workflow**: an ``AgentRunWorkflow`` with a read-only plan of ``k`` activities (``k - 1``
  ``channel_read`` steps of one channel each, then ``respond``, which runs ``compose_answer``) against a bare
  workflow running ``k`` no-op activities one after the other; start to result, seconds, p50/p95;
- **approval round trip vs bare Update**: for a write plan, the time from sending the ``decide`` Update to the
  ``write_channel`` activity starting (from the history's event time), against the round trip of an Update whose
  handler returns at once on a bare workflow.

- **throughput** (``--throughput N``): N bare workflows of ``k`` no-op activities started at once, on a bare worker
  in its own process with the Tern worker's activity slots (``worker.main.MAX_CONCURRENT_ACTIVITIES``, SDK defaults
  otherwise), against N read-only agent runs of ``k`` activities started at once on the stack's Tern worker; runs/s
  from the first start to the last result, alternated ``--throughput-rounds`` times; target: Tern within 2x of
  the floor (issue 13).

All run on one throwaway embedded stack (PostgreSQL, Temporal dev server, simulated IOC, the supervised Tern
worker); the bare workflow runs on a worker inside this process on its own task queue. Agent and bare runs are
interleaved, one at a time, so both see the same machine. Reports the ratios of the medians (target for the agent
run: <= 1.5x at p50).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():  # the workflow sandbox re-imports this module: no I/O modules inside
    from benchmarks._common import percentile, print_report

READ = "SR:RF:CAVITY:01:POWER:REV"
WRITES = [f"SR:MAG:HCM:{n:02d}:CURRENT:SP" for n in range(2, 30)]


@activity.defn(name="floor_noop")
async def noop(i: int) -> int:
    """The floor's activity: returns its argument."""
    return i


@workflow.defn(name="FloorWorkflow")
class FloorWorkflow:
    """``k`` no-op activities one after the other; an Update ``ping`` answered at once; ends on ``finish``."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self, k: int, wait_for_finish: bool) -> int:
        for i in range(k):
            await workflow.execute_activity(noop, i, start_to_close_timeout=timedelta(seconds=30))
        if wait_for_finish:
            await workflow.wait_condition(lambda: self.done)
        return k

    @workflow.update
    async def ping(self, n: int) -> int:
        return n

    @workflow.signal
    def finish(self) -> None:
        self.done = True


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 4), "p95": round(percentile(values, 95), 4), "n": len(values)}


async def _bare_worker(queue: str, slots: int) -> None:
    """The throughput floor's worker process: ``FloorWorkflow`` and ``noop`` on ``queue`` of the Temporal server at
    ``TERN_TEMPORAL__ADDRESS`` (loopback), ``slots`` activity slots, SDK defaults otherwise; runs until SIGTERM."""
    import signal

    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(os.environ["TERN_TEMPORAL__ADDRESS"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(
        client, task_queue=queue, workflows=[FloorWorkflow], activities=[noop], max_concurrent_activities=slots
    ):
        await stop.wait()


async def _all_at_once(starts: list[Any]) -> float:
    """Start every run (``starts``: coroutines returning a workflow handle) at once, wait for every result;
    returns runs per second from the first start to the last result."""
    t0 = time.perf_counter()
    handles = await asyncio.gather(*starts)
    await asyncio.gather(*(h.result() for h in handles))
    return len(handles) / (time.perf_counter() - t0)


async def _throughput(a: argparse.Namespace, tern: Any, address: str, read_plan: Any) -> dict[str, Any]:
    """Runs/s of ``a.throughput`` bare workflows (``k`` no-op activities, a worker process of its own with the Tern
    worker's activity slots) and of as many read-only agent runs of ``k`` activities, each started at once;
    alternated ``a.throughput_rounds`` times after one small warm-up round of each. Returns both lists, their
    medians and the ratio floor / Tern (target <= 2)."""
    from starters.client import run_request
    from worker.main import MAX_CONCURRENT_ACTIVITIES

    queue = f"floor-tp-{uuid.uuid4().hex[:6]}"
    # imported, not run as __main__: the workflow sandbox re-imports the workflow's module by name
    argv = ["--bare-worker", queue, "--slots", str(MAX_CONCURRENT_ACTIVITIES)]
    entry = f"from benchmarks.floors import main; main({argv!r})"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", entry, env={**os.environ, "TERN_TEMPORAL__ADDRESS": address}
    )
    client = tern.client
    n = a.throughput
    bare: list[float] = []
    agent: list[float] = []
    try:
        for r in range(a.throughput_rounds + 1):  # round 0: 5 of each, warms both workers up, not counted
            size = 5 if r == 0 else n
            rate = await _all_at_once(
                [
                    client.start_workflow(FloorWorkflow.run, args=[a.k, False], id=f"tp-bare-{r}-{j}", task_queue=queue)
                    for j in range(size)
                ]
            )
            if r:
                bare.append(round(rate, 3))
            request = run_request(user="bench", query="throughput", plan=read_plan)
            rate = await _all_at_once([tern.start_run(request, f"tp-agent-{r}-{j}") for j in range(size)])
            if r:
                agent.append(round(rate, 3))
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    floor, ours = round(statistics.median(bare), 3), round(statistics.median(agent), 3)
    return {
        "runs_at_once": n,
        "k": a.k,
        "worker_activity_slots": MAX_CONCURRENT_ACTIVITIES,
        "bare_runs_per_s": bare,
        "agent_runs_per_s": agent,
        "bare_median_runs_per_s": floor,
        "agent_median_runs_per_s": ours,
        "floor_vs_agent": round(floor / ours, 2),
    }


async def _main(a: argparse.Namespace, root: Path) -> dict[str, Any]:
    from temporalio.worker import Worker

    from benchmarks.load import _environment
    from starters.client import TernClient, run_request
    from tern.config import TernSettings
    from tern.embedded.stack import EmbeddedStack
    from tern.models import Decision, Plan
    from workflows.agent_run import AgentRunWorkflow

    os.environ.update(_environment(root))
    settings = TernSettings()
    stack = EmbeddedStack(settings, progress=lambda m: print(m, file=sys.stderr))
    try:
        await asyncio.to_thread(stack.up)  # inside the try: a stack that fails half-way up is stopped too
        tern = await TernClient.connect(settings)
        client = tern.client
        queue = f"floor-{uuid.uuid4().hex[:6]}"
        read_plan = Plan.model_validate(
            {"steps": [*({"kind": "channel_read", "channels": [READ]} for _ in range(a.k - 1)), {"kind": "respond"}]}
        )
        agent: list[float] = []
        bare: list[float] = []
        approval: list[float] = []
        update: list[float] = []
        async with Worker(client, task_queue=queue, workflows=[FloorWorkflow], activities=[noop]):
            for i in range(a.repeat + 1 if a.repeat else 0):  # the first round warms both paths up, not counted
                t0 = time.perf_counter()
                await client.execute_workflow(FloorWorkflow.run, args=[a.k, False], id=f"floor-{i}", task_queue=queue)
                t_bare = time.perf_counter() - t0
                t0 = time.perf_counter()
                handle = await tern.start_run(run_request(user="bench", query="floor", plan=read_plan), f"agent-{i}")
                await handle.result()
                t_agent = time.perf_counter() - t0
                # approval round trip: Update sent -> write_channel started
                value = round(-5 + 10 * (i / max(a.repeat, 1)), 3) + 1e-4
                plan = Plan.model_validate(
                    {"steps": [{"kind": "control_write", "channel": WRITES[i % len(WRITES)], "value": value}]}
                )
                handle = await tern.start_run(run_request(user="bench", query="floor write", plan=plan), f"write-{i}")
                st = await tern.status(handle.id)
                while st.pending is None:
                    await asyncio.sleep(0.05)
                    st = await tern.status(handle.id)
                sent = time.time()
                await handle.execute_update(
                    AgentRunWorkflow.decide, Decision(request_id=st.pending.request_id, approver="alice", approved=True)
                )
                await handle.result()
                started = None
                scheduled: dict[int, str] = {}
                async for e in handle.fetch_history_events():
                    if e.HasField("activity_task_scheduled_event_attributes"):
                        scheduled[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
                    if e.HasField("activity_task_started_event_attributes"):
                        sid = e.activity_task_started_event_attributes.scheduled_event_id
                        if scheduled.get(sid) == "write_channel":
                            started = e.event_time.ToDatetime().timestamp()
                bare_handle = await client.start_workflow(
                    FloorWorkflow.run, args=[0, True], id=f"ping-{i}", task_queue=queue
                )
                t0 = time.perf_counter()
                await bare_handle.execute_update(FloorWorkflow.ping, i)
                t_update = time.perf_counter() - t0
                await bare_handle.signal(FloorWorkflow.finish)
                if i == 0:
                    continue
                bare.append(t_bare)
                agent.append(t_agent)
                update.append(t_update)
                if started is not None:
                    approval.append(started - sent)
        report: dict[str, Any] = {"k": a.k, "repeat": a.repeat, "load_average_at_start": os.getloadavg()}
        if a.repeat:
            report |= {
                "agent_run_s": _stats(agent),
                "bare_workflow_s": _stats(bare),
                "agent_vs_bare_p50": round(percentile(agent, 50) / percentile(bare, 50), 2),
                "approval_to_write_started_s": _stats(approval),
                "bare_update_s": _stats(update),
                "approval_vs_update_p50": round(percentile(approval, 50) / percentile(update, 50), 2),
            }
        if a.throughput:
            report["throughput"] = await _throughput(a, tern, settings.temporal.address, read_plan)
        return report
    finally:
        await asyncio.to_thread(stack.down)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.floors", description=__doc__.split("\n\n")[0])
    p.add_argument("--k", type=int, default=4, help="activities per run (2-20)")
    p.add_argument("--repeat", type=int, default=30, help="measured latency rounds (0 = none, 0-500)")
    p.add_argument("--throughput", type=int, default=0, help="runs at once for the throughput floor (0 = skip, 1-1000)")
    p.add_argument("--throughput-rounds", type=int, default=2, help="alternated bare/Tern rounds (1-10)")
    p.add_argument("--bare-worker", metavar="QUEUE", help=argparse.SUPPRESS)  # the throughput floor's worker process
    p.add_argument("--slots", type=int, default=50, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if a.bare_worker:
        asyncio.run(_bare_worker(a.bare_worker, a.slots))
        return 0
    if not 2 <= a.k <= 20 or not 0 <= a.repeat <= 500:
        p.error(f"--k must be 2..20 and --repeat 0..500 (0 = no latency floors), got {a.k} and {a.repeat}")
    if not 0 <= a.throughput <= 1000 or not 1 <= a.throughput_rounds <= 10:
        p.error(
            f"--throughput must be 0..1000 and --throughput-rounds 1..10, got {a.throughput} and {a.throughput_rounds}"
        )
    if not a.repeat and not a.throughput:
        p.error("nothing to measure: give --repeat or --throughput")
    tmp = tempfile.mkdtemp(prefix="tern-floors-")
    try:
        report = asyncio.run(_main(a, Path(tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_report(report, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
