"""The audit hash chain's storage protocol: every ``audit_events`` row carries the hash of the row before it
(issue 22). Here: the canonical form, the insert lock, the head, the sealing of pre-chain rows (run by
:func:`tern.db.migrate`); the check is :func:`tern.audit.chain.verify_chain`.

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
middle, and a row written without the chain are named by :func:`tern.audit.chain.verify_chain`. Someone holding
the owner role could rewrite every hash after the row they changed, or delete the newest rows; record the head hash
that ``tern verify --audit`` prints somewhere else (the logbook, a ticket) to catch that.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # tern.db imports this module (migrate seals pre-chain rows): no import back at run time
    from tern.db import Conn


class Row(Protocol):
    """A row by column name: a dict, or an ``asyncpg.Record``."""

    def __getitem__(self, key: str, /) -> Any: ...


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


def canonical(row: Row, prev_hash: str) -> bytes:
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


def row_hash(row: Row, prev_hash: str) -> str:
    """SHA-256 (hex) of :func:`canonical` ``(row, prev_hash)``."""
    return hashlib.sha256(canonical(row, prev_hash)).hexdigest()


async def chain_head(conn: Conn) -> str:
    """The ``row_hash`` of the newest chained row, or :data:`GENESIS` when none is chained. Call it holding
    :data:`CHAIN_LOCK` (inside the inserting transaction)."""
    head = await conn.fetchval("SELECT row_hash FROM audit_events WHERE row_hash IS NOT NULL ORDER BY id DESC LIMIT 1")
    return str(head) if head else GENESIS


async def seal_unchained(conn: Conn, *, batch: int = 5000) -> int:
    """Chain the rows recorded before the chain existed: when no row has a hash yet, hash every row in ``id``
    order from :data:`GENESIS` (read with a cursor, written ``batch`` rows at a time). Returns the number of rows
    sealed (0 once a chain exists: a row without a hash after that is a row written around the chain, which
    :func:`tern.audit.chain.verify_chain` names, never sealed). Runs as the table's owner, from the migration that
    adds the chain (``tern.db.migrate``), in that migration's transaction."""
    update = "UPDATE audit_events SET prev_hash = $2, row_hash = $3 WHERE id = $1"
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM audit_events WHERE row_hash IS NOT NULL)"):
            return 0
        prev = GENESIS
        n = 0
        pending: list[tuple[int, str, str]] = []
        query = f"SELECT id, {', '.join(HASHED_COLUMNS)} FROM audit_events ORDER BY id"
        async for r in conn.cursor(query, prefetch=batch):
            h = row_hash(r, prev)
            pending.append((r["id"], prev, h))
            prev = h
            n += 1
            if len(pending) >= batch:
                await conn.executemany(update, pending)
                pending.clear()
        if pending:
            await conn.executemany(update, pending)
        return n
