"""``POST /approvals/{request_id}/decision``: signed webhook decisions for any bot (Mattermost, Teams, Google
Chat, scripts), on Tern's webhook API.

In ``starters/`` because it sends the ``decide`` Update through a Temporal client (``tern/`` imports no
Temporal). :func:`create_app` serves this router, the webhook triggers router (:mod:`starters.triggers_api`)
and ``GET /health``, nothing else: ARIEL's routes (logbook entries, RAG search that spends LLM money) are not
on this unauthenticated, possibly public endpoint; ``tern ariel serve`` serves them. ``tern bridge webhook``
serves it.

Request: headers of :mod:`tern.chat.signing` (``v2``: HMAC-SHA256 over timestamp, method, path and body, so a
signature made for request A cannot decide request B; per-key secrets ``TERN_CHAT__WEBHOOK_SECRETS``,
``TERN_CHAT__WEBHOOK_WINDOW_S`` replay window), body ``{"approved": true|false, "comment": "why"}`` (JSON, at most
``TERN_CHAT__WEBHOOK_MAX_BODY_BYTES``). The key id is mapped to an approver by the identity map's ``[webhook]`` table;
the decision goes to the run with the request id of the URL (refused when another request is pending), and the
workflow's validator decides as for any front end (audit surface ``webhook``). Each signature is used once
(``webhook_signatures``) and each key may post one decision per request (``webhook_uses``), so a replayed
payload is refused even inside the window. Answers: 200 with the audited decision; errors are JSON ``{"error":
"<reason>"}`` with 400 (malformed body), 401 (unsigned, unknown key, outside the window, ``v1`` or bad
signature), 403 (key not mapped to an approver), 404 (unknown request id), 409 (signature used before, key
already posted, or refused by the workflow: stale, not an approver, decided), 413 (body too large); never a
stack trace. Every attempt whose signature verified is audited as ``chat_decision`` (platform ``webhook``; a
replayed signature once); unsigned or badly signed ones are counted and logged, not audited
(:mod:`starters.signed_requests` says why).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from starters.signed_requests import Refused, UnsignedCounter, signed_body
from tern.chat import store
from tern.chat.bridge import Decider, DecisionRefused
from tern.chat.identity import IdentityMap
from tern.config import TernSettings
from tern.models.limits import MAX_COMMENT_CHARS

PLATFORM = "webhook"


class DecisionBody(BaseModel):
    """The webhook's JSON body."""

    model_config = ConfigDict(extra="forbid")
    approved: bool
    comment: str = Field("", max_length=MAX_COMMENT_CHARS)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def approvals_router(
    settings: TernSettings,
    decide: Callable[[Request], Decider],
    pool: Callable[[Request], asyncpg.Pool],
    identities: IdentityMap,
    unsigned: UnsignedCounter | None = None,
) -> APIRouter:
    """The router. ``decide``/``pool`` give the app's decision sender and asyncpg pool for a request;
    ``unsigned`` counts refused requests without a valid signature (a new counter when None)."""
    router = APIRouter()
    secrets = {k: v.get_secret_value() for k, v in settings.chat.webhook_secrets.items()}
    counter = unsigned if unsigned is not None else UnsignedCounter()

    @router.post("/approvals/{request_id}/decision")
    async def decision(request: Request, request_id: str) -> JSONResponse:
        attempt = f"{request_id}:{uuid.uuid4().hex}"
        db = pool(request)
        identity = "(none)"

        async def refuse(status: int, reason: str, **kw: object) -> JSONResponse:
            async with db.acquire() as conn:
                await store.audit_attempt(
                    conn,
                    platform=PLATFORM,
                    message_id=attempt,
                    identity=identity,
                    text=reason,
                    **kw,  # type: ignore[arg-type]
                )
            return _error(status, reason)

        try:
            body, verified = await signed_body(request, settings, secrets, db)
        except Refused as exc:
            if exc.verified is None:  # no valid signature: counted and logged, not audited (flood)
                counter.refused(f"POST /approvals/{request_id[:80]}/decision", exc.status, exc.reason)
                return _error(exc.status, exc.reason)
            identity = exc.verified.key_id
            attempt = f"{request_id}:replay:{exc.verified.digest[:32]}"  # a replayed signature is audited once
            return await refuse(exc.status, exc.reason, request_id=request_id)
        key_id = identity = verified.key_id
        try:
            parsed = DecisionBody.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return await refuse(400, f"malformed body: {where}: {first['msg']}", request_id=request_id)
        async with db.acquire() as conn:
            found = await store.request_by_id(conn, request_id)
        if found is None:
            return await refuse(404, f"unknown request id {request_id[:80]!r}", request_id=request_id)
        run_id, req = found
        common = {"workflow_id": run_id, "request": req, "approved": parsed.approved, "comment": parsed.comment}
        approver = identities.lookup(PLATFORM, key_id)
        if approver is None:
            return await refuse(403, f"key {key_id!r} is not mapped to a Tern approver", **common)
        async with db.acquire() as conn:
            fresh = await store.use_webhook(conn, request_id, key_id)
        if not fresh:
            return await refuse(
                409, f"key {key_id!r} already posted a decision for request {request_id}", approver=approver, **common
            )
        try:
            result = await decide(request)(run_id, request_id, approver, parsed.approved, parsed.comment)
        except DecisionRefused as exc:
            return await refuse(409, str(exc), approver=approver, **common)
        async with db.acquire() as conn:
            await store.audit_attempt(
                conn,
                platform=PLATFORM,
                message_id=attempt,
                identity=key_id,
                text=result,
                approver=approver,
                accepted=True,
                **common,  # type: ignore[arg-type]
            )
        return JSONResponse(
            {"request_id": request_id, "run_id": run_id, "workflow_id": run_id, "approver": approver, "result": result}
        )

    return router


def create_app(
    settings: TernSettings, pool: asyncpg.Pool | None = None, clock: Callable[[], float] = time.time
) -> FastAPI:
    """Tern's webhook API: the approvals router, the webhook triggers router and ``GET /health`` (database
    reachable: 200 ``{"status": "ok"}``, else 503), and nothing else (no ARIEL route: ``tern ariel serve``).

    ``pool``: use this asyncpg pool instead of opening one (at start-up, migrations applied). The Temporal client
    is connected at the first decision or trigger (so the API starts without Temporal); unexpected errors answer
    500 ``{"error": "internal error"}``. Refused requests without a valid signature are counted in
    ``app.state.unsigned`` (:class:`~starters.signed_requests.UnsignedCounter`). ``clock``: the time that places a
    trigger post in its dedup window (POSIX seconds; tests inject one)."""
    from starters.chat_client import client_decider
    from starters.client import TernClient
    from starters.triggers_api import triggers_router
    from tern.db import create_pool

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = pool if pool is not None else await create_pool(settings.dsn)
        try:
            yield
        finally:
            if pool is None:
                await app.state.pool.close()

    app = FastAPI(title="Tern webhooks", summary="Signed approval decisions and webhook triggers", lifespan=lifespan)
    app.state.unsigned = UnsignedCounter()
    identities = IdentityMap(settings.chat.identity_map_path)
    state: dict[str, Decider] = {}

    def decide(request: Request) -> Decider:
        async def lazy(run_id: str, request_id: str, approver: str, approved: bool, comment: str) -> str:
            if "decide" not in state:
                state["decide"] = client_decider(await TernClient.connect(settings), surface=PLATFORM)
            return await state["decide"](run_id, request_id, approver, approved, comment)

        return lazy

    def app_pool(request: Request) -> asyncpg.Pool:
        return request.app.state.pool

    app.include_router(approvals_router(settings, decide, app_pool, identities, app.state.unsigned))

    async def temporal() -> Any:
        if "client" not in clients:
            clients["client"] = (await TernClient.connect(settings)).client
        return clients["client"]

    clients: dict[str, Any] = {}
    app.include_router(triggers_router(settings, temporal, app_pool, app.state.unsigned, clock))

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        try:
            async with app_pool(request).acquire(timeout=5) as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.exception_handler(Exception)
    async def internal(_request: Request, _exc: Exception) -> JSONResponse:
        return _error(500, "internal error")

    return app
