"""The channel finder: natural-language descriptions to channel names, and hierarchical navigation.

Modes (``ChannelFinder.find``):

- ``keyword``: the query becomes search terms (``tern.channel_finder.naming.query_terms``: abbreviations expanded,
  "sector N" joined, stop words dropped). A channel scores, for every term it contains, the term's inverse
  document frequency (BM25's, ln(1 + (N - df + 0.5) / (df + 0.5)), Robertson and Zaragoza 2009) times 1.0 when
  the term is among its name words and aliases (tsvector weight A) or 0.4 when only in its description (B),
  plus a small prior that breaks ties (``tern.channel_finder.naming``). Channels matching any term are ranked; an
  exact name or alias comes first. The ranking runs in memory on a snapshot of the ``channels`` table
  (``tern.channel_finder.index``, built once per database load; a find checks the snapshot is current with one
  small statement). When no term matches (typos), pg_trgm similarity of the query to names and descriptions
  ranks instead, in PostgreSQL.
- ``semantic``: cosine similarity of the expanded query's embedding to each channel's (description, aliases,
  name) on pgvector's HNSW index, with the ARIEL embedding provider (``tern.ariel.providers``). Without a
  provider, or without stored embeddings, it answers with keyword search and says why in ``notice``.
- ``hybrid``: reciprocal rank fusion of the two (``tern.ariel.fusion.rrf_scores``, k = ``settings.ariel.rrf_k``);
  keyword alone, with a notice, when semantic is unavailable.

Hierarchical navigation (``ChannelFinder.children``) lists the children of a path (system -> family -> device ->
field -> signal, Osprey's hierarchical mode), with how many channels lie under each.

The bundled channel database (the limits database's channels) is loaded at first use when
``settings.channels.load_bundled`` is true (``tern.channel_finder.store.ensure_bundled``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from tern.ariel.embeddings import EmbeddingError, EmbeddingProvider
from tern.ariel.fusion import rrf_scores
from tern.ariel.providers import CONFIGURED, configured_embedder
from tern.channel_finder import store
from tern.channel_finder.index import DESCRIPTION_WEIGHT, KeywordIndex
from tern.channel_finder.naming import query_terms, segment_description
from tern.channel_finder.understanding import Catalog, Resolution, resolve
from tern.config import TernSettings
from tern.db import Conn
from tern.models.channel_finder import (
    CHANNEL_FIND_MODES,
    HIERARCHY_LEVELS,
    ChannelFindMode,
    ChannelFindResponse,
    ChannelHit,
    ChannelSet,
    HierarchyNode,
)

MAX_LIMIT = 100
HYBRID_CANDIDATES_MIN = 30  # each ranking fused by RRF contributes at least this many candidates
TRIGRAM_THRESHOLD = 0.3  # pg_trgm similarity a typo-fallback hit must reach (0..1)

# The ranking as SQL: the reference the in-memory index (tern.channel_finder.index) is tested against.
_IDF_SQL = """
SELECT w.word, coalesce(s.ndoc, 0) AS ndoc, (SELECT ndoc FROM channel_term_stats WHERE word = '') AS n
FROM unnest($1::text[]) AS w(word) LEFT JOIN channel_term_stats s USING (word)
"""
_EXACT_SQL = """
SELECT c.name, c.description, c.units, c.writable, 1000 + c.prior AS score
FROM channels c
WHERE c.name = $1 OR c.name = upper($1) OR c.aliases @> ARRAY[$1]
ORDER BY c.name
LIMIT $2
"""
_RANK_SQL = """
SELECT c.name, c.description, c.units, c.writable, {score} + c.prior AS score
FROM channels c
WHERE c.search @@ $1::tsquery
ORDER BY score DESC, c.name
LIMIT $2
"""


def score_sql(weights: Sequence[tuple[str, float]]) -> str:
    """The keyword score of a channel ``c`` as one SQL expression: for each ``(word, idf)``, idf when the word
    is among its name words (weight A), ``DESCRIPTION_WEIGHT`` * idf when only elsewhere, else 0. Words are
    ``[a-z0-9]+`` (``tern.channel_finder.naming.words``) and idfs floats, so writing them into the SQL is safe."""
    parts = []
    for word, w in weights:
        if not word.isalnum() or not word.isascii():
            raise ValueError(f"search word {word!r} is not alphanumeric")
        parts.append(
            f"CASE WHEN c.search @@ '{word}:A'::tsquery THEN {w!r} "
            f"WHEN c.search @@ '{word}'::tsquery THEN {w * DESCRIPTION_WEIGHT!r} ELSE 0 END"
        )
    return "(" + " + ".join(parts) + ")"


_TRIGRAM_SQL = """
SELECT c.name, c.description, c.units, c.writable,
       greatest(similarity(c.name, $1), word_similarity($1, c.description)) AS score
FROM channels c
WHERE (SELECT set_config('pg_trgm.similarity_threshold', %(th)s, true)) IS NOT NULL
  AND (SELECT set_config('pg_trgm.word_similarity_threshold', %(th)s, true)) IS NOT NULL
  AND (c.name %% $1 OR $1 <%% c.description)
ORDER BY score DESC, c.name
LIMIT $2
"""

_SEMANTIC_SQL = """
WITH nn AS MATERIALIZED (
    SELECT c.name, c.description, c.units, c.writable, 1 - (v.embedding <=> $1::vector) AS score
    FROM {table} v JOIN channels c USING (name)
    ORDER BY v.embedding <=> $1::vector
    LIMIT $2)
SELECT * FROM nn ORDER BY score DESC, name
"""

# What the snapshot was built from: the sources loaded, the channel count, and the transaction that last wrote
# the word statistics (every change to ``channels`` ends with store.refresh_term_stats, which rewrites them).
_SNAPSHOT_KEY_SQL = """
SELECT coalesce((SELECT string_agg(source || '=' || content_hash, ',' ORDER BY source) FROM channel_sources), '')
    || '/' || coalesce((SELECT ndoc::text || '@' || xmin::text FROM channel_term_stats WHERE word = ''), '0')
"""
_SNAPSHOT_SQL = """
SELECT name, aliases, description, units, writable, prior, name_words, text_words,
       area, system, family, device, field, signal, properties ->> 'family_aliases' AS family_aliases
FROM channels ORDER BY name
"""

_CHILDREN_SQL = """
SELECT split_part(substr(path, $2), ':', 1) AS seg, count(*) AS n,
       bool_or(split_part(substr(path, $2), ':', 2) = '' AND strpos(substr(path, $2), ':') = 0) AS leaf,
       min(description) AS description
FROM channels
WHERE $1 = '' OR left(path, length($1) + 1) = $1 || ':'
GROUP BY seg
ORDER BY seg
"""


def _build_snapshot(rows: Sequence[asyncpg.Record]) -> tuple[Catalog, KeywordIndex]:
    catalog = Catalog.from_rows(
        (
            r["area"],
            r["system"],
            r["family"],
            r["device"],
            r["field"],
            r["signal"],
            r["family_aliases"],
            r["description"],
        )
        for r in rows
        if r["family"] and r["device"]
    )
    index = KeywordIndex.build(
        (r["name"], r["aliases"], r["description"], r["units"], r["writable"], r["prior"], r["name_words"],
         r["text_words"])
        for r in rows
    )  # fmt: skip
    return catalog, index


def _indexed_hit(index: KeywordIndex, i: int, score: float) -> ChannelHit:
    c = index.channels[i]
    return ChannelHit(name=c.name, score=round(score, 6), description=c.description, units=c.units, writable=c.writable)


def _hits(rows: Sequence[asyncpg.Record]) -> list[ChannelHit]:
    return [
        ChannelHit(
            name=r["name"],
            score=round(float(r["score"]), 6),
            description=r["description"],
            units=r["units"],
            writable=r["writable"],
        )
        for r in rows
    ]


class ChannelFinder:
    """Search and navigate the channel database.

    Args:
        settings: Tern settings (``channels_load_bundled``, ``limits_path``, ``embedding_*``, ``rrf_k``,
            ``embedding_batch_size``).
        db: an asyncpg pool (hybrid runs its two searches on two connections) or one connection.
        embedder: an embedding provider, None for none, or ``CONFIGURED`` (the one the settings configure,
            built on first semantic search; ``tern.ariel.providers``).
    """

    def __init__(
        self, settings: TernSettings, db: asyncpg.Pool | Conn, *, embedder: EmbeddingProvider | None = CONFIGURED
    ) -> None:
        self.settings = settings
        self.db = db
        self._embedder = embedder
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._embedded: set[str] = set()  # models whose pending embeddings were computed by this finder
        self._snapshot: tuple[str, Catalog, KeywordIndex] | None = None  # (what it was built from, ...)
        self._snapshot_lock = asyncio.Lock()
        self._tables: dict[str, str] = {}  # embedding model -> its table (a registration never changes)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        if isinstance(self.db, asyncpg.Pool):
            async with self.db.acquire() as conn:
                yield conn
        else:
            yield self.db

    async def ensure_loaded(self) -> store.UpsertCounts | None:
        """Load the bundled database once (when ``settings.channels.load_bundled``); the counts when this call
        loaded it, else None. Raises ``LimitsDatabaseError`` when the limits database does not load."""
        if self._loaded or not self.settings.channels.load_bundled:
            return None
        async with self._load_lock:
            if self._loaded:
                return None
            async with self._conn() as conn:
                counts = await store.ensure_bundled(conn, self.settings.control.limits_path)
            self._loaded = True
            return counts

    async def embedder(self) -> EmbeddingProvider | None:
        """The embedding provider (built from the settings on first use). Raises ``EmbeddingError``."""
        if self._embedder is CONFIGURED:
            self._embedder = await configured_embedder(self.settings)
        return self._embedder

    # -- search ------------------------------------------------------------------------------------------
    async def find(self, query: str, mode: ChannelFindMode = "keyword", limit: int = 10) -> ChannelFindResponse:
        """Find channels matching ``query``.

        Args:
            query: a description in plain words ("cav 1 fwd pwr") or a channel name or alias.
            mode: keyword, semantic or hybrid (see the module docstring); semantic parts degrade to keyword.
            limit: the most hits returned, 1..``MAX_LIMIT``.

        Raises:
            ValueError: unknown mode, limit out of range, or a blank query.
        """
        if mode not in CHANNEL_FIND_MODES:
            raise ValueError(f"unknown channel search mode {mode!r}; modes: {', '.join(CHANNEL_FIND_MODES)}")
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        if not query.strip():
            raise ValueError("the channel query is blank")
        await self.ensure_loaded()
        resp = ChannelFindResponse(query=query, mode=mode, mode_used=mode)
        if mode == "keyword":
            snap = await self.snapshot()  # checked once a find: one small statement
            resp.hits = await self.keyword(query, limit, snap)
        elif mode == "semantic":
            # the snapshot check (for the set) is in flight while the vector search runs
            snap, (hits, why) = await asyncio.gather(self.snapshot(), self.semantic(query, limit))
            if hits is None:
                resp.hits, resp.mode_used = await self.keyword(query, limit, snap), "keyword"
                resp.notice = f"Semantic search unavailable: {why}; showing keyword results."
            else:
                resp.hits = hits
        else:
            n = max(HYBRID_CANDIDATES_MIN, 3 * limit)

            async def keyword_half() -> tuple[tuple[Catalog, KeywordIndex], list[ChannelHit]]:
                checked = await self.snapshot()
                return checked, await self.keyword(query, n, checked)

            # the vector search's statements are in flight while the snapshot is checked and the keyword ranking
            # computes: the find waits for the longer of the two halves, not their sum
            (semantic, why), (snap, keyword) = await asyncio.gather(self.semantic(query, n), keyword_half())
            if semantic is None:
                resp.hits, resp.mode_used = keyword[:limit], "keyword"
                resp.notice = f"Hybrid search used keyword search only: {why}."
            else:
                by_name = {h.name: h for h in [*semantic, *keyword]}
                fused = rrf_scores([[h.name for h in keyword], [h.name for h in semantic]], k=self.settings.ariel.rrf_k)
                resp.hits = [by_name[n].model_copy(update={"score": round(s, 6)}) for n, s in fused[:limit]]
        understood = resolve(query, snap[0])
        if understood is not None:
            self._lead_with_set(resp, understood, limit, snap[1])
        return resp

    async def snapshot(self) -> tuple[Catalog, KeywordIndex]:
        """The hierarchy's ordered instances and family names (``tern.channel_finder.understanding.Catalog``) and
        the keyword index (``tern.channel_finder.index.KeywordIndex``), built together from one read of the
        ``channels`` table (in a thread: ~2 s at 100,000 channels) and rebuilt when anything in it changed (a
        source (re)loaded or imported, channels added, changed or removed: ``_SNAPSHOT_KEY_SQL``)."""
        async with self._conn() as conn:
            key = await conn.fetchval(_SNAPSHOT_KEY_SQL)
            snap = self._snapshot
            if snap is not None and snap[0] == key:
                return snap[1], snap[2]
            async with self._snapshot_lock:  # 50 concurrent first finds build it once
                snap = self._snapshot
                if snap is None or snap[0] != key:
                    rows = await conn.fetch(_SNAPSHOT_SQL)
                    catalog, index = await asyncio.to_thread(_build_snapshot, rows)
                    snap = self._snapshot = (key, catalog, index)
                return snap[1], snap[2]

    async def catalog(self) -> Catalog:
        """The hierarchy's ordered instances and family names (see :meth:`snapshot`)."""
        return (await self.snapshot())[0]

    async def understand(self, query: str) -> Resolution | None:
        """The set of channels ``query`` means (``tern.channel_finder.understanding.resolve``), or None when unsure."""
        return resolve(query, await self.catalog())

    def _lead_with_set(self, resp: ChannelFindResponse, res: Resolution, limit: int, index: KeywordIndex) -> None:
        """Put the understood set first in ``resp.hits`` (the ranking's hits after it, as alternatives, up to
        ``max(limit, set size)`` hits, at most ``MAX_LIMIT``) and describe it in ``resp.channel_set``.

        This is also the hybrid guarantee: a channel whose every level the request names is never fused away."""
        names = [n for n in res.names if n in index.by_name]
        if not names:
            return
        ranked = {h.name: h for h in resp.hits}
        lead = [
            (ranked.get(n) or _indexed_hit(index, index.by_name[n], 0.0)).model_copy(update={"in_set": True})
            for n in names
        ]
        rest = [h for h in resp.hits if h.name not in set(names)]
        resp.hits = (lead + rest)[: min(MAX_LIMIT, max(limit, len(lead)))]
        resp.channel_set = ChannelSet(
            names=names, count=len(names), kind=res.kind, confidence=res.confidence, explanation=res.explanation
        )

    async def keyword(
        self, query: str, limit: int, snap: tuple[Catalog, KeywordIndex] | None = None
    ) -> list[ChannelHit]:
        """An exact name or alias first, then the term-match ranking (module docstring); the trigram fallback
        when neither finds anything.

        The exact match and the ranking run on the in-memory snapshot (:meth:`snapshot`,
        ``tern.channel_finder.index.KeywordIndex.rank``): every channel containing a query word is scored, exactly
        as ``_RANK_SQL`` would score it, with one pass over those words' postings; only the trigram fallback
        (no word known) is a statement of its own. ``snap``: a snapshot already checked by this find.
        """
        terms = query_terms(query)
        text = query.strip()
        _, index = snap or await self.snapshot()
        exact = index.exact_ids(text, limit)
        hits = [_indexed_hit(index, i, 1000 + index.channels[i].prior) for i in exact]
        if terms:
            ranked = index.rank(terms, limit, exclude=exact)
            hits += [_indexed_hit(index, i, score) for i, score in ranked]
        if not hits:
            sql = _TRIGRAM_SQL % {"th": f"'{TRIGRAM_THRESHOLD}'"}
            async with self._conn() as conn, conn.transaction():
                hits = _hits(await conn.fetch(sql, text, limit))
        return hits[:limit]

    async def semantic(self, query: str, limit: int) -> tuple[list[ChannelHit] | None, str]:
        """Nearest channels by embedding, or ``(None, why not)`` when semantic search is unavailable."""
        try:
            emb = await self.embedder()
        except EmbeddingError as exc:
            return None, f"embedding provider unavailable ({exc})"
        if emb is None:
            return None, "no embedding provider is configured (TERN_ARIEL__EMBEDDING_PROVIDER=none)"
        if emb.model not in self._embedded:
            try:
                await self.embed_pending(emb)
            except EmbeddingError as exc:
                return None, f"channel descriptions could not be embedded ({exc})"
        try:
            [vec] = await emb.embed([" ".join(query_terms(query)) or query])
        except EmbeddingError as exc:
            return None, f"the query could not be embedded ({exc})"
        async with self._conn() as conn:
            table = self._tables.get(emb.model) or await store.embedding_table(conn, emb.model)
            if table is None:
                return None, f"no channel embeddings of model {emb.model!r} are stored"
            self._tables[emb.model] = table
            async with conn.transaction():
                await conn.execute(
                    f"SET LOCAL hnsw.ef_search = {max(40, min(1000, 2 * limit))}; "
                    "SET LOCAL hnsw.iterative_scan = relaxed_order"
                )
                rows = await conn.fetch(_SEMANTIC_SQL.format(table=table), store.vector_literal(vec), limit)
        return _hits(rows), ""

    async def embed_pending(self, emb: EmbeddingProvider, progress: Any = None) -> int:
        """Embed every channel without a current vector of ``emb.model``; returns how many were embedded.
        ``progress(done)`` is called after each batch when given. Raises ``EmbeddingError``."""
        batch = self.settings.ariel.embedding_batch_size
        done = 0
        async with self._conn() as conn:
            probe = await emb.embed(["dimension probe"])
            table = await store.embedding_table(conn, emb.model, len(probe[0]))
            assert table is not None
            while True:
                rows = await store.pending_embeddings(conn, table, batch)
                if not rows:
                    break
                vecs = await emb.embed([store.embedding_text(r["name"], r["description"], r["aliases"]) for r in rows])
                await store.store_embeddings(conn, table, rows, vecs)
                done += len(rows)
                if progress is not None:
                    progress(done)
        self._embedded.add(emb.model)
        return done

    # -- hierarchy ---------------------------------------------------------------------------------------
    async def children(self, under: str = "") -> list[HierarchyNode]:
        """The children of hierarchy path ``under`` ("" for the top level, ``SR:RF`` for the RF system of the
        storage ring), each with its channel count. Raises ``ValueError`` when no channel lies under it."""
        await self.ensure_loaded()
        prefix = under.strip().strip(":")
        depth = len(prefix.split(":")) if prefix else 0
        async with self._conn() as conn:
            rows = await conn.fetch(_CHILDREN_SQL, prefix, len(prefix) + 2 if prefix else 1)
            if not rows:
                top = [r["seg"] for r in await conn.fetch(_CHILDREN_SQL, "", 1)]
                raise ValueError(f"no channels under {prefix!r}; the top level is: {', '.join(top) or '(empty)'}")
        level = HIERARCHY_LEVELS[depth] if depth < len(HIERARCHY_LEVELS) else f"level{depth + 1}"
        nodes = []
        for r in rows:
            path = f"{prefix}:{r['seg']}" if prefix else r["seg"]
            leaf = bool(r["leaf"]) and r["n"] == 1
            desc = r["description"] if leaf else segment_description(path.split(":"))
            nodes.append(
                HierarchyNode(path=path, segment=r["seg"], level=level, channels=r["n"], description=desc, leaf=leaf)
            )
        return nodes
