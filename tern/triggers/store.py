"""Channel and webhook trigger definitions in PostgreSQL (table ``triggers``, migration ``330_triggers.sql``).

The ``definition`` column holds the :class:`~tern.models.trigger.TriggerDefinition` as JSON; ``paused`` is a
column of its own so that pausing does not rewrite it.
"""

from __future__ import annotations

import json

from tern.db import Conn
from tern.models.trigger import TriggerDefinition


async def add_trigger(conn: Conn, trigger: TriggerDefinition) -> bool:
    """Insert ``trigger``; False (nothing changed) when a trigger of that name exists."""
    row = await conn.fetchval(
        "INSERT INTO triggers (name, kind, definition, paused, created_by) VALUES ($1, $2, $3::jsonb, $4, $5)"
        " ON CONFLICT (name) DO NOTHING RETURNING name",
        trigger.name,
        trigger.kind,
        trigger.model_dump_json(exclude={"paused", "created_at"}),
        trigger.paused,
        trigger.created_by,
    )
    return row is not None


def _load(row: object) -> TriggerDefinition:
    data = json.loads(row["definition"])  # type: ignore[index]
    data.update(paused=row["paused"], created_at=row["created_at"])  # type: ignore[index]
    return TriggerDefinition.model_validate(data)


async def list_triggers(conn: Conn) -> list[TriggerDefinition]:
    """Every stored trigger, by name."""
    rows = await conn.fetch("SELECT definition, paused, created_at FROM triggers ORDER BY name")
    return [_load(r) for r in rows]


async def get_trigger(conn: Conn, name: str) -> TriggerDefinition | None:
    """The trigger called ``name``, or None."""
    row = await conn.fetchrow("SELECT definition, paused, created_at FROM triggers WHERE name = $1", name)
    return None if row is None else _load(row)


async def remove_trigger(conn: Conn, name: str) -> bool:
    """Delete trigger ``name``; False when there is none."""
    return await conn.fetchval("DELETE FROM triggers WHERE name = $1 RETURNING name", name) is not None


async def set_paused(conn: Conn, name: str, paused: bool) -> bool:
    """Pause or resume trigger ``name``; False when there is none."""
    row = await conn.fetchval(
        "UPDATE triggers SET paused = $2, updated_at = now() WHERE name = $1 RETURNING name", name, paused
    )
    return row is not None
