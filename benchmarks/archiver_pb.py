"""Embedded archiver: PB/HTTP (``getData.raw``) against JSON (``getData.json``) retrieval of the same samples.

Everything real: a throwaway embedded PostgreSQL, the archiver's FastAPI app under uvicorn on loopback, httpx
over HTTP. Data: one channel of ``--samples`` 1 Hz samples (a bounded random walk, nanoseconds set, a few alarm
severities), so both formats carry the same rows. Median of ``--repeats`` for each:

- fetch: one GET until the whole body is read (the server's SQL read, encoding and transfer), samples/s;
- fetch + parse: the same GET, then the body parsed into values and timestamps by Python (JSON: ``json.loads``;
  PB: :func:`tern.archiver.pb.decode`, protobuf's upb runtime), samples/s;
- body bytes per sample.

The ratio PB/JSON of each is the figure (same machine, same run, same rows).

    .venv/bin/python -m benchmarks.archiver_pb --json benchmarks/results/archiver_pb.json   # --samples 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._common import embedded_postgres, machine_info, print_report, serve_app, timed
from tern.archiver import pb
from tern.archiver.server import create_app
from tern.archiver.store import ArchiveStore
from tern.db import create_pool


async def bench(dsn: str, n: int, repeats: int) -> dict[str, Any]:
    pool = await create_pool(dsn)
    store = ArchiveStore(pool)
    start = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
    rng = np.random.default_rng(1)
    vals = np.round(np.cumsum(rng.uniform(-0.1, 0.1, n)) + 100.0, 4).tolist()
    nanos = rng.integers(0, 1_000_000_000, n).tolist()
    sev = [2 if i % 1000 == 0 else 0 for i in range(n)]
    info = await store.ensure_channel("BENCH:PB", prec=4, units="mA")
    await store.append(info.id, [(start + i, nanos[i], vals[i], sev[i], 3 if sev[i] else 0) for i in range(n)])
    await pool.execute("ANALYZE archiver_samples")

    params = {
        "pv": info.name,
        "from": datetime.fromtimestamp(start, UTC).isoformat(),
        "to": datetime.fromtimestamp(start + n, UTC).isoformat(),
    }
    out: dict[str, Any] = {"samples": n, "repeats": repeats, "formats": {}}
    try:
        async with serve_app(create_app(store)) as url, httpx.AsyncClient(base_url=url, timeout=600) as http:

            async def get(path: str) -> bytes:
                r = await http.get(path, params=params)
                r.raise_for_status()
                return r.content

            def parse_json(body: bytes) -> tuple[list[float], list[int]]:
                data = json.loads(body)[0]["data"]
                return [d["val"] for d in data], [d["nanos"] for d in data]

            def parse_pb(body: bytes) -> tuple[list[float], list[int]]:
                samples = [s for c in pb.decode(body) for s in c.samples]
                return [s[2] for s in samples], [s[1] for s in samples]

            for name, path, parse in [
                ("json", "/retrieval/data/getData.json", parse_json),
                ("pb", "/retrieval/data/getData.raw", parse_pb),
            ]:

                async def fetch(path: str = path) -> bytes:
                    return await get(path)

                async def fetch_parse(path: str = path, parse: Any = parse) -> Any:
                    return parse(await get(path))

                fetch_s, body = await timed(fetch, repeats, warmup=1)
                both_s, (got_vals, got_nanos) = await timed(fetch_parse, repeats, warmup=1)
                if got_vals != vals or got_nanos != nanos:  # both formats must carry exactly the archived rows
                    raise SystemExit(f"{name}: the parsed samples differ from what was archived")
                out["formats"][name] = {
                    "fetch_s": round(fetch_s, 4),
                    "fetch_samples_per_s": round(n / fetch_s),
                    "fetch_parse_s": round(both_s, 4),
                    "fetch_parse_samples_per_s": round(n / both_s),
                    "bytes_per_sample": round(len(body) / n, 2),
                }
                print(name, out["formats"][name], flush=True)
        j, p = out["formats"]["json"], out["formats"]["pb"]
        out["ratio_pb_over_json"] = {
            "fetch_throughput": round(p["fetch_samples_per_s"] / j["fetch_samples_per_s"], 2),
            "fetch_parse_throughput": round(p["fetch_parse_samples_per_s"] / j["fetch_parse_samples_per_s"], 2),
            "bytes": round(p["bytes_per_sample"] / j["bytes_per_sample"], 3),
        }
    finally:
        await pool.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    with embedded_postgres() as pg:
        result = asyncio.run(bench(pg.dsn, args.samples, args.repeats))
    result["machine"] = machine_info()
    print_report(result, Path(args.json) if args.json else None)


if __name__ == "__main__":
    main()
