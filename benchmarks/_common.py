"""Benchmark helpers: a throwaway embedded PostgreSQL server, an ASGI app served on loopback, timing, rank metrics,
and the JSON report."""

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
