"""The audit table and the write ledger in PostgreSQL (see migration ``001_audit.sql``)."""

from __future__ import annotations

import json
from typing import Any

from tern.db import Conn
from tern.db.audit_chain import CHAIN_LOCK, chain_head, row_hash
from tern.models import AuditEvent, WriteRecord

_INSERT = """
INSERT INTO audit_events (event_kind, run_id, step_id, request_id, actor, decision, channel, previous_value,
                          value, readback, verified, comment, details, event_key, occurred_at, prev_hash, row_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17)
ON CONFLICT (event_key) DO NOTHING
RETURNING id
"""


async def record_event(conn: Conn, event: AuditEvent) -> bool:
    """Append ``event`` to the hash chain (:mod:`tern.db.audit_chain`); returns False when an event with the same
    ``event_key`` is already recorded (nothing is written then).

    In one transaction (a savepoint when the caller already has one, as :func:`finish_write` does): take the
    chain's advisory lock (:data:`~tern.db.audit_chain.CHAIN_LOCK`, held to commit, so concurrent writers queue and
    ``id`` order is chain order), read the head hash, the database's ``now()`` (the row's ``occurred_at``) and the
    details as PostgreSQL will store them (``jsonb`` text), hash, insert. Needs only SELECT and INSERT on
    ``audit_events`` (the writer role).

    Call it last in a transaction that locks other rows (``finish_write``, the memory and chat stores do): the
    chain lock is then always the last lock taken, so no two writers can wait on each other."""
    details = json.dumps(event.details, default=str)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
        prev = await chain_head(conn)
        now = await conn.fetchval("SELECT now()")
        details_text = await conn.fetchval("SELECT $1::jsonb::text", details)
        row = {
            "occurred_at": now,
            "event_kind": event.event_kind,
            "run_id": event.workflow_id,
            "step_id": event.step_id,
            "request_id": event.request_id,
            "actor": event.actor,
            "decision": event.decision,
            "channel": event.channel,
            "previous_value": event.previous_value,
            "value": event.value,
            "readback": event.readback,
            "verified": event.verified,
            "comment": event.comment,
            "details": details_text,
            "event_key": event.event_key,
        }
        row_id = await conn.fetchval(
            _INSERT,
            event.event_kind,
            event.workflow_id,
            event.step_id,
            event.request_id,
            event.actor,
            event.decision,
            event.channel,
            event.previous_value,
            event.value,
            event.readback,
            event.verified,
            event.comment,
            details_text,
            event.event_key,
            now,
            prev,
            row_hash(row, prev),
        )
    return row_id is not None


async def seconds_since_request(conn: Conn, run_id: str, request_id: str | None) -> float | None:
    """Seconds from the ``approval_requested`` row of ``request_id`` in run ``run_id`` to now (the database's
    clock for both), or None when there is no such row."""
    if request_id is None:
        return None
    return await conn.fetchval(
        "SELECT extract(epoch FROM now() - occurred_at)::float8 FROM audit_events "
        "WHERE run_id = $1 AND request_id = $2 AND event_kind = 'approval_requested' ORDER BY id LIMIT 1",
        run_id,
        request_id,
    )


async def events_for_run(conn: Conn, workflow_id: str) -> list[dict[str, Any]]:
    """All audit events of one run and of its child workflows, oldest first, as plain dicts (table columns).

    A child's workflow id is ``<workflow_id>.<step id>`` (a python step runs as ``PythonExecutionWorkflow`` with
    that id), so its requests and decisions are rows whose ``run_id`` column (a Workflow ID, named before Tern's
    ids were named for what they are) starts with ``workflow_id + "."``; each row keeps its own.
    ``starts_with`` rather than ``LIKE`` so ``_`` and ``%`` in ids match only themselves.
    Ordered by ``occurred_at``, then ``id`` for rows of the same instant.
    """
    rows = await conn.fetch(
        "SELECT * FROM audit_events WHERE run_id = $1 OR starts_with(run_id, $1 || '.') ORDER BY occurred_at, id",
        workflow_id,
    )
    return [dict(r) for r in rows]


class LedgerEntry(dict[str, Any]):
    """A ``write_ledger`` row: ``state`` is ``claimed`` (put may or may not have happened), ``reput`` (an interrupted
    claim being put once more; may or may not have happened), ``done`` or ``failed``; ``result`` holds the
    :class:`WriteRecord` JSON when done."""


async def claim_write(
    conn: Conn, key: str, workflow_id: str, step_id: str, channel: str, value: float
) -> LedgerEntry | None:
    """Claim the right to put for ``key``. Returns None when this call claimed it, else the existing row."""
    claimed = await conn.fetchval(
        "INSERT INTO write_ledger (idempotency_key, run_id, step_id, channel, value, state)"
        " VALUES ($1, $2, $3, $4, $5, 'claimed') ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1",
        key,
        workflow_id,
        step_id,
        channel,
        value,
    )
    if claimed:
        return None
    row = await conn.fetchrow("SELECT * FROM write_ledger WHERE idempotency_key = $1", key)
    return LedgerEntry(row) if row else None


async def finish_write(conn: Conn, key: str, record: WriteRecord | None, *, state: str, event: AuditEvent) -> None:
    """Mark the ledger row ``done``/``failed`` and append the audit event, in one transaction."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE write_ledger SET state = $2, result = $3::jsonb, finished_at = now() WHERE idempotency_key = $1",
            key,
            state,
            record.model_dump_json() if record else None,
        )
        await record_event(conn, event)


async def audited_write(conn: Conn, key: str) -> dict[str, Any] | None:
    """The audit ``write`` event of ledger key ``key`` (``event_key = 'write:<key>'``) as a dict, or None."""
    row = await conn.fetchrow("SELECT * FROM audit_events WHERE event_key = $1", f"write:{key}")
    return dict(row) if row else None


async def release_claim(conn: Conn, key: str) -> None:
    """Drop a ``claimed`` ledger row when the put provably did not happen (the channel never connected, or the put
    was not sent before its window closed). A ``reput`` row stays: its key never puts a third time."""
    await conn.execute("DELETE FROM write_ledger WHERE idempotency_key = $1 AND state = 'claimed'", key)


async def mark_reput(conn: Conn, key: str) -> bool:
    """Move a ``claimed`` row to ``reput`` and restart its clock (``claimed_at``), before an interrupted write is put
    again. Returns False when the row is not ``claimed`` any more (another attempt got there first): at most one
    re-put per key."""
    done = await conn.fetchval(
        "UPDATE write_ledger SET state = 'reput', claimed_at = now() WHERE idempotency_key = $1 AND state = 'claimed'"
        " RETURNING 1",
        key,
    )
    return bool(done)


async def claim_age_s(conn: Conn, key: str) -> float | None:
    """Seconds since ``key`` was claimed, by the database's clock (the clock that stamped ``claimed_at``)."""
    age = await conn.fetchval(
        "SELECT extract(epoch FROM now() - claimed_at) FROM write_ledger WHERE idempotency_key = $1", key
    )
    return None if age is None else float(age)
