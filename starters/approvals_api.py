"""``POST /approvals/{request_id}/decision``: signed webhook decisions for any bot (Mattermost, Teams, Google
Chat, scripts), on Tern's HTTP API.

In ``starters/`` because it sends the ``decide`` Update through a Temporal client (``tern/`` imports no
Temporal). :func:`create_app` is the ARIEL API (:func:`tern.ariel.api.create_app`) with this router mounted;
``tern bridge webhook`` serves it.

Request: headers of :mod:`tern.chat.signing` (HMAC-SHA256 over timestamp and body, per-key secrets
``TERN_WEBHOOK_SECRETS``, ``TERN_WEBHOOK_WINDOW_S`` replay window), body ``{"approved": true|false, "comment":
"why"}`` (JSON, at most ``TERN_WEBHOOK_MAX_BODY_BYTES``). The key id is mapped to an approver by the identity
map's ``[webhook]`` table; the decision goes to the run with the request id of the URL (refused when another
request is pending), and the workflow's validator decides as for any front end (audit surface ``webhook``).
Each key may post one decision per request (``webhook_uses``), so a replayed payload is refused even inside the
window. Answers: 200 with the audited decision; errors are JSON ``{"error": "<reason>"}`` with 400 (malformed
body), 401 (unsigned, unknown key, outside the window, bad signature), 403 (key not mapped to an approver), 404
(unknown request id), 409 (already used, or refused by the workflow: stale, not an approver, decided), 413 (body
too large); never a stack trace. Every attempt is audited as ``chat_decision`` (platform ``webhook``).

The same app serves ``POST /triggers/{name}`` (webhook triggers, :mod:`starters.triggers_api`), signed the
same way (:func:`starters.signed_requests.signed_body`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from starters.signed_requests import Refused, signed_body
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
) -> APIRouter:
    """The router. ``decide``/``pool`` give the app's decision sender and asyncpg pool for a request."""
    router = APIRouter()
    secrets = {k: v.get_secret_value() for k, v in settings.chat.webhook_secrets.items()}

    @router.post("/approvals/{request_id}/decision")
    async def decision(request: Request, request_id: str) -> JSONResponse:
        attempt = f"{request_id}:{uuid.uuid4().hex}"
        db = pool(request)
        identity = request.headers.get("X-Tern-Key-Id", "")[:64] or "(none)"

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
            body, key_id = await signed_body(request, settings, secrets)
        except Refused as exc:
            return await refuse(exc.status, exc.reason, request_id=request_id)
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


def create_app(settings: TernSettings) -> FastAPI:
    """Tern's HTTP API: ARIEL's routes plus the approvals router. The Temporal client is connected at the first
    decision (so the API starts without Temporal); unexpected errors answer 500 ``{"error": "internal error"}``."""
    from starters.chat_client import client_decider
    from starters.client import TernClient
    from tern.ariel.api import create_app as ariel_app

    app = ariel_app(settings)
    identities = IdentityMap(settings.chat.identity_map_path)
    state: dict[str, Decider] = {}

    def decide(request: Request) -> Decider:
        async def lazy(run_id: str, request_id: str, approver: str, approved: bool, comment: str) -> str:
            if "decide" not in state:
                state["decide"] = client_decider(await TernClient.connect(settings), surface=PLATFORM)
            return await state["decide"](run_id, request_id, approver, approved, comment)

        return lazy

    app.include_router(approvals_router(settings, decide, lambda r: r.app.state.pool, identities))
    from starters.triggers_api import triggers_router

    async def temporal() -> Any:
        if "client" not in clients:
            clients["client"] = (await TernClient.connect(settings)).client
        return clients["client"]

    clients: dict[str, Any] = {}
    app.include_router(triggers_router(settings, temporal, lambda r: r.app.state.pool))

    @app.exception_handler(Exception)
    async def internal(_request: Request, _exc: Exception) -> JSONResponse:
        return _error(500, "internal error")

    return app
