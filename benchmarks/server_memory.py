"""Whether the embedded Temporal dev server's memory levels off as workflows accumulate (issue 13, soak follow-up)::

    .venv/bin/python -m benchmarks.server_memory --workflows 6000 --json benchmarks/results/server_memory.json

The soak measured the dev server growing with the number of runs it has seen (148 -> 278 MB over 721 runs), not
with time. This isolates the server: the stack's Temporal component alone (``EmbeddedStack.up(only=("temporal",))``,
the same ``temporal server start-dev --db-filename`` command ``tern up`` runs, file-backed SQLite) and the floor's
bare workflow (``benchmarks.floors.FloorWorkflow``, ``--k`` no-op activities) on a worker in this process, started
``--batch`` at a time until ``--workflows`` have completed. After each batch the server's resident memory is
sampled (psutil, the process and its children: ``rss`` in all and its file-backed/shared part). Reported: the
samples, and the slope in MB per 1,000 workflows over each third of the run: a slope falling towards 0 in the last
third is memory levelling off; a constant one is growth per workflow (closed workflows are kept for the namespace's
retention, so some growth per stored history is expected). Tern's own processes are not involved.
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
from pathlib import Path
from typing import Any

from benchmarks._common import print_report


def _slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope (``statistics.linear_regression``) of ``(workflows, MB)`` points in MB per 1,000
    workflows; None for fewer than 3 points (no trend to fit)."""
    if len(points) < 3:
        return None
    return round(1000 * statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope, 2)


async def _main(a: argparse.Namespace, root: Path) -> dict[str, Any]:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from benchmarks.floors import FloorWorkflow, noop
    from benchmarks.load import _environment
    from benchmarks.soak import _rss_mb
    from tern.config import TernSettings
    from tern.embedded.stack import EmbeddedStack

    os.environ.update(_environment(root))
    settings = TernSettings()
    stack = EmbeddedStack(settings, progress=lambda m: print(m, file=sys.stderr))
    try:
        await asyncio.to_thread(stack.up, ["temporal"])
        pid = {c.name: c.pid for c in stack.status().components}.get("temporal")
        client = await Client.connect(settings.temporal.address)
        queue = f"server-memory-{uuid.uuid4().hex[:6]}"
        samples: list[dict[str, Any]] = [
            {"workflows": 0, "rss_mb": _rss_mb(pid), "shared_mb": _rss_mb(pid, "shared"), "t_s": 0.0}
        ]
        t0 = time.perf_counter()
        done = 0
        async with Worker(client, task_queue=queue, workflows=[FloorWorkflow], activities=[noop]):
            while done < a.workflows:
                n = min(a.batch, a.workflows - done)
                handles = await asyncio.gather(
                    *(
                        client.start_workflow(
                            FloorWorkflow.run, args=[a.k, False], id=f"mem-{done + i}", task_queue=queue
                        )
                        for i in range(n)
                    )
                )
                await asyncio.gather(*(h.result() for h in handles))
                done += n
                sample = {
                    "workflows": done,
                    "rss_mb": _rss_mb(pid),
                    "shared_mb": _rss_mb(pid, "shared"),
                    "t_s": round(time.perf_counter() - t0, 1),
                }
                samples.append(sample)
                print(
                    f"{done} workflows: server {sample['rss_mb']} MB ({sample['shared_mb']} MB file-backed)",
                    file=sys.stderr,
                )
        third = max(1, len(samples) // 3)
        parts = {"first": samples[: third + 1], "middle": samples[third : 2 * third + 1], "last": samples[2 * third :]}
        return {
            "workflows": a.workflows,
            "batch": a.batch,
            "k": a.k,
            "load_average_at_start": os.getloadavg(),
            "rss_mb_start": samples[0]["rss_mb"],
            "rss_mb_end": samples[-1]["rss_mb"],
            "slope_mb_per_1000": {
                name: _slope([(s["workflows"], s["rss_mb"]) for s in part if s["rss_mb"] is not None])
                for name, part in parts.items()
            },
            "anonymous_slope_mb_per_1000": {
                name: _slope(
                    [
                        (s["workflows"], s["rss_mb"] - s["shared_mb"])
                        for s in part
                        if s["rss_mb"] is not None and s["shared_mb"] is not None
                    ]
                )
                for name, part in parts.items()
            },
            "samples": samples,
        }
    finally:
        await asyncio.to_thread(stack.down)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.server_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--workflows", type=int, default=6000, help="bare workflows in all (100-100000)")
    p.add_argument("--batch", type=int, default=200, help="workflows started at once (1-1000)")
    p.add_argument("--k", type=int, default=2, help="no-op activities per workflow (0-20)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if not 100 <= a.workflows <= 100_000:
        p.error(f"--workflows {a.workflows} is outside 100-100000")
    if not 1 <= a.batch <= 1000:
        p.error(f"--batch {a.batch} is outside 1-1000")
    if not 0 <= a.k <= 20:
        p.error(f"--k {a.k} is outside 0-20")
    root = Path(tempfile.mkdtemp(prefix="tern-server-memory-"))
    try:
        print_report(asyncio.run(_main(a, root)), a.json)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
