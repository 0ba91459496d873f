"""The PostgreSQL search backend: full text (tsvector + GIN), trigram fallback, pgvector semantic search.

Keyword search is one statement (``keyword_sql``). The query goes through ``websearch_to_tsquery`` (quoted
phrases, ``or``, ``-term``). Entries matching every term come first; when they are fewer than ``limit``,
entries matching some term follow (a question in plain words still finds related entries); when no term
matches at all (typos), pg_trgm word similarity finds entries instead. Within the first two tiers the rank is
BM25 (Robertson and Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009) over the
weighted vector (title A 1.0, text B 0.4, tags, keywords and summary C 0.2): for each query term, idf times
the saturated weighted term frequency tf / (tf + k1), k1 = 1.2, no length normalisation (b = 0). Document
frequencies come from the planner statistics that ANALYZE keeps for the ``search`` column, so they cost
nothing to maintain and no extra round trip (see ``_TERMS_CTE``).

Semantic ranking is cosine similarity ``1 - (a <=> b)`` on the model's HNSW index (``semantic_sql``), with
pgvector's iterative scan so that filters do not starve the result; when a search still finds fewer than it
asked for, the exact search over the filtered entries (``semantic_exact_sql``) answers instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from tern.ariel import store
from tern.ariel.backends.base import IndexReport
from tern.ariel.models import LogbookEntry
from tern.ariel.query import SearchFilters
from tern.models import LogbookHit

TRIGRAM_THRESHOLD = 0.4  # pg_trgm word_similarity threshold of the typo fallback (0..1)
BM25_K1 = 1.2  # BM25 term-frequency saturation: the usual default (Robertson and Zaragoza 2009: 1.2 to 2.0)
EXACT_SEARCH_BELOW = 2000  # filtered semantic search: fewer entries pass the filters -> exact search (entries)
UNSEEN_LEXEME_FREQ = 0.005  # the most an unlisted lexeme's share of entries is assumed to be (see _TERMS_CTE)
# What visiting one match through the GIN bitmap costs, in entries read in ts order and tested (see _window_ctes):
# at 100,000 entries ~2.5 us per match (9,104 in 22.5 ms) against ~0.7 us per entry (3,210 in 2.3 ms)
WINDOW_READ_COST = 3
# The keyword window ranks at least this share of the entries' count in matches: the best-scoring class of a common
# query grows with the table, and a window of 300 matches at 1,000,000 entries missed it (tie-aware overlap 0.78
# with the exact top 30; 1.00 at 0.3%, which is 300 at 100,000; benchmarks/README.md, Scale)
WINDOW_MIN_SHARE = 0.003
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


# The query's positive lexemes (``querytree`` drops negated ones), each as a one-lexeme tsquery ``tq`` with its
# BM25 inverse document frequency in Lucene's form, idf = ln(1 + (N - df + 0.5) / (df + 0.5)). N is
# ``pg_class.reltuples`` and df = N * f, f being the lexeme's share of entries in the statistics ANALYZE keeps
# for ``search`` (``pg_stats.most_common_elems`` / ``most_common_elem_freqs``, whose last two numbers are the
# least and greatest share listed). A lexeme missing from the list is rarer than any listed one and gets the
# planner's own estimate for that case, f = min(0.005, least share / 2) (PostgreSQL,
# src/backend/tsearch/ts_selfuncs.c). Never analysed: no statistics row, and every idf is 1. The lexemes are
# read from the tsquery's text form, where each is quoted with quotes doubled and backslashes escaped, so
# ``'<lexeme as printed>'`` is a valid one-lexeme tsquery; the statistics hold it unescaped.
_TERMS_CTE = r"""stats AS MATERIALIZED (
    SELECT s.most_common_elems::text::text[] AS elems, s.most_common_elem_freqs AS freqs,
           greatest(c.reltuples, 1)::float8 AS n
    FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
    JOIN pg_stats s ON s.schemaname = ns.nspname AND s.tablename = c.relname
    WHERE c.oid = 'ariel_entries'::regclass AND s.attname = 'search' AND NOT s.inherited),
terms AS MATERIALIZED (
    SELECT ('''' || m.lex || '''')::tsquery AS tq,
           coalesce(ln(1 + (st.n - st.n * f.f + 0.5) / (st.n * f.f + 0.5)), 1.0) AS idf, f.f AS share, st.n
    FROM (SELECT DISTINCT r[1] AS lex
          FROM q, regexp_matches(querytree(q.query), '''((?:[^'']|'''')+)''', 'g') AS r) m
    LEFT JOIN stats st ON true
    LEFT JOIN LATERAL (
        SELECT coalesce(st.freqs[array_position(st.elems, replace(replace(m.lex, '\\', '\'), '''''', ''''))],
                        least(%(unseen)s, st.freqs[array_length(st.elems, 1) + 1] / 2)) AS f) f ON true)"""


def bm25_sql(alias: str = "e") -> str:
    """BM25 of ``alias.search`` against the statement's ``terms``: the sum over terms of idf * tf / (tf + k1).

    tf is ``ts_rank_cd`` of the one-lexeme query: the sum of the weights of the lexeme's occurrences (title A
    1.0, text B 0.4, tags/keywords/summary C 0.2), a field-weighted term frequency as in BM25F (Robertson,
    Zaragoza and Taylor, "Simple BM25 extension to multiple weighted fields", 2004). k1 = ``BM25_K1``; b = 0.
    A query with no positive term (``-vacuum``) scores 0 everywhere, leaving the order to time.
    """
    k1 = BM25_K1
    return f"(SELECT coalesce(sum(t.idf * (1 - {k1} / (ts_rank_cd({alias}.search, t.tq) + {k1}))), 0) FROM terms t)"


def keyword_sql(text: str, filters: SearchFilters | None, limit: int, window: int = 0) -> tuple[str, list[Any]]:
    """The keyword search statement and its arguments (``$1`` the text, filters from ``$2``).

    ``limit`` (rows, 1..100) is written into the statement rather than passed, so that the prepared
    statement settles on PostgreSQL's generic plan instead of planning every call. Rows carry ``tier``:

    0. entries matching every term, by BM25 (``bm25_sql``), newest first on ties. With ``window`` (matches,
       > 0; 0 = off) and no filters, when the terms are common the BM25 ranking covers only the newest
       entries, about ``window`` of them matching (see ``_window_ctes``); when that finds fewer than
       ``limit``, every match is ranked as without ``window``;
    1. only when tier 0 has fewer than ``limit`` rows and the query has more than one term: entries matching
       some term but not every one, by BM25, filling up to ``limit``;
    2. only when tiers 0 and 1 are empty (typos): entries whose title or text has pg_trgm word similarity
       at least ``TRIGRAM_THRESHOLD`` to the text. The threshold is set for this statement only with
       ``set_config(..., true)`` inside a one-time filter, which PostgreSQL evaluates before the scan it
       guards (the typo test checks that a 0.4..0.6 match is found, 0.6 being pg_trgm's default).

    The guards of tiers 1 and 2 are uncorrelated subqueries, run once: a tier whose guard is false costs
    nothing. The text reaches ``<%`` through the ``q`` row rather than as ``$1`` so that planning does not
    run the similarity against every sample value in the column statistics (milliseconds per plan).
    """
    n = int(limit)
    fsql, fargs = filter_sql(filters, 2)
    score = bm25_sql()
    if window > 0 and not fsql:
        tier0 = _window_ctes(int(window), n, score)
    else:
        tier0 = f"tier0 AS MATERIALIZED ({_every_match(n, score, fsql)})"
    sql = f"""
WITH q AS MATERIALIZED (
    SELECT txt, query,
           CASE WHEN numnode(query) = 0 OR strpos(query::text, '!') > 0 THEN query
                ELSE replace(query::text, ' & ', ' | ')::tsquery END AS anyq
    FROM (SELECT $1::text AS txt, websearch_to_tsquery('english', $1) AS query) AS parsed),
{_TERMS_CTE % {"unseen": UNSEEN_LEXEME_FREQ}},
{tier0},
tier1 AS MATERIALIZED (
    SELECT e.entry_id, e.title, e.author, e.ts, e.raw_text, {score} AS score
    FROM ariel_entries e, q
    WHERE (SELECT count(*) FROM tier0) < {n} AND q.anyq <> q.query
      AND e.search @@ q.anyq AND NOT e.search @@ q.query{fsql}
    ORDER BY score DESC, e.ts DESC
    LIMIT {n} - (SELECT count(*) FROM tier0)),
tier2 AS MATERIALIZED (
    SELECT e.entry_id, e.title, e.author, e.ts, e.raw_text,
           greatest(word_similarity(q.txt, e.title), word_similarity(q.txt, e.raw_text)) AS score
    FROM ariel_entries e, q
    WHERE NOT EXISTS (SELECT FROM tier0) AND NOT EXISTS (SELECT FROM tier1)
      AND (SELECT set_config('pg_trgm.word_similarity_threshold', '{TRIGRAM_THRESHOLD}', true)) IS NOT NULL
      AND (q.txt <% e.title OR q.txt <% e.raw_text){fsql}
    ORDER BY score DESC, e.ts DESC
    LIMIT {n}),
hits AS (SELECT 0 AS tier, * FROM tier0 UNION ALL SELECT 1, * FROM tier1 UNION ALL SELECT 2, * FROM tier2)
SELECT h.tier, h.entry_id, h.title, h.author, h.ts, h.score,
       CASE WHEN h.tier = 2 THEN h.title
            ELSE ts_headline('english', h.title, CASE WHEN h.tier = 0 THEN q.query ELSE q.anyq END,
                             '{_HEADLINE_TITLE}') END AS title_hl,
       CASE WHEN h.tier = 2 THEN left(h.raw_text, 200)
            ELSE ts_headline('english', h.raw_text, CASE WHEN h.tier = 0 THEN q.query ELSE q.anyq END,
                             '{_HEADLINE_TEXT}') END AS snippet
FROM hits h, q
ORDER BY h.tier, h.score DESC, h.ts DESC"""
    return sql, [text, *fargs]


def _every_match(n: int, score: str, fsql: str, guard: str = "true") -> str:
    """The ``n`` best entries by ``score`` among all that match every term and pass ``fsql``, when ``guard``."""
    return f"""
    SELECT e.entry_id, e.title, e.author, e.ts, e.raw_text, {score} AS score
    FROM ariel_entries e, q
    WHERE {guard} AND e.search @@ q.query{fsql}
    ORDER BY score DESC, e.ts DESC
    LIMIT {n}"""


def _window_ctes(window: int, n: int, score: str) -> str:
    """Tier 0 of ``keyword_sql`` ranking only the newest entries when the query's terms are common.

    BM25 over every entry that matches costs a heap visit and a score per match: for a word in a tenth of
    the entries that is most of the table (at 100,000 entries, 9,104 matches, 7,631 heap pages and 24 ms of
    the 25 ms statement; the GIN lookup itself is 8 ms at most). The number of matches is estimated from
    the statistics ``_TERMS_CTE`` reads, est = N x the product of the terms' shares (as if independent).
    The window is w = max(``window``, ``WINDOW_MIN_SHARE`` x N) matches. When ``WINDOW_READ_COST`` x est
    exceeds ``k = ceil(w x N / est)``, reading the newest k entries in
    ``ts`` order (the ``ariel_entries_ts`` index, pages mostly in a row) and testing each against the query
    is cheaper than visiting every match (a match visited through the GIN bitmap costs about as much as
    ``WINDOW_READ_COST`` entries read in order), and finds about w of them: ``recent`` holds them,
    ``tier0w`` ranks them by BM25. Otherwise (rare terms, no statistics, no positive term) k is 0 and
    ``recent`` is empty. When ``tier0w`` has fewer than ``n`` rows (rare terms, or terms that occur together
    less often than independence predicts), ``tier0all`` ranks every match, as without a window; its guard is
    evaluated once, so it costs nothing otherwise. A window trades exactness for time: the top ``n`` are the
    best of the newest w or so matches, not of all of them (measured in benchmarks/README.md)."""
    return f"""bound AS MATERIALIZED (
    SELECT CASE WHEN {WINDOW_READ_COST} * x.est * x.est > x.w * x.n
                THEN least(x.n, ceil(x.w * x.n / x.est))::bigint ELSE 0 END AS k
    FROM (SELECT max(t.n) AS n, max(t.n) * exp(sum(ln(greatest(t.share, 1e-12)))) AS est,
                 greatest({window}::float8, {WINDOW_MIN_SHARE} * max(t.n)) AS w
          FROM terms t HAVING count(*) > 0 AND count(t.share) = count(*)) AS x),
recent AS MATERIALIZED (
    SELECT e.entry_id, e.title, e.author, e.ts, e.raw_text, e.search
    FROM ariel_entries e
    ORDER BY e.ts DESC
    LIMIT coalesce((SELECT k FROM bound), 0)),
tier0w AS MATERIALIZED (
    SELECT e.entry_id, e.title, e.author, e.ts, e.raw_text, {score} AS score
    FROM recent e, q
    WHERE e.search @@ q.query
    ORDER BY score DESC, e.ts DESC
    LIMIT {n}),
tier0all AS MATERIALIZED ({_every_match(n, score, "", f"(SELECT count(*) FROM tier0w) < {n}")}),
tier0 AS MATERIALIZED (
    SELECT * FROM tier0w WHERE (SELECT count(*) FROM tier0w) >= {n}
    UNION ALL SELECT * FROM tier0all)"""


def browse_sql(filters: SearchFilters | None, limit: int) -> tuple[str, list[Any]]:
    """No full text, only filters: the newest matching entries."""
    fsql, fargs = filter_sql(filters, 2)
    sql = f"""
SELECT e.entry_id, e.title, e.author, e.ts, 0.0::real AS score, e.title AS title_hl,
       left(e.raw_text, 200) AS snippet
FROM ariel_entries e WHERE true{fsql} ORDER BY e.ts DESC LIMIT $1"""
    return sql, [limit, *fargs]


def semantic_sql(
    table: str, vector: Sequence[float], filters: SearchFilters | None, limit: int
) -> tuple[str, list[Any]]:
    """Approximate nearest neighbours by cosine distance on ``table``'s HNSW index, nearest first (the
    iterative scan returns them in relaxed order; the outer ORDER BY re-sorts). ``score`` is the cosine
    similarity; the caller applies any minimum.

    The scan reads the embeddings table alone, and whether a vector is current (its ``content_hash`` is the
    entry's) and passes the filters is asked of each vector it yields, by a correlated ``EXISTS``. Written as a
    join, as before, the planner estimated the two equality conditions (``entry_id`` and ``content_hash``)
    as independent and expected about one matching row: it then read both tables whole by merge join and
    sorted every distance, an exact search of ~150 ms at 100,000 entries x 384 dims that never touched the
    HNSW index. The ``OFFSET 0`` keeps PostgreSQL from turning the ``EXISTS`` into that join (a sublink
    with an OFFSET is not pulled up: ``simplify_EXISTS_query`` in src/backend/optimizer/plan/subselect.c),
    so the condition stays a filter of the index scan, which is what pgvector's iterative scan continues
    past (pgvector README, "Iterative Index Scans"). The limit is written into the statement: as a
    parameter, the generic plan that a prepared statement may settle on after five executions would be
    costed for PostgreSQL's guess of 10% of the rows, for which sorting every distance looks cheaper."""
    fsql, fargs = filter_sql(filters, 2)
    sql = f"""
WITH nn AS MATERIALIZED (
    SELECT v.entry_id, v.embedding <=> $1::vector AS distance
    FROM {table} v
    WHERE EXISTS (SELECT FROM ariel_entries e
                  WHERE e.entry_id = v.entry_id AND e.content_hash = v.content_hash{fsql} OFFSET 0)
    ORDER BY v.embedding <=> $1::vector
    LIMIT {int(limit)})
SELECT e.entry_id, e.title, e.author, e.ts, 1 - nn.distance AS score, e.title AS title_hl,
       left(e.raw_text, 200) AS snippet
FROM nn JOIN ariel_entries e USING (entry_id)
ORDER BY nn.distance, e.entry_id"""
    return sql, [store.vector_literal(vector), *fargs]


def semantic_exact_sql(
    table: str, vector: Sequence[float], filters: SearchFilters | None, limit: int
) -> tuple[str, list[Any]]:
    """Exact nearest neighbours among the current vectors of the entries that pass ``filters``: every distance
    computed and sorted, never the HNSW index (``+ 0`` makes the sort key an expression the index cannot
    order by). Same columns and order as ``semantic_sql``; the recall reference of the scale benchmark."""
    fsql, fargs = filter_sql(filters, 2)
    sql = f"""
SELECT e.entry_id, e.title, e.author, e.ts, 1 - (v.embedding <=> $1::vector) AS score, e.title AS title_hl,
       left(e.raw_text, 200) AS snippet
FROM {table} v JOIN ariel_entries e USING (entry_id)
WHERE v.content_hash = e.content_hash{fsql}
ORDER BY (v.embedding <=> $1::vector) + 0, e.entry_id
LIMIT {int(limit)}"""
    return sql, [store.vector_literal(vector), *fargs]


def filtered_count_sql(filters: SearchFilters | None) -> tuple[str, list[Any]] | None:
    """How many entries pass ``filters``, counted up to ``EXACT_SEARCH_BELOW`` (the scan stops there); None
    without filters."""
    fsql, fargs = filter_sql(filters, 1)
    if not fsql:
        return None
    sql = f"SELECT count(*) FROM (SELECT FROM ariel_entries e WHERE true{fsql} LIMIT {EXACT_SEARCH_BELOW}) AS f"
    return sql, fargs


def hnsw_settings_sql(limit: int, ef_search: int, max_scan_tuples: int) -> str:
    """The ``SET LOCAL`` statements of one semantic search: ``hnsw.ef_search`` (at least twice ``limit``,
    at most pgvector's 1000), relaxed-order iterative scan, ``hnsw.max_scan_tuples``."""
    ef = max(int(ef_search), min(1000, 2 * int(limit)))
    return (
        f"SET LOCAL hnsw.ef_search = {min(1000, ef)}; SET LOCAL hnsw.iterative_scan = relaxed_order; "
        f"SET LOCAL hnsw.max_scan_tuples = {int(max_scan_tuples)}"
    )


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
        ef_search: pgvector ``hnsw.ef_search`` of semantic search (candidates; settings ``ariel.hnsw_ef_search``).
        max_scan_tuples: pgvector ``hnsw.max_scan_tuples`` (vectors; ``ariel.hnsw_max_scan_tuples``).
        keyword_window: matches BM25 ranks for a ``fusion`` keyword search when the terms are common (the
            ``window`` of ``keyword_sql``; ``ariel.hybrid_keyword_window``; 0 = every match).
    """

    name = "postgres"
    separate_index = False  # the storage of record is the index

    def __init__(
        self,
        db: asyncpg.Pool | store.Conn,
        trace: list[tuple[str, list[Any]]] | None = None,
        ef_search: int = 200,
        max_scan_tuples: int = 20_000,
        keyword_window: int = 300,
    ):
        self.db = db
        self.trace = trace
        self.ef_search = ef_search
        self.max_scan_tuples = max_scan_tuples
        self.keyword_window = keyword_window
        self._tables: dict[str, str] = {}  # model -> embeddings table; a registered model keeps its table

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

    async def keyword(
        self, query: str, filters: SearchFilters | None = None, limit: int = 10, *, fusion: bool = False
    ) -> list[LogbookHit]:
        """Every-term matches, then some-term matches, else trigram matches: one statement, one round trip
        (``keyword_sql``). Without text, the newest entries that pass the filters. With ``fusion`` (hybrid's
        keyword half), common terms are ranked over a window of about ``keyword_window`` of the newest
        matches (``keyword_sql``'s ``window``)."""
        text = query.strip()
        async with self._conn() as conn:
            if not text:
                return _hits(await self._fetch(conn, browse_sql(filters, limit)))
            window = self.keyword_window if fusion else 0
            return _hits(await self._fetch(conn, keyword_sql(text, filters, limit, window)))

    async def semantic(
        self,
        vector: Sequence[float],
        model: str,
        filters: SearchFilters | None = None,
        limit: int = 10,
        min_similarity: float = 0.0,
    ) -> list[LogbookHit] | None:
        """Cosine-similarity search, nearest first, hits below ``min_similarity`` dropped; None when ``model``
        has no embeddings stored.

        The HNSW search (``semantic_sql``) runs with ``hnsw_settings_sql``. With filters that fewer than
        ``EXACT_SEARCH_BELOW`` entries pass (``filtered_count_sql``, one more round trip), the exact search
        (``semantic_exact_sql``) runs instead: computing their distances is cheaper than an iterative scan
        that rejects nearly every vector it visits. When the HNSW search yields fewer than ``limit`` entries
        (more than ``max_scan_tuples`` vectors rejected), the exact search runs too, so a filtered search
        returns every entry that passes its filters, up to ``limit``. The model's table name is looked up
        once per backend (a registered model keeps its table); whether the table holds any vector is asked
        only when the search finds nothing.
        """
        async with self._conn() as conn:
            table = self._tables.get(model) or await store.embedding_table(conn, model)
            if table is None:
                return None
            try:
                count = filtered_count_sql(filters)
                few = count is not None and (await self._fetch(conn, count))[0][0] < EXACT_SEARCH_BELOW
                rows = []
                if not few:
                    async with conn.transaction():
                        await conn.execute(hnsw_settings_sql(limit, self.ef_search, self.max_scan_tuples))
                        rows = await self._fetch(conn, semantic_sql(table, vector, filters, limit))
                if len(rows) < limit:
                    rows = await self._fetch(conn, semantic_exact_sql(table, vector, filters, limit))
            except asyncpg.UndefinedTableError:  # dropped since it was looked up
                self._tables.pop(model, None)
                return None
            self._tables[model] = table
            if not rows and not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                return None
            return _hits([r for r in rows if r["score"] >= min_similarity])

    async def ensure_index(self, vectors: dict[str, int] | None = None) -> str:
        return "ariel_entries"  # made by the migrations; embedding tables on first use by enhancement

    async def index_entries(self, entries: Sequence[LogbookEntry]) -> IndexReport:
        return IndexReport(indexed=[e.entry_id for e in entries])  # the storage of record is the index

    async def index_embeddings(
        self, model: str, entry_ids: Sequence[str], vectors: Sequence[Sequence[float]]
    ) -> IndexReport:
        return IndexReport(indexed=list(entry_ids))  # stored by enhancement in the model's table, the index
