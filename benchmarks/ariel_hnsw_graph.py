"""HNSW graph parameters against recall, on the ARIEL scale benchmark's corpus (``benchmarks.ariel_scale``).

N synthetic entries (default 100,000) are upserted and embedded with ``HashingTestEmbedder(dim=384)`` through
``embed_bulk``; then, for each (m, ef_construction), the HNSW index is rebuilt (``store.build_vector_index``,
1 GB, 1 worker) and recall@10 / @30 against exact search is measured at each ef_search (``ariel_scale.recall``:
strict and tie-aware, mean and worst query). One JSON line per (graph, ef_search).

Run: ``.venv/bin/python -m benchmarks.ariel_hnsw_graph [--entries 100000] [--out results.jsonl]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from benchmarks._common import embedded_postgres
from benchmarks.ariel_scale import BATCH, EMBEDDER, recall, synthetic_entries
from tern.ariel import store
from tern.ariel.ingest import embed_bulk
from tern.db import create_pool

GRAPHS = ((16, 64), (16, 128), (24, 128), (32, 200))  # (m, ef_construction); pgvector's default first
EF_SEARCH = (200, 400)


async def run(dsn: str, n: int, nq: int, out: Path | None) -> None:
    pool = await create_pool(dsn, max_size=2)
    try:
        entries = synthetic_entries(n)
        async with pool.acquire() as conn:
            for i in range(0, n, BATCH):
                await store.upsert_entries(conn, entries[i : i + BATCH])
            await store.refresh_statistics(conn)
        table = (await embed_bulk(pool, EMBEDDER, index_memory_mb=1024)).table
        for m, efc in GRAPHS:
            async with pool.acquire() as conn:
                await store.drop_vector_index(conn, table)
                build_s = await store.build_vector_index(conn, table, 1024, 1, m, efc)
            for ef in EF_SEARCH:
                line = {"m": m, "ef_construction": efc, "build_s": build_s, "ef_search": ef}
                line |= await recall(pool, nq, ef)
                print(json.dumps(line), flush=True)
                if out is not None:
                    with out.open("a") as f:
                        f.write(json.dumps(line) + "\n")
    finally:
        await pool.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with embedded_postgres() as pg:
        asyncio.run(run(pg.dsn, args.entries, args.queries, args.out))


if __name__ == "__main__":
    main()
