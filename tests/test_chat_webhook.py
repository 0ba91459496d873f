"""Signed webhook approvals on real servers: the approvals API (FastAPI under uvicorn) sends decisions to a real
run (Temporal dev server, worker, PostgreSQL, simulated IOC); the notify_approvers activity posts each request,
signed, to a receiver that fails once and is retried (issue 9)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tern.chat.signing import signed_headers, verify
from tern.control.channels import read_value
from tern.embedded.net import free_port
from tests.agent_helpers import audit_rows, running_worker, start_run, wait_for_state, write_plan

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]
SECRETS = {"ops-bot": "s3cret-ops", "intern-bot": "s3cret-intern", "tern-out": "s3cret-out", "nobody": "s3cret-x"}


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(400):  # uvicorn sets `started` once it listens
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def receiver() -> tuple[FastAPI, list[dict]]:
    """A bot's endpoint: answers 503 to the first notification, 200 after; keeps what verified."""
    app = FastAPI()
    got: list[dict] = []
    calls = {"n": 0}

    @app.post("/hook")
    async def hook(request: Request) -> JSONResponse:
        calls["n"] += 1
        body = await request.body()
        verify({"tern-out": SECRETS["tern-out"]}, request.headers, body)
        if calls["n"] == 1:
            return JSONResponse({"error": "try later"}, status_code=503)
        got.append(json.loads(body))
        return JSONResponse({"ok": True})

    return app, got


async def test_signed_webhook_decides_and_bad_posts_are_refused_with_a_reason(temporal_env, settings, tmp_path) -> None:
    from starters.approvals_api import create_app

    idmap = tmp_path / "ids.toml"
    idmap.write_text('[webhook]\nops-bot = "operator"\nintern-bot = "intern"\n')
    hook_app, notified = receiver()
    async with serving(hook_app) as hook_url:
        s = settings.model_copy(
            update={
                "approval": settings.approval.model_copy(update={"approvers": ["operator"]}),
                "chat": settings.chat.model_copy(
                    update={
                        "webhook_secrets": SECRETS,
                        "webhook_notify_urls": [f"{hook_url}/hook"],
                        "webhook_notify_key_id": "tern-out",
                        "identity_map_path": idmap,
                        "webhook_max_body_bytes": 1024,
                    }
                ),
                "temporal": settings.temporal.model_copy(
                    update={"address": temporal_env.client.service_client.config.target_host}
                ),
            }
        )
        s = type(s).model_validate(s.model_dump())  # SecretStr conversion of the secrets, as from the environment
        channel = "SR:MAG:QF:09:CURRENT:SP"
        target = read_value(channel) + 0.5
        async with running_worker(temporal_env.client, s), serving(create_app(s)) as api:
            handle = await start_run(
                temporal_env.client, s, write_plan(channel, target), user="physicist", approvers=["operator"]
            )
            rid = (await wait_for_state(handle, "awaiting_approval")).pending.request_id  # type: ignore[union-attr]
            url = f"{api}/approvals/{rid}/decision"
            for _ in range(300):  # the notification: refused once, retried by the activity after 1 s
                if notified:
                    break
                await asyncio.sleep(0.1)

            async def post(body: bytes, key: str | None = "ops-bot", *, at: float | None = None, secret=None, u=url):
                headers = {"Content-Type": "application/json"}
                if key is not None:
                    headers |= signed_headers(key, secret or SECRETS[key], body, now=at)
                async with httpx.AsyncClient(timeout=60) as http:
                    return await http.post(u, content=body, headers=headers)

            ok = json.dumps({"approved": True, "comment": "from the ops bot"}).encode()
            cases = [
                (await post(ok, None), 401, "unsigned"),
                (await post(ok, secret="wrong"), 401, "does not match"),
                (await post(ok, at=time.time() - 301), 401, "outside the 300 s window"),
                (await post(ok, "stranger-bot", secret="x"), 401, "unknown key id"),
                (await post(b'{"approved": true, "comment": "' + b"x" * 2000 + b'"}'), 413, "larger than 1024"),
                (await post(b'{"approved": "maybe"}'), 400, "malformed body: approved"),
                (await post(b"not json"), 400, "malformed body"),
                (await post(ok, u=f"{api}/approvals/no-such-request/decision"), 404, "unknown request id"),
                (await post(ok, "nobody"), 403, "not mapped"),
                (await post(ok, "intern-bot"), 409, "not an approver"),
            ]
            for resp, status, reason in cases:
                assert resp.status_code == status, (reason, resp.status_code, resp.text)
                assert reason in resp.json()["error"], (reason, resp.json())
            assert (await wait_for_state(handle, "awaiting_approval")).pending.request_id == rid  # type: ignore[union-attr]

            signed_at = time.time()
            good = await post(ok, at=signed_at)
            assert good.status_code == 200, good.text
            assert good.json()["approver"] == "operator" and "approved" in good.json()["result"]
            replay = await post(ok, at=signed_at)  # the same signed payload again, inside the window
            assert replay.status_code == 409 and "already posted" in replay.json()["error"]
            result = await handle.result()
    assert result.status == "completed" and read_value(channel) == pytest.approx(target)
    rows = await audit_rows(s.dsn, handle.id)
    decision = next(r for r in rows if r["event_kind"] == "decision")
    assert decision["actor"] == "operator" and json.loads(decision["details"])["surface"] == "webhook"
    attempts = [json.loads(r["details"]) for r in rows if r["event_kind"] == "chat_decision"]
    assert [(a["platform_identity"], a["accepted"]) for a in attempts] == [
        ("nobody", False),
        ("intern-bot", False),
        ("ops-bot", True),
        ("ops-bot", False),
    ]
    assert [r["actor"] for r in rows if r["event_kind"] == "decision_refused"] == ["intern"]
    unknown = [json.loads(r["details"]) for r in await audit_rows(s.dsn, "chat-bridge")]  # no run to file them under
    assert [(a["platform_identity"], a["platform"]) for a in unknown] == [
        ("(none)", "webhook"),
        *[("ops-bot", "webhook")] * 2,
        ("stranger-bot", "webhook"),
        *[("ops-bot", "webhook")] * 4,
    ]
    # The notification arrived signed after one refused attempt (the activity retried it).
    assert [n["request"]["request_id"] for n in notified] == [rid]
    assert notified[0]["decision_path"] == f"/approvals/{rid}/decision" and notified[0]["run_id"] == handle.id


def test_webhook_app_is_the_ariel_app_plus_approvals() -> None:
    """`tern bridge webhook` serves ARIEL's routes, the approvals route and the webhook triggers route; `tern ariel
    serve` serves ARIEL's only (no decision or trigger endpoint), and their default ports differ so both run on one
    host."""
    import inspect

    from starters import ariel_cli, bridge_cli
    from starters.approvals_api import create_app as webhook_app
    from tern.ariel.api import create_app as ariel_app
    from tern.config import TernSettings

    def routes(app) -> set[tuple[str, str]]:
        return {(path, method.upper()) for path, ops in app.openapi()["paths"].items() for method in ops}

    s = TernSettings()
    ariel, webhook = routes(ariel_app(s)), routes(webhook_app(s))
    assert ariel < webhook and webhook - ariel == {
        ("/approvals/{request_id}/decision", "POST"),
        ("/triggers/{name}", "POST"),
    }
    ports = [inspect.signature(f).parameters["port"].default for f in (ariel_cli.serve, bridge_cli.webhook)]
    assert ports == [8765, 8766]
