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
