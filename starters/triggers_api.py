"""``POST /triggers/{name}``: webhook triggers on Tern's HTTP API (mounted by :func:`starters.approvals_api.create_app`,
served by ``tern bridge webhook``).

Signed exactly like the approval webhook (:func:`starters.signed_requests.signed_body`: ``v2`` HMAC-SHA256
headers of :mod:`tern.chat.signing` over timestamp, method, path and body, keys
``TERN_CHAT__WEBHOOK_SECRETS``, window ``TERN_CHAT__WEBHOOK_WINDOW_S``, body at most
``TERN_CHAT__WEBHOOK_MAX_BODY_BYTES``, each signature single use). Only the
keys the trigger names (``TriggerDefinition.key_ids``, ``tern trigger add --webhook --key-id K``) may fire it; a
trigger that names none (stored before key lists existed) is refused until re-added. The path is signed, so a
signature for one trigger cannot fire another; outbound approval notifications are signed with a secret Tern
never accepts (``webhook_notify_secret``), so a receiver cannot replay one here. The body must be a JSON object;
it becomes the run's event (``AgentRunRequest.trigger.event``, with the key id as ``source``).

Answers: 202 ``{"status": "started", "workflow_id", "run_id", "ui_url", "progress"}``, the run started with
Update-with-Start so ``progress`` is its first status (:class:`tern.models.progress.RunProgress` as JSON, or null
when no worker answered within ``triggers.webhook_status_wait_s``); 200 ``{"status": "duplicate", "workflow_id",
"run_id", "progress"}`` when the same body was posted (newly signed) within ``triggers.dedup_window_s`` of the post
that started a run: ``trigger-<name>-webhook-<bucket>-<body hash>`` exists or existed (conflict FAIL and
REJECT_DUPLICATE, no racing pre-check), or the previous bucket's run of that body came less than a window before
(checked under the trigger's lock: exact within one API process); errors are JSON
``{"error": "<reason>"}``: 400 (body not a JSON object), 401 (unsigned,
unknown key, outside the window, ``v1`` or bad signature), 403 (the key may not fire this trigger), 404 (no
webhook trigger of that name), 409 (signature used before, or paused), 413 (too large), 429 (rate limit
``triggers.max_runs_per_minute``), 503 (Temporal unreachable). Nothing is started unless the answer is 202. A
refusal of a validly signed request is audited (``trigger_refused``, run id ``trigger-webhooks``; a replayed
signature once); unsigned or badly signed requests are counted and logged only (:mod:`starters.signed_requests`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from starters.client import TernUnavailable, TernUserError
from starters.signed_requests import Refused, UnsignedCounter, signed_body
from starters.triggers import start_webhook_run, trigger_request
from tern.audit.store import record_event
from tern.config import TernSettings
from tern.models import AuditEvent
from tern.triggers.detect import webhook_run_id
from tern.triggers.ratelimit import RateLimiter
from tern.triggers.store import get_trigger

log = logging.getLogger(__name__)

AUDIT_RUN_ID = "trigger-webhooks"
"""Audit run id of refused (validly signed) webhook trigger requests."""


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def triggers_router(
    settings: TernSettings,
    temporal: Callable[[], Awaitable[Any]],
    pool: Callable[[Request], asyncpg.Pool],
    unsigned: UnsignedCounter | None = None,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """The router. ``temporal()`` gives the Temporal client (connected at first use), ``pool(request)`` the
    app's asyncpg pool; ``unsigned`` counts refused requests without a valid signature (a new counter when None);
    ``clock()`` the time (POSIX seconds) that places a post in its dedup window (tests inject one)."""
    router = APIRouter()
    secrets = {k: v.get_secret_value() for k, v in settings.chat.webhook_secrets.items()}
    limiters: dict[str, RateLimiter] = {}
    locks: dict[str, asyncio.Lock] = {}  # per trigger: count, start, give back a duplicate's slot, as one step
    counter = unsigned if unsigned is not None else UnsignedCounter()

    @router.post("/triggers/{name}")
    async def fire(request: Request, name: str) -> JSONResponse:
        db = pool(request)
        try:
            body, verified = await signed_body(request, settings, secrets, db)
        except Refused as exc:
            if exc.verified is None:
                counter.refused(f"POST /triggers/{name[:64]}", exc.status, exc.reason)
                return _error(exc.status, exc.reason)
            return await _refuse(db, name, exc.verified.key_id, exc.status, exc.reason, f"replay:{exc.verified.digest}")
        key_id = verified.key_id
        attempt = verified.digest

        try:
            event = json.loads(body)
        except ValueError:
            return await _refuse(db, name, key_id, 400, "malformed body: not JSON", attempt)
        if not isinstance(event, dict):
            return await _refuse(db, name, key_id, 400, "malformed body: the event must be a JSON object", attempt)
        async with db.acquire() as conn:
            d = await get_trigger(conn, name)
        if d is None or d.kind != "webhook":
            return await _refuse(db, name, key_id, 404, f"no webhook trigger named {name[:64]!r}", attempt)
        if not d.key_ids:
            reason = (
                f"trigger {name!r} names no key that may fire it: re-add it with "
                "`tern trigger add NAME --webhook --key-id KEY`"
            )
            return await _refuse(db, name, key_id, 403, reason, attempt)
        if key_id not in d.key_ids:
            return await _refuse(db, name, key_id, 403, f"key {key_id!r} may not fire trigger {name!r}", attempt)
        if d.paused:
            return await _refuse(db, name, key_id, 409, f"trigger {name!r} is paused", attempt)
        window = settings.triggers.dedup_window_s
        limiter = limiters.setdefault(name, RateLimiter(settings.triggers.max_runs_per_minute))
        try:
            req = trigger_request(settings, name, "webhook", d.action, event, source=key_id)
        except TernUserError as exc:
            return await _refuse(db, name, key_id, 400, f"the run cannot start: {exc}", attempt)
        try:
            client = await temporal()
        except TernUnavailable as exc:
            return _error(503, f"Temporal cannot be reached: {exc}")
        # No existence pre-check: it raced a concurrent post. The start with REJECT_DUPLICATE is the one check, open
        # or closed; a duplicate gives its rate-limit slot back (under the trigger's lock, so concurrent duplicates
        # do not crowd out a distinct event). The clock is read under the lock, so this process's posts are in
        # order: the previous bucket's run (same body) of less than a window ago is the duplicate across a boundary.
        async with locks.setdefault(name, asyncio.Lock()):
            now = clock()
            workflow_id = webhook_run_id(name, body, now, window)
            counted_at = time.monotonic()
            if not limiter.allow(counted_at):
                reason = f"trigger {name!r} started {limiter.per_minute} runs in the last minute (rate limit)"
                return await _refuse(db, name, key_id, 429, reason, attempt)
            try:
                outcome = await start_webhook_run(
                    client,
                    settings,
                    req,
                    workflow_id,
                    at=now,
                    previous_id=webhook_run_id(name, body, now - window, window),
                    wait=timedelta(seconds=settings.triggers.webhook_status_wait_s),
                )
            except TernUnavailable as exc:
                limiter.refund(counted_at)
                return _error(503, f"Temporal cannot start the run: {exc}")
            except TernUserError as exc:
                limiter.refund(counted_at)
                return await _refuse(db, name, key_id, 400, f"the run cannot start: {exc}", attempt)
            if not outcome.started:
                limiter.refund(counted_at)
        progress = outcome.progress.model_dump(mode="json") if outcome.progress is not None else None
        wid = outcome.workflow_id
        if not outcome.started:
            return JSONResponse({"status": "duplicate", "workflow_id": wid, "run_id": wid, "progress": progress})
        log.info("webhook trigger %s (key %s): started run %s", name, key_id, wid)
        return JSONResponse(
            {
                "status": "started",
                "workflow_id": wid,
                "run_id": wid,
                "ui_url": settings.run_url(wid),
                "progress": progress,
            },
            status_code=202,
        )

    return router


async def _refuse(db: asyncpg.Pool, name: str, key_id: str, status: int, reason: str, attempt: str) -> JSONResponse:
    """Audit a refused, validly signed trigger request (``trigger_refused``, keyed by ``attempt``: the signature
    digest, so a replay is recorded once), log it, and answer ``status`` with ``reason``."""
    log.warning("webhook trigger %s (key %s) refused: %d %s", name[:64], key_id, status, reason)
    async with db.acquire() as conn:
        await record_event(
            conn,
            AuditEvent(
                event_kind="trigger_refused",
                workflow_id=AUDIT_RUN_ID,
                event_key=f"trigger:webhook:{attempt}",
                actor=key_id,
                comment=reason,
                details={"trigger": name[:64], "key_id": key_id, "status": status},
            ),
        )
    return _error(status, reason)
