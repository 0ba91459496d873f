"""Embedded archiver: ingest rate, retrieval latency over HTTP against bare SQL, and a week of 1 Hz data for 10
channels through an ``archiver_read`` step's core (retrieval, artifact, summaries).

Everything real: a throwaway embedded PostgreSQL, the archiver's FastAPI app under uvicorn on loopback, the
connector over HTTP. Data: ``--channels`` channels of ``--days`` of 1 Hz samples (a bounded random walk).

- ingest: samples/s of ``ArchiveStore.append`` (COPY into a staging table, then INSERT ... ON CONFLICT DO
  NOTHING), the path of the live monitor's flushes and of the first-start history;
- retrieval: median of ``--repeats`` for one channel over 1 day and 1 week, raw and binned (``mean_60`` for a
  day, ``mean_600`` for a week), through ``ArchiverClient.get`` (HTTP, JSON encode and parse) against the same
  rows read with bare SQL (asyncpg ``fetch``);
- week x channels: ``tern.archiver.read.read_archived`` raw and auto-binned: time, samples, artifact bytes,
  and the size of what enters workflow history (the step's JSON output).

    .venv/bin/python -m benchmarks.archiver --json benchmarks/results/archiver.json
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import embedded_postgres, machine_info, print_report, serve_app, timed
from tern.archiver.binning import Binning
from tern.archiver.client import ArchiverClient
from tern.archiver.read import read_archived
from tern.archiver.server import create_app
from tern.archiver.store import ArchiveStore
from tern.config import TernSettings
from tern.db import create_pool
from tern.models.archiver import ArchiverReadInput

DAY = 86400


async def bench(dsn: str, days: int, n_channels: int, repeats: int) -> dict[str, Any]:
    pool = await create_pool(dsn, max_size=n_channels + 2)
    store = ArchiveStore(pool)
    end = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp())
    start = end - days * DAY
    names = [f"BENCH:CH{k:02d}" for k in range(n_channels)]
    rng = np.random.default_rng(1)
    ingest_s, total = 0.0, 0
    infos = []
    for name in names:
        info = await store.ensure_channel(name, prec=3, units="kW")
        infos.append(info)
        vals = np.round(np.cumsum(rng.uniform(-0.1, 0.1, days * DAY)) + 100.0, 4).tolist()
        rows = [(start + i, 0, v, 0, 0) for i, v in enumerate(vals)]
        t = time.perf_counter()
        total += await store.append(info.id, rows)
        ingest_s += time.perf_counter() - t
    await pool.execute("ANALYZE archiver_samples")

    out: dict[str, Any] = {
        "channels": n_channels,
        "days": days,
        "samples": total,
        "ingest": {"seconds": round(ingest_s, 2), "samples_per_s": round(total / ingest_s)},
        "retrieval": [],
    }
    try:
        async with serve_app(create_app(store)) as url:
            async with ArchiverClient(url, timeout_s=600) as client:
                info = infos[0]
                for label, span, binning in [
                    ("1 day raw", DAY, None),
                    ("1 day mean_60", DAY, Binning("mean", 60)),
                    ("1 week raw", 7 * DAY, None),
                    ("1 week mean_600", 7 * DAY, Binning("mean", 600)),
                ]:
                    if span > days * DAY:
                        continue
                    lo, hi = end - span, end - 1

                    async def http(lo: int = lo, hi: int = hi, b: Binning | None = binning) -> Any:
                        return await client.get(
                            info.name, datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC), b
                        )

                    async def sql(lo: int = lo, hi: int = hi, b: Binning | None = binning) -> Any:
                        return await store.read(info, lo, hi, b)

                    http_s, series = await timed(http, repeats)
                    sql_s, _ = await timed(sql, repeats)
                    out["retrieval"].append(
                        {
                            "query": label,
                            "points": len(series),
                            "http_s": round(http_s, 4),
                            "bare_sql_s": round(sql_s, 4),
                            "ratio": round(http_s / sql_s, 2),
                        }
                    )
                    print(out["retrieval"][-1], flush=True)
            settings = TernSettings(
                archiver={"url": url, "timeout_s": 900, "max_span_h": 24 * 31}, database={"url": dsn}
            )
            week = []
            for mode in ("auto", "raw"):
                inp = ArchiverReadInput(
                    workflow_id=f"bench-{mode}",
                    step_id="history",
                    channels=names,
                    start=datetime.fromtimestamp(end - min(days, 7) * DAY, UTC).isoformat(),
                    end=datetime.fromtimestamp(end - 1, UTC).isoformat(),
                    binning=mode,
                    now=datetime.fromtimestamp(end, UTC),
                )
                t = time.perf_counter()
                res = await read_archived(settings, pool, inp)
                took = time.perf_counter() - t
                week.append(
                    {
                        "binning": res.binning or "raw",
                        "seconds": round(took, 2),
                        "samples": res.samples,
                        "artifact_bytes": res.artifact_bytes,
                        "bytes_per_sample": round(res.artifact_bytes / res.samples, 2),
                        "history_bytes": len(res.model_dump_json()),
                    }
                )
                print(week[-1], flush=True)
            out["week_of_channels"] = week
    finally:
        await pool.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--channels", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    with embedded_postgres() as pg:
        result = asyncio.run(bench(pg.dsn, args.days, args.channels, args.repeats))
    result["machine"] = machine_info()
    print_report(result, Path(args.json) if args.json else None)


if __name__ == "__main__":
    main()
