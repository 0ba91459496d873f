"""LogbookIngestionWorkflow on a real Temporal dev server and real PostgreSQL: every format, paging with
continue-as-new, idempotent re-runs, non-retryable bad sources, ALS over HTTP, and the watch schedule."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client, WorkflowFailureError

from tern.ariel import store
from tern.ariel.backends.base import IndexReport
from tern.ariel.backends.postgres import PostgresBackend
from tern.ariel.models import LogbookEntry
from tern.config import TernSettings
from tern.models.ariel import IngestionRequest, UpsertCounts
from tests.ariel.conftest import DATA, ariel_worker
from workflows.logbook_ingestion import LogbookIngestionWorkflow

pytestmark = pytest.mark.temporal


async def ingest(client: Client, settings: TernSettings, req: IngestionRequest, wf_id: str | None = None):
    return await client.execute_workflow(
        LogbookIngestionWorkflow.run,
        req,
        id=wf_id or f"ingest-{uuid.uuid4().hex[:10]}",
        task_queue=settings.temporal.task_queue,
    )


@pytest.mark.parametrize(
    ("adapter", "name", "n"),
    [
        ("als", "als_logbook_entries.jsonl", 15),
        ("als", "als_sample_entries.jsonl", 12),
        ("jlab", "jlab_sample_entries.json", 7),
        ("ornl", "ornl_sample_entries.json", 6),
        ("generic", "generic_sample_entries.json", 5),
        ("demo", "demo_logbook.json", 28),
    ],
)
async def test_every_format_ingests_through_the_workflow(worker_env, adapter: str, name: str, n: int) -> None:
    client, settings, pool = worker_env
    # 4 records a page, 2 pages a run: every source but the smallest continues as new at least once
    req = IngestionRequest(adapter=adapter, source=str(DATA / name), page_size=4, pages_per_run=2)
    wf_id = f"ingest-{adapter}-{uuid.uuid4().hex[:6]}"
    result = await ingest(client, settings, req, wf_id)
    assert result.run_key == wf_id and result.counts == UpsertCounts(added=n)
    assert result.pages == -(-n // 4) and result.embedded == n and not result.bad_records
    async with pool.acquire() as conn:
        run = await store.get_run(conn, wf_id)
        assert run is not None and run.status == "completed" and run.counts.added == n and run.finished_at
        assert await conn.fetchval("SELECT count(*) FROM ariel_entries") == n
    if n > 8:  # more than pages_per_run pages: the workflow continued as new
        desc = await client.get_workflow_handle(wf_id).describe()
        assert desc.run_id != desc.raw_description.workflow_execution_info.first_run_id
    again = await ingest(client, settings, req)
    assert again.counts == UpsertCounts(unchanged=n) and again.embedded == 0


async def test_bad_records_are_counted_and_the_run_completes(worker_env, tmp_path: Path) -> None:
    client, settings, pool = worker_env
    src = tmp_path / "mixed.jsonl"
    lines = (DATA / "als_sample_entries.jsonl").read_text().splitlines()
    src.write_text("\n".join([lines[0], "{broken", lines[1], '{"id": "x"}']) + "\n")
    result = await ingest(client, settings, IngestionRequest(adapter="als", source=str(src)))
    assert result.counts == UpsertCounts(added=2, failed=2)
    assert [b.position for b in result.bad_records] == [1, 3]
    async with pool.acquire() as conn:
        run = await store.get_run(conn, result.run_key)
    assert run is not None and [b.position for b in run.bad_records] == [1, 3]


async def test_a_missing_source_fails_once_and_is_recorded(worker_env, tmp_path: Path) -> None:
    client, settings, pool = worker_env
    wf_id = f"ingest-missing-{uuid.uuid4().hex[:6]}"
    with pytest.raises(WorkflowFailureError):
        await ingest(client, settings, IngestionRequest(adapter="jlab", source=str(tmp_path / "nope.json")), wf_id)
    history = await client.get_workflow_handle(wf_id).fetch_history()
    attempts = [e for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert max(e.activity_task_started_event_attributes.attempt for e in attempts) == 1  # not retried
    async with pool.acquire() as conn:
        run = await store.get_run(conn, wf_id)
    assert run is not None and run.status == "failed" and "not found" in run.error


async def test_als_http_through_the_workflow(worker_env, als_server) -> None:
    client, settings, _pool = worker_env
    url, calls = als_server(fail_first=1)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    req = IngestionRequest(adapter="als-http", source=url, since=start, until=start + timedelta(days=1), page_size=10)
    result = await ingest(client, settings, req)
    assert result.counts.added == 27 and result.counts.failed == 0
    assert calls[0]["status"] == 503  # retried by the adapter (tenacity), not by failing the activity


async def test_watch_schedule_ingests_periodically(worker_env) -> None:
    from starters.ariel_cli import create_watch_schedule

    client, settings, pool = worker_env
    req = IngestionRequest(adapter="ornl", source=str(DATA / "ornl_sample_entries.json"))
    schedule_id = await create_watch_schedule(
        client, settings, req, every=timedelta(hours=1), schedule_id=f"watch-{uuid.uuid4().hex[:6]}"
    )
    handle = client.get_schedule_handle(schedule_id)
    try:
        desc = await handle.describe()
        assert desc.schedule.spec.intervals[0].every == timedelta(hours=1)
        await handle.trigger()
        for _ in range(150):
            async with pool.acquire() as conn:
                runs = [r for r in await store.recent_runs(conn, 5) if r.status == "completed"]
            if runs:
                break
            await asyncio.sleep(0.2)
        assert runs and runs[0].counts.added == 6 and runs[0].run_key.startswith(schedule_id)
    finally:
        await handle.delete()


class RecordingBackend(PostgresBackend):
    """PostgreSQL search under another name, recording what ingestion pushes to its index."""

    name = "recording"

    def __init__(self, db: asyncpg.Pool, separate_index: bool) -> None:
        super().__init__(db)
        self.separate_index = separate_index
        self.indexed: list[str] = []
        self.vectors: list[str] = []

    async def index_entries(self, entries: Sequence[LogbookEntry]) -> IndexReport:
        self.indexed += [e.entry_id for e in entries]
        return IndexReport(indexed=[e.entry_id for e in entries])

    async def index_embeddings(
        self, model: str, entry_ids: Sequence[str], vectors: Sequence[Sequence[float]]
    ) -> IndexReport:
        self.vectors += list(entry_ids)
        return IndexReport(indexed=list(entry_ids))


@pytest.mark.parametrize("separate_index", [True, False])
async def test_ingestion_feeds_a_backend_only_when_it_has_a_separate_index(
    temporal_env, pool: asyncpg.Pool, separate_index: bool
) -> None:
    """The activities ask the backend's ``separate_index`` capability, not its name."""
    backend = RecordingBackend(pool, separate_index)
    async with ariel_worker(temporal_env.client, pool, backend=backend) as settings:
        req = IngestionRequest(adapter="ornl", source=str(DATA / "ornl_sample_entries.json"), page_size=4)
        result = await ingest(temporal_env.client, settings, req)
    assert result.counts.added == 6 and result.embedded == 6
    async with pool.acquire() as conn:
        ids = sorted(await conn.fetchval("SELECT array_agg(entry_id) FROM ariel_entries"))
    assert (sorted(backend.indexed), sorted(backend.vectors)) == ((ids, ids) if separate_index else ([], []))


class RefusingBackend(RecordingBackend):
    """Refuses one entry's vector, as OpenSearch answers a bulk item it cannot take."""

    def __init__(self, db: asyncpg.Pool, refused: str) -> None:
        super().__init__(db, separate_index=True)
        self.refused = refused

    async def index_embeddings(
        self, model: str, entry_ids: Sequence[str], vectors: Sequence[Sequence[float]]
    ) -> IndexReport:
        ok = [i for i in entry_ids if i != self.refused]
        self.vectors += ok
        failed = {self.refused: "400 mapper_parsing_exception: failed to parse"} if self.refused in entry_ids else {}
        return IndexReport(indexed=ok, failed=failed)


async def test_refused_index_writes_are_reported_and_stay_pending(temporal_env, pool: asyncpg.Pool) -> None:
    """A vector the search index refuses is named in the run's notices and stays pending in PostgreSQL."""
    backend = RefusingBackend(pool, refused="SNS-2024-0002")
    async with ariel_worker(temporal_env.client, pool, backend=backend) as settings:
        req = IngestionRequest(adapter="ornl", source=str(DATA / "ornl_sample_entries.json"))
        result = await ingest(temporal_env.client, settings, req)
    assert result.embedded == 6 and "SNS-2024-0002" not in backend.vectors and len(backend.vectors) == 5
    assert any("refused" in n and "stay pending" in n for n in result.notices), result.notices
    async with pool.acquire() as conn:
        [table] = [r["table_name"] for r in await conn.fetch("SELECT table_name FROM ariel_embedding_models")]
        assert [i for i, _, _ in await store.pending_index_vectors(conn, table, 100)] == ["SNS-2024-0002"]
