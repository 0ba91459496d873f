"""The channel finder at 100,000 channels (issue 29): the synthetic database of the scale benchmark loads, the
in-memory keyword ranking equals PostgreSQL's on it, and set requests resolve against its ~34x larger families.
No timing is asserted (latency: benchmarks/channel_finder_speed.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from benchmarks.channel_finder import synthetic_records
from tern.channel_finder import store
from tern.channel_finder.finder import _IDF_SQL, _RANK_SQL, ChannelFinder, score_sql
from tern.channel_finder.index import idf
from tern.channel_finder.naming import query_terms
from tern.config import TernSettings
from tern.db import create_pool

pytestmark = pytest.mark.slow


@pytest.fixture
async def big(pg_dsn: str, tmp_path) -> AsyncIterator[tuple[ChannelFinder, asyncpg.Pool, list[store.ChannelRecord]]]:
    records = synthetic_records(100_000)
    pool = await create_pool(pg_dsn, max_size=4)
    async with pool.acquire() as conn:
        await store.upsert_channels(conn, records, "synthetic")
    settings = TernSettings(data_dir=tmp_path, database={"url": pg_dsn}, channels={"load_bundled": False})
    yield ChannelFinder(settings, pool, embedder=None), pool, records
    await pool.close()


def _devices(records: list[store.ChannelRecord], family: str) -> list[int]:
    """The device numbers of ``AREA:SYSTEM:FAMILY`` in the records (from the names, not from the finder)."""
    return sorted({int(r.name.split(":")[3]) for r in records if r.name.startswith(family + ":")})


async def test_100k_channels_load_and_answer_set_requests(big) -> None:
    finder, pool, records = big
    async with pool.acquire() as conn:
        n = await store.count_channels(conn)
    assert n == len(records) and n > 99_000
    hcm, bpm = _devices(records, "SR:MAG:HCM"), _devices(records, "SR:DIAG:BPM")
    assert len(hcm) > 2000 and len(bpm) > 2000
    expect = {
        "the last three horizontal corrector setpoints": [f"SR:MAG:HCM:{d:02d}:CURRENT:SP" for d in hcm[-3:]],
        "both planes of BPM 1500": ["SR:DIAG:BPM:1500:POSITION:X", "SR:DIAG:BPM:1500:POSITION:Y"],
        "setpoint and readback of horizontal corrector 2000": [
            "SR:MAG:HCM:2000:CURRENT:RB",
            "SR:MAG:HCM:2000:CURRENT:SP",
        ],
        "the fifth BPM": ["SR:DIAG:BPM:05:POSITION:X", "SR:DIAG:BPM:05:POSITION:Y"],
    }
    for query, want in expect.items():
        resp = await finder.find(query, "keyword", 5)
        assert resp.channel_set is not None, query
        assert sorted(resp.channel_set.names) == sorted(want), query
        assert [h.name for h in resp.hits[: len(want)]] == resp.channel_set.names  # the set leads


async def test_100k_keyword_ranking_equals_postgresql(big) -> None:
    """The in-memory ranking against the SQL one (every matching channel scored in PostgreSQL) at 100,000."""
    finder, pool, _ = big
    for query in ("beam current", "hcm 1403 readback", "cav 37 fwd pwr", "sector 150 vacuum pressure", "bpm"):
        async with pool.acquire() as conn:
            stats = await conn.fetch(_IDF_SQL, query_terms(query))
            weights = [(r["word"], idf(float(r["n"]), float(r["ndoc"]))) for r in stats if r["ndoc"]]
            full = await conn.fetch(_RANK_SQL.format(score=score_sql(weights)), " | ".join(w for w, _ in weights), 10)
        assert [h.name for h in await finder.keyword(query, 10)] == [r["name"] for r in full], query
