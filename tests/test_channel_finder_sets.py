"""The set benchmark's labels (benchmarks/channel_finder_sets.yaml) and the finder's channel sets (issue 29)."""

from __future__ import annotations

import json
from collections import Counter

from benchmarks.channel_finder_sets import CLASSES, load_requests, r_precision, set_scores
from tern import DATA_DIR


def test_every_expected_channel_exists_and_every_class_is_covered() -> None:
    limits = json.loads((DATA_DIR / "channel_limits.json").read_text())
    reqs = load_requests()
    assert len(reqs) >= 100
    missing = [(r["id"], n) for r in reqs for n in r["expected"] if n not in limits]
    assert missing == []
    assert set(Counter(r["class"] for r in reqs)) == set(CLASSES)
    assert min(Counter(r["class"] for r in reqs).values()) >= 20
    assert sum(len(r["expected"]) > 1 for r in reqs) >= 25  # multi-channel sets included
    assert len({r["id"] for r in reqs}) == len(reqs) and len({r["query"] for r in reqs}) == len(reqs)


def test_scorer_arithmetic() -> None:
    assert set_scores({"a", "b"}, {"b", "c", "d"}) == (0.5, 1 / 3, 2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert set_scores(set(), {"a"}) == (0.0, 0.0, 0.0)
    assert r_precision(["x", "a", "b", "c"], {"a", "b", "c"}) == 2 / 3
