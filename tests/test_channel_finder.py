"""The channel finder on real PostgreSQL: the bundled database, keyword/semantic/hybrid search, hierarchy
navigation, imports (ChannelFinder JSON, CSV; good and bad input), and 50 concurrent finds on one pool."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tern import DATA_DIR
from tern.ariel.embeddings import HashingTestEmbedder
from tern.channel_finder import store
from tern.channel_finder.finder import ChannelFinder
from tern.channel_finder.importing import ChannelImportError, read_channel_file
from tern.channel_finder.naming import query_terms
from tern.config import TernSettings
from tern.control.limits import LimitsDatabase
from tern.db import create_pool
from tern.embedded.postgres import EmbeddedPostgres
from tests.databases import fresh_database


@pytest.fixture
def pg_dsn(channels_dsn: str) -> str:
    """This module's databases hold the bundled channels already; the tests of the first load use
    :func:`bare_dsn`."""
    return channels_dsn


@pytest.fixture
async def bare_dsn(embedded_pg: EmbeddedPostgres, pg_template: str) -> AsyncIterator[str]:
    """A migrated database with no channels loaded."""
    async with fresh_database(embedded_pg, template=pg_template) as dsn:
        yield dsn


@pytest.fixture
async def pool(pg_dsn: str):
    p = await create_pool(pg_dsn, max_size=10)
    yield p
    await p.close()


@pytest.fixture
def settings(pg_dsn: str, tmp_path: Path) -> TernSettings:
    return TernSettings(data_dir=tmp_path, database={"url": pg_dsn})


@pytest.fixture
async def finder(settings: TernSettings, pool: asyncpg.Pool) -> ChannelFinder:
    f = ChannelFinder(settings, pool, embedder=None)
    await f.ensure_loaded()
    return f


async def top(finder: ChannelFinder, query: str, mode: str = "keyword", n: int = 5) -> list[str]:
    return [h.name for h in (await finder.find(query, mode, n)).hits]  # type: ignore[arg-type]


async def test_bundled_database_loads_once_with_writability_from_the_limits(bare_dsn: str, tmp_path: Path) -> None:
    settings = TernSettings(data_dir=tmp_path, database={"url": bare_dsn})
    pool = await create_pool(bare_dsn)
    try:
        first = ChannelFinder(settings, pool, embedder=None)
        counts = await first.ensure_loaded()
        assert counts is not None and counts.added == 2908
        assert await ChannelFinder(settings, pool, embedder=None).ensure_loaded() is None  # same content: no reload
        async with pool.acquire() as conn:
            assert await store.count_channels(conn) == 2908
            assert await conn.fetchval("SELECT count(*) FROM channels WHERE writable") == 396
            row = await conn.fetchrow("SELECT * FROM channels WHERE name = 'SR:RF:CAVITY:01:POWER:REV'")
    finally:
        await pool.close()
    assert row is not None and row["units"] == "kW" and not row["writable"]
    assert "RF cavity 1" in row["description"] and "reflected" in row["description"]
    assert (row["system"], row["family"], row["device"], row["field"], row["signal"]) == (
        "RF",
        "CAVITY",
        "01",
        "POWER",
        "REV",
    )


def test_query_terms_expand_operator_abbreviations() -> None:
    assert query_terms("cav 1 fwd pwr") == ["cavity", "1", "forward", "power"]
    assert query_terms("cav1 temp") == ["cavity", "1", "temperature"]
    assert query_terms("HCM in sector 03") == ["horizontal", "corrector", "sector3"]
    assert query_terms("the second cavity's voltage") == ["2", "cavity", "voltage"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("forward power of the first RF cavity", "SR:RF:CAVITY:01:POWER:FWD"),
        ("stored beam current", "SR:DIAG:DCCT:01:CURRENT:RB"),
        ("vacuum pressure reading in sector 7", "SR:VAC:GAUGE:SR07:PRESSURE:RB"),
        ("horizontal steering magnet 2 of sector 4, setpoint", "SR:MAG:HCM:20:CURRENT:SP"),
    ],
)
async def test_find_by_paraphrase(finder: ChannelFinder, query: str, expected: str) -> None:
    assert (await top(finder, query))[0] == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("cav 2 refl pwr", "SR:RF:CAVITY:02:POWER:REV"),
        ("vcm 12 sp", "SR:MAG:VCM:12:CURRENT:SP"),
        ("kly 1 hv sp", "SR:RF:KLYSTRON:01:VOLTAGE:SP"),
        ("bpm 9 x", "SR:DIAG:BPM:09:POSITION:X"),
    ],
)
async def test_find_by_abbreviation(finder: ChannelFinder, query: str, expected: str) -> None:
    assert (await top(finder, query))[0] == expected


async def test_exact_name_comes_first_and_typos_fall_back_to_trigrams(finder: ChannelFinder) -> None:
    assert (await top(finder, "SR:MAG:QF:03:CURRENT:RB"))[0] == "SR:MAG:QF:03:CURRENT:RB"
    typo = await top(finder, "klystorn")  # no term matches: pg_trgm similarity to the descriptions
    assert typo and all(":KLYSTRON:" in n for n in typo)


async def test_bad_find_arguments_are_refused(finder: ChannelFinder) -> None:
    with pytest.raises(ValueError, match="unknown channel search mode"):
        await finder.find("x", "fuzzy", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        await finder.find("cavity", "keyword", 0)
    with pytest.raises(ValueError, match="blank"):
        await finder.find("   ", "keyword", 5)


async def test_semantic_without_a_provider_degrades_to_keyword_with_a_notice(finder: ChannelFinder) -> None:
    for mode in ("semantic", "hybrid"):
        resp = await finder.find("cav 1 fwd pwr", mode, 3)
        assert resp.mode_used == "keyword" and "no embedding provider" in resp.notice
        assert resp.hits[0].name == "SR:RF:CAVITY:01:POWER:FWD"


async def test_semantic_and_hybrid_with_an_embedder_use_pgvector(settings, pool) -> None:
    """The hashing embedder (word overlap, tests only) exercises embedding, storage and the HNSW search."""
    f = ChannelFinder(settings, pool, embedder=HashingTestEmbedder(dim=256))
    sem = await f.find("cavity 2 reflected power", "semantic", 5)
    assert sem.mode_used == "semantic" and not sem.notice
    assert "SR:RF:CAVITY:02:POWER:REV" in [h.name for h in sem.hits]
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, "test-hashing-64")
        assert table is not None
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2908
    hyb = await f.find("cavity 2 reflected power", "hybrid", 5)
    assert hyb.mode_used == "hybrid" and hyb.hits[0].name == "SR:RF:CAVITY:02:POWER:REV"
    assert hyb.hits[0].score == pytest.approx(2 / 61, rel=1e-3)  # first in both rankings: 1/(60+1) twice


async def test_hierarchy_navigation_level_by_level(finder: ChannelFinder) -> None:
    root = await finder.children("")
    assert [(n.segment, n.level) for n in root] == [("BR", "area"), ("BTS", "area"), ("SR", "area")]
    assert sum(n.channels for n in root) == 2908
    rf = await finder.children("SR:RF")
    assert [(n.path, n.level, n.channels) for n in rf] == [
        ("SR:RF:CAVITY", "family", 28),
        ("SR:RF:KLYSTRON", "family", 12),
    ]
    assert rf[0].description == "RF cavity"
    devices = await finder.children("SR:RF:CAVITY")
    assert [n.segment for n in devices] == ["01", "02"] and devices[0].level == "device"
    leaves = await finder.children("SR:RF:CAVITY:01:POWER")
    assert [n.segment for n in leaves] == ["FWD", "NET", "REV"]
    assert all(n.leaf and n.level == "signal" and n.channels == 1 for n in leaves)
    assert "reflected" in leaves[2].description
    with pytest.raises(ValueError, match="no channels under 'XX:RF'; the top level is: BR, BTS, SR"):
        await finder.children("XX:RF")


CF_EXPORT = """[
  {"name": "LN:GUN:HV:VOLT", "owner": "cf-admin",
   "properties": [{"name": "description", "value": "Electron gun high voltage, cathode potential", "owner": "x"},
                  {"name": "aliases", "value": "gun HV, GUNHV"},
                  {"name": "EGU", "value": "kV"},
                  {"name": "system", "value": "LINAC"}, {"name": "device", "value": "GUN"}],
   "tags": [{"name": "aliased", "owner": "x"}]},
  {"name": "SR:RF:CAVITY:01:VOLTAGE:SP", "owner": "cf-admin",
   "properties": [{"name": "description", "value": "Main RF cavity 1 gap voltage setpoint"}], "tags": []}
]
"""


async def test_import_channelfinder_json_is_an_idempotent_upsert(finder: ChannelFinder, pool, tmp_path) -> None:
    path = tmp_path / "cf.json"
    path.write_text(CF_EXPORT)
    records = read_channel_file(path, LimitsDatabase.load(DATA_DIR / "channel_limits.json"))
    gun, cav = records
    assert gun.aliases == ["gun HV", "GUNHV"] and gun.units == "kV" and gun.path == "LINAC:GUN" and not gun.writable
    assert gun.tags == ["aliased"] and gun.properties == {"owner": "cf-admin"}
    assert cav.writable and cav.description == "Main RF cavity 1 gap voltage setpoint"  # writable: limits db
    async with pool.acquire() as conn:
        first = await store.upsert_channels(conn, records, "import:cf.json")
        again = await store.upsert_channels(conn, records, "import:cf.json")
    assert (first.added, first.updated) == (1, 1)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)
    assert (await top(finder, "gunhv"))[0] == "LN:GUN:HV:VOLT"  # by alias
    assert (await top(finder, "cathode potential of the electron gun"))[0] == "LN:GUN:HV:VOLT"  # by description
    assert [n.path for n in await finder.children("LINAC")] == ["LINAC:GUN"]


async def test_import_csv_with_header_and_aliases(finder: ChannelFinder, pool, tmp_path) -> None:
    path = tmp_path / "channels.csv"
    path.write_text('name,description,aliases\nLN:KLY:01:PWR,"Linac klystron 1 output power, peak",LK1P\n\n')
    [rec] = read_channel_file(path)
    assert rec.aliases == ["LK1P"] and rec.description == "Linac klystron 1 output power, peak"
    async with pool.acquire() as conn:
        await store.upsert_channels(conn, [rec], "import:channels.csv")
    assert (await top(finder, "LK1P"))[0] == "LN:KLY:01:PWR"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.json", '[\n  {"name": "A:B"},\n  {"name": "A:C",\n   "properties": [}\n]', "line 4: not valid JSON"),
        ("b.json", '[\n {"name": "A:B"},\n\n {"owner": "x"}\n]', "line 4: channel name must be"),
        ("c.json", '{"name": "A:B"}', "line 1: expected a JSON list"),
        ("d.json", '[{"name": "A:B"},\n {"name": "A:B"}]', "line 2: channel 'A:B' already given on line 1"),
        ("e.json", '[{"name": "A:B", "properties": [{"value": 1}]}]', "line 1: channel 'A:B': each property"),
        ("f.csv", "name,description\nA:B,first\nA:C\n", "line 3: channel 'A:C' has no description"),
        ("g.csv", "A:B,ok\nbad name;drop,desc\n", "line 2: channel name must be"),
        ("h.csv", "name,description\n", "no channels in the file"),
    ],
)
def test_import_bad_input_names_the_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ChannelImportError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        read_channel_file(path)
    assert str(path) in str(exc.value)


@pytest.mark.load
async def test_fifty_concurrent_finds_on_one_pool(settings, pool) -> None:
    """One finder (as one worker holds), 50 finds at once over a 10-connection pool, first use included: the
    bundled database is loaded once and every find answers correctly."""
    f = ChannelFinder(settings, pool, embedder=None)
    queries = [(f"vcm {n} sp", f"SR:MAG:VCM:{n:02d}:CURRENT:SP") for n in range(1, 51)]
    results = await asyncio.wait_for(asyncio.gather(*(f.find(q, "keyword", 3) for q, _ in queries)), 120)
    assert [r.hits[0].name for r in results] == [want for _, want in queries]
    async with pool.acquire() as conn:
        assert await store.count_channels(conn) == 2908
        assert json.loads(json.dumps(await conn.fetchval("SELECT channels FROM channel_sources"))) == 2908


@pytest.mark.load
async def test_fifty_concurrent_hybrid_finds_on_one_pool_answer_as_one_at_a_time(settings, pool) -> None:
    """Hybrid runs its vector search beside the snapshot check (two connections a find): 50 at once over a
    10-connection pool, first use included (snapshot built and channels embedded once), give the answers the
    same finder gives them one by one afterwards, and each leads with the set the request names."""
    f = ChannelFinder(settings, pool, embedder=HashingTestEmbedder(dim=64, model="hashing-64-fifty"))
    queries = [f"setpoint and readback of vcm {n}" for n in range(1, 51)]
    together = await asyncio.wait_for(asyncio.gather(*(f.find(q, "hybrid", 3) for q in queries)), 180)
    for n, (q, r) in enumerate(zip(queries, together, strict=True), start=1):
        assert r.mode_used == "hybrid", r.notice
        want = [f"SR:MAG:VCM:{n:02d}:CURRENT:RB", f"SR:MAG:VCM:{n:02d}:CURRENT:SP"]
        assert r.channel_set is not None and sorted(r.channel_set.names) == want, q
        assert sorted(h.name for h in r.hits[:2]) == want
        alone = await f.find(q, "hybrid", 3)
        assert [h.name for h in alone.hits] == [h.name for h in r.hits], q


async def test_worker_start_loads_the_bundled_database_and_a_changed_limits_file_reloads(
    bare_dsn: str, tmp_path: Path
) -> None:
    from worker.main import load_channels

    pg_dsn = bare_dsn
    pool = await create_pool(bare_dsn)
    try:
        await _worker_start_loads(pool, pg_dsn, tmp_path, load_channels)
    finally:
        await pool.close()


async def _worker_start_loads(pool: asyncpg.Pool, pg_dsn: str, tmp_path: Path, load_channels: Any) -> None:
    off = TernSettings(data_dir=tmp_path, database={"url": pg_dsn}, channels={"load_bundled": False})
    await load_channels(off, pool)
    async with pool.acquire() as conn:
        assert await store.count_channels(conn) == 0  # production: nothing bundled
    limits = json.loads((DATA_DIR / "channel_limits.json").read_text())
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(limits))
    on = TernSettings(data_dir=tmp_path, database={"url": pg_dsn}, control={"limits_path": path})
    await load_channels(on, pool)  # what the worker does at start, so `tern up` leaves the database loaded
    del limits["SR:RF:CAVITY:02:TUNER:SP"]
    limits["SR:RF:CAVITY:01:TUNER:SP"]["writable"] = False
    path.write_text(json.dumps(limits))
    counts = await ChannelFinder(on, pool, embedder=None).ensure_loaded()
    assert counts is not None and (counts.added, counts.updated) == (0, 1)
    async with pool.acquire() as conn:
        assert await store.count_channels(conn) == 2907
        assert not await conn.fetchval("SELECT writable FROM channels WHERE name = 'SR:RF:CAVITY:01:TUNER:SP'")


async def test_maxscore_cut_ranks_exactly_as_the_full_ranking(finder: ChannelFinder, pool) -> None:
    """The two-or-more-words pass must give the same top k as scoring every channel that matches any word."""
    from tern.channel_finder.finder import _IDF_SQL, _RANK_SQL, score_sql
    from tern.channel_finder.index import idf

    queries = ["beam current", "hcm 5 readback", "defocusing quadrupole 9 power supply fault", "cav 1 fwd pwr", "bpm"]
    for query in queries:
        terms = query_terms(query)
        async with pool.acquire() as conn:
            stats = await conn.fetch(_IDF_SQL, terms)
            weights = [(r["word"], idf(float(r["n"]), float(r["ndoc"]))) for r in stats if r["ndoc"]]
            full = await conn.fetch(_RANK_SQL.format(score=score_sql(weights)), " | ".join(w for w, _ in weights), 5)
        assert [h.name for h in await finder.keyword(query, 5)] == [r["name"] for r in full], query


async def test_the_index_reads_every_word_as_postgresql_does(finder: ChannelFinder, pool) -> None:
    """The in-memory postings (tern.channel_finder.index) hold, for every bundled channel, exactly the lexemes of
    its stored tsvector, with weight A (name words) as PostgreSQL marks them; and the document frequencies equal
    ``ts_stat``'s (the idf the SQL ranking used)."""
    _, index = await finder.snapshot()
    mine: dict[str, dict[str, bool]] = {}
    for word, (ids, factor) in index.postings.items():
        for i, f in zip(ids.tolist(), factor.tolist(), strict=True):
            mine.setdefault(index.channels[i].name, {})[word] = f == 1.0
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT name, array_agg(lexeme) AS words, array_agg(lexeme) FILTER (WHERE 'A' = ANY(weights)) AS a "
            "FROM channels, unnest(search) GROUP BY name"
        )
        stats = {r["word"]: r["ndoc"] for r in await conn.fetch("SELECT word, ndoc FROM channel_term_stats")}
    assert len(rows) == len(index) == 2908
    for r in rows:
        assert mine[r["name"]] == {w: w in set(r["a"] or ()) for w in r["words"]}, r["name"]
    assert {w: index.df(w) for w in index.postings} == {w: n for w, n in stats.items() if w}


async def test_a_changed_channel_is_found_by_the_same_finder_without_a_count_change(finder, pool) -> None:
    """The snapshot is rebuilt when a channel changes even though the channel count and sources stay the same
    (the key includes the transaction that rewrote the word statistics)."""
    assert (await top(finder, "zanzibar")) == []  # nothing known: the trigram fallback finds nothing either
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT name, description FROM channels WHERE name = 'SR:RF:CAVITY:02:TUNER:RB'")
        rec = store.ChannelRecord(
            name=row["name"], description=row["description"] + " zanzibar", parts={"area": "SR"}, path="SR"
        )
        await store.upsert_channels(conn, [rec], "bundled")
        assert await store.count_channels(conn) == 2908
    assert (await top(finder, "zanzibar"))[0] == "SR:RF:CAVITY:02:TUNER:RB"
