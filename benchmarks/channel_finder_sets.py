"""Channel-finder set benchmark (issue 29): does the finder return the exact set of channels a request means?

Requests: ``benchmarks/channel_finder_sets.yaml`` (106 operator requests over the bundled 2,908 channels in five
classes: ordinal, set, family, sector, single; each with its exact expected set). For each request and mode the
finder is asked with ``limit=100`` and scored on:

- **set precision / recall / F1** of the *returned set*: the response's ``channel_set`` (the channels the finder
  says the request means) when it gives one, else its first hit alone (a finder without sets answers "the"
  channel);
- **R-precision**: the share of the expected set among the first R hits (R = the set's size; Manning, Raghavan and
  Schuetze, "Introduction to Information Retrieval", 8.4).

Means per class and mode. Hybrid fuses keyword with semantic search on the test-only hashing embedder
(``HashingTestEmbedder``, dimension 384): it measures what fusion does to the keyword answer, not the quality of a
real embedding model (``benchmarks/channel_finder.py --semantic`` has that).

The held-out requests (``benchmarks/channel_finder_heldout.yaml``: 48 written after the understanding code and
committed before they were scored, with a sixth class, ``yesno``) are scored the same way with ``--requests``.

Run: ``python -m benchmarks.channel_finder_sets [--modes keyword,hybrid] [--requests FILE] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import embedded_postgres
from tern import DATA_DIR
from tern.ariel.embeddings import HashingTestEmbedder
from tern.channel_finder import store
from tern.channel_finder.finder import ChannelFinder
from tern.config import TernSettings
from tern.db import create_pool

HERE = Path(__file__).resolve().parent
CLASSES = ("ordinal", "set", "family", "sector", "single")


def load_requests(path: Path = HERE / "channel_finder_sets.yaml") -> list[dict[str, Any]]:
    """The labelled requests: dicts with ``id``, ``class``, ``query``, ``expected`` (list of channel names)."""
    reqs: list[dict[str, Any]] = yaml.safe_load(path.read_text())["requests"]
    return reqs


def set_scores(returned: set[str], expected: set[str]) -> tuple[float, float, float]:
    """Precision, recall and F1 of a returned set against the expected one (0 when either is empty)."""
    hit = len(returned & expected)
    p = hit / len(returned) if returned else 0.0
    r = hit / len(expected) if expected else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def r_precision(ranked: list[str], expected: set[str]) -> float:
    """Share of ``expected`` among the first ``len(expected)`` of ``ranked``."""
    return len(set(ranked[: len(expected)]) & expected) / len(expected)


def returned_set(resp: Any) -> set[str]:
    """The set a response commits to: its ``channel_set`` names when it has one, else its first hit."""
    cs = getattr(resp, "channel_set", None)
    if cs is not None and cs.names:
        return set(cs.names)
    return {resp.hits[0].name} if resp.hits else set()


async def score(finder: ChannelFinder, requests: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Per-request and per-class scores of one mode."""
    rows = []
    for req in requests:
        resp = await finder.find(req["query"], mode, 100)  # type: ignore[arg-type]
        expected = set(req["expected"])
        ranked = [h.name for h in resp.hits]
        got = returned_set(resp)
        p, r, f1 = set_scores(got, expected)
        rows.append(
            {"id": req["id"], "class": req["class"], "p": p, "r": r, "f1": f1, "rprec": r_precision(ranked, expected),
             "exact": got == expected, "returned": sorted(got), "from_set": resp.channel_set is not None}
        )  # fmt: skip
    by_class: dict[str, dict[str, float]] = {}
    extra = sorted({x["class"] for x in rows} - set(CLASSES))
    for cls in (*[c for c in CLASSES if any(x["class"] == c for x in rows)], *extra, "all"):
        sel = [x for x in rows if cls in ("all", x["class"])]
        by_class[cls] = {
            "n": len(sel),
            **{k: round(sum(x[k] for x in sel) / len(sel), 3) for k in ("p", "r", "f1", "rprec")},
            "exact": sum(x["exact"] for x in sel),
            "from_set": sum(x["from_set"] for x in sel),  # answered by the understood set, not the first hit
        }
    return {"classes": by_class, "requests": rows}


async def run(dsn: str, modes: list[str], requests: Path = HERE / "channel_finder_sets.yaml") -> dict[str, Any]:
    """Load the bundled database into ``dsn`` and score each mode on the requests in ``requests``."""
    pool = await create_pool(dsn, max_size=4)
    try:
        async with pool.acquire() as conn:
            await store.ensure_bundled(conn, DATA_DIR / "channel_limits.json")
        settings = TernSettings(database={"url": dsn})
        out = {}
        for mode in modes:
            emb = HashingTestEmbedder(dim=384, model="hashing-384-bench") if mode != "keyword" else None
            finder = ChannelFinder(settings, pool, embedder=emb)
            out[mode] = await score(finder, load_requests(requests), mode)
        return out
    finally:
        await pool.close()


def table(results: dict[str, Any]) -> str:
    """A markdown table: set F1 (precision/recall), R-precision and exact sets per class and mode."""
    lines = [
        "| mode | class | n | set P | set R | set F1 | R-precision | exact sets | answered by a set |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, res in results.items():
        for cls, s in res["classes"].items():
            lines.append(
                f"| {mode} | {cls} | {s['n']} | {s['p']:.2f} | {s['r']:.2f} | {s['f1']:.2f} | {s['rprec']:.2f} | "
                f"{s['exact']}/{s['n']} | {s['from_set']}/{s['n']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="keyword,hybrid", help="comma-separated: keyword, semantic, hybrid")
    ap.add_argument("--requests", type=Path, default=HERE / "channel_finder_sets.yaml", help="labelled requests")
    ap.add_argument("--json", type=Path, help="write the per-request results here")
    a = ap.parse_args()
    with embedded_postgres() as pg:
        res = asyncio.run(run(pg.dsn, a.modes.split(","), a.requests))
    print(table(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
