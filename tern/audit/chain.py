"""Checking the audit hash chain (``tern verify --audit``): walk ``audit_events`` in ``id`` order and name the
first row whose link or content does not match. The canonical form each row is hashed in, and what the chain
proves and does not, are documented in :mod:`tern.db.audit_chain`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tern.db import Conn
from tern.db.audit_chain import GENESIS, HASHED_COLUMNS, row_hash

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


def _break(r: Any, prev: str, last_id: int) -> ChainBreak | None:
    """How row ``r`` breaks the chain whose head before it is ``prev`` (row ``last_id``), or None when it holds."""
    if r["row_hash"] is None or r["prev_hash"] is None:
        return ChainBreak(
            id=r["id"],
            event_key=r["event_key"],
            problem="unhashed",
            detail="the row has no hash: it was written around the chain (not by Tern's audit store)",
        )
    if r["prev_hash"] != prev:
        return ChainBreak(
            id=r["id"],
            event_key=r["event_key"],
            problem="link",
            expected=prev,
            stored=r["prev_hash"],
            detail=f"prev_hash does not match the row_hash of the row before it (id {last_id or 'none'}): "
            "a row was deleted, inserted or reordered before this one",
        )
    h = row_hash(r, r["prev_hash"])
    if h != r["row_hash"]:
        return ChainBreak(
            id=r["id"],
            event_key=r["event_key"],
            problem="content",
            expected=h,
            stored=r["row_hash"],
            detail="the row's content does not hash to its stored row_hash: the row was edited",
        )
    return None


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
            found = _break(r, prev, last_id)
            if found is not None:
                return ChainReport(rows=n, head=prev, first_break=found)
            prev = r["row_hash"]
            last_id = r["id"]
