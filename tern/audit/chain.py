"""The audit hash chain: every ``audit_events`` row carries the hash of the row before it (issue 22).

Each row stores ``prev_hash`` (the ``row_hash`` of the row recorded just before it, or :data:`GENESIS` for the
first row) and ``row_hash``, the SHA-256 (lower-case hex) of its canonical form. The canonical form of a row is
the UTF-8 bytes of this JSON array, written by ``json.dumps(..., ensure_ascii=True, separators=(",", ":"),
allow_nan=True)``::

    ["tern-audit-v1", prev_hash, occurred_at, event_kind, run_id, step_id, request_id, actor, decision,
     channel, previous_value, value, readback, verified, comment, details, event_key]

- ``occurred_at``: the row's time in UTC as ISO 8601 with microseconds and ``+00:00``
  (``2026-12-07T00:01:02.123456+00:00``), PostgreSQL's ``timestamptz`` precision;
- ``previous_value``, ``value``, ``readback``: JSON numbers as Python's ``repr(float)`` (the shortest text that
  reads back to the same double; ``NaN``/``Infinity`` as Python writes them), or ``null``;
- ``verified``: ``true``, ``false`` or ``null``; the text fields as JSON strings or ``null``;
- ``details``: a JSON *string* holding PostgreSQL's own text output of the stored ``jsonb`` value
  (``details::text``: keys sorted by length then bytes, ``": "`` and ``", "`` separators), so the hash covers
  the details exactly as stored, proofs included, with no second JSON encoder to agree with;
- ``id`` is not hashed: the order of the chain is the ``prev_hash`` links (rows are walked by ``id``, which the
  insert lock makes follow the chain).

Inserts are serialized by a transaction-scoped advisory lock (:data:`CHAIN_LOCK`, taken by
:func:`tern.audit.store.record_event`), so 50 concurrent writers still build one chain. Rows recorded before the
chain existed are sealed once, in ``id`` order, by the migration that added it (``tern migrate``,
:func:`seal_unchained`): what they said before that moment cannot be checked; from then on every change is.

What the chain proves, and what it does not: an ``UPDATE`` of any hashed field, a deleted or inserted row in the
middle, and a row written without the chain are named by :func:`verify_chain`. Someone holding the owner role could
rewrite every hash after the row they changed, or delete the newest rows; record the head hash that ``tern verify
--audit`` prints somewhere else (the logbook, a ticket) to catch that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from tern.db import Conn

GENESIS = "0" * 64
"""``prev_hash`` of the first row of the chain."""
CHAIN_LOCK = 0x7E2A_0A0D
"""Advisory lock id (``pg_advisory_xact_lock``) serializing chain inserts."""
VERSION = "tern-audit-v1"
HASHED_COLUMNS = (
    "occurred_at",
    "event_kind",
    "run_id",
    "step_id",
    "request_id",
    "actor",
    "decision",
    "channel",
    "previous_value",
    "value",
    "readback",
    "verified",
    "comment",
    "details",
    "event_key",
)
"""The ``audit_events`` columns a row's hash covers, in canonical order (after ``prev_hash``)."""
_FLOATS = frozenset({"previous_value", "value", "readback"})


def _time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("occurred_at must carry a time zone")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(row: Mapping[str, Any], prev_hash: str) -> bytes:
    """The canonical bytes of ``row`` (a mapping with the :data:`HASHED_COLUMNS`; ``details`` as PostgreSQL's
    ``jsonb`` text, ``occurred_at`` an aware ``datetime``) chained to ``prev_hash``; see the module docstring.
    Raises ``KeyError`` for a missing column, ``ValueError`` for a naive time or details that are not text."""
    details = row["details"]
    if not isinstance(details, str):
        raise ValueError("details must be PostgreSQL's jsonb text (asyncpg returns jsonb as str)")
    fields: list[Any] = [VERSION, prev_hash, _time(row["occurred_at"])]
    for name in HASHED_COLUMNS[1:]:
        value = row[name]
        if name in _FLOATS and value is not None:
            value = float(value)  # double precision columns: 5 and 5.0 are one stored value
        fields.append(value)
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":"), allow_nan=True).encode()


def row_hash(row: Mapping[str, Any], prev_hash: str) -> str:
    """SHA-256 (hex) of :func:`canonical` ``(row, prev_hash)``."""
    return hashlib.sha256(canonical(row, prev_hash)).hexdigest()


async def chain_head(conn: Conn) -> str:
    """The ``row_hash`` of the newest chained row, or :data:`GENESIS` when none is chained. Call it holding
    :data:`CHAIN_LOCK` (inside the inserting transaction)."""
    head = await conn.fetchval("SELECT row_hash FROM audit_events WHERE row_hash IS NOT NULL ORDER BY id DESC LIMIT 1")
    return str(head) if head else GENESIS


async def seal_unchained(conn: Conn) -> int:
    """Chain the rows recorded before the chain existed: when no row has a hash yet, hash every row in ``id``
    order from :data:`GENESIS`. Returns the number of rows sealed (0 once a chain exists: a row without a hash
    after that is a row written around the chain, which :func:`verify_chain` names, never sealed). Runs as the
    table's owner, from the migration (``tern.db.migrate``), in the migration's transaction."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM audit_events WHERE row_hash IS NOT NULL)"):
            return 0
        prev = GENESIS
        n = 0
        rows = await conn.fetch(f"SELECT id, {', '.join(HASHED_COLUMNS)} FROM audit_events ORDER BY id")
        for r in rows:
            h = row_hash(r, prev)
            await conn.execute("UPDATE audit_events SET prev_hash = $2, row_hash = $3 WHERE id = $1", r["id"], prev, h)
            prev = h
            n += 1
        return n


Problem = Literal["content", "link", "unhashed"]


class ChainBreak(BaseModel):
    """The first row where the chain does not hold: ``problem`` is ``content`` (the row's fields do not hash to
    its stored ``row_hash``: the row was edited), ``link`` (its ``prev_hash`` is not the ``row_hash`` of the row
    before it: a row was deleted, inserted or reordered), or ``unhashed`` (no hash: written around the chain)."""

    id: int
    event_key: str | None
    problem: Problem
    detail: str
    expected: str | None = None
    stored: str | None = None


class ChainReport(BaseModel):
    """Result of :func:`verify_chain`: rows walked, the head hash (record it elsewhere to catch a rewrite of the
    whole tail), and the first break (None when the chain is intact)."""

    rows: int = Field(description="Rows checked (all of them when intact, up to and including the break if not).")
    head: str = Field(description="row_hash of the last row walked (GENESIS for an empty table).")
    first_break: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.first_break is None


async def verify_chain(conn: Conn, *, batch: int = 2000) -> ChainReport:
    """Walk ``audit_events`` in ``id`` order and check each row's ``prev_hash`` link and content hash; stop at the
    first row that does not match. Reads in batches of ``batch`` rows (keyset by ``id``), so a large table is
    not held in memory. Needs only SELECT (the reader role)."""
    prev = GENESIS
    last_id = 0
    n = 0
    cols = f"id, prev_hash, row_hash, {', '.join(HASHED_COLUMNS)}"
    while True:
        rows = await conn.fetch(f"SELECT {cols} FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2", last_id, batch)
        if not rows:
            return ChainReport(rows=n, head=prev)
        for r in rows:
            n += 1
            key = r["event_key"]
            if r["row_hash"] is None or r["prev_hash"] is None:
                return ChainReport(
                    rows=n,
                    head=prev,
                    first_break=ChainBreak(
                        id=r["id"],
                        event_key=key,
                        problem="unhashed",
                        detail="the row has no hash: it was written around the chain (not by Tern's audit store)",
                    ),
                )
            if r["prev_hash"] != prev:
                return ChainReport(
                    rows=n,
                    head=prev,
                    first_break=ChainBreak(
                        id=r["id"],
                        event_key=key,
                        problem="link",
                        expected=prev,
                        stored=r["prev_hash"],
                        detail=f"prev_hash does not match the row_hash of the row before it (id {last_id or 'none'}): "
                        "a row was deleted, inserted or reordered before this one",
                    ),
                )
            h = row_hash(r, r["prev_hash"])
            if h != r["row_hash"]:
                return ChainReport(
                    rows=n,
                    head=prev,
                    first_break=ChainBreak(
                        id=r["id"],
                        event_key=key,
                        problem="content",
                        expected=h,
                        stored=r["row_hash"],
                        detail="the row's content does not hash to its stored row_hash: the row was edited",
                    ),
                )
            prev = r["row_hash"]
            last_id = r["id"]
