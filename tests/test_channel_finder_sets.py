"""The set benchmark's labels (benchmarks/channel_finder_sets.yaml) and the finder's channel sets (issue 29)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

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


def test_every_heldout_channel_exists_and_no_heldout_request_repeats_a_tuning_one() -> None:
    """The held-out file (benchmarks/channel_finder_heldout.yaml) names real channels, covers every class, and
    shares no phrasing with the tuning set (else its F1 would not be held out)."""
    limits = json.loads((DATA_DIR / "channel_limits.json").read_text())
    reqs = load_requests(Path(__file__).resolve().parents[1] / "benchmarks" / "channel_finder_heldout.yaml")
    assert len(reqs) >= 30
    assert [(r["id"], n) for r in reqs for n in r["expected"] if n not in limits] == []
    assert set(CLASSES) <= {r["class"] for r in reqs}
    assert len({r["id"] for r in reqs}) == len(reqs) and len({r["query"] for r in reqs}) == len(reqs)
    raw = (Path(__file__).resolve().parents[1] / "benchmarks" / "channel_finder_heldout.yaml").read_text()
    lines = [ln.split("query:", 1)[1].strip().strip('"') for ln in raw.splitlines() if ln.startswith("  query:")]
    assert lines == [r["query"] for r in reqs]  # nothing cut by YAML (an unquoted " #" starts a comment)
    tuning = {r["query"].lower() for r in load_requests()}
    assert [r["query"] for r in reqs if r["query"].lower() in tuning] == []


def test_scorer_arithmetic() -> None:
    assert set_scores({"a", "b"}, {"b", "c", "d"}) == (0.5, 1 / 3, 2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert set_scores(set(), {"a"}) == (0.0, 0.0, 0.0)
    assert r_precision(["x", "a", "b", "c"], {"a", "b", "c"}) == 2 / 3


# --- the finder on real PostgreSQL ------------------------------------------------------------------------
import asyncio  # noqa: E402

import pytest  # noqa: E402

from tern.ariel.embeddings import HashingTestEmbedder  # noqa: E402
from tern.channel_finder.finder import ChannelFinder  # noqa: E402
from tern.channel_finder.understanding import Catalog, resolve  # noqa: E402
from tern.config import TernSettings  # noqa: E402
from tern.db import create_pool  # noqa: E402

# The issue's examples and the set each means (derived from the naming hierarchy, as the benchmark's labels).
_M = "SR:MAG"
ISSUE_EXAMPLES = {
    "the third vertical corrector": [f"{_M}:VCM:03:CURRENT:RB"],
    "the eighth defocusing quadrupole": [f"{_M}:QD:08:CURRENT:RB"],
    "the fifth BPM": ["SR:DIAG:BPM:05:POSITION:X", "SR:DIAG:BPM:05:POSITION:Y"],
    "the last three horizontal corrector setpoints": [f"{_M}:HCM:{n}:CURRENT:SP" for n in (70, 71, 72)],
    "the last six SR BPM positions": [f"SR:DIAG:BPM:{n}:POSITION:{p}" for n in range(67, 73) for p in "XY"],
    "both planes": None,  # no device: not a set the finder can be sure of
    "all signals for the third focusing quadrupole": [
        f"{_M}:QF:03:{leaf}"
        for leaf in ("CURRENT:GOLDEN", "CURRENT:RB", "CURRENT:SP", "STATUS:FAULT", "STATUS:ON", "STATUS:READY")
    ],
    "all ion pump signals for the sector 4 pump": [
        f"SR:VAC:ION-PUMP:04:{leaf}"
        for leaf in ("CURRENT:RB", "PRESSURE:RB", "STATUS:FAULT", "STATUS:ON", "VOLTAGE:RB", "VOLTAGE:SP")
    ],
    "the first dipole readback in the storage and booster ring": [
        "BR:MAG:DIPOLE:01:CURRENT:RB",
        f"{_M}:DIPOLE:01:CURRENT:RB",
    ],
    "achromat-arc focusing quad 9": [f"{_M}:QFA:09:CURRENT:RB"],
    "the second harmonic focusing sextupole": [f"{_M}:SHF:02:CURRENT:RB"],
    "defocusing sextupole 10": [f"{_M}:SD:10:CURRENT:RB"],
    "sector three vacuum pressure": ["SR:VAC:GAUGE:SR03:PRESSURE:RB"],
    "is the 5th SR valve open right now?": ["SR:VAC:VALVE:05:POSITION:OPEN"],
    "BPM 33 vertical position": ["SR:DIAG:BPM:33:POSITION:Y"],
    "klystron 2 high voltage setpoint": ["SR:RF:KLYSTRON:02:VOLTAGE:SP"],
}


@pytest.fixture
def pg_dsn(channels_dsn: str) -> str:
    """The bundled channels already loaded (a copy of the session's ``channels_template``)."""
    return channels_dsn


@pytest.fixture
async def pool(pg_dsn: str):
    p = await create_pool(pg_dsn, max_size=10)
    yield p
    await p.close()


@pytest.fixture
def settings(pg_dsn: str, tmp_path: Path) -> TernSettings:
    return TernSettings(data_dir=tmp_path, database={"url": pg_dsn})


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
async def test_the_issue_examples_return_their_exact_sets_first(settings, pool, mode) -> None:
    emb = HashingTestEmbedder(dim=64, model="test-hashing-sets") if mode == "hybrid" else None
    finder = ChannelFinder(settings, pool, embedder=emb)
    for query, want in ISSUE_EXAMPLES.items():
        resp = await finder.find(query, mode, 5)
        assert resp.mode_used == mode
        if want is None:
            assert resp.channel_set is None, query
            continue
        assert resp.channel_set is not None, query
        assert sorted(resp.channel_set.names) == sorted(want), query
        assert resp.channel_set.count == len(want)
        assert resp.channel_set.kind == ("one" if len(want) == 1 else "several")
        assert [h.name for h in resp.hits[: len(want)]] == resp.channel_set.names  # the set leads
        assert all(h.in_set for h in resp.hits[: len(want)]) and not any(h.in_set for h in resp.hits[len(want) :])
        assert len(resp.hits) == max(5, len(want))  # alternatives fill up to the limit


@pytest.mark.load
async def test_fifty_concurrent_finds_build_one_catalog_and_agree(settings, pool) -> None:
    finder = ChannelFinder(settings, pool, embedder=None)
    queries = list(k for k, v in ISSUE_EXAMPLES.items() if v)
    resps = await asyncio.gather(*(finder.find(queries[i % len(queries)], "keyword", 3) for i in range(50)))
    for i, resp in enumerate(resps):
        assert resp.channel_set is not None
        assert sorted(resp.channel_set.names) == sorted(ISSUE_EXAMPLES[queries[i % len(queries)]] or [])


def _catalog(families: dict[str, int], aliases: str = "") -> Catalog:
    rows = [
        ("SR", "MAG", fam, f"{d:02d}", "CURRENT", sig, aliases)
        for fam, n in families.items()
        for d in range(1, n + 1)
        for sig in ("SP", "RB")
    ]
    return Catalog.from_rows(rows)


def test_positions_follow_the_instances_the_database_has() -> None:
    # 80 correctors, not 72: "the last three" are 78-80, sector 2 holds devices 7*2-... by 80 // 12: no numbering
    cat = _catalog({"HCM": 84})
    res = resolve("the last three horizontal corrector setpoints", cat)
    assert res is not None and res.names == [f"SR:MAG:HCM:{n}:CURRENT:SP" for n in (82, 83, 84)]
    res = resolve("sector 2 HCM readbacks", cat)  # 84 devices: 7 a sector, sector 2 is 8-14
    assert res is not None and res.names == [f"SR:MAG:HCM:{n:02d}:CURRENT:RB" for n in range(8, 15)]
    assert resolve("the ninetieth horizontal corrector", cat) is None  # no such ordinal word: no digit
    assert resolve("HCM 85 setpoint", cat) is None  # no such device: not a set


def test_family_names_are_data_of_the_database_not_code() -> None:
    cat = _catalog({"QX7": 4}, aliases="wiggler trim quad,trim quadrupole")
    res = resolve("wiggler trim quad 3 setpoint", cat)
    assert res is not None and res.names == ["SR:MAG:QX7:03:CURRENT:SP"] and res.confidence == 1.0
    assert resolve("wiggler trim quad 3 setpoint", _catalog({"QX7": 4})) is None  # without the data: unknown


def test_the_planner_and_a_later_read_see_the_set_apart_from_the_alternatives() -> None:
    from tern.models.channel_finder import ChannelHit
    from tern.models.run import StepResult
    from tern.planning import REGISTRY
    from workflows.run_reads import _meant

    hits = [
        ChannelHit(name="SR:MAG:HCM:70:CURRENT:SP", description="HCM 70 setpoint", units="A", in_set=True),
        ChannelHit(name="SR:MAG:HCM:71:CURRENT:SP", description="HCM 71 setpoint", units="A", in_set=True),
        ChannelHit(name="SR:MAG:HCM:69:CURRENT:SP", description="HCM 69 setpoint", units="A"),
    ]
    found = StepResult(step_id="find", kind="channel_find", status="completed", channels=hits)
    text = REGISTRY.summarise(found)
    assert text.startswith("find (channel_find, completed): the request means these 2: SR:MAG:HCM:70:CURRENT:SP") or (
        "the request means these 2: SR:MAG:HCM:70:CURRENT:SP (HCM 70 setpoint, A); SR:MAG:HCM:71" in text
    )
    assert text.endswith("| alternatives: SR:MAG:HCM:69:CURRENT:SP (HCM 69 setpoint, A)")
    assert [h.name for h in _meant(hits)] == ["SR:MAG:HCM:70:CURRENT:SP", "SR:MAG:HCM:71:CURRENT:SP"]
    old = [h.model_copy(update={"in_set": False}) for h in hits]  # a history from before sets: every hit
    assert _meant(old) == old
