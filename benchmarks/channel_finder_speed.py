"""Channel-finder latency at 2,908, 10,000 and 100,000 channels: this tree's finder against a baseline commit's, on
the same queries, in the same run (issue 29: keyword and hybrid p95 <= 20 ms at 100,000 channels).

Queries: the 70 of ``benchmarks/channel_queries.json`` and the 106 of ``benchmarks/channel_finder_sets.yaml``
(176), each asked once per implementation and mode with ``limit=5`` through ``ChannelFinder.find`` on a pool of 4.
The two implementations alternate query by query (baseline first on even queries, this tree first on odd ones),
so a burst of load on the shared machine hits both alike; the figure to read is the ratio of this tree's p50/p95
to the baseline's. Each finder is warmed by one find first (the baseline builds its catalog then, this tree its
catalog and keyword index; that time is reported as ``warm s``, not in the percentiles).

Channels: the bundled 2,908 (``tern.channel_finder.store.ensure_bundled``) and the synthetic look-alikes of
``benchmarks.channel_finder.synthetic_records`` up to 10,000 and 100,000 (every family replicated; each labelled
channel keeps its name among the look-alikes). Hybrid fuses keyword with semantic search on pgvector's HNSW index
over vectors of the test-only ``HashingTestEmbedder`` (dimension 384): the fusion and the vector search cost what
they cost with a real model; the query embedding of a real model (MiniLM ~15 ms on these cores) is not included.

The baseline is the finder as it was at ``--baseline`` (default: the commit before issue 29's speed work), read
with ``git show`` from this repository: its ``finder.py`` and ``understanding.py`` (the rest of
``tern.channel_finder`` is this tree's, unchanged by that work). Besides latency the script compares answers:
for every query and mode, whether both return the same hit names in the same order and the same channel set.

Run: ``python -m benchmarks.channel_finder_speed [--scales 2908,10000,100000] [--baseline REV] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks._common import embedded_postgres, percentile
from benchmarks.channel_finder import synthetic_records
from benchmarks.channel_finder_sets import load_requests
from tern import DATA_DIR
from tern.ariel.embeddings import HashingTestEmbedder
from tern.channel_finder import store
from tern.channel_finder.finder import ChannelFinder
from tern.config import TernSettings
from tern.db import create_pool, migrate_dsn

HERE = Path(__file__).resolve().parent
BASELINE = "9f38289"  # main before issue 29's speed work (session 7): ranking in PostgreSQL
MODES = ("keyword", "hybrid")
LIMIT = 5


def baseline_finder(rev: str) -> type[ChannelFinder]:
    """The ``ChannelFinder`` class of ``rev``: its ``finder.py`` and ``understanding.py`` executed as modules
    ``tern_baseline_*`` (its ``resolve``/``Catalog`` swapped in for this tree's). Raises ``RuntimeError`` when
    git cannot show them (not a git checkout, or an unknown revision)."""
    root = HERE.parent
    mods: dict[str, types.ModuleType] = {}
    for name in ("understanding", "finder"):
        path = f"tern/channel_finder/{name}.py"
        res = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{path}"], capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"cannot read {path} at {rev!r}: {res.stderr.strip()}")
        mod = types.ModuleType(f"tern_baseline_{name}")
        sys.modules[mod.__name__] = mod  # dataclasses look their module up
        if name == "finder":
            u = mods["understanding"]
            exec(compile(res.stdout, f"{rev}:{path}", "exec"), mod.__dict__)
            mod.__dict__.update(Catalog=u.Catalog, Resolution=u.Resolution, resolve=u.resolve)
        else:
            exec(compile(res.stdout, f"{rev}:{path}", "exec"), mod.__dict__)
        mods[name] = mod
    cls: type[ChannelFinder] = mods["finder"].ChannelFinder
    return cls


def queries() -> list[str]:
    """The 176 benchmark queries: the 70 operator descriptions, then the 106 set requests."""
    first = [q["query"] for q in json.loads((HERE / "channel_queries.json").read_text())["queries"]]
    return first + [r["query"] for r in load_requests()]


def answer(resp: Any) -> tuple[list[str], list[str]]:
    """What a response answers: its hit names in order, and its channel set's names (``[]`` without one)."""
    cs = getattr(resp, "channel_set", None)
    return [h.name for h in resp.hits], (list(cs.names) if cs is not None else [])


async def load(dsn: str, scale: int) -> asyncpg.Pool:
    """A pool on ``dsn`` with ``scale`` channels loaded (2,908: the bundled ones; more: synthetic look-alikes)."""
    pool = await create_pool(dsn, max_size=4)
    async with pool.acquire() as conn:
        if scale == 2908:
            await store.ensure_bundled(conn, DATA_DIR / "channel_limits.json")
        else:
            await store.upsert_channels(conn, synthetic_records(scale), "synthetic")
    return pool


async def bench_scale(dsn: str, scale: int, baseline: type[ChannelFinder], qs: list[str]) -> dict[str, Any]:
    """Latency per implementation and mode at one scale, and how many answers agree."""
    t = time.perf_counter()
    pool = await load(dsn, scale)
    out: dict[str, Any] = {"load s": round(time.perf_counter() - t, 1)}
    try:
        async with pool.acquire() as conn:
            out["channels"] = await store.count_channels(conn)
        print(f"{out['channels']} channels loaded in {out['load s']} s", flush=True)
        settings = TernSettings(
            database={"url": dsn}, channels={"load_bundled": False}, ariel={"embedding_batch_size": 1000}
        )
        emb = HashingTestEmbedder(dim=384, model="hashing-384-speed")
        t = time.perf_counter()
        await ChannelFinder(settings, pool, embedder=emb).embed_pending(emb)
        out["embed s"] = round(time.perf_counter() - t, 1)
        print(f"  embedded in {out['embed s']} s", flush=True)
        for mode in MODES:
            finders = {
                "baseline": baseline(settings, pool, embedder=emb),
                "new": ChannelFinder(settings, pool, embedder=emb),
            }
            lat: dict[str, list[float]] = {k: [] for k in finders}
            res: dict[str, dict[str, Any]] = {}
            for k, f in finders.items():
                t = time.perf_counter()
                await f.find("warm up", mode, LIMIT)  # type: ignore[arg-type]
                res[k] = {"warm s": round(time.perf_counter() - t, 2)}
            same_hits = same_sets = 0
            differ: list[dict[str, Any]] = []
            for i, q in enumerate(qs):
                got = {}
                for k in ("baseline", "new") if i % 2 == 0 else ("new", "baseline"):
                    t = time.perf_counter()
                    resp = await finders[k].find(q, mode, LIMIT)  # type: ignore[arg-type]
                    lat[k].append((time.perf_counter() - t) * 1000)
                    got[k] = answer(resp)
                same_hits += got["baseline"][0] == got["new"][0]
                same_sets += got["baseline"][1] == got["new"][1]
                if got["baseline"] != got["new"]:
                    differ.append({"query": q, "baseline": got["baseline"], "new": got["new"]})
            for k in finders:
                res[k].update({"p50 ms": round(percentile(lat[k], 50), 2), "p95 ms": round(percentile(lat[k], 95), 2)})
            out[mode] = {
                **res,
                "ratio p50": round(res["new"]["p50 ms"] / res["baseline"]["p50 ms"], 3),
                "ratio p95": round(res["new"]["p95 ms"] / res["baseline"]["p95 ms"], 3),
                "same hits": same_hits,
                "same sets": same_sets,
                "queries": len(qs),
                "differ": differ,
            }
            print(f"  {mode}: {json.dumps({k: v for k, v in out[mode].items() if k != 'differ'})}", flush=True)
        return out
    finally:
        await pool.close()


def table(results: dict[str, Any]) -> str:
    """A markdown table: p50/p95 of the baseline and this tree, their ratios, and the answers that agree."""
    lines = [
        "| channels | mode | baseline p50 ms | p95 ms | this tree p50 ms | p95 ms | ratio p50 | ratio p95 | "
        "same hits | "
        "same sets |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results.values():
        for mode in MODES:
            m = r[mode]
            b, n = m["baseline"], m["new"]
            lines.append(
                f"| {r['channels']:,} | {mode} | {b['p50 ms']:.1f} | {b['p95 ms']:.1f} | {n['p50 ms']:.1f} | "
                f"{n['p95 ms']:.1f} | {m['ratio p50']:.3f} | {m['ratio p95']:.3f} | {m['same hits']}/{m['queries']} | "
                f"{m['same sets']}/{m['queries']} |"
            )
    return "\n".join(lines)


async def main(port: int, scales: list[int], rev: str) -> dict[str, Any]:
    baseline = baseline_finder(rev)
    qs = queries()
    admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    try:
        for scale in scales:
            await admin.execute(f'CREATE DATABASE "speed{scale}"')
    finally:
        await admin.close()
    results: dict[str, Any] = {"baseline": rev}
    for scale in scales:
        print(f"scale {scale}", flush=True)
        dsn = f"postgresql://postgres@127.0.0.1:{port}/speed{scale}"
        await migrate_dsn(dsn)
        results[str(scale)] = await bench_scale(dsn, scale, baseline, qs)
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="2908,10000,100000", help="comma-separated channel counts (2908: bundled)")
    ap.add_argument("--baseline", default=BASELINE, help="git revision whose finder is the baseline")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    a = ap.parse_args()
    with embedded_postgres() as pg:
        res = asyncio.run(main(pg.port, [int(s) for s in a.scales.split(",")], a.baseline))
    print(table({k: v for k, v in res.items() if k != "baseline"}))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=str) + "\n")
