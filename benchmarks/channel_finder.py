"""Channel-finder accuracy and latency: accuracy@1 and @5 on the labelled operator queries
(``benchmarks/channel_queries.json``; all, tuning half, held-out half) and latency per mode, at the bundled
2,908 channels and at a synthetic 100,000.

The 100,000 replicate the naming scheme over more devices and sectors: every family of the bundled database
gets about 34 times its devices (numbered on from its last one, with the same fields and signals; sectors
continue past 12 at the same devices per sector), so each labelled channel keeps its name and description and
gains ~97,000 look-alike neighbours ("cavity 37 forward power", "HCM 1403").

Semantic and hybrid use the real all-MiniLM-L6-v2 model (extra ``embeddings``) at 2,908 channels. At 100,000,
embedding every description with it would take over an hour and a half on the benchmark machine (about 16
descriptions a second on 2 shared cores), so ``--semantic-latency-100k`` fills the vectors with the test-only
hashing embedder at the same dimension (384) instead: that measures the pgvector HNSW search at 100,000 (plus
the MiniLM query embedding measured at 2,908), not semantic accuracy, which is then not reported.

Run: ``python -m benchmarks.channel_finder [--semantic] [--semantic-latency-100k] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks._common import embedded_postgres, percentile
from tern import DATA_DIR
from tern.ariel.embeddings import EmbeddingProvider, HashingTestEmbedder
from tern.channel_finder import store
from tern.channel_finder.finder import ChannelFinder
from tern.config import TernSettings
from tern.control.limits import LimitsDatabase
from tern.db import create_pool, migrate_dsn

HERE = Path(__file__).resolve().parent
TARGET = 100_000


def synthetic_records(target: int = TARGET) -> list[store.ChannelRecord]:
    """The bundled records plus look-alikes up to about ``target`` channels (see the module docstring)."""
    db = LimitsDatabase.load(DATA_DIR / "channel_limits.json")
    names = list(db.channels)
    sizes = store.family_sizes(names)  # the bundled sizes: sector numbering continues past 12
    signals: dict[str, set[str]] = {}
    for full in names:
        p = full.split(":")
        signals.setdefault(":".join(p[:3]), set()).add(":".join(p[4:]))
    factor = target / len(names)
    records = store.bundled_records(DATA_DIR / "channel_limits.json")
    for family, size in sorted(sizes.items()):
        gauge = family.endswith(":GAUGE")
        for n in range(size + 1, round(size * factor) + 1):
            device = f"SR{n:02d}" if gauge else f"{n:02d}"
            for sig in sorted(signals[family]):
                name = f"{family}:{device}:{sig}"
                records.append(store.record_for(name, sig.endswith(":SP"), sizes))
    return records


def accuracy(results: list[tuple[dict[str, Any], list[str]]], k: int, split: str | None = None) -> float:
    rows = [(q, names) for q, names in results if split is None or q["split"] == split]
    return sum(bool(set(names[:k]) & set(q["relevant"])) for q, names in rows) / len(rows)


async def run_mode(finder: ChannelFinder, queries: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    await finder.find("warm up", mode, 5)  # type: ignore[arg-type]
    results, latencies, misses = [], [], []
    for q in queries:
        t = time.perf_counter()
        resp = await finder.find(q["query"], mode, 5)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - t) * 1000)
        names = [h.name for h in resp.hits]
        results.append((q, names))
        if not names or names[0] not in q["relevant"]:
            misses.append({"id": q["id"], "query": q["query"], "got": names[:3], "want": q["relevant"]})
    return {
        "mode_used": resp.mode_used,
        "acc@1": accuracy(results, 1),
        "acc@5": accuracy(results, 5),
        "acc@1 tune": accuracy(results, 1, "tune"),
        "acc@1 heldout": accuracy(results, 1, "heldout"),
        "acc@5 heldout": accuracy(results, 5, "heldout"),
        "p50 ms": percentile(latencies, 50),
        "p95 ms": percentile(latencies, 95),
        "misses at 1": misses,
    }


async def load(dsn: str, records: list[store.ChannelRecord] | None) -> asyncpg.Pool:
    pool = await create_pool(dsn, max_size=4)
    async with pool.acquire() as conn:
        if records is None:
            await store.ensure_bundled(conn, DATA_DIR / "channel_limits.json")
        else:
            await store.upsert_channels(conn, records, "synthetic")
    return pool


async def embed(finder: ChannelFinder, emb: EmbeddingProvider) -> float:
    t = time.perf_counter()
    n = await finder.embed_pending(emb)
    dt = time.perf_counter() - t
    print(f"  embedded {n} descriptions with {emb.model} in {dt:.0f} s", flush=True)
    return dt


async def bench(dsn: str, scale: str, args: argparse.Namespace, queries: list[dict[str, Any]]) -> dict[str, Any]:
    records = None if scale == "2908" else synthetic_records()
    t = time.perf_counter()
    pool = await load(dsn, records)
    out: dict[str, Any] = {"load s": time.perf_counter() - t}
    try:
        async with pool.acquire() as conn:
            out["channels"] = await store.count_channels(conn)
        print(f"{out['channels']} channels loaded in {out['load s']:.1f} s", flush=True)
        settings = TernSettings(
            database={"url": dsn}, channels={"load_bundled": False}, ariel={"embedding_batch_size": 256}
        )
        finder = ChannelFinder(settings, pool, embedder=None)
        out["keyword"] = await run_mode(finder, queries, "keyword")
        emb: EmbeddingProvider | None = None
        if scale == "2908" and args.semantic:
            from tern.ariel.embeddings import SentenceTransformerEmbedder

            emb = await asyncio.to_thread(SentenceTransformerEmbedder)
        elif scale != "2908" and args.semantic_latency_100k:
            emb = HashingTestEmbedder(dim=384, model="hashing-384-latency-only")
        if emb is not None:
            finder = ChannelFinder(settings, pool, embedder=emb)
            out["embed s"] = await embed(finder, emb)
            for mode in ("semantic", "hybrid"):
                out[mode] = await run_mode(finder, queries, mode)
                if isinstance(emb, HashingTestEmbedder):
                    out[mode]["note"] = "latency only: vectors from the test hashing embedder, accuracy not meaningful"
        return out
    finally:
        await pool.close()


def table(results: dict[str, Any]) -> str:
    lines = [
        "| channels | mode | acc@1 (all 70) | acc@5 (all) | acc@1 held-out (35) | acc@5 held-out | p50 ms | p95 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for res in results.values():
        for mode in ("keyword", "semantic", "hybrid"):
            if mode not in res:
                continue
            r = res[mode]
            acc = (
                ["n/a"] * 4
                if "note" in r
                else [
                    f"{r['acc@1']:.3f}",
                    f"{r['acc@5']:.3f}",
                    f"{r['acc@1 heldout']:.3f}",
                    f"{r['acc@5 heldout']:.3f}",
                ]
            )
            lines.append(
                f"| {res['channels']:,} | {mode} | {' | '.join(acc)} | {r['p50 ms']:.1f} | {r['p95 ms']:.1f} |"
            )
    return "\n".join(lines)


async def main(port: int, args: argparse.Namespace) -> dict[str, Any]:
    queries = json.loads((HERE / "channel_queries.json").read_text())["queries"]
    results: dict[str, Any] = {}
    admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    try:
        for scale in args.scales.split(","):
            await admin.execute(f'CREATE DATABASE "ch{scale}"')
    finally:
        await admin.close()
    for scale in args.scales.split(","):
        print(f"scale {scale}", flush=True)
        await migrate_dsn(f"postgresql://postgres@127.0.0.1:{port}/ch{scale}")
        results[scale] = await bench(f"postgresql://postgres@127.0.0.1:{port}/ch{scale}", scale, args, queries)
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="2908,100000", help="comma-separated: 2908 and/or 100000")
    ap.add_argument("--semantic", action="store_true", help="semantic and hybrid with all-MiniLM-L6-v2 at 2,908")
    ap.add_argument("--semantic-latency-100k", action="store_true", help="semantic/hybrid latency at 100,000")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    a = ap.parse_args()
    with embedded_postgres() as pg:
        res = asyncio.run(main(pg.port, a))
    print(table(res))
    for scale, r in res.items():
        for mode in ("keyword", "semantic", "hybrid"):
            if mode in r and "note" not in r[mode]:
                print(f"{scale} {mode} misses at 1: {Counter(m['id'] for m in r[mode]['misses at 1']).total()}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=str) + "\n")
