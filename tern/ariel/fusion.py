"""Reciprocal rank fusion (Cormack, Clarke and Buettcher, "Reciprocal rank fusion outperforms Condorcet and
individual rank learning methods", SIGIR 2009): score(d) = sum over rankings r of 1 / (k + rank_r(d)), ranks
counted from 1, k = 60 by default."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from tern.models import LogbookHit

K = TypeVar("K", bound=Hashable)


def rrf_scores(rankings: Sequence[Sequence[K]], k: int = 60) -> list[tuple[K, float]]:
    """Fuse ranked lists of ids by RRF: ``(id, score)`` best first; ties keep first-seen order. ``k`` must be
    positive (``ValueError``). The channel finder fuses channel names with it; :func:`rrf` fuses logbook hits."""
    if k <= 0:
        raise ValueError(f"RRF k must be positive, got {k}")
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def rrf(rankings: Sequence[Sequence[LogbookHit]], k: int = 60, limit: int | None = None) -> list[LogbookHit]:
    """Fuse ranked hit lists by RRF; each fused hit keeps the first-seen fields (highlights of every list are
    united) and takes the RRF sum as its score. Ties keep first-list order. ``k`` must be positive."""
    if k <= 0:
        raise ValueError(f"RRF k must be positive, got {k}")
    scores: dict[str, float] = {}
    hits: dict[str, LogbookHit] = {}
    order: dict[str, int] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.entry_id] = scores.get(hit.entry_id, 0.0) + 1.0 / (k + rank)
            if hit.entry_id not in hits:
                hits[hit.entry_id] = hit.model_copy(deep=True)
                order[hit.entry_id] = len(order)
            else:
                known = hits[hit.entry_id]
                known.highlights += [h for h in hit.highlights if h not in known.highlights]
                if "**" not in known.snippet and "**" in hit.snippet:
                    known.snippet = hit.snippet
    ranked = sorted(hits, key=lambda i: (-scores[i], order[i]))
    out = []
    for i in ranked[:limit] if limit is not None else ranked:
        h = hits[i]
        h.score = scores[i]
        out.append(h)
    return out
