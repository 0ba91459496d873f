"""The channel database in PostgreSQL (table ``channels``, migration ``320_channels.sql``): records, the bundled
database, idempotent upserts, and the embeddings of descriptions.

Upserts are bulk and idempotent: one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT (name) DO UPDATE ...
WHERE <something changed>``, so importing the same file twice changes nothing and reports every row as
unchanged. ``writable`` always comes from the limits database, never from an import.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from tern.channel_finder.naming import describe, query_terms, words
from tern.control.limits import LimitsDatabase
from tern.db import Conn
from tern.models.channel_finder import HIERARCHY_LEVELS

BUNDLED_SOURCE = "bundled"
NAMING_VERSION = "1"  # bump when tern.channel_finder.naming changes what it writes: the bundled rows are rebuilt
_LOAD_LOCK = 0x7E2A_0300  # advisory lock id: one loader at a time


class ChannelRecord(BaseModel):
    """One channel as stored. ``parts`` maps hierarchy levels (``HIERARCHY_LEVELS``) to segments; ``path`` is
    the hierarchy path (``SR:RF:CAVITY:01:POWER:REV``)."""

    name: str
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    parts: dict[str, str] = Field(default_factory=dict)
    path: str = ""
    units: str = ""
    writable: bool = False
    tags: list[str] = Field(default_factory=list)
    properties: dict[str, str] = Field(default_factory=dict)
    prior: float = 0.0
    name_words: str = ""

    def text_words(self) -> str:
        """The description, aliases, tags and property values as normalised search words (weight B)."""
        return " ".join(words(" ".join([self.description, *self.aliases, *self.tags, *self.properties.values()])))


class UpsertCounts(BaseModel):
    """Outcome of an upsert: rows added, changed, and left as they were."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0


def family_sizes(names: Sequence[str]) -> Counter[str]:
    """How many devices each ``AREA:SYSTEM:FAMILY`` has (for the sector numbering of ``tern.channel_finder.naming``)."""
    devices = {tuple(n.split(":")[:4]) for n in names if n.count(":") == 5}
    return Counter(":".join(d[:3]) for d in devices)


def record_for(name: str, writable: bool, sizes: Counter[str], **given: Any) -> ChannelRecord:
    """A record for ``name``: what the naming convention says (``tern.channel_finder.naming.describe``), overridden by
    what was ``given`` (an import's description, aliases, hierarchy ``parts``, units, tags, properties).

    A name outside the convention gets its ``:``-separated segments as hierarchy path, its name as description
    when none is given, and its segments with their abbreviations expanded as name words (``SR01C:BPM1:X`` ->
    "sr 1c bpm 1 x beam position monitor horizontal ...")."""
    d = describe(name, sizes.get(":".join(name.split(":")[:3]), 0), writable)
    rec = ChannelRecord(name=name, writable=writable)
    if d is not None:
        rec.description, rec.units, rec.parts, rec.prior = d.description, d.units, d.parts, d.prior
        base = d.name_words
    else:
        split = re.sub(r"([A-Za-z])(\d)", r"\1 \2", name.replace(":", " "))
        base = " ".join([split, *query_terms(split)])
    for k, v in given.items():
        if v not in (None, "", [], {}):
            setattr(rec, k, v)
    if not rec.description:
        rec.description = name
    alias_words = [" ".join([*words(a), *query_terms(a)]) for a in rec.aliases]  # as typed, and as a query
    rec.name_words = " ".join(words(" ".join([base, *alias_words])))
    ordered = [rec.parts[level] for level in HIERARCHY_LEVELS if rec.parts.get(level)]
    rec.path = ":".join(ordered) if ordered else name
    return rec


def bundled_records(limits_path: Path) -> list[ChannelRecord]:
    """Every channel of the limits database at ``limits_path`` with its description built from the naming
    convention; writable as the database says. Raises ``LimitsDatabaseError`` when it does not load."""
    db = LimitsDatabase.load(limits_path)
    sizes = family_sizes(list(db.channels))
    return [record_for(name, lim.writable, sizes) for name, lim in db.channels.items()]


_COLUMNS = (
    ("name", "text"),
    ("aliases", "text"),  # joined with \x1f, split in SQL (unnest cannot take ragged text[][])
    ("description", "text"),
    ("area", "text"),
    ("system", "text"),
    ("family", "text"),
    ("device", "text"),
    ("field", "text"),
    ("signal", "text"),
    ("path", "text"),
    ("units", "text"),
    ("writable", "bool"),
    ("tags", "text"),
    ("properties", "jsonb"),
    ("source", "text"),
    ("prior", "real"),
    ("name_words", "text"),
    ("text_words", "text"),
)
_SEP = "\x1f"
_SELECT = ", ".join(
    f"coalesce(string_to_array(nullif({c}, ''), E'\\x1f'), '{{}}')" if c in ("aliases", "tags") else c
    for c, _ in _COLUMNS
)
_MUTABLE = [c for c, _ in _COLUMNS if c != "name"]
_UPSERT = f"""
WITH merged AS (
    INSERT INTO channels AS t ({", ".join(c for c, _ in _COLUMNS)})
    SELECT {_SELECT}
    FROM unnest({", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(_COLUMNS, start=1))})
        AS s({", ".join(c for c, _ in _COLUMNS)})
    ON CONFLICT (name) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _MUTABLE)}, updated_at = now()
    WHERE ({", ".join(f"t.{c}" for c in _MUTABLE if c != "source")})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _MUTABLE if c != "source")})
    RETURNING (xmax = 0) AS inserted)
SELECT count(*) FILTER (WHERE inserted) AS added, count(*) FILTER (WHERE NOT inserted) AS updated FROM merged
"""


def _row(rec: ChannelRecord, source: str) -> list[Any]:
    p = rec.parts
    return [
        rec.name,
        _SEP.join(rec.aliases),
        rec.description,
        *(p.get(level, "") for level in HIERARCHY_LEVELS),
        rec.path,
        rec.units,
        rec.writable,
        _SEP.join(rec.tags),
        json.dumps(rec.properties),
        source,
        rec.prior,
        rec.name_words,
        rec.text_words(),
    ]


async def upsert_channels(conn: Conn, records: Sequence[ChannelRecord], source: str, batch: int = 5000) -> UpsertCounts:
    """Insert or update ``records`` (by name) in one transaction; unchanged rows are left alone. When anything
    changed, the word statistics are refreshed (:func:`refresh_term_stats`).

    Raises ``ValueError`` when a name appears twice in ``records``.
    """
    dup = [n for n, c in Counter(r.name for r in records).items() if c > 1]
    if dup:
        raise ValueError(f"channel {dup[0]!r} appears more than once")
    counts = UpsertCounts()
    async with conn.transaction():
        for i in range(0, len(records), batch):
            rows = [_row(r, source) for r in records[i : i + batch]]
            cols = [list(c) for c in zip(*rows, strict=True)]
            res = await conn.fetchrow(_UPSERT, *cols)
            assert res is not None
            counts.added += res["added"]
            counts.updated += res["updated"]
    counts.unchanged = len(records) - counts.added - counts.updated
    if counts.added or counts.updated:
        await refresh_term_stats(conn)
    return counts


def content_hash(path: Path) -> str:
    """sha256 of the file at ``path`` and ``NAMING_VERSION`` (what the bundled rows were built from)."""
    return hashlib.sha256(path.read_bytes() + NAMING_VERSION.encode()).hexdigest()


async def ensure_bundled(conn: Conn, limits_path: Path) -> UpsertCounts | None:
    """Load the bundled channel database (the limits database's channels) unless the same content is loaded
    already, removing bundled channels the limits database no longer lists; returns the counts, or None when
    nothing had to be done. Serialised by an advisory lock, so
    concurrent first uses load once. Raises ``LimitsDatabaseError`` when the limits database does not load."""
    digest = content_hash(limits_path)
    if await conn.fetchval("SELECT content_hash FROM channel_sources WHERE source = $1", BUNDLED_SOURCE) == digest:
        return None
    await conn.execute("SELECT pg_advisory_lock($1)", _LOAD_LOCK)
    try:
        if await conn.fetchval("SELECT content_hash FROM channel_sources WHERE source = $1", BUNDLED_SOURCE) == digest:
            return None
        records = bundled_records(limits_path)
        gone = await conn.fetchval(
            "WITH d AS (DELETE FROM channels WHERE source = $1 AND NOT name = ANY($2::text[]) RETURNING 1) "
            "SELECT count(*) FROM d",
            BUNDLED_SOURCE,
            [r.name for r in records],
        )
        counts = await upsert_channels(conn, records, BUNDLED_SOURCE)
        if gone and not (counts.added or counts.updated):
            await refresh_term_stats(conn)
        await record_source(conn, BUNDLED_SOURCE, digest, len(records))
        return counts
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOAD_LOCK)


async def record_source(conn: Conn, source: str, digest: str, n: int) -> None:
    """Remember that ``source`` with content ``digest`` (``n`` channels) is loaded."""
    await conn.execute(
        "INSERT INTO channel_sources (source, content_hash, channels) VALUES ($1, $2, $3) ON CONFLICT (source) DO "
        "UPDATE SET content_hash = EXCLUDED.content_hash, channels = EXCLUDED.channels, loaded_at = now()",
        source,
        digest,
        n,
    )


async def refresh_term_stats(conn: Conn) -> None:
    """Recompute ``channel_term_stats`` (each search word's document frequency, from ``ts_stat``) and the
    planner statistics; call after changing ``channels`` (0.1 s at 100,000 channels)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM channel_term_stats")
        await conn.execute(
            "INSERT INTO channel_term_stats (word, ndoc) SELECT word, ndoc FROM ts_stat('SELECT search FROM channels') "
            "UNION ALL SELECT '', count(*) FROM channels"
        )
    await conn.execute("ANALYZE channels")


async def count_channels(conn: Conn) -> int:
    n: int = await conn.fetchval("SELECT count(*) FROM channels")
    return n


# --- embeddings -----------------------------------------------------------------------------------------
def embedding_table_name(model: str) -> str:
    """``channel_emb_<slug>_<hash>``: a readable, bounded, collision-free table name for a model id."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:30]
    return f"channel_emb_{slug}_{hashlib.sha1(model.encode()).hexdigest()[:8]}"


async def embedding_table(conn: Conn, model: str, dim: int | None = None) -> str | None:
    """The embeddings table of ``model``, created with its HNSW cosine index when ``dim`` is given and it is new;
    None when it has none and ``dim`` is None. Raises ``ValueError`` when ``dim`` contradicts the registered one."""
    row = await conn.fetchrow("SELECT dim, table_name FROM channel_embedding_models WHERE model = $1", model)
    if row:
        if dim is not None and dim != row["dim"]:
            raise ValueError(f"embedding model {model!r} is registered with dim {row['dim']}, got {dim}")
        name: str = row["table_name"]
        return name
    if dim is None:
        return None
    name = embedding_table_name(model)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {name} (
                    name text PRIMARY KEY REFERENCES channels (name) ON DELETE CASCADE,
                    content_hash text NOT NULL,
                    embedding vector({int(dim)}) NOT NULL)"""
        )
        await conn.execute(f"CREATE INDEX IF NOT EXISTS {name}_hnsw ON {name} USING hnsw (embedding vector_cosine_ops)")
        await conn.execute(
            "INSERT INTO channel_embedding_models (model, dim, table_name) VALUES ($1, $2, $3) "
            "ON CONFLICT (model) DO NOTHING",
            model,
            dim,
            name,
        )
    return name


def embedding_text(name: str, description: str, aliases: Sequence[str]) -> str:
    """The text embedded for a channel: its description, aliases and name."""
    return " ".join([description, *aliases, name])


async def pending_embeddings(conn: Conn, table: str, limit: int) -> list[asyncpg.Record]:
    """Channels with no vector in ``table``, or one made from older text: ``name, description, aliases,
    content_hash`` rows."""
    return await conn.fetch(
        f"""SELECT c.name, c.description, c.aliases, c.content_hash FROM channels c LEFT JOIN {table} v USING (name)
            WHERE v.name IS NULL OR v.content_hash <> c.content_hash ORDER BY c.name LIMIT $1""",
        limit,
    )


async def store_embeddings(
    conn: Conn, table: str, rows: Sequence[asyncpg.Record], vectors: Sequence[Sequence[float]]
) -> None:
    """Store one vector per row of :func:`pending_embeddings` (replacing older ones)."""
    await conn.executemany(
        f"INSERT INTO {table} (name, content_hash, embedding) VALUES ($1, $2, $3::vector) "
        "ON CONFLICT (name) DO UPDATE SET content_hash = EXCLUDED.content_hash, embedding = EXCLUDED.embedding",
        [(r["name"], r["content_hash"], vector_literal(v)) for r, v in zip(rows, vectors, strict=True)],
    )


def vector_literal(vec: Sequence[float]) -> str:
    """A pgvector text literal ``[x1,x2,...]``."""
    return "[" + ",".join(f"{float(x):.7g}" for x in vec) + "]"
