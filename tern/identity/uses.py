"""Single use of proofs: a signed statement counts once (PostgreSQL table ``proof_uses``, migration 050)."""

from __future__ import annotations

from tern.db import Conn


async def claim_use(
    conn: Conn, statement_sha256: str, use_key: str, *, workflow_id: str, request_id: str, principal: str
) -> bool:
    """Record that the statement ``statement_sha256`` is used for ``use_key``. Returns True when this is its first
    use or the same use again (a retried activity), False when another use already took it (a replay)."""
    await conn.execute(
        """INSERT INTO proof_uses (statement_sha256, use_key, workflow_id, request_id, principal)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (statement_sha256) DO NOTHING""",
        statement_sha256,
        use_key,
        workflow_id,
        request_id,
        principal,
    )
    taken = await conn.fetchval("SELECT use_key FROM proof_uses WHERE statement_sha256 = $1", statement_sha256)
    return bool(taken == use_key)
