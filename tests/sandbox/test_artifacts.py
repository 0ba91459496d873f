"""Figures stored as artifacts in the real (embedded) PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest

from tern.db import create_pool
from tern.models.execution import ExecutionResult, Figure
from tern.sandbox.artifacts import load_artifact, store_figures

pytestmark = pytest.mark.postgres

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def figure(data: bytes, name: str) -> Figure:
    return Figure(name=name, png=data, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


async def test_figures_become_references_and_load_back_byte_for_byte(pg_dsn: str) -> None:
    pool = await create_pool(pg_dsn)
    try:
        other = PNG + b"2"
        result = ExecutionResult(
            status="ok",
            backend="docker",
            isolation="container",
            figures=[figure(PNG, "a"), figure(other, "b")],
        )
        stored = await store_figures(pool, result, workflow_id="run-1", step_id="3-python")
        assert [f.png for f in stored.figures] == [None, None]
        refs = [f.artifact_id for f in stored.figures]
        assert all(r and r.startswith("art_") for r in refs) and len(set(refs)) == 2
        assert len(stored.model_dump_json()) < len(result.model_dump_json()) - 2 * len(PNG)
        again = await store_figures(pool, result, workflow_id="run-1", step_id="3-python")  # a retried activity
        assert [f.artifact_id for f in again.figures] == refs
        assert await pool.fetchval("SELECT count(*) FROM artifacts WHERE run_id = 'run-1'") == 2
        loaded = await load_artifact(pool, refs[0] or "")
        assert loaded is not None and loaded.content == PNG and loaded.name == "a"
        assert loaded.sha256 == hashlib.sha256(PNG).hexdigest() and loaded.media_type == "image/png"
        assert await load_artifact(pool, "art_missing") is None
    finally:
        await pool.close()
