"""``POST /triggers/{name}``: webhook triggers on Tern's HTTP API (mounted by :func:`starters.approvals_api.create_app`,
served by ``tern bridge webhook``).

Signed exactly like the approval webhook (:func:`starters.signed_requests.signed_body`: HMAC-SHA256 headers of
:mod:`tern.chat.signing`, keys ``TERN_WEBHOOK_SECRETS``, window ``TERN_WEBHOOK_WINDOW_S``, body at most
``TERN_WEBHOOK_MAX_BODY_BYTES``); any key of the secrets may fire a trigger. The body must be a JSON object; it
becomes the run's event (``AgentRunRequest.trigger.event``, with the key id as ``source``).

Answers: 202 ``{"status": "started", "workflow_id", "run_id"}``; 200 ``{"status": "duplicate", ...}`` when the
same body was posted within the dedup window (``trigger-<name>-webhook-<bucket>-<body hash>`` exists already);
errors are JSON ``{"error": "<reason>"}``: 400 (body not a JSON object), 401 (unsigned, unknown key, outside
the window, bad signature), 404 (no webhook trigger of that name), 409 (paused), 413 (too large), 429 (rate
limit ``triggers.max_runs_per_minute``), 503 (Temporal unreachable). Nothing is started unless the answer is 202.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from starters.client import TernUnavailable, TernUserError
from starters.signed_requests import Refused, signed_body
from starters.triggers import start_triggered, trigger_request
from tern.config import TernSettings
from tern.triggers.detect import webhook_run_id
from tern.triggers.ratelimit import RateLimiter
from tern.triggers.store import get_trigger

log = logging.getLogger(__name__)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def triggers_router(
    settings: TernSettings,
    temporal: Callable[[], Awaitable[Any]],
    pool: Callable[[Request], asyncpg.Pool],
) -> APIRouter:
    """The router. ``temporal()`` gives the Temporal client (connected at first use), ``pool(request)`` the
    app's asyncpg pool."""
    router = APIRouter()
    secrets = {k: v.get_secret_value() for k, v in settings.chat.webhook_secrets.items()}
    limiters: dict[str, RateLimiter] = {}

    @router.post("/triggers/{name}")
    async def fire(request: Request, name: str) -> JSONResponse:
        try:
            body, key_id = await signed_body(request, settings, secrets)
        except Refused as exc:
            log.warning("webhook trigger %s refused: %s", name[:64], exc.reason)
            return _error(exc.status, exc.reason)
        try:
            event = json.loads(body)
        except ValueError:
            return _error(400, "malformed body: not JSON")
        if not isinstance(event, dict):
            return _error(400, "malformed body: the event must be a JSON object")
        async with pool(request).acquire() as conn:
            d = await get_trigger(conn, name)
        if d is None or d.kind != "webhook":
            return _error(404, f"no webhook trigger named {name[:64]!r}")
        if d.paused:
            return _error(409, f"trigger {name!r} is paused")
        now = time.time()
        workflow_id = webhook_run_id(name, body, now, settings.triggers.dedup_window_s)
        limiter = limiters.setdefault(name, RateLimiter(settings.triggers.max_runs_per_minute))
        try:
            req = trigger_request(settings, name, "webhook", d.action, event, source=key_id)
        except TernUserError as exc:
            return _error(400, f"the run cannot start: {exc}")
        try:
            client = await temporal()
        except TernUnavailable as exc:
            return _error(503, f"Temporal cannot be reached: {exc}")
        if await _exists(client, workflow_id):
            return JSONResponse({"status": "duplicate", "workflow_id": workflow_id, "run_id": workflow_id})
        if not limiter.allow(time.monotonic()):
            return _error(429, f"trigger {name!r} started {limiter.per_minute} runs in the last minute (rate limit)")
        started = await start_triggered(client, settings, req, workflow_id)
        if started is None:
            return JSONResponse({"status": "duplicate", "workflow_id": workflow_id, "run_id": workflow_id})
        log.info("webhook trigger %s (key %s): started run %s", name, key_id, started)
        return JSONResponse(
            {"status": "started", "workflow_id": started, "run_id": started, "ui_url": settings.run_url(started)},
            status_code=202,
        )

    return router


async def _exists(client: Any, workflow_id: str) -> bool:
    """Whether a workflow ``workflow_id`` exists (so a duplicate does not use up the rate limit)."""
    from temporalio.service import RPCError, RPCStatusCode

    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
