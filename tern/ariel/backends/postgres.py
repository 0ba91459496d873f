"""The PostgreSQL search backend: full text (tsvector + GIN), trigram fallback, pgvector semantic search.

Keyword ranking is ``ts_rank_cd`` (cover density) over a vector weighted title A (1.0), text B (0.4), tags,
keywords and summary C (0.2), normalised to ``rank / (rank + 1)``. The query goes through
``websearch_to_tsquery`` (quoted phrases, ``or``, ``-term``). Entries matching every term come first; when
they are fewer than ``limit``, entries matching any term follow (a question in plain words still finds related
entries); when no term matches at all (typos), a pg_trgm word-similarity search runs instead.

Semantic ranking is cosine similarity ``1 - (a <=> b)`` on the model's HNSW index, with pgvector's iterative
scan so that filters do not starve the result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from tern.ariel import store
from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters
from tern.models import LogbookHit

TRIGRAM_THRESHOLD = 0.4  # pg_trgm word_similarity threshold of the typo fallback (0..1)
_HEADLINE_TEXT = 'StartSel=**,StopSel=**,MaxFragments=2,MaxWords=25,MinWords=8,FragmentDelimiter=" ... "'
_HEADLINE_TITLE = "StartSel=**,StopSel=**,HighlightAll=true"


def filter_sql(f: SearchFilters | None, first_param: int, alias: str = "e") -> tuple[str, list[Any]]:
    """``AND ...`` conditions for ``f`` with parameters numbered from ``first_param``; ``("", [])`` if none."""
    if f is None:
        return "", []
    conds: list[str] = []
    args: list[Any] = []

    def p(value: Any) -> str:
        args.append(value)
        return f"${first_param + len(args) - 1}"

    if f.author:
        conds.append(f"{alias}.author ILIKE '%' || {p(f.author)} || '%'")
    if f.since:
        conds.append(f"{alias}.ts >= {p(f.since)}")
    if f.until:
        conds.append(f"{alias}.ts < {p(f.until)}")
    if f.tags:
        conds.append(f"{alias}.tags && {p(list(f.tags))}::text[]")
    if f.source_system:
        conds.append(f"{alias}.source_system = {p(f.source_system)}")
    if f.logbook:
        conds.append(f"{alias}.logbook = {p(f.logbook)}")
    return "".join(f" AND {c}" for c in conds), args


_ALL_TERMS = "websearch_to_tsquery('english', $1)"
# Any term: the AND of the web-search query turned into OR, unless it negates something (then OR would
# match nearly everything) or it is empty.
_ANY_TERM = (
    "(SELECT CASE WHEN numnode(t) = 0 OR strpos(t::text, '!') > 0 THEN t "
    "ELSE replace(t::text, ' & ', ' | ')::tsquery END FROM websearch_to_tsquery('english', $1) t)"
)


def keyword_sql(
    text: str, filters: SearchFilters | None, limit: int, *, any_term: bool = False, exclude: Sequence[str] = ()
) -> tuple[str, list[Any]]:
    """The full-text statement and its arguments (``$1`` text, ``$2`` limit, ``$3`` excluded ids, filters)."""
    fsql, fargs = filter_sql(filters, 4)
    sql = f"""
WITH q AS (SELECT {_ANY_TERM if any_term else _ALL_TERMS} AS query),
top AS (
    SELECT e.entry_id, e.title, e.author, e.ts, e.raw_text, ts_rank_cd(e.search, q.query, 32) AS score
    FROM ariel_entries e, q
    WHERE e.search @@ q.query AND NOT (e.entry_id = ANY($3::text[])){fsql}
    ORDER BY score DESC, e.ts DESC
    LIMIT $2)
SELECT top.entry_id, top.title, top.author, top.ts, top.score,
       ts_headline('english', top.title, q.query, '{_HEADLINE_TITLE}') AS title_hl,
       ts_headline('english', top.raw_text, q.query, '{_HEADLINE_TEXT}') AS snippet
FROM top, q
ORDER BY top.score DESC, top.ts DESC"""
    return sql, [text, limit, list(exclude), *fargs]


def trigram_sql(text: str, filters: SearchFilters | None, limit: int) -> tuple[str, list[Any]]:
    """The typo-tolerant fallback: pg_trgm ``word_similarity`` of the query to title or text."""
    fsql, fargs = filter_sql(filters, 3)
    sql = f"""
SELECT e.entry_id, e.title, e.author, e.ts,
       greatest(word_similarity($1, e.title), word_similarity($1, e.raw_text)) AS score,
       e.title AS title_hl, left(e.raw_text, 200) AS snippet
FROM ariel_entries e
WHERE ($1 <% e.title OR $1 <% e.raw_text){fsql}
ORDER BY score DESC, e.ts DESC
LIMIT $2"""
    return sql, [text, limit, *fargs]


def browse_sql(filters: SearchFilters | None, limit: int) -> tuple[str, list[Any]]:
    """No full text, only filters: the newest matching entries."""
    fsql, fargs = filter_sql(filters, 2)
    sql = f"""
SELECT e.entry_id, e.title, e.author, e.ts, 0.0::real AS score, e.title AS title_hl,
       left(e.raw_text, 200) AS snippet
FROM ariel_entries e WHERE true{fsql} ORDER BY e.ts DESC LIMIT $1"""
    return sql, [limit, *fargs]


def semantic_sql(
    table: str, vector: Sequence[float], filters: SearchFilters | None, limit: int, min_similarity: float
) -> tuple[str, list[Any]]:
    """Nearest neighbours by cosine distance on ``table``'s HNSW index, re-sorted (iterative scans return
    results in relaxed order) and cut at ``min_similarity``."""
    fsql, fargs = filter_sql(filters, 4)
    sql = f"""
WITH nn AS MATERIALIZED (
    SELECT e.entry_id, e.title, e.author, e.ts, left(e.raw_text, 200) AS snippet,
           1 - (v.embedding <=> $1::vector) AS score
    FROM {table} v JOIN ariel_entries e USING (entry_id)
    WHERE v.content_hash = e.content_hash{fsql}
    ORDER BY v.embedding <=> $1::vector
    LIMIT $2)
SELECT entry_id, title, author, ts, score, title AS title_hl, snippet FROM nn
WHERE score >= $3 ORDER BY score DESC"""
    return sql, [store.vector_literal(vector), limit, min_similarity, *fargs]


def _hits(rows: Sequence[asyncpg.Record]) -> list[LogbookHit]:
    hits = []
    for r in rows:
        snippet = r["snippet"] or ""
        highlights = [r["title_hl"]] if "**" in (r["title_hl"] or "") else []
        highlights += [s for s in snippet.split(" ... ") if "**" in s]
        hits.append(
            LogbookHit(
                entry_id=r["entry_id"],
                title=r["title"],
                author=r["author"],
                timestamp=r["ts"],
                score=float(r["score"]),
                snippet=snippet,
                highlights=highlights,
            )
        )
    return hits


class PostgresBackend:
    """Search over ``ariel_entries`` in the storage of record itself.

    Args:
        db: an asyncpg pool (hybrid search then runs its two queries on two connections) or one connection.
        trace: when a list, every statement run is appended as ``(sql, args)`` (benchmarks replay them bare).
    """

    name = "postgres"

    def __init__(self, db: asyncpg.Pool | store.Conn, trace: list[tuple[str, list[Any]]] | None = None):
        self.db = db
        self.trace = trace

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[store.Conn]:
        if isinstance(self.db, asyncpg.Pool):
            async with self.db.acquire() as conn:
                yield conn
        else:
            yield self.db

    async def _fetch(self, conn: store.Conn, stmt: tuple[str, list[Any]]) -> list[asyncpg.Record]:
        if self.trace is not None:
            self.trace.append(stmt)
        return await conn.fetch(stmt[0], *stmt[1])

    async def keyword(self, query: str, filters: SearchFilters | None = None, limit: int = 10) -> list[LogbookHit]:
        """All-terms matches, then any-term matches, else trigram matches; see the module docstring."""
        text = query.strip()
        async with self._conn() as conn:
            if not text:
                return _hits(await self._fetch(conn, browse_sql(filters, limit)))
            rows = await self._fetch(conn, keyword_sql(text, filters, limit))
            if len(rows) < limit and len(text.split()) > 1:
                seen = [r["entry_id"] for r in rows]
                rows += await self._fetch(
                    conn, keyword_sql(text, filters, limit - len(rows), any_term=True, exclude=seen)
                )
            if rows:
                return _hits(rows)
            async with conn.transaction():
                await conn.execute(f"SET LOCAL pg_trgm.word_similarity_threshold = {TRIGRAM_THRESHOLD}")
                return _hits(await self._fetch(conn, trigram_sql(text, filters, limit)))

    async def semantic(
        self,
        vector: Sequence[float],
        model: str,
        filters: SearchFilters | None = None,
        limit: int = 10,
        min_similarity: float = 0.0,
    ) -> list[LogbookHit] | None:
        """Cosine-similarity search; None when ``model`` has no embeddings stored."""
        async with self._conn() as conn:
            table = await store.embedding_table(conn, model)
            if table is None or not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                return None
            async with conn.transaction():
                await conn.execute(
                    f"SET LOCAL hnsw.ef_search = {max(40, min(1000, 2 * limit))}; "
                    "SET LOCAL hnsw.iterative_scan = relaxed_order"
                )
                rows = await self._fetch(conn, semantic_sql(table, vector, filters, limit, min_similarity))
            return _hits(rows)

    async def index_entries(self, entries: Sequence[LogbookEntry]) -> int:
        return len(entries)  # the storage of record is the index

    async def index_embeddings(
        self, model: str, entries: Sequence[LogbookEntry], vectors: Sequence[Sequence[float]]
    ) -> int:
        return len(entries)  # stored by enhancement in the model's table, which is the index
