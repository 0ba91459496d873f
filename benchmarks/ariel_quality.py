"""ARIEL retrieval quality: nDCG@10 and Recall@10 of each search mode against a plain BM25 baseline (bm25s).

Corpus: the shared Osprey sample logbooks (73 entries) ingested into embedded PostgreSQL; queries and
relevance labels: ``benchmarks/ariel_queries.json``. Semantic and hybrid use the real all-MiniLM-L6-v2 model:
``--provider onnx`` (default: int8 weights on ONNX Runtime, base install) or ``--provider sentence-transformers``
(float32 on torch, extra ``embeddings``). Run:
``.venv/bin/python -m benchmarks.ariel_quality [--provider P] [--json results.json]``.

Also timed, for the provider: model load (cold start: imports and session, first in the process), the
embedding of each query (p50/p95 over the queries, each embedded alone as a search does) and hybrid search
end to end through ``ArielService`` (p50/p95).

The baseline row is bm25s's top 10 as it comes. bm25s fills a top 10 with entries that match no query term
(score 0, in index order) when fewer than 10 match; the extra row "bm25 (bm25s), score > 0" drops those, for
information only: the target is measured against the unchanged baseline. ``--bm25-k1`` changes the keyword
ranking's k1 (``tern.ariel.backends.postgres.BM25_K1``) to check how sensitive the figures are to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import bm25s

from benchmarks._common import embedded_postgres, ndcg_at_k, percentile, recall_at_k
from tern.ariel.adapters import AdapterOptions, collect
from tern.ariel.backends import postgres
from tern.ariel.embeddings import EmbeddingProvider, OnnxEmbedder, SentenceTransformerEmbedder
from tern.ariel.ingest import embed_pending, ingest_source
from tern.ariel.service import ArielService
from tern.config import TernSettings
from tern.db import create_pool

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "ariel" / "data"
NOW = datetime(2024, 3, 20, 12, 0, tzinfo=UTC)
SOURCES = [
    ("als", "als_logbook_entries.jsonl"),
    ("als", "als_sample_entries.jsonl"),
    ("jlab", "jlab_sample_entries.json"),
    ("ornl", "ornl_sample_entries.json"),
    ("generic", "generic_sample_entries.json"),
    ("demo", "demo_logbook.json"),
]
K = 10


def load_embedder(provider: str) -> tuple[EmbeddingProvider, float]:
    """The provider's bundled all-MiniLM-L6-v2 and its load time, seconds (imports included)."""
    t0 = time.perf_counter()
    emb: EmbeddingProvider = OnnxEmbedder() if provider == "onnx" else SentenceTransformerEmbedder()
    return emb, time.perf_counter() - t0


async def run(dsn: str, provider: str) -> dict[str, dict[str, float]]:
    queries = json.loads((HERE / "ariel_queries.json").read_text())["queries"]
    opts = AdapterOptions(now=NOW)
    corpus = []
    for adapter, name in SOURCES:
        entries, _ = await collect(adapter, str(DATA / name), opts)
        corpus += entries
    # Baseline: plain BM25 (bm25s defaults, English stop words) over title + text of the same entries.
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([f"{e.title}\n{e.raw_text}" for e in corpus], stopwords="en", show_progress=False),
        show_progress=False,
    )
    ids = [e.entry_id for e in corpus]

    emb, load_s = load_embedder(provider)
    embed_ms: list[float] = []
    hybrid_ms: list[float] = []
    modes = ("bm25 (bm25s)", "bm25 (bm25s), score > 0", "keyword", "semantic", "hybrid")
    results: dict[str, dict[str, list[float]]] = {m: {"ndcg": [], "recall": []} for m in modes}
    if True:
        pool = await create_pool(dsn)
        try:
            for adapter, name in SOURCES:
                await ingest_source(pool, adapter, str(DATA / name), opts)
            while (await embed_pending(pool, emb, batch_size=64)).processed:
                pass
            settings = TernSettings(
                ariel={"backend": "postgres", "embedding_provider": "none"}, llm={"provider": "none"}
            )
            service = ArielService(settings, pool, embedder=emb, llm=None)
            for q in queries:
                rel = set(q["relevant"])
                docs, scores = retriever.retrieve(
                    bm25s.tokenize([q["query"]], stopwords="en", show_progress=False), k=K, show_progress=False
                )
                rankings = {
                    "bm25 (bm25s)": [ids[int(i)] for i in docs[0]],
                    "bm25 (bm25s), score > 0": [ids[int(i)] for i, s in zip(docs[0], scores[0], strict=True) if s > 0],
                }
                t0 = time.perf_counter()
                await emb.embed([q["query"]])
                embed_ms.append(1000 * (time.perf_counter() - t0))
                for mode in ("keyword", "semantic", "hybrid"):
                    t0 = time.perf_counter()
                    resp = await service.search(q["query"], mode, K)
                    if mode == "hybrid":
                        hybrid_ms.append(1000 * (time.perf_counter() - t0))
                    assert resp.mode_used == mode, resp.notice
                    rankings[mode] = [h.entry_id for h in resp.hits]
                for mode, ranked in rankings.items():
                    results[mode]["ndcg"].append(ndcg_at_k(ranked, rel, K))
                    results[mode]["recall"].append(recall_at_k(ranked, rel, K))
        finally:
            await pool.close()
    figures: dict[str, dict[str, float]] = {
        m: {f"{k}@{K}": sum(v) / len(v) for k, v in r.items()} | {"queries": len(r["ndcg"])} for m, r in results.items()
    }
    figures["timing"] = {
        "model_load_s": load_s,
        "query_embed_p50_ms": percentile(embed_ms, 50),
        "query_embed_p95_ms": percentile(embed_ms, 95),
        "hybrid_search_p50_ms": percentile(hybrid_ms, 50),
        "hybrid_search_p95_ms": percentile(hybrid_ms, 95),
    }
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--provider", choices=("onnx", "sentence-transformers"), default="onnx")
    ap.add_argument("--bm25-k1", type=float, help="k1 of the PostgreSQL keyword ranking (sensitivity checks)")
    args = ap.parse_args()
    if args.bm25_k1 is not None:
        postgres.BM25_K1 = args.bm25_k1
    with embedded_postgres() as pg:
        figures = asyncio.run(run(pg.dsn, args.provider))
    figures["keyword"]["bm25_k1"] = postgres.BM25_K1
    timing = figures.pop("timing")
    print(f"provider {args.provider}\n| mode | nDCG@{K} | Recall@{K} |\n| --- | --- | --- |")
    for mode, f in figures.items():
        print(f"| {mode} | {f[f'ndcg@{K}']:.3f} | {f[f'recall@{K}']:.3f} |")
    print(" ".join(f"{k}={v:.3f}" for k, v in timing.items()))
    figures["timing"] = timing
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
