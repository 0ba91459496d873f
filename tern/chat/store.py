"""PostgreSQL side of the chat bridges (migrations ``020_chat.sql``, ``021_webhook_signatures.sql``): the request
outbox the ``notify_approvers`` activity fills, the per-request card claims that keep two bridge instances from
posting the same card, how a request ended, read from the audit table (whoever decided: chat, CLI, Web UI,
timeout, cancel), and the single uses of signed webhooks (per request and key, per signature).

Outbox notification: ``NOTIFY tern_chat_requests, '<request id>'`` (PostgreSQL ``LISTEN``/``NOTIFY``) after
each new row; a bridge also polls, so a lost notification only delays a card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tern.db import Conn
from tern.models import ApprovalRequest

NOTIFY_CHANNEL = "tern_chat_requests"
CLAIM_LEASE_S = 60.0
"""A claim whose card was never posted (its bridge died) may be taken over after this many seconds."""


async def add_request(conn: Conn, workflow_id: str, request: ApprovalRequest) -> bool:
    """Put ``request`` of workflow ``run_id`` in the outbox; returns False when it is already there (idempotent
    by request id). Notifies ``NOTIFY_CHANNEL`` on a new row."""
    async with conn.transaction():
        row = await conn.fetchval(
            "INSERT INTO chat_requests (request_id, run_id, kind, request) VALUES ($1, $2, $3, $4::jsonb) "
            "ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
            request.request_id,
            workflow_id,
            request.kind,
            request.model_dump_json(),
        )
        if row is not None:
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, request.request_id)
    return row is not None


@dataclass
class Card:
    """A request with its card on one platform (``message_id`` None until posted)."""

    workflow_id: str
    request: ApprovalRequest
    state: str = "new"
    room_id: str | None = None
    message_id: str | None = None
    outcome: str = ""


def _card(row: object) -> Card:
    r = dict(row)  # type: ignore[call-overload]
    return Card(
        workflow_id=r["run_id"],
        request=ApprovalRequest.model_validate_json(r["request"]),
        state=r.get("state") or "new",
        room_id=r.get("room_id"),
        message_id=r.get("message_id"),
        outcome=r.get("outcome") or "",
    )


_ENDED = """EXISTS (SELECT 1 FROM audit_events a WHERE a.request_id = q.request_id
                    AND (a.event_key IN ('decision:' || q.request_id, 'cancelled:' || q.request_id)
                         OR a.event_kind = 'approval_timed_out'))"""


async def cards_to_post(conn: Conn, platform: str, lease_s: float = CLAIM_LEASE_S) -> list[Card]:
    """Requests in the outbox that still wait and have no card on ``platform`` (or a claim past its lease),
    oldest first."""
    rows = await conn.fetch(
        f"""SELECT q.run_id, q.request::text AS request, c.state FROM chat_requests q
            LEFT JOIN chat_cards c ON c.platform = $1 AND c.request_id = q.request_id
            WHERE (c.request_id IS NULL OR (c.state = 'claimed' AND c.claimed_at < now() - make_interval(secs => $2)))
              AND NOT {_ENDED}
            ORDER BY q.created_at""",
        platform,
        lease_s,
    )
    return [_card(r) for r in rows]


async def claim(conn: Conn, platform: str, request_id: str, owner: str, lease_s: float = CLAIM_LEASE_S) -> bool:
    """Claim the card of ``request_id`` on ``platform`` for bridge instance ``owner``; True for exactly one
    claimant (a row lock decides), or for a taker-over of a claim past its lease that was never posted."""
    got = await conn.fetchval(
        """INSERT INTO chat_cards (platform, request_id, owner) VALUES ($1, $2, $3)
           ON CONFLICT (platform, request_id) DO UPDATE SET owner = EXCLUDED.owner, claimed_at = now()
           WHERE chat_cards.state = 'claimed' AND chat_cards.claimed_at < now() - make_interval(secs => $4)
           RETURNING owner""",
        platform,
        request_id,
        owner,
        lease_s,
    )
    return got == owner


async def card_posted(conn: Conn, platform: str, request_id: str, room_id: str, message_id: str) -> None:
    """Record where the claimed card was posted; from now on replies to ``message_id`` decide the request."""
    await conn.execute(
        "UPDATE chat_cards SET state = 'open', room_id = $3, message_id = $4 WHERE platform = $1 AND request_id = $2",
        platform,
        request_id,
        room_id,
        message_id,
    )


async def open_cards(conn: Conn, platform: str) -> list[Card]:
    """Posted cards whose final text is not shown yet."""
    rows = await conn.fetch(
        """SELECT q.run_id, q.request::text AS request, c.state, c.room_id, c.message_id, c.outcome
           FROM chat_cards c JOIN chat_requests q ON q.request_id = c.request_id
           WHERE c.platform = $1 AND c.state = 'open' ORDER BY c.claimed_at""",
        platform,
    )
    return [_card(r) for r in rows]


async def card_by_message(conn: Conn, platform: str, message_id: str, *, room_id: str) -> Card | None:
    """The card posted as ``message_id`` in ``room_id`` (Matrix room id, Slack channel id) on ``platform``,
    whatever its state; None when no card was posted there as that message.

    The room is part of the key: a reply, reaction or button in one room can decide only a card posted in that
    same room (a Matrix reply can name any event id in ``m.in_reply_to``, and Slack message timestamps are
    unique only within a channel), so the people of one room never decide another room's requests."""
    row = await conn.fetchrow(
        """SELECT q.run_id, q.request::text AS request, c.state, c.room_id, c.message_id, c.outcome
           FROM chat_cards c JOIN chat_requests q ON q.request_id = c.request_id
           WHERE c.platform = $1 AND c.message_id = $2 AND c.room_id = $3""",
        platform,
        message_id,
        room_id,
    )
    return None if row is None else _card(row)


async def set_outcome(conn: Conn, platform: str, request_id: str, outcome: str, *, final: bool) -> bool:
    """Store the card's ``outcome`` text (closing it when ``final``); True for the one caller that changed it,
    who then edits the card (two bridges never both edit for the same change)."""
    got = await conn.fetchval(
        """UPDATE chat_cards SET outcome = $3, state = CASE WHEN $4 THEN 'closed' ELSE state END
           WHERE platform = $1 AND request_id = $2 AND state = 'open' AND (outcome <> $3 OR $4)
           RETURNING request_id""",
        platform,
        request_id,
        outcome,
        final,
    )
    return got is not None


@dataclass
class Ending:
    """How a request ended, from the audit table: ``decision`` approved/rejected/timed_out/cancelled, ``by``,
    ``comment``; for an approved write, the write's row (``write_done``: the write or its refusal is recorded) and,
    until then, ``held`` while the facility write freeze holds it (its last ``write_held`` not yet released)."""

    decision: str
    by: str | None
    comment: str
    write_done: bool = False
    readback: float | None = None
    verified: bool | None = None
    write_value: float | None = None
    write_comment: str = ""
    held: str = ""  # while an approved write is held by the facility freeze: "frozen by X since ...: reason"


async def ending(conn: Conn, card: Card) -> Ending | None:
    """How the card's request ended, or None while it still waits."""
    rid = card.request.request_id
    row = await conn.fetchrow(
        """SELECT event_kind, actor, decision, comment, details FROM audit_events WHERE request_id = $1
           AND (event_key IN ('decision:' || $1, 'cancelled:' || $1) OR event_kind = 'approval_timed_out')
           ORDER BY id LIMIT 1""",
        rid,
    )
    if row is None:
        return None
    if row["event_kind"] == "approval_cancelled":
        return Ending("cancelled", None, row["comment"])
    if row["event_kind"] == "approval_timed_out":
        return Ending("timed_out", None, row["comment"])
    end = Ending(row["decision"], row["actor"], row["comment"])
    if end.decision == "approved" and card.request.kind == "control_write":
        w = await conn.fetchrow(
            """SELECT event_kind, value, readback, verified, comment FROM audit_events
               WHERE request_id = $1 AND event_kind IN ('write', 'write_refused') ORDER BY id LIMIT 1""",
            rid,
        )
        if w is not None:
            end.write_done = True
            end.readback, end.verified, end.write_value = w["readback"], w["verified"], w["value"]
            end.write_comment = w["comment"] if w["event_kind"] == "write_refused" or not w["verified"] else ""
        else:
            h = await conn.fetchrow(
                """SELECT event_kind, actor, comment, details FROM audit_events
                   WHERE request_id = $1 AND event_kind IN ('write_held', 'write_released') ORDER BY id DESC LIMIT 1""",
                rid,
            )
            if h is not None and h["event_kind"] == "write_held":
                details = json.loads(h["details"]) if isinstance(h["details"], str) else (h["details"] or {})
                since = str(details.get("since") or "?").replace("T", " ")[:19]
                reason = h["comment"].split(": ", 2)[-1] if h["comment"] else ""
                end.held = f"frozen by {h['actor']} since {since} UTC: {reason}"
    return end


async def request_by_id(conn: Conn, request_id: str) -> tuple[str, ApprovalRequest] | None:
    """``(workflow id, request)`` of an outbox request, or None for an unknown id."""
    row = await conn.fetchrow(
        "SELECT run_id, request::text AS request FROM chat_requests WHERE request_id = $1", request_id
    )
    return None if row is None else (row["run_id"], ApprovalRequest.model_validate_json(row["request"]))


async def use_webhook(conn: Conn, request_id: str, key_id: str) -> bool:
    """Spend the single use of key ``key_id`` on ``request_id``; False when it was spent before."""
    got = await conn.fetchval(
        "INSERT INTO webhook_uses (request_id, key_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING key_id",
        request_id,
        key_id,
    )
    return got is not None


async def use_signature(conn: Conn, digest: str, key_id: str, route: str, expires_at: float) -> bool:
    """Spend signature ``digest`` (:attr:`tern.chat.signing.Verified.digest`) of key ``key_id``, accepted on
    ``route`` (``"POST /triggers/x"``); False when it was spent before (a replay). ``expires_at``: Unix seconds
    after which the replay window refuses the signature anyway; rows past it (with a minute's grace for clock
    differences between Tern and PostgreSQL) are pruned here, so the table holds one window of signatures."""
    async with conn.transaction():
        await conn.execute("DELETE FROM webhook_signatures WHERE expires_at < now() - interval '60 seconds'")
        got = await conn.fetchval(
            "INSERT INTO webhook_signatures (digest, key_id, route, expires_at) VALUES ($1, $2, $3, to_timestamp($4)) "
            "ON CONFLICT (digest) DO NOTHING RETURNING digest",
            digest,
            key_id,
            route,
            expires_at,
        )
    return got is not None


UNKNOWN_RUN = "chat-bridge"
"""Audit run id of a chat or webhook attempt that names no known request."""


async def audit_attempt(
    conn: Conn,
    *,
    platform: str,
    message_id: str,
    identity: str,
    text: str,
    workflow_id: str | None = None,
    request: ApprovalRequest | None = None,
    request_id: str | None = None,
    approver: str | None = None,
    approved: bool | None = None,
    comment: str | None = None,
    accepted: bool = False,
) -> None:
    """Audit one decision attempt from a chat platform or webhook as ``chat_decision`` (keyed by the platform's
    ``message_id``, so a redelivered message is recorded once), with the platform identity and the answer."""
    from tern.audit.store import record_event
    from tern.models import AuditEvent

    await record_event(
        conn,
        AuditEvent(
            event_kind="chat_decision",
            workflow_id=workflow_id or UNKNOWN_RUN,
            event_key=f"chat:{platform}:{message_id}",
            step_id=request.step_id if request else None,
            request_id=request.request_id if request else request_id,
            actor=approver,
            decision=None if approved is None else ("approved" if approved else "rejected"),
            comment=text,
            details={
                "platform": platform,
                "platform_identity": identity,
                "message_id": message_id,
                "accepted": accepted,
                "command": comment,
            },
        ),
    )
