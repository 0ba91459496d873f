"""PostgreSQL storage of record for logbook entries, and keyword search over it.

Keyword search uses PostgreSQL full text (``websearch_to_tsquery``: quoted phrases, ``or``, ``-term``), ranked
with ``ts_rank_cd`` over a vector that weights the title above the text; when every term together matches
nothing, it retries with any term (OR) so that a question still finds related entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import asyncpg

from tern.ariel.models import LogbookEntry
from tern.models import LogbookHit

_UPSERT = """
INSERT INTO ariel_entries (entry_id, source_system, ts, author, title, raw_text, tags, categories, logbook,
                           attachments, metadata, summary, keywords)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12, $13)
ON CONFLICT (entry_id) DO UPDATE SET
    source_system = EXCLUDED.source_system, ts = EXCLUDED.ts, author = EXCLUDED.author,
    title = EXCLUDED.title, raw_text = EXCLUDED.raw_text, tags = EXCLUDED.tags,
    categories = EXCLUDED.categories, logbook = EXCLUDED.logbook, attachments = EXCLUDED.attachments,
    metadata = EXCLUDED.metadata, updated_at = now()
RETURNING (xmax = 0) AS inserted
"""

_SEARCH = """
WITH q AS (SELECT {tsquery} AS query)
SELECT e.entry_id, e.title, e.author, e.ts,
       ts_rank_cd(e.search, q.query, 32) AS score,
       ts_headline('english', e.raw_text, q.query,
                   'StartSel=**,StopSel=**,MaxFragments=2,MaxWords=25,MinWords=8') AS snippet
FROM ariel_entries e, q
WHERE e.search @@ q.query
ORDER BY score DESC, e.ts DESC
LIMIT $2
"""


def _row_args(e: LogbookEntry) -> tuple[object, ...]:
    return (
        e.entry_id, e.source_system, e.timestamp, e.author, e.title, e.raw_text, e.tags, e.categories,
        e.logbook, json.dumps([a.model_dump() for a in e.attachments]), json.dumps(e.metadata),
        e.summary, e.keywords,
    )


async def upsert_entries(conn: asyncpg.Connection, entries: Iterable[LogbookEntry]) -> tuple[int, int]:
    """Insert or update entries by ``entry_id`` in one transaction; returns ``(added, updated)``."""
    added = updated = 0
    async with conn.transaction():
        for e in entries:
            inserted = await conn.fetchval(_UPSERT, *_row_args(e))
            if inserted:
                added += 1
            else:
                updated += 1
    return added, updated


async def keyword_search(conn: asyncpg.Connection, query: str, limit: int = 5) -> list[LogbookHit]:
    """Full-text search; ``limit`` hits at most, best first. An empty or stop-word-only query finds nothing."""
    rows = await conn.fetch(_SEARCH.format(tsquery="websearch_to_tsquery('english', $1)"), query, limit)
    if not rows:
        any_term = (
            "(SELECT CASE WHEN numnode(t) = 0 THEN t ELSE "
            "replace(t::text, ' & ', ' | ')::tsquery END FROM websearch_to_tsquery('english', $1) t)"
        )
        rows = await conn.fetch(_SEARCH.format(tsquery=any_term), query, limit)
    return [
        LogbookHit(
            entry_id=r["entry_id"], title=r["title"], author=r["author"], timestamp=r["ts"],
            score=float(r["score"]), snippet=r["snippet"],
            highlights=[s for s in r["snippet"].split(" ... ") if "**" in s],
        )
        for r in rows
    ]
