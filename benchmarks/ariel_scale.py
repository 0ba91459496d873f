"""ARIEL at scale on embedded PostgreSQL: ingestion throughput against a bare COPY, and search latency against
the bare SQL the backend runs.

1. A synthetic corpus of N logbook entries (default 100,000) with accelerator-operations vocabulary.
2. Ingestion (keyword only, no embeddings), in batches of 5,000 into an empty ``ariel_entries`` with all its
   indexes: (a) bare ``COPY`` of the prepared rows; (b) ``store.upsert_entries`` (COPY into a temp table +
   ``INSERT ... ON CONFLICT``) from ``LogbookEntry`` objects; (c) the whole pipeline from an ALS JSONL file
   (parse, validate, upsert) through ``ingest_source``. Throughput (entries/s) and the fraction of (a).
3. Vectors for semantic and hybrid search through the bulk path (``ingest.embed_bulk``: HNSW index dropped,
   vectors stored, index built once): embedding and index build times.
4. Recall@10 (and @30, the candidates of a hybrid search) of the backend's HNSW semantic search against the
   exact search (``semantic_exact_sql``, every distance computed), over the benchmark's queries; strict (the
   same ids) and tie-aware (a hit counts when its distance is no larger than the k-th exact one: the
   hashing vectors of similar entries often have equal distances, and which of the tied entries is listed is
   arbitrary).
5. Search latency p50/p95 over Q queries x R repetitions: keyword via ``PostgresBackend.keyword`` against the
   same statements executed bare (captured with the backend's trace); hybrid via ``ArielService.search``
   against the keyword statements plus the pgvector statement executed bare on one connection. Backend and
   bare alternate at going first (see ``latency``). The vectors
   for hybrid come from ``HashingTestEmbedder(dim=384)`` (same dimension as all-MiniLM-L6-v2): latency of
   the SQL does not depend on what the vectors mean, and embedding 100,000 entries with the real model
   would take most of an hour on 2 cores.

6. Disk: ``pg_total_relation_size`` of the entries and the embeddings tables, and of the HNSW index.

Run: ``.venv/bin/python -m benchmarks.ariel_scale [--entries 100000] [--json out.json]``; the JSON file is
rewritten after each phase, so a long run that is stopped keeps what it measured. ``--data-dir DIR`` keeps the
cluster; ``--data-dir DIR --search-only`` later measures search again on it (new search code, no rebuild).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._common import embedded_postgres, percentile, rows_read
from tern.ariel import store
from tern.ariel.adapters import AdapterOptions
from tern.ariel.backends.postgres import (
    PostgresBackend,
    hnsw_settings_sql,
    keyword_sql,
    semantic_exact_sql,
    semantic_sql,
)
from tern.ariel.embeddings import HashingTestEmbedder
from tern.ariel.ingest import embed_bulk, ingest_source
from tern.ariel.models import LogbookEntry
from tern.ariel.service import ArielService
from tern.config import TernSettings
from tern.db import create_pool

BATCH = 5_000
SYSTEMS = {
    "RF": ["RF cavity {n}", "klystron K{n}", "circulator", "waveguide arc detector", "LLRF phase loop"],
    "Vacuum": ["ion pump IP{n}", "sector valve V{n}", "bellows", "gauge IG{n}", "vacuum chamber"],
    "Magnets": ["dipole B{n}", "quadrupole QF{n}", "sextupole SF{n}", "corrector HCM{n}", "septum magnet"],
    "Power Supplies": ["power supply PS-{n}A", "kicker pulser", "DCCT", "converter rack {n}"],
    "Diagnostics": ["BPM-{n}", "beam loss monitor BLM{n}", "scraper", "streak camera", "tune monitor"],
    "Cryogenics": ["helium compressor", "cold box", "LN2 dewar", "cryostat CT-{n}", "cold head"],
    "Controls": ["IOC sr{n}", "timing receiver", "network switch", "archiver appliance", "EPICS gateway"],
    "Insertion Devices": ["undulator U{n}", "wiggler W{n}", "gap motor", "EPU phase drive"],
}
SYMPTOMS = [
    "tripped",
    "faulted",
    "drifted",
    "showed high reflected power",
    "lost communication",
    "overheated",
    "interlocked",
    "showed a vacuum spike",
    "oscillated",
    "read back out of tolerance",
    "alarmed",
]
ACTIONS = [
    "reset from the control room",
    "replaced with a spare",
    "recalibrated",
    "retuned",
    "reconditioned",
    "bypassed pending repair",
    "cleaned and inspected",
    "adjusted by the on-call expert",
    "rebooted",
]
OUTCOMES = [
    "Beam restored",
    "Beam current back to 500 mA",
    "Injection efficiency recovered to 92%",
    "Monitoring through the next shift",
    "Work order filed for the maintenance day",
    "No beam impact",
]
AUTHORS = [f"{a}{b}" for a in "abcdefghjkmprstw" for b in ("smith", "lee", "patel", "chen", "garcia", "kim")]


def synthetic_entries(n: int, seed: int = 7) -> list[LogbookEntry]:
    """``n`` reproducible entries: one subsystem event each, with components, symptoms, actions, outcomes."""
    rnd = random.Random(seed)
    t0 = datetime(2015, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        system = rnd.choice(list(SYSTEMS))
        comp = rnd.choice(SYSTEMS[system]).format(n=rnd.randint(1, 12))
        sym, act = rnd.choice(SYMPTOMS), rnd.choice(ACTIONS)
        other = rnd.choice(SYSTEMS[rnd.choice(list(SYSTEMS))]).format(n=rnd.randint(1, 12))
        text = (
            f"At {rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d} the {comp} in sector {rnd.randint(1, 12)} "
            f"{sym}. Checked the {other}; readings nominal. The {comp} was {act}. {rnd.choice(OUTCOMES)}. "
            f"Shift lead notified; see the archiver for details of the {system.lower()} event."
        )
        out.append(
            LogbookEntry(
                entry_id=f"SYN-{i:07d}",
                source_system="als",
                timestamp=t0 + timedelta(minutes=53 * i),
                author=rnd.choice(AUTHORS),
                title=f"{comp} {sym}",
                raw_text=text,
                categories=[system, rnd.choice(["Operations", "Fault"])],
                tags=[system.lower().replace(" ", "-")],
            )
        )
    return out


def als_line(e: LogbookEntry) -> str:
    return json.dumps(
        {
            "id": e.entry_id,
            "timestamp": str(int(e.timestamp.timestamp())),
            "author": e.author,
            "subject": e.title,
            "details": e.raw_text,
            "category": ",".join(e.categories),
            "tag": e.tags[0],
            "linkedto": "0",
            "level": "entry",
        }
    )


async def _reset(conn: Any) -> None:
    await conn.execute("TRUNCATE ariel_entries CASCADE")
    await conn.execute("VACUUM ANALYZE ariel_entries")


INGEST_PATHS = ("copy", "upsert", "pipeline")


async def ingestion(pool: Any, entries: list[LogbookEntry], paths: Sequence[str] = INGEST_PATHS) -> dict[str, float]:
    """Each of ``paths`` (in ``INGEST_PATHS`` order) into an emptied table; the last one's rows stay for the
    search phases. Throughput and, with ``copy``, the fraction of it."""
    n = len(entries)
    out: dict[str, float] = {"entries": n}
    secs: dict[str, float] = {}
    for path in (p for p in INGEST_PATHS if p in paths):
        async with pool.acquire() as conn:
            await _reset(conn)
        if path == "copy":
            rows = [store.entry_row(e) for e in entries]
            async with pool.acquire() as conn:
                t = time.perf_counter()
                for i in range(0, n, BATCH):
                    await conn.copy_records_to_table(
                        "ariel_entries", records=rows[i : i + BATCH], columns=list(store.ENTRY_COLUMNS)
                    )
                secs[path] = time.perf_counter() - t
            del rows
        elif path == "upsert":
            async with pool.acquire() as conn:
                t = time.perf_counter()
                for i in range(0, n, BATCH):
                    await store.upsert_entries(conn, entries[i : i + BATCH])
                secs[path] = time.perf_counter() - t
                await store.refresh_statistics(conn)
        else:
            with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
                f.write("\n".join(als_line(e) for e in entries) + "\n")
            t = time.perf_counter()
            counts, bad = await ingest_source(pool, "als", f.name, AdapterOptions(), page_size=BATCH)
            secs[path] = time.perf_counter() - t
            await asyncio.to_thread(Path(f.name).unlink)
            assert counts.added == n and not bad
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM ariel_entries") == n
    names = {"copy": "bare_copy", "upsert": "upsert", "pipeline": "pipeline"}
    for path, sec in secs.items():
        out[f"{names[path]}_s"] = sec
        out[f"{names[path]}_per_s"] = n / sec
        if "copy" in secs and path != "copy":
            out[f"{names[path]}_fraction_of_copy"] = secs["copy"] / sec
    return out


def _queries(q: int, seed: int = 11) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(q):
        system = rnd.choice(list(SYSTEMS))
        comp = rnd.choice(SYSTEMS[system]).format(n=rnd.randint(1, 12)).split()[0]
        out.append(f"{comp} {rnd.choice(SYMPTOMS).split()[-1]}")
    return out


async def latency(pool: Any, reps: int, nq: int, limit: int = 10) -> dict[str, float]:
    """Search latency against the bare SQL, per query and repetition, in pairs: backend and bare take turns
    at going first (even repetitions: backend first; odd: bare first). Whichever runs first in a pair runs
    right after a different statement (the other mode's pair, whose HNSW scan reads more than
    shared_buffers holds) and pays for re-reading what that evicted; always running the backend first, as
    the first version of this benchmark did, charged that cost to the backend alone. The p50 of each side by
    position is reported too (``*_first_p50_ms``, ``*_second_p50_ms``) so that the effect can be seen."""
    emb = EMBEDDER
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, emb.model)
    assert table is not None
    settings = TernSettings(ariel={"backend": "postgres", "embedding_provider": "none"}, llm={"provider": "none"})
    service = ArielService(settings, pool, embedder=emb, llm=None)
    hnsw = (settings.ariel.hnsw_ef_search, settings.ariel.hnsw_max_scan_tuples)
    queries = _queries(nq)
    sides = (
        "keyword",
        "keyword_bare",
        "keyword_fusion",
        "keyword_fusion_bare",
        "semantic",
        "semantic_bare",
        "hybrid",
        "hybrid_bare",
    )
    res: dict[str, list[float]] = {k: [] for k in sides}
    by_pos: dict[str, list[float]] = {f"{k}_{p}": [] for k in sides for p in ("first", "second")}
    statements_per_search: list[int] = []
    n_cand = max(30, 3 * limit)  # keyword and semantic candidates of a hybrid search (HYBRID_CANDIDATES_MIN)

    async def timed(side: str, pos: str, call: Callable[[], Awaitable[Any]]) -> None:
        t = time.perf_counter()
        await call()
        dt = time.perf_counter() - t
        res[side].append(dt)
        by_pos[f"{side}_{pos}"].append(dt)

    async with pool.acquire() as conn:
        sem_backend = PostgresBackend(conn, ef_search=hnsw[0], max_scan_tuples=hnsw[1])  # the half of a hybrid
        for query in queries:
            trace: list[tuple[str, list[Any]]] = []
            backend = PostgresBackend(conn, trace=trace)
            await backend.keyword(query, limit=limit)  # warm-up, and capture the statements it runs
            statements = list(trace)
            statements_per_search.append(len(statements))
            hyb_trace: list[tuple[str, list[Any]]] = []
            window = settings.ariel.hybrid_keyword_window
            capture = PostgresBackend(conn, trace=hyb_trace, keyword_window=window)
            await capture.keyword(query, limit=n_cand, fusion=True)  # hybrid's keyword half: its statement
            fusion_backend = PostgresBackend(conn, keyword_window=window)
            [vec] = await emb.embed([query])
            sem = semantic_sql(table, vec, None, n_cand)

            async def keyword_backend(query: str = query, backend: PostgresBackend = backend) -> None:
                await backend.keyword(query, limit=limit)

            async def keyword_bare(statements: list[tuple[str, list[Any]]] = statements) -> None:
                for sql, args in statements:
                    await conn.fetch(sql, *args)

            async def fusion_backend_call(query: str = query, backend: PostgresBackend = fusion_backend) -> None:
                await backend.keyword(query, limit=n_cand, fusion=True)

            async def fusion_bare(hyb_trace: list[tuple[str, list[Any]]] = hyb_trace) -> None:
                for sql, args in hyb_trace:
                    await conn.fetch(sql, *args)

            async def hybrid_backend(query: str = query) -> None:
                await service.search(query, "hybrid", limit)

            async def hybrid_bare(
                hyb_trace: list[tuple[str, list[Any]]] = hyb_trace, sem: tuple[str, list[Any]] = sem
            ) -> None:
                for sql, args in hyb_trace:
                    await conn.fetch(sql, *args)
                async with conn.transaction():
                    await conn.execute(hnsw_settings_sql(n_cand, *hnsw))
                    await conn.fetch(sem[0], *sem[1])

            async def semantic_backend(vec: list[float] = vec) -> None:
                await sem_backend.semantic(vec, emb.model, None, n_cand, settings.ariel.semantic_min_similarity)

            async def semantic_bare(sem: tuple[str, list[Any]] = sem) -> None:
                async with conn.transaction():
                    await conn.execute(hnsw_settings_sql(n_cand, *hnsw))
                    await conn.fetch(sem[0], *sem[1])

            pairs: list[tuple[tuple[str, Callable[[], Awaitable[Any]]], tuple[str, Callable[[], Awaitable[Any]]]]] = [
                (("keyword", keyword_backend), ("keyword_bare", keyword_bare)),
                (("keyword_fusion", fusion_backend_call), ("keyword_fusion_bare", fusion_bare)),
                (("semantic", semantic_backend), ("semantic_bare", semantic_bare)),
                (("hybrid", hybrid_backend), ("hybrid_bare", hybrid_bare)),
            ]
            for rep in range(reps):
                for backend_side, bare_side in pairs:
                    first, second = (backend_side, bare_side) if rep % 2 == 0 else (bare_side, backend_side)
                    await timed(first[0], "first", first[1])
                    await timed(second[0], "second", second[1])
    out: dict[str, float] = {
        "queries": nq,
        "repetitions": reps,
        "hnsw_ef_search": hnsw[0],
        "hnsw_max_scan_tuples": hnsw[1],
        "keyword_statements_per_search_max": max(statements_per_search),
    }
    for k, v in res.items():
        out[f"{k}_p50_ms"] = percentile(v, 50) * 1000
        out[f"{k}_p95_ms"] = percentile(v, 95) * 1000
    for k in ("keyword", "keyword_fusion", "semantic", "hybrid"):
        out[f"{k}_p50_ratio"] = out[f"{k}_p50_ms"] / out[f"{k}_bare_p50_ms"]
        out[f"{k}_p95_ratio"] = out[f"{k}_p95_ms"] / out[f"{k}_bare_p95_ms"]
    for k, v in by_pos.items():
        out[f"{k}_p50_ms"] = percentile(v, 50) * 1000
    return out


EMBEDDER = HashingTestEmbedder(dim=384, model="bench-hashing-384")


async def embedding(pool: Any, index_memory_mb: int, index_workers: int) -> dict[str, float]:
    """Vectors for every entry through the bulk path (``embed_bulk``), then ``VACUUM ANALYZE``."""
    r = await embed_bulk(pool, EMBEDDER, batch_size=2000, index_memory_mb=index_memory_mb, index_workers=index_workers)
    async with pool.acquire() as conn:
        await conn.execute("VACUUM ANALYZE")
    return {
        "embedded": r.embedded,
        "embed_and_store_s": r.embed_s,
        "embed_and_store_per_s": r.embedded / r.embed_s if r.embed_s else 0.0,
        "hnsw_build_s": r.index_build_s,
        "index_memory_mb": index_memory_mb,
        "index_workers": index_workers,
        "hnsw_m": store.HNSW_M,
        "hnsw_ef_construction": store.HNSW_EF_CONSTRUCTION,
    }


async def recall(pool: Any, nq: int, ef_search: int | None = None) -> dict[str, float]:
    """Recall@10 and @30 of ``PostgresBackend.semantic`` (HNSW; ``ef_search``, default the settings') against
    ``semantic_exact_sql`` over the benchmark's queries: strict and tie-aware (see the module docstring)."""
    settings = TernSettings()
    if ef_search is not None:
        settings.ariel.hnsw_ef_search = ef_search
    out: dict[str, float] = {}
    exact_s: list[float] = []
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, EMBEDDER.model)
        assert table is not None
        backend = PostgresBackend(
            conn, ef_search=settings.ariel.hnsw_ef_search, max_scan_tuples=settings.ariel.hnsw_max_scan_tuples
        )
        for k in (10, 30):
            strict, tie = [], []
            for query in _queries(nq):
                [vec] = await EMBEDDER.embed([query])
                t = time.perf_counter()
                sql, sql_args = semantic_exact_sql(table, vec, None, k)
                exact = await conn.fetch(sql, *sql_args)
                exact_s.append(time.perf_counter() - t)
                hits = await backend.semantic(vec, EMBEDDER.model, limit=k, min_similarity=-1.0) or []
                kth = min(float(r["score"]) for r in exact)
                strict.append(len({r["entry_id"] for r in exact} & {h.entry_id for h in hits}) / k)
                tie.append(min(k, sum(1 for h in hits if h.score >= kth - 1e-6)) / k)
            out[f"recall_at_{k}"] = sum(strict) / len(strict)
            out[f"recall_at_{k}_tie_aware"] = sum(tie) / len(tie)
            out[f"recall_at_{k}_tie_aware_min"] = min(tie)
    out["exact_search_p50_ms"] = percentile(exact_s, 50) * 1000
    return out


TIE = 1e-4  # relative score difference counted as a tie by ``keyword_window``


async def keyword_window(pool: Any, nq: int, n: int = 30) -> dict[str, float]:
    """What hybrid's bounded keyword half (``fusion=True``, ``ariel.hybrid_keyword_window``) loses against
    ranking every match, for ``n`` candidates over the benchmark's queries: strict overlap of the ids, and
    tie-aware overlap (a windowed hit counts when its BM25 score is at least the n-th exact score, less
    ``TIE``: the synthetic entries repeat their structure, so many share a score, or differ only by a term
    that every entry holds, whose idf is ~1e-5), with the worst query; the largest relative shortfall of the
    windowed n-th score against the exact one; the entries each statement read (``rows_read``); and how many
    queries took the window (read something else than the exact statement)."""
    window = TernSettings().ariel.hybrid_keyword_window
    strict, tie, gap, read_exact, read_window = [], [], [], [], []
    async with pool.acquire() as conn:
        for query in _queries(nq):
            exact = await PostgresBackend(conn).keyword(query, limit=n)
            bounded = await PostgresBackend(conn, keyword_window=window).keyword(query, limit=n, fusion=True)
            read_exact.append(await rows_read(conn, *keyword_sql(query, None, n)))
            read_window.append(await rows_read(conn, *keyword_sql(query, None, n, window)))
            kth = min(h.score for h in exact) if len(exact) == n else float("-inf")
            strict.append(len({h.entry_id for h in exact} & {h.entry_id for h in bounded}) / max(1, len(exact)))
            tie.append(min(n, sum(1 for h in bounded if h.score >= kth * (1 - TIE))) / max(1, len(exact)))
            if exact and bounded and len(bounded) == len(exact):
                gap.append((exact[-1].score - bounded[-1].score) / exact[-1].score if exact[-1].score else 0.0)
    return {
        "window": window,
        "candidates": n,
        "queries_windowed": sum(1 for w, e in zip(read_window, read_exact, strict=True) if w != e),
        "entries_read_exact_max": max(read_exact),
        "entries_read_window_max": max(read_window),
        "overlap": sum(strict) / len(strict),
        "overlap_min": min(strict),
        "overlap_tie_aware": sum(tie) / len(tie),
        "overlap_tie_aware_min": min(tie),
        "nth_score_shortfall_max": max(gap, default=0.0),
    }


async def disk(pool: Any) -> dict[str, int]:
    """Bytes on disk: entries table (with its indexes and TOAST), embeddings table, its HNSW index, database."""
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, EMBEDDER.model)
        return {
            "entries_table_bytes": await conn.fetchval("SELECT pg_total_relation_size('ariel_entries')"),
            "embeddings_table_bytes": await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table),
            "hnsw_index_bytes": await conn.fetchval("SELECT pg_relation_size($1::regclass)", f"{table}_hnsw"),
            "database_bytes": await conn.fetchval("SELECT pg_database_size(current_database())"),
        }


async def run(
    dsn: str,
    n: int,
    reps: int,
    nq: int,
    index_memory_mb: int,
    out: Path | None = None,
    ingest_paths: Sequence[str] = INGEST_PATHS,
    search_only: bool = False,
) -> dict[str, Any]:
    """All phases; ``out`` is rewritten with the figures so far after each one. ``search_only``: the database
    already holds the entries and vectors (an earlier run's ``--data-dir``): disk, recall and latency only."""
    figures: dict[str, Any] = {"entries": n, "search_only": search_only}

    def save(phase: str, value: Any) -> None:
        figures[phase] = value
        print(json.dumps({phase: value}), flush=True)
        if out is not None:
            out.write_text(json.dumps(figures, indent=2))

    pool = await create_pool(dsn, max_size=4)
    try:
        if search_only:
            async with pool.acquire() as conn:
                stored = await conn.fetchval("SELECT count(*) FROM ariel_entries")
            if stored != n:
                raise SystemExit(f"--search-only: the database holds {stored} entries, not {n}")
        else:
            t = time.perf_counter()
            entries = synthetic_entries(n)
            save("generate_s", time.perf_counter() - t)
            save("ingestion", await ingestion(pool, entries, ingest_paths))
            del entries
            save("embedding", await embedding(pool, index_memory_mb, index_workers=1))
        save("disk", await disk(pool))
        save("recall", await recall(pool, nq))
        save("keyword_window", await keyword_window(pool, nq))
        save("latency", await latency(pool, reps, nq))
    finally:
        await pool.close()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument(
        "--index-memory-mb",
        type=int,
        default=None,
        help="maintenance_work_mem of the HNSW build, MB (default: 2.5 KB per entry, at least 1024)",
    )
    ap.add_argument(
        "--ingest",
        default=",".join(INGEST_PATHS),
        help="ingestion paths to time, comma-separated, of: copy, upsert, pipeline (the last one's rows are searched)",
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--data-dir",
        type=Path,
        help="keep the PostgreSQL cluster in DIR/data (default: a temporary directory, removed at the end)",
    )
    ap.add_argument(
        "--search-only",
        action="store_true",
        help="with --data-dir of an earlier run of the same --entries: only disk, recall and latency",
    )
    args = ap.parse_args()
    if args.search_only and not args.data_dir:
        ap.error("--search-only needs --data-dir (the cluster an earlier run built)")
    paths = [p.strip() for p in args.ingest.split(",") if p.strip()]
    if not paths or set(paths) - set(INGEST_PATHS):
        ap.error(f"--ingest: choose from {', '.join(INGEST_PATHS)}")
    memory = args.index_memory_mb or max(1024, args.entries * 25 // 10_000)
    with embedded_postgres(args.data_dir) as pg:
        figures = asyncio.run(
            run(pg.dsn, args.entries, args.reps, args.queries, memory, args.json, paths, args.search_only)
        )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
