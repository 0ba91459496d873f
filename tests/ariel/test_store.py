"""Storage of record on real PostgreSQL: idempotent bulk upserts, runs, embeddings tables, status."""

from __future__ import annotations

import asyncpg

from tern.ariel import store
from tern.ariel.adapters import AdapterOptions, collect
from tern.ariel.embeddings import HashingTestEmbedder
from tern.ariel.ingest import embed_pending, ingest_source
from tern.ariel.models import BadRecordInfo, IngestionRun, UpsertCounts
from tests.ariel.conftest import DATA, NOW, SAMPLE_ENTRIES


async def test_upsert_is_idempotent_and_counts(pool: asyncpg.Pool) -> None:
    entries, _ = await collect("als", str(DATA / "als_sample_entries.jsonl"))
    async with pool.acquire() as conn:
        assert await store.upsert_entries(conn, entries) == UpsertCounts(added=12)
        assert await store.upsert_entries(conn, entries) == UpsertCounts(unchanged=12)
        changed = entries[0].model_copy(update={"raw_text": entries[0].raw_text + " Follow-up: OK."})
        assert await store.upsert_entries(conn, [changed, entries[1]]) == UpsertCounts(updated=1, unchanged=1)
        again = await store.get_entry(conn, changed.entry_id)
        assert again is not None and again.raw_text.endswith("Follow-up: OK.")
        assert again.attachments[0].filename == "rf_cavity_photo.jpg"
        # the same id twice in one batch: the later one wins
        twice = [entries[2], entries[2].model_copy(update={"title": "renamed"})]
        assert await store.upsert_entries(conn, twice) == UpsertCounts(updated=2)
        renamed = await store.get_entry(conn, entries[2].entry_id)
        assert renamed is not None and renamed.title == "renamed"
        assert await conn.fetchval("SELECT count(*) FROM ariel_entries") == 12


async def test_enhancement_survives_reingestion_unless_text_changes(pool: asyncpg.Pool) -> None:
    entries, _ = await collect("jlab", str(DATA / "jlab_sample_entries.json"))
    async with pool.acquire() as conn:
        await store.upsert_entries(conn, entries)
        await store.store_summary(conn, "J20002", "Klystron fault, reset.", ["klystron", "fault"])
        assert [e.entry_id for e in await store.pending_summaries(conn, 100)].count("J20002") == 0
        await store.upsert_entries(conn, entries)
        e = await store.get_entry(conn, "J20002")
        assert e is not None and e.summary == "Klystron fault, reset." and e.keywords == ["klystron", "fault"]
        await store.upsert_entries(conn, [entries[1].model_copy(update={"raw_text": "new text"})])
        assert "J20002" in [x.entry_id for x in await store.pending_summaries(conn, 100)]


async def test_embeddings_are_resumable_and_follow_text_changes(pool: asyncpg.Pool) -> None:
    await ingest_source(pool, "demo", str(DATA / "demo_logbook.json"), AdapterOptions(now=NOW))
    emb = HashingTestEmbedder()
    r1 = await embed_pending(pool, emb, batch_size=10, max_batches=1)  # a "crash" after one batch
    assert (r1.processed, r1.remaining) == (10, 18)
    r2 = await embed_pending(pool, emb, batch_size=10)
    assert (r2.processed, r2.remaining) == (18, 0)
    async with pool.acquire() as conn:
        e = await store.get_entry(conn, "DEMO-005")
        assert e is not None
        await store.upsert_entries(conn, [e.model_copy(update={"title": "changed title"})])
        table = await store.embedding_table(conn, emb.model)
        assert table is not None and await store.count_pending_embeddings(conn, table) == 1
    assert (await embed_pending(pool, emb)).processed == 1


async def test_runs_and_status(loaded_pool: asyncpg.Pool) -> None:
    async with loaded_pool.acquire() as conn:
        run = IngestionRun(run_key="wf-1", adapter="als", source="x.jsonl")
        await store.record_run(conn, run)
        run.counts = UpsertCounts(added=3, failed=1)
        run.bad_records = [BadRecordInfo(position=4, reason="missing field 'id'")]
        run.status = "completed"
        await store.record_run(conn, run)
        got = await store.get_run(conn, "wf-1")
        assert got is not None and got.status == "completed" and got.finished_at is not None
        assert got.counts == UpsertCounts(added=3, failed=1) and got.bad_records[0].position == 4
        st = await store.status(conn)
    assert st.entries == SAMPLE_ENTRIES
    assert st.by_source == {"als": 27, "demo": 28, "generic": 5, "jlab": 7, "ornl": 6}
    assert st.recent_runs[0].run_key == "wf-1"
