"""Signed webhook approvals on real servers: the approvals API (FastAPI under uvicorn) sends decisions to a real
run (Temporal dev server, worker, PostgreSQL, simulated IOC); the notify_approvers activity posts each request,
signed, to a receiver that fails once and is retried (issue 9)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tern.chat.signing import signed_headers, target_of, verify
from tern.control.channel_access import read_value
from tern.embedded.net import free_port
from tests.agent_helpers import audit_rows, running_worker, start_run, wait_for_state, write_plan

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]
SECRETS = {
    "ops-bot": "s3cret-ops-0123456789",
    "intern-bot": "s3cret-intern-012345",
    "nobody": "s3cret-x-0123456789ab",
}
NOTIFY_SECRET = "s3cret-notify-0123456"  # signs outbound notifications; never accepted inbound


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


def receiver() -> tuple[FastAPI, list[dict], list[tuple[dict[str, str], bytes]]]:
    """A bot's endpoint: answers 503 to the first notification, 200 after; keeps what verified (its signature
    binds this receiver's path, /hook), and the raw requests (headers, body) as a receiver could replay them."""
    app = FastAPI()
    got: list[dict] = []
    raw: list[tuple[dict[str, str], bytes]] = []
    calls = {"n": 0}

    @app.post("/hook")
    async def hook(request: Request) -> JSONResponse:
        calls["n"] += 1
        body = await request.body()
        verify({"tern-notify": NOTIFY_SECRET}, request.headers, body, method="POST", target="/hook")
        if calls["n"] == 1:
            return JSONResponse({"error": "try later"}, status_code=503)
        got.append(json.loads(body))
        raw.append(({k: request.headers[k] for k in ("X-Tern-Key-Id", "X-Tern-Timestamp", "X-Tern-Signature")}, body))
        return JSONResponse({"ok": True})

    return app, got, raw


async def test_signed_webhook_decides_and_bad_posts_are_refused_with_a_reason(temporal_env, settings, tmp_path) -> None:
    """Issue 9, and issue 22: a decision captured for request A cannot decide request B, a replayed signature is
    refused, a notification cannot be replayed to Tern, and only validly signed refusals are audited."""
    from starters.approvals_api import create_app

    idmap = tmp_path / "ids.toml"
    idmap.write_text('[webhook]\nops-bot = "operator"\nintern-bot = "intern"\n')
    hook_app, notified, notifications = receiver()
    async with serving(hook_app) as hook_url:
        s = settings.model_copy(
            update={
                "approval": settings.approval.model_copy(update={"approvers": ["operator"]}),
                "chat": settings.chat.model_copy(
                    update={
                        "webhook_secrets": SECRETS,
                        "webhook_notify_urls": [f"{hook_url}/hook"],
                        "webhook_notify_secret": NOTIFY_SECRET,
                        "identity_map_path": idmap,
                        "webhook_max_body_bytes": 4096,  # a notification (about 1.5 kB) fits
                    }
                ),
                "temporal": settings.temporal.model_copy(
                    update={"address": temporal_env.client.service_client.config.target_host}
                ),
            }
        )
        s = type(s).model_validate(s.model_dump())  # SecretStr conversion of the secrets, as from the environment
        channel, channel_b = "SR:MAG:QF:09:CURRENT:SP", "SR:MAG:QF:08:CURRENT:SP"
        target, before_b = read_value(channel) + 0.5, read_value(channel_b)
        async with running_worker(temporal_env.client, s), serving(create_app(s)) as api:
            handle = await start_run(
                temporal_env.client, s, write_plan(channel, target), user="physicist", approvers=["operator"]
            )
            handle_b = await start_run(
                temporal_env.client, s, write_plan(channel_b, before_b + 0.5), user="physicist", approvers=["operator"]
            )
            rid = (await wait_for_state(handle, "awaiting_approval")).pending.request_id  # type: ignore[union-attr]
            rid_b = (await wait_for_state(handle_b, "awaiting_approval")).pending.request_id  # type: ignore[union-attr]
            url = f"{api}/approvals/{rid}/decision"
            for _ in range(300):  # the notifications: the first refused once, retried by the activity after 1 s
                if len(notified) == 2:
                    break
                await asyncio.sleep(0.1)

            async def post(body: bytes, key: str | None = "ops-bot", *, at: float | None = None, secret=None, u=url):
                headers = {"Content-Type": "application/json"}
                if key is not None:
                    headers |= signed_headers(key, secret or SECRETS[key], body, target=target_of(u), now=at)
                async with httpx.AsyncClient(timeout=60) as http:
                    return await http.post(u, content=body, headers=headers)

            ok = json.dumps({"approved": True, "comment": "from the ops bot"}).encode()
            v1 = hmac.new(SECRETS["ops-bot"].encode(), f"v1:{int(time.time())}:".encode() + ok, hashlib.sha256)
            v1_headers = signed_headers("ops-bot", SECRETS["ops-bot"], ok, target=target_of(url))
            v1_headers["X-Tern-Signature"] = f"v1={v1.hexdigest()}"
            async with httpx.AsyncClient(timeout=60) as http:
                old_scheme = await http.post(url, content=ok, headers=v1_headers)
            cases = [
                (await post(ok, None), 401, "unsigned"),
                (await post(ok, secret="wrong-but-long-enough"), 401, "does not match"),
                (await post(ok, at=time.time() - 301), 401, "outside the 300 s window"),
                (await post(ok, "stranger-bot", secret="x"), 401, "unknown key id"),
                (old_scheme, 401, "'v1' is not accepted"),
                (await post(b'{"approved": true, "comment": "' + b"x" * 5000 + b'"}'), 413, "larger than 4096"),
                (await post(b'{"approved": "maybe"}'), 400, "malformed body: approved"),
                (await post(b"not json"), 400, "malformed body"),
                (await post(ok, u=f"{api}/approvals/no-such-request/decision"), 404, "unknown request id"),
                (await post(ok, "nobody"), 403, "not mapped"),
                (await post(ok, "intern-bot"), 409, "not an approver"),
            ]
            for resp, status, reason in cases:
                assert resp.status_code == status, (reason, resp.status_code, resp.text)
                assert reason in resp.json()["error"], (reason, resp.json())
            # A receiver of the notifications replays one to Tern: as a decision, and as a trigger.
            headers, body = notifications[0]
            async with httpx.AsyncClient(base_url=api, timeout=60) as http:
                for path in (json.loads(body)["decision_path"], "/triggers/any"):
                    replayed = await http.post(path, content=body, headers=headers)
                    assert replayed.status_code == 401 and "unknown key id" in replayed.json()["error"], replayed.text
            assert (await wait_for_state(handle, "awaiting_approval")).pending.request_id == rid  # type: ignore[union-attr]

            signed_at = time.time()
            captured = {"Content-Type": "application/json"} | signed_headers(
                "ops-bot", SECRETS["ops-bot"], ok, target=target_of(url), now=signed_at
            )
            async with httpx.AsyncClient(timeout=60) as http:
                good = await http.post(url, content=ok, headers=captured)
                assert good.status_code == 200, good.text
                assert good.json()["approver"] == "operator" and "approved" in good.json()["result"]
                # The captured approval, posted to another pending request: refused, B still waits.
                cross = await http.post(f"{api}/approvals/{rid_b}/decision", content=ok, headers=captured)
                assert cross.status_code == 401 and "does not match" in cross.json()["error"], cross.text
                replay = await http.post(url, content=ok, headers=captured)  # the same signed request again
                assert replay.status_code == 409 and "signature already used" in replay.json()["error"]
            again = await post(ok, at=signed_at + 1)  # newly signed, same key, same request
            assert again.status_code == 409 and "already posted" in again.json()["error"]
            result = await handle.result()
            assert (await wait_for_state(handle_b, "awaiting_approval")).pending.request_id == rid_b  # type: ignore[union-attr]
            no = json.dumps({"approved": False, "comment": "not now"}).encode()
            rejected = await post(no, u=f"{api}/approvals/{rid_b}/decision")
            assert rejected.status_code == 200 and "rejected" in rejected.json()["result"], rejected.text
            result_b = await handle_b.result()
    assert result.status == "completed" and read_value(channel) == pytest.approx(target)
    assert result_b.status != "completed" and read_value(channel_b) == pytest.approx(before_b)
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
    # Audited with no run to file them under: only the validly signed refusals (two malformed bodies, the unknown
    # request id, the replayed signature); unsigned, badly signed, v1, stale, oversized and notification posts
    # are counted, not audited.
    unknown = [json.loads(r["details"]) for r in await audit_rows(s.dsn, "chat-bridge")]
    assert [(a["platform_identity"], a["platform"]) for a in unknown] == [("ops-bot", "webhook")] * 4
    # The notifications arrived signed after one refused attempt (the activity retried it).
    assert sorted(n["request"]["request_id"] for n in notified) == sorted([rid, rid_b])
    first = next(n for n in notified if n["request"]["request_id"] == rid)
    assert first["decision_path"] == f"/approvals/{rid}/decision" and first["run_id"] == handle.id


def test_webhook_app_serves_the_signed_routes_and_no_ariel_route() -> None:
    """`tern bridge webhook` serves the approvals route, the webhook triggers route and /health, none of ARIEL's
    (issue 22: it is an unauthenticated endpoint; logbook entries and RAG search with its LLM spend stay on `tern
    ariel serve`, which serves no decision or trigger route); their default ports differ so both run on one host."""
    import inspect

    from starters import ariel_cli, bridge_cli
    from starters.approvals_api import create_app as webhook_app
    from tern.ariel.api import create_app as ariel_app
    from tern.config import TernSettings

    def routes(app) -> set[tuple[str, str]]:
        return {(path, method.upper()) for path, ops in app.openapi()["paths"].items() for method in ops}

    s = TernSettings()
    ariel, webhook = routes(ariel_app(s)), routes(webhook_app(s))
    assert webhook == {
        ("/approvals/{request_id}/decision", "POST"),
        ("/triggers/{name}", "POST"),
        ("/health", "GET"),
    }
    assert ("/entries/{entry_id}", "GET") in ariel and not {p for p, _ in ariel} & {"/approvals/{request_id}/decision"}
    ports = [inspect.signature(f).parameters["port"].default for f in (ariel_cli.serve, bridge_cli.webhook)]
    assert ports == [8765, 8766]
