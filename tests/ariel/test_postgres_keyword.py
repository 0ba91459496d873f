"""The PostgreSQL keyword statement: BM25 ranking from the planner statistics, one round trip per search,
the statement-local trigram threshold, and odd query text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from tern.ariel import store
from tern.ariel.backends.postgres import TRIGRAM_THRESHOLD, PostgresBackend
from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def entry(i: int, title: str, text: str, source: str = "generic") -> LogbookEntry:
    return LogbookEntry(
        entry_id=f"K{i:03d}", source_system=source, timestamp=T0 + timedelta(hours=i), title=title, raw_text=text
    )


def corpus() -> list[LogbookEntry]:
    """30 entries about beam, one of which mentions it over and over; one rare entry about the septum."""
    out = [entry(i, f"Shift note {i}", f"Beam stable through the shift, note {i}.") for i in range(30)]
    out.append(entry(30, "Shift note 30", "Beam beam beam: beam lost, beam back, beam tuned, beam stored."))
    out.append(entry(31, "Shift note 31", "Septum pulser replaced by the on-call expert.", source="als"))
    return out


async def test_rare_terms_outweigh_repeated_common_ones(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.upsert_entries(conn, corpus())
        await store.refresh_statistics(conn)
        # no entry holds both terms: the any-term tier ranks by BM25, where "septum" (1 entry of 32) weighs
        # far more than "beam" (31 of 32) however often "beam" occurs
        hits = await PostgresBackend(conn).keyword("beam septum", limit=5)
    assert hits[0].entry_id == "K031"
    assert hits[1].entry_id == "K030"  # among the beam entries, term frequency still counts


async def test_ranks_without_statistics(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.upsert_entries(conn, corpus())  # not analysed: every idf is 1
        hits = await PostgresBackend(conn).keyword("septum pulser", limit=5)
    assert [h.entry_id for h in hits] == ["K031"]


async def test_every_path_is_one_statement(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.upsert_entries(conn, corpus())
        await store.refresh_statistics(conn)
        trace: list = []
        backend = PostgresBackend(conn, trace=trace)
        for query, expected in [
            ("septum pulser", ["K031"]),  # every term
            ("septum replaced tuned", ["K031", "K030"]),  # no entry has all three: any-term tier
            ("septun", ["K031"]),  # typo: trigram tier
        ]:
            trace.clear()
            assert [h.entry_id for h in await backend.keyword(query, limit=2)] == expected
            assert len(trace) == 1, query


async def test_trigram_threshold_is_local_to_the_statement(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.upsert_entries(conn, [entry(1, "Klystron fault", "Klystron K3 faulted; reset.")])
        await conn.fetchval("SELECT word_similarity('a', 'a')")  # pg_trgm loaded: its settings exist
        before = await conn.fetchval("SHOW pg_trgm.word_similarity_threshold")
        hits = await PostgresBackend(conn).keyword("klystorn", limit=5)
        after = await conn.fetchval("SHOW pg_trgm.word_similarity_threshold")
    # word similarity of "klystorn" to "klystron" is 0.56: below pg_trgm's default threshold (0.6), above ours
    assert [h.entry_id for h in hits] == ["K001"] and TRIGRAM_THRESHOLD <= hits[0].score < 0.6
    assert before == after == "0.6"


async def test_filters_hold_in_every_tier(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.upsert_entries(conn, corpus())
        await store.refresh_statistics(conn)
        backend = PostgresBackend(conn)
        als = SearchFilters(source_system="als")
        assert [h.entry_id for h in await backend.keyword("beam septum", als, 5)] == ["K031"]
        assert [h.entry_id for h in await backend.keyword("septun", als, 5)] == ["K031"]
        assert await backend.keyword("beam", als, 5) == []
        late = SearchFilters(since=T0 + timedelta(hours=29))
        assert [h.entry_id for h in await backend.keyword("beam stable", late, 5)] == ["K029", "K030"]


async def test_quotes_backslashes_and_operators_in_the_text(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.upsert_entries(
            conn, [entry(1, "O'Brien's note", r"Checked C:\temp\log and the septum; O'Brien signed off.")]
        )
        await store.refresh_statistics(conn)
        backend = PostgresBackend(conn)
        for query in ["O'Brien's septum", r"C:\temp\log", "'' \\ \"", '"septum" -klystron or \'x', "!!! & | <->"]:
            await backend.keyword(query, limit=5)  # no error
        hits = await backend.keyword("o'brien", limit=5)
        assert [h.entry_id for h in hits] == ["K001"] and any("**" in h for h in hits[0].highlights)
        await store.upsert_entries(conn, corpus())  # K001 now says "beam"; K031 alone does not
        only_negated = await backend.keyword("-beam", limit=5)  # no positive term: every score is 0
    assert [h.entry_id for h in only_negated] == ["K031"] and only_negated[0].score == 0.0


def common_corpus() -> list[LogbookEntry]:
    """400 beam entries, one an hour: the 50 newest say "beam" three times (the best BM25 for "beam"); the 200
    oldest also report a fault; the very first one also mentions the septum."""
    out = []
    for i in range(400):
        text = "Beam stable." if i < 350 else "Beam lost, beam back, beam stored."
        if i < 200:
            text += " Fault on the kicker." + (" Septum pulser replaced." if i == 0 else "")
        out.append(entry(i, f"Note {i}", text))
    return out


async def test_fusion_ranks_a_window_of_the_newest_matches_for_common_terms(pool: asyncpg.Pool) -> None:
    from benchmarks._common import rows_read
    from tern.ariel.backends.postgres import keyword_sql

    async with pool.acquire() as conn:
        await store.upsert_entries(conn, common_corpus())
        await store.refresh_statistics(conn)
        exact, windowed = PostgresBackend(conn), PostgresBackend(conn, keyword_window=20)
        # "beam" is in every entry: est 400 matches > k = 20 x 400 / 400 = 20 newest entries read; the best
        # BM25 entries are among them, so the window changes nothing but the work
        best = [f"K{i:03d}" for i in range(399, 389, -1)]
        assert [h.entry_id for h in await windowed.keyword("beam", limit=10, fusion=True)] == best
        assert [h.entry_id for h in await exact.keyword("beam", limit=10)] == best
        assert await rows_read(conn, *keyword_sql("beam", None, 10, 20)) <= 20
        assert await rows_read(conn, *keyword_sql("beam", None, 10)) == 400  # every match scored
        # without fusion the backend ranks every match, window or not (plain keyword search is exact)
        trace: list = []
        await PostgresBackend(conn, trace=trace, keyword_window=20).keyword("beam", limit=10)
        assert await rows_read(conn, *trace[0]) == 400
        # "beam fault": est 200 matches, k = 40 newest entries, none with a fault: every match is ranked
        fault = [h.entry_id for h in await exact.keyword("beam fault", limit=10)]
        assert fault == [f"K{i:03d}" for i in range(199, 189, -1)]
        assert [h.entry_id for h in await windowed.keyword("beam fault", limit=10, fusion=True)] == fault
        # a rare term (one entry): no window, the old entry is found
        assert [h.entry_id for h in await windowed.keyword("septum", limit=10, fusion=True)] == ["K000"]
        # ... and the window costs nothing: the statement reads what the exact one reads
        septum = await rows_read(conn, *keyword_sql("septum", None, 10, 20))
        assert septum == await rows_read(conn, *keyword_sql("septum", None, 10))
        # filters: never windowed (the estimate does not know them)
        old = SearchFilters(until=T0 + timedelta(hours=10))
        hits = await windowed.keyword("beam", old, limit=3, fusion=True)
        assert [h.entry_id for h in hits] == ["K009", "K008", "K007"]


async def test_fusion_window_grows_with_the_table(pool: asyncpg.Pool, monkeypatch) -> None:
    """The window is at least ``WINDOW_MIN_SHARE`` of the entries: with a share of 10%, 400 entries and a window
    of 20, "beam" (in every entry) is ranked over the newest 40 entries, not 20."""
    from benchmarks._common import rows_read
    from tern.ariel.backends import postgres

    async with pool.acquire() as conn:
        await store.upsert_entries(conn, common_corpus())
        await store.refresh_statistics(conn)
        assert await rows_read(conn, *postgres.keyword_sql("beam", None, 10, 20)) <= 20
        monkeypatch.setattr(postgres, "WINDOW_MIN_SHARE", 0.1)
        assert 20 < await rows_read(conn, *postgres.keyword_sql("beam", None, 10, 20)) <= 40
        hits = await PostgresBackend(conn, keyword_window=20).keyword("beam", limit=10, fusion=True)
    assert [h.entry_id for h in hits] == [f"K{i:03d}" for i in range(399, 389, -1)]
