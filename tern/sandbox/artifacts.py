"""Artifacts in PostgreSQL (table ``artifacts``, migration 200): figures (PNG) and archived series (gzip JSON),
stored once, handed to the workflow as a reference, so that history stays small."""

from __future__ import annotations

import hashlib

import asyncpg
from pydantic import BaseModel, ConfigDict

from tern.db import Conn
from tern.models.execution import ExecutionResult, Figure


class Artifact(BaseModel):
    """One stored artifact with its content; ``workflow_id`` is the run's Workflow ID (table column ``run_id``)."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    id: str
    workflow_id: str
    step_id: str
    name: str
    media_type: str
    sha256: str
    size_bytes: int
    content: bytes


def artifact_id(workflow_id: str, step_id: str, sha256: str) -> str:
    """Deterministic reference ``art_<32 hex>``: storing the same figure of the same step twice (a retried
    activity) yields the same id and one row."""
    return "art_" + hashlib.sha256(f"{workflow_id}\0{step_id}\0{sha256}".encode()).hexdigest()[:32]


async def store_figures(
    db: asyncpg.Pool | Conn, result: ExecutionResult, *, workflow_id: str, step_id: str
) -> ExecutionResult:
    """Store each inline figure of ``result`` and return a copy whose figures carry ``artifact_id`` and no
    bytes. Idempotent. Raises ``asyncpg.PostgresError`` on database failure."""
    stored: list[Figure] = []
    for figure in result.figures:
        if figure.png is None:
            stored.append(figure)
            continue
        ref = artifact_id(workflow_id, step_id, figure.sha256)
        await db.execute(
            "INSERT INTO artifacts (id, run_id, step_id, name, media_type, sha256, size_bytes, content)"
            " VALUES ($1, $2, $3, $4, 'image/png', $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            ref,
            workflow_id,
            step_id,
            figure.name,
            figure.sha256,
            len(figure.png),
            figure.png,
        )
        stored.append(figure.model_copy(update={"png": None, "artifact_id": ref}))
    return result.model_copy(update={"figures": stored})


async def store_artifact(
    db: asyncpg.Pool | Conn, content: bytes, *, workflow_id: str, step_id: str, name: str, media_type: str
) -> str:
    """Store ``content`` (any artifact: a series, a file) once for ``workflow_id``/``step_id`` and return its reference.
    Idempotent (same run, step and content: same id, one row). Raises ``asyncpg.PostgresError``."""
    sha = hashlib.sha256(content).hexdigest()
    ref = artifact_id(workflow_id, step_id, sha)
    await db.execute(
        "INSERT INTO artifacts (id, run_id, step_id, name, media_type, sha256, size_bytes, content)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        ref,
        workflow_id,
        step_id,
        name,
        media_type,
        sha,
        len(content),
        content,
    )
    return ref


async def load_artifact(db: asyncpg.Pool | Conn, ref: str) -> Artifact | None:
    """The artifact with id ``ref``, or None when there is none."""
    row = await db.fetchrow(
        "SELECT id, run_id AS workflow_id, step_id, name, media_type, sha256, size_bytes, content FROM artifacts"
        " WHERE id = $1",
        ref,
    )
    return None if row is None else Artifact(**dict(row))


async def list_artifacts(db: asyncpg.Pool | Conn, workflow_id: str) -> list[dict[str, object]]:
    """The artifacts of one run and of its child workflows (``<workflow_id>.<step id>``, as
    :func:`tern.audit.store.events_for_run`), without their content: ``id``, ``workflow_id``, ``step_id``, ``name``,
    ``media_type``, ``sha256``, ``size_bytes`` (bytes), ordered by step and name."""
    rows = await db.fetch(
        "SELECT id, run_id AS workflow_id, step_id, name, media_type, sha256, size_bytes FROM artifacts"
        " WHERE run_id = $1 OR starts_with(run_id, $1 || '.') ORDER BY run_id, step_id, name",
        workflow_id,
    )
    return [dict(r) for r in rows]
