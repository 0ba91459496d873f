"""Per-user memory in PostgreSQL (table ``memories``, migration 310).

Every function takes the user and touches only that user's rows: one user can neither read, search nor delete
another's notes. Search fuses a keyword ranking (PostgreSQL full text, ``websearch_to_tsquery``; a substring
match when the query has no indexable word) with a semantic ranking (cosine distance of pgvector embeddings of
the same model, when an embedding provider is given) by reciprocal rank fusion, 1/(k + rank) with k = 60
(Cormack et al. 2009), as ARIEL does. Adding and deleting are audited (``audit_events``: ``memory_added``,
``memory_deleted``, with the note's SHA-256 and length but not its text); deletion removes the row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import asyncpg

from tern.ariel.embeddings import EmbeddingProvider
from tern.audit.store import record_event
from tern.db import Conn
from tern.models.audit import AuditEvent
from tern.models.memory import Memory

RRF_K = 60
_COLS = "id, user_name, text, source, created_at"


def _memory(row: asyncpg.Record, score: float | None = None) -> Memory:
    return Memory(
        id=row["id"],
        user=row["user_name"],
        text=row["text"],
        source=row["source"],
        created_at=row["created_at"],
        score=score,
    )


def _fingerprint(text: str) -> dict[str, object]:
    """What the audit keeps of a note: its SHA-256 and length, never the text (a deleted note is gone)."""
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text)}


def _vec(v: Sequence[float]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in v) + "]"


async def add_memory(
    db: asyncpg.Pool,
    user: str,
    text: str,
    *,
    source: str = "",
    idem_key: str | None = None,
    embedder: EmbeddingProvider | None = None,
    workflow_id: str = "",
) -> Memory:
    """Store ``text`` for ``user`` (with its embedding when ``embedder`` is given) and audit it; with
    ``idem_key`` a second call returns the first note. Raises ``EmbeddingError`` / ``asyncpg.PostgresError``."""
    vec = (await embedder.embed([text]))[0] if embedder else None
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO memories (user_name, text, source, idem_key, embedding_model, embedding)"
            f" VALUES ($1, $2, $3, $4, $5, $6::vector) ON CONFLICT (idem_key) DO NOTHING RETURNING {_COLS}",
            user,
            text,
            source,
            idem_key,
            embedder.model if embedder else None,
            _vec(vec) if vec else None,
        )
        if row is None:  # already added under this key
            row = await conn.fetchrow(f"SELECT {_COLS} FROM memories WHERE idem_key = $1", idem_key)
            assert row is not None
            return _memory(row)
        await record_event(
            conn,
            AuditEvent(
                event_kind="memory_added",
                workflow_id=workflow_id or f"memory:{user}",
                event_key=f"memory-added:{row['id']}",
                actor=user,
                details={"memory_id": row["id"], "source": source, **_fingerprint(text)},
            ),
        )
    return _memory(row)


async def list_memories(db: asyncpg.Pool | Conn, user: str, limit: int = 100) -> list[Memory]:
    """``user``'s notes, newest first."""
    rows = await db.fetch(
        f"SELECT {_COLS} FROM memories WHERE user_name = $1 ORDER BY created_at DESC, id DESC LIMIT $2", user, limit
    )
    return [_memory(r) for r in rows]


async def search_memories(
    db: asyncpg.Pool | Conn, user: str, query: str, *, limit: int = 5, embedder: EmbeddingProvider | None = None
) -> list[Memory]:
    """``user``'s notes most relevant to ``query`` (see module docstring), best first, each with its fused
    score. Raises ``EmbeddingError`` when the embedder fails."""
    pool_n = max(limit * 4, 20)
    keyword = await db.fetch(
        f"SELECT {_COLS} FROM memories WHERE user_name = $1 AND search @@ websearch_to_tsquery('english', $2)"
        " ORDER BY ts_rank(search, websearch_to_tsquery('english', $2)) DESC, id DESC LIMIT $3",
        user,
        query,
        pool_n,
    )
    if not keyword:
        keyword = await db.fetch(
            f"SELECT {_COLS} FROM memories WHERE user_name = $1 AND text ILIKE '%' || $2 || '%'"
            " ORDER BY created_at DESC LIMIT $3",
            user,
            query.replace("%", r"\%").replace("_", r"\_"),
            pool_n,
        )
    rankings = [keyword]
    if embedder is not None:
        vec = (await embedder.embed([query]))[0]
        rankings.append(
            await db.fetch(
                f"SELECT {_COLS} FROM memories WHERE user_name = $1 AND embedding_model = $2"
                " ORDER BY embedding <=> $3::vector LIMIT $4",
                user,
                embedder.model,
                _vec(vec),
                pool_n,
            )
        )
    scores: dict[int, float] = {}
    rows: dict[int, asyncpg.Record] = {}
    for ranking in rankings:
        for rank, r in enumerate(ranking, start=1):
            scores[r["id"]] = scores.get(r["id"], 0.0) + 1.0 / (RRF_K + rank)
            rows[r["id"]] = r
    best = sorted(scores, key=lambda i: (-scores[i], -i))[:limit]
    return [_memory(rows[i], round(scores[i], 6)) for i in best]


async def delete_memory(db: asyncpg.Pool, user: str, memory_id: int, *, actor: str | None = None) -> bool:
    """Delete note ``memory_id`` of ``user`` (a note of another user is not found: False) and audit it."""
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"DELETE FROM memories WHERE id = $1 AND user_name = $2 RETURNING {_COLS}", memory_id, user
        )
        if row is None:
            return False
        await record_event(
            conn,
            AuditEvent(
                event_kind="memory_deleted",
                workflow_id=f"memory:{user}",
                event_key=f"memory-deleted:{memory_id}",
                actor=actor or user,
                details={"memory_id": memory_id, **_fingerprint(row["text"])},
            ),
        )
    return True
