"""An operator run's latency while long work holds activity slots, with and without Tern's long-work queue
(``workflows.queues``: python steps' children, ingestion and re-embedding on ``<queue>-long`` with slots of their
own).

One dev server as ``tern up`` starts it (one partition per task queue, ``tern.embedded.stack.ONE_PARTITION``).
``--backlog`` runs are queued, half ingestion-like (one
activity of ``--long-ms`` milliseconds, ingestion's priority; on the long-work queue "with", on the main queue
"without") and half trigger-like (one activity of ``--work-ms``, a trigger's priority, main queue). Then a worker
with ``--slots`` activity slots polls the main queue ("with": a second one with ``--slots`` more polls the
long-work queue, as ``worker.main.TernWorker`` does). Once every
slot that ingestion may take is busy with it, one operator run (priority 1, one ``--work-ms`` activity) starts on
the main queue and its time from start to result is measured. Task-queue priorities are on in both: they order
the queued tasks, but cannot free a slot that long work holds. The ratio is without / with.

    PYTHONPATH=$PWD python -m benchmarks.slot_latency --json benchmarks/results/slot_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import Priority
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from benchmarks._common import compare_latency_on_dev_server, finish_comparison
from starters.priorities import background_priority
from workflows.queues import long_queue

OPERATOR = Priority(priority_key=1, fairness_key="alice")
TRIGGER = Priority(priority_key=3, fairness_key="trigger:beam-loss")
LONG_RUNNING: dict[str, int] = {}  # task queue -> long activities in progress
BUSY = asyncio.Event()
BUSY_AT = 0


@activity.defn
async def work(ms: int) -> None:
    """A stand-in activity: wait ``ms`` milliseconds (CPU-free: the point is slots, not cores)."""
    await asyncio.sleep(ms / 1000)


@activity.defn
async def long_work(ms: int) -> None:
    """The ingestion stand-in's activity: counts itself while it holds its slot, then waits ``ms``."""
    LONG_RUNNING["n"] = LONG_RUNNING.get("n", 0) + 1
    if LONG_RUNNING["n"] >= BUSY_AT:
        BUSY.set()
    try:
        await asyncio.sleep(ms / 1000)
    finally:
        LONG_RUNNING["n"] -= 1


@workflow.defn
class StandIn:
    """One workflow task, one activity (the long one when ``long``), one workflow task."""

    @workflow.run
    async def run(self, ms: int, long: bool) -> None:
        act = long_work if long else work
        await workflow.execute_activity(act, ms, start_to_close_timeout=timedelta(seconds=600))


async def one(
    env: WorkflowEnvironment, *, backlog: int, slots: int, long_ms: int, work_ms: int, separate: bool
) -> float:
    """Start the workers and the backlog, wait until ingestion holds every slot it may take, then return the
    operator run's latency in seconds."""
    global BUSY_AT
    client = env.client
    tq = f"bench-{uuid.uuid4().hex[:8]}"
    lq = long_queue(tq) if separate else tq
    BUSY.clear()
    LONG_RUNNING["n"] = 0
    BUSY_AT = slots

    def worker(queue: str) -> Worker:
        return Worker(
            client,
            task_queue=queue,
            workflows=[StandIn],
            activities=[work, long_work],
            max_concurrent_activities=slots,
            workflow_runner=UnsandboxedWorkflowRunner(),
        )

    async with contextlib.AsyncExitStack() as stack:
        for i in range(backlog):  # queued before any worker polls, so the long activities start together
            if i % 2:
                await client.start_workflow(
                    StandIn.run,
                    args=[long_ms, True],
                    id=f"{tq}-ingest-{i}",
                    task_queue=lq,
                    priority=background_priority("ingest:demo"),
                )
            else:
                await client.start_workflow(
                    StandIn.run, args=[work_ms, False], id=f"{tq}-trigger-{i}", task_queue=tq, priority=TRIGGER
                )
        await stack.enter_async_context(worker(tq))
        if separate:
            await stack.enter_async_context(worker(lq))
        await asyncio.wait_for(BUSY.wait(), 120)
        t0 = time.perf_counter()
        op = await client.start_workflow(
            StandIn.run, args=[work_ms, False], id=f"{tq}-op", task_queue=tq, priority=OPERATOR
        )
        await op.result()
        latency = time.perf_counter() - t0
        async for wf in client.list_workflows(f'TaskQueue = "{tq}" OR TaskQueue = "{lq}"'):
            if wf.status is not None and wf.status.name == "RUNNING":
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(wf.id).terminate("benchmark done")
    return latency


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out = await compare_latency_on_dev_server(
        lambda env, separate: one(
            env,
            backlog=args.backlog,
            slots=args.slots,
            long_ms=args.long_ms,
            work_ms=args.work_ms,
            separate=separate,
        ),
        args.repeat,
    )
    return {"backlog": args.backlog, "slots": args.slots, "long_ms": args.long_ms, "work_ms": args.work_ms, **out}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backlog", type=int, default=200, help="queued ingestion and trigger runs (half each)")
    ap.add_argument("--slots", type=int, default=4, help="activity slots of each worker")
    ap.add_argument("--long-ms", type=int, default=10000, help="each ingestion run's activity, milliseconds")
    ap.add_argument("--work-ms", type=int, default=50, help="each trigger's and the operator's activity, ms")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args()
    finish_comparison(asyncio.run(main(a)), a.json)
