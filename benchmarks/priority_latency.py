"""An operator run's latency behind a queued backlog of ingestion and trigger runs, with and without Tern's
task-queue priorities (``starters.priorities``).

One dev server as ``tern up`` starts it (one partition per task queue, ``tern.embedded.stack.ONE_PARTITION``).
While no worker polls, ``--backlog`` runs are queued (half at ingestion's priority, half at a trigger's), then one
operator run; then a worker with ``--slots`` workflow-task and activity slots starts, and the operator run's time
from that moment to its result is measured. Each run is a stand-in of the same shape as Tern's work: one workflow
task, one activity of ``--work-ms`` milliseconds (CPU-free: the point is queueing), one more workflow task.
"without": every run at the server's default priority, as before. The ratio is without / with.

    python -m benchmarks.priority_latency --json benchmarks/results/priority_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
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

OPERATOR = Priority(priority_key=1, fairness_key="alice")
TRIGGER = Priority(priority_key=3, fairness_key="trigger:beam-loss")


@activity.defn
async def work(ms: int) -> None:
    """The stand-in's activity: wait ``ms`` milliseconds."""
    await asyncio.sleep(ms / 1000)


@workflow.defn
class StandIn:
    """One workflow task, one activity, one workflow task."""

    @workflow.run
    async def run(self, ms: int) -> None:
        await workflow.execute_activity(work, ms, start_to_close_timeout=timedelta(seconds=60))


async def one(env: WorkflowEnvironment, *, backlog: int, slots: int, work_ms: int, prioritized: bool) -> float:
    """Queue the backlog and the operator run, start a worker, return the operator run's latency in seconds."""
    client = env.client
    tq = f"bench-{uuid.uuid4().hex[:8]}"
    default = Priority.default
    for i in range(backlog):
        prio = (background_priority("ingest:demo") if i % 2 else TRIGGER) if prioritized else default
        await client.start_workflow(StandIn.run, work_ms, id=f"{tq}-bg-{i}", task_queue=tq, priority=prio)
    op = await client.start_workflow(
        StandIn.run, work_ms, id=f"{tq}-op", task_queue=tq, priority=OPERATOR if prioritized else default
    )
    worker = Worker(
        client,
        task_queue=tq,
        workflows=[StandIn],
        activities=[work],
        max_concurrent_workflow_tasks=slots,
        max_concurrent_activities=slots,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    async with worker:
        t0 = time.perf_counter()
        await op.result()
        return time.perf_counter() - t0


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out = await compare_latency_on_dev_server(
        lambda env, prioritized: one(
            env, backlog=args.backlog, slots=args.slots, work_ms=args.work_ms, prioritized=prioritized
        ),
        args.repeat,
    )
    return {"backlog": args.backlog, "slots": args.slots, "work_ms": args.work_ms, **out}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backlog", type=int, default=200, help="queued ingestion and trigger runs (half each)")
    ap.add_argument("--slots", type=int, default=4, help="the worker's workflow-task and activity slots")
    ap.add_argument("--work-ms", type=int, default=50, help="each run's activity, milliseconds")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args()
    finish_comparison(asyncio.run(main(a)), a.json)
