"""Slack approvals through the real slack-bolt app, in HTTP mode and in Socket Mode (issue 9).

HTTP mode: interaction payloads signed (or not) with the signing secret are posted to its endpoint. Socket Mode:
``apps.connections.open`` answers with the URL of a WebSocket server the test runs (aiohttp's), which sends Slack's
envelopes (``hello``, then ``interactive`` with a ``block_actions`` payload) and records the acks. Either way the Web
API calls (``auth.test``, ``chat.postMessage``, ``chat.update``, ``views.open``, ``apps.connections.open``) are
answered by a local HTTP server standing in for Slack (slack_sdk ``base_url``); the runs are real (Temporal dev
server, worker, PostgreSQL, simulated IOC)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aiohttp import WSMsgType, web
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from starters.bridge_cli import run_slack_bridge
from starters.slack_bridge import bolt_app, slack_app
from tern.control.channel_access import read_value
from tern.embedded.net import free_port
from tern.ring.plot import plotted_data
from tests.agent_helpers import audit_rows, running_worker, start_run, wait_for_state, write_plan
from tests.test_chat_webhook import serving

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def fake_slack(ws_url: str = "") -> tuple[FastAPI, list[tuple[str, dict[str, Any]]]]:
    """Slack's Web API as far as the bridge uses it; records every call as ``(method, arguments)``, the bearer
    token in ``arguments["_token"]``. ``apps.connections.open`` answers with ``ws_url`` (Socket Mode)."""
    app = FastAPI()
    calls: list[tuple[str, dict[str, Any]]] = []
    seq = itertools.count(1)

    @app.post("/api/{method}")
    async def api(method: str, request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            args = json.loads(raw) if raw else {}
        except ValueError:
            args = dict(httpx.QueryParams(raw.decode()))
        args = {**dict(request.query_params), **args}  # some methods send their arguments in the query string
        args["_token"] = request.headers.get("authorization", "").removeprefix("Bearer ")
        calls.append((method, args))
        if method == "apps.connections.open":  # Slack answers a refused app token with HTTP 200 and ok false
            return JSONResponse({"ok": True, "url": ws_url} if ws_url else {"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            return JSONResponse({"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "user": "tern"})
        if method == "chat.postMessage":
            args["_ts"] = f"1700000000.{next(seq):06d}"
            return JSONResponse({"ok": True, "channel": args["channel"], "ts": args["_ts"]})
        if method == "views.open":
            return JSONResponse({"ok": True, "view": {"id": "V1"}})
        if method == "files.getUploadURLExternal":  # files_upload_v2: the URL the bytes go to, then complete
            fid = f"F{next(seq)}"
            return JSONResponse({"ok": True, "file_id": fid, "upload_url": f"{request.base_url}upload/{fid}"})
        if method == "files.completeUploadExternal":
            return JSONResponse({"ok": True, "files": [{"id": "F"}]})
        return JSONResponse({"ok": True})

    @app.post("/upload/{file_id}")
    async def upload(file_id: str, request: Request) -> JSONResponse:
        calls.append(("upload", {"_id": file_id, "_body": await request.body()}))
        return JSONResponse({"ok": True})

    return app, calls


def signed(payload: dict[str, Any], *, at: float | None = None, secret: str = SIGNING_SECRET) -> tuple[str, dict]:
    """An interactivity request (button, modal) as Slack sends it: ``payload`` as JSON in a signed form body."""
    return signed_form({"payload": json.dumps(payload)}, at=at, secret=secret)


def signed_form(
    fields: dict[str, str], *, at: float | None = None, secret: str = SIGNING_SECRET
) -> tuple[str, dict[str, str]]:
    """A form body and the headers Slack signs it with (v0 signature over ``v0:<ts>:<body>``, Slack's "Verifying
    requests from Slack"), at ``at`` (UTC seconds; now if None)."""
    body = urlencode(fields)
    ts = str(int(time.time() if at is None else at))
    sig = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sig or "",
    }


def button(action: str, user: str, card_ts: str, rid: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user, "team_id": "T1"},
        "api_app_id": "A1",
        "team": {"id": "T1"},
        "channel": {"id": "C1"},
        "container": {"type": "message", "message_ts": card_ts, "channel_id": "C1"},
        "message": {"ts": card_ts, "text": "card"},
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "actions": [
            {
                "action_id": action,
                "block_id": "tern_decision",
                "value": rid,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def reason_view(user: str, card_ts: str, reason: str) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": user, "team_id": "T1"},
        "api_app_id": "A1",
        "view": {
            "id": f"V{time.monotonic_ns()}",
            "type": "modal",
            "callback_id": "tern_reject_reason",
            "private_metadata": f"C1|{card_ts}",
            "state": {"values": {"reason": {"text": {"type": "plain_text_input", "value": reason}}}},
        },
    }


async def until(pred, within_s: float = 30, what: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met in {within_s} s {what()}")


async def test_slack_buttons_and_modal_decide_and_unsigned_or_replayed_payloads_are_refused(
    temporal_env, settings, tmp_path
) -> None:
    idmap = tmp_path / "ids.toml"
    idmap.write_text('[slack]\nU_OP = "operator"\nU_VIS = "visitor"\n')
    slack_api, calls = fake_slack()
    port = free_port()
    async with serving(slack_api) as slack_url:
        dump = settings.model_dump()
        s = type(settings).model_validate(
            {
                **dump,
                "approval": {**dump["approval"], "approvers": ["operator"]},
                "temporal": {**dump["temporal"], "address": temporal_env.client.service_client.config.target_host},
                "chat": {
                    **dump["chat"],
                    "identity_map_path": idmap,
                    "slack_bot_token": "xoxb-test",
                    "slack_signing_secret": SIGNING_SECRET,
                    "slack_channel": "C1",
                    "slack_api_url": f"{slack_url}/api/",
                    "slack_port": port,
                    "poll_interval_s": 0.3,
                },
            }
        )
        stop = asyncio.Event()
        bridge = asyncio.create_task(run_slack_bridge(s, stop))
        events = f"http://127.0.0.1:{port}/slack/events"

        async def post(payload: dict[str, Any], **kw: Any) -> httpx.Response:
            body, headers = signed(payload, **kw)
            async with httpx.AsyncClient(timeout=60) as http:
                return await http.post(events, content=body, headers=headers)

        def posted_ts(rid: str) -> str | None:  # the ts of the card of request ``rid`` (not thread answers)
            return next(
                (a["_ts"] for m, a in calls if m == "chat.postMessage" and "thread_ts" not in a and rid in a["text"]),
                None,
            )

        try:
            channel = "SR:MAG:QF:10:CURRENT:SP"
            start = read_value(channel)
            async with running_worker(temporal_env.client, s):
                h1 = await start_run(
                    temporal_env.client, s, write_plan(channel, start + 0.5), user="physicist", approvers=["operator"]
                )
                rid1 = (await wait_for_state(h1, "awaiting_approval")).pending.request_id  # type: ignore[union-attr]
                ts1 = await until(lambda: posted_ts(rid1), 60)
                # issue 23: the quadrupole write's predicted orbit-change PNG goes into the card's thread
                done = await until(lambda: next((a for m, a in calls if m == "files.completeUploadExternal"), None), 60)
                assert (done.get("channel_id"), done.get("thread_ts")) == ("C1", ts1), done
                png = next(a["_body"] for m, a in calls if m == "upload")
                effect = (await wait_for_state(h1, "awaiting_approval")).pending.write.predicted_effect  # type: ignore[union-attr]
                data = plotted_data(png)  # raises unless a valid PNG with the plotted values
                assert (
                    effect is not None and list(zip(data["x_mm"], data["y_mm"], strict=True)) == effect.orbit_change_mm
                )
                card = next(a for m, a in calls if m == "chat.postMessage" and rid1 in a.get("text", ""))
                actions = next(b for b in card["blocks"] if b["type"] == "actions")["elements"]
                assert [(e["action_id"], e["value"]) for e in actions] == [
                    ("tern_approve", rid1),
                    ("tern_reject", rid1),
                ]

                # Mis-signed, and a correctly signed payload replayed after the 5-minute window: 401, nothing done.
                bad = await post(button("tern_approve", "U_OP", ts1, rid1), secret="not-the-secret")
                old = await post(button("tern_approve", "U_OP", ts1, rid1), at=time.time() - 301)
                assert (bad.status_code, old.status_code) == (401, 401)
                # A mapped person who is not an approver: answered in the thread, refused by the workflow.
                assert (await post(button("tern_approve", "U_VIS", ts1, rid1))).status_code == 200
                await until(
                    lambda: any(
                        m == "chat.postMessage" and a.get("thread_ts") == ts1 and "not an approver" in a.get("text", "")
                        for m, a in calls
                    )
                )
                assert (await wait_for_state(h1, "awaiting_approval")).pending.request_id == rid1  # type: ignore[union-attr]
                # Reject: the button opens the reason modal; an empty reason is refused in the modal; a reason decides.
                assert (await post(button("tern_reject", "U_OP", ts1, rid1))).status_code == 200
                opened = await until(lambda: [a for m, a in calls if m == "views.open"])
                assert opened[0]["view"]["private_metadata"] == f"C1|{ts1}"
                empty = await post(reason_view("U_OP", ts1, "  "))
                assert empty.json()["response_action"] == "errors"
                assert (await post(reason_view("U_OP", ts1, "beam unstable"))).status_code == 200
                r1 = await h1.result()
                assert r1.status == "rejected" and r1.approvals[-1].comment == "beam unstable"
                upd = await until(lambda: [a for m, a in calls if m == "chat.update" and a["ts"] == ts1])
                assert "Rejected" in upd[-1]["text"] and "operator" in upd[-1]["text"]
                assert not [b for b in upd[-1]["blocks"] if b["type"] == "actions"]  # buttons gone

                h2 = await start_run(
                    temporal_env.client, s, write_plan(channel, start + 0.5), user="physicist", approvers=["operator"]
                )
                rid2 = (await wait_for_state(h2, "awaiting_approval")).pending.request_id  # type: ignore[union-attr]
                ts2 = await until(lambda: posted_ts(rid2), 60)
                assert (await post(button("tern_approve", "U_OP", ts2, rid2))).status_code == 200
                r2 = await h2.result()
                await until(
                    lambda: [
                        a
                        for m, a in calls
                        if m == "chat.update" and a["ts"] == ts2 and "Written and verified" in a["text"]
                    ]
                )
        finally:
            stop.set()
            await bridge
    assert r2.status == "completed" and read_value(channel) == pytest.approx(start + 0.5)
    rows = await audit_rows(s.dsn, h1.id)
    assert json.loads(next(r for r in rows if r["event_kind"] == "decision")["details"])["surface"] == "slack"
    attempts = [json.loads(r["details"]) for r in rows if r["event_kind"] == "chat_decision"]
    assert [(a["platform_identity"], a["accepted"]) for a in attempts] == [("U_VIS", False), ("U_OP", True)]
    assert len([a for m, a in calls if m == "chat.postMessage" and "thread_ts" not in a]) == 2  # one card per request


class SlackSocket:
    """Slack's Socket Mode WebSocket endpoint (an aiohttp server): on connecting, the client gets ``hello``; the test
    sends envelopes with :meth:`interactive`; every text frame the client sends (the acks) is kept in
    ``received``. Envelope and ack shapes: Slack's "Using Socket Mode" and slack_sdk's ``socket_mode.request``."""

    def __init__(self) -> None:
        self.connections = 0
        self.received: list[dict[str, Any]] = []
        self.ws: web.WebSocketResponse | None = None

    async def endpoint(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        self.connections += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": self.connections,
                "debug_info": {"host": "applink-test", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A1"},
            }
        )
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.received.append(json.loads(msg.data))
        return ws

    async def interactive(self, payload: dict[str, Any]) -> str:
        """Send ``payload`` (block_actions, view_submission) in an ``interactive`` envelope; returns its id."""
        assert self.ws is not None, "no Socket Mode connection"
        envelope_id = f"env-{time.monotonic_ns()}"
        await self.ws.send_json(
            {"envelope_id": envelope_id, "type": "interactive", "accepts_response_payload": False, "payload": payload}
        )
        return envelope_id

    def ack(self, envelope_id: str) -> dict[str, Any] | None:
        return next((m for m in self.received if m.get("envelope_id") == envelope_id), None)


@asynccontextmanager
async def socket_mode_server() -> AsyncIterator[tuple[SlackSocket, str]]:
    """A :class:`SlackSocket` on a free loopback port and its ``ws://`` URL shaped like Slack's."""
    fake = SlackSocket()
    app = web.Application()
    app.router.add_get("/link/", fake.endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield fake, f"ws://127.0.0.1:{port}/link/?ticket=test-ticket&app_id=A1"
    finally:
        await runner.cleanup()


async def test_slack_socket_mode_buttons_and_modal_decide_and_unmapped_presses_are_refused(
    temporal_env, settings, tmp_path
) -> None:
    idmap = tmp_path / "ids.toml"
    idmap.write_text('[slack]\nU_OP = "operator"\n')
    async with socket_mode_server() as (sock, ws_url):
        slack_api, calls = fake_slack(ws_url)
        async with serving(slack_api) as slack_url:
            dump = settings.model_dump()
            s = type(settings).model_validate(
                {
                    **dump,
                    "approval": {**dump["approval"], "approvers": ["operator"]},
                    "temporal": {**dump["temporal"], "address": temporal_env.client.service_client.config.target_host},
                    "chat": {
                        **dump["chat"],
                        "identity_map_path": idmap,
                        "slack_bot_token": "xoxb-test",
                        "slack_app_token": "xapp-1-A1-test",
                        "slack_signing_secret": None,  # Socket Mode needs none
                        "slack_channel": "C1",
                        "slack_api_url": f"{slack_url}/api/",
                        "poll_interval_s": 0.3,
                    },
                }
            )
            stop = asyncio.Event()
            bridge = asyncio.create_task(run_slack_bridge(s, stop))

            def card_ts(rid: str) -> str | None:
                return next(
                    (
                        a["_ts"]
                        for m, a in calls
                        if m == "chat.postMessage" and "thread_ts" not in a and rid in a["text"]
                    ),
                    None,
                )

            async def press(payload: dict[str, Any]) -> dict[str, Any]:  # the envelope's ack
                envelope_id = await sock.interactive(payload)
                return await until(
                    lambda: sock.ack(envelope_id),
                    60,
                    lambda: f"(ack of {envelope_id}; {sock.connections} connections; got {sock.received})",
                )

            try:
                await until(
                    lambda: sock.connections, 60, lambda: f"(no WebSocket; Web API calls {[m for m, _ in calls]})"
                )
                opened = [a for m, a in calls if m == "apps.connections.open"]
                assert [a["_token"] for a in opened] == ["xapp-1-A1-test"]  # the app token, not the bot token
                channel = "SR:MAG:QF:10:CURRENT:SP"
                start = read_value(channel)
                async with running_worker(temporal_env.client, s):
                    h1 = await start_run(
                        temporal_env.client,
                        s,
                        write_plan(channel, start + 0.5),
                        user="physicist",
                        approvers=["operator"],
                    )
                    rid1 = (await wait_for_state(h1, "awaiting_approval", 60)).pending.request_id  # type: ignore[union-attr]
                    ts1 = await until(lambda: card_ts(rid1), 60)

                    # Someone the identity map does not know: acked, answered in the thread, no decision.
                    ack = await press(button("tern_approve", "U_STRANGER", ts1, rid1))
                    assert set(ack) == {"envelope_id"}
                    await until(
                        lambda: any(
                            m == "chat.postMessage" and a.get("thread_ts") == ts1 and "not mapped" in a.get("text", "")
                            for m, a in calls
                        ),
                        60,
                    )
                    assert (await wait_for_state(h1, "awaiting_approval", 60)).pending.request_id == rid1  # type: ignore[union-attr]
                    # The operator's Approve decides; the write happens and the card shows it.
                    assert set(await press(button("tern_approve", "U_OP", ts1, rid1))) == {"envelope_id"}
                    r1 = await h1.result()
                    await until(
                        lambda: [
                            a
                            for m, a in calls
                            if m == "chat.update" and a["ts"] == ts1 and "Written and verified" in a["text"]
                        ],
                        60,
                    )

                    # Reject through the modal: an empty reason is answered in the ack's payload; a reason decides.
                    h2 = await start_run(
                        temporal_env.client, s, write_plan(channel, start), user="physicist", approvers=["operator"]
                    )
                    rid2 = (await wait_for_state(h2, "awaiting_approval", 60)).pending.request_id  # type: ignore[union-attr]
                    ts2 = await until(lambda: card_ts(rid2), 60)
                    await press(button("tern_reject", "U_OP", ts2, rid2))
                    opened_views = await until(lambda: [a for m, a in calls if m == "views.open"], 60)
                    assert opened_views[0]["view"]["private_metadata"] == f"C1|{ts2}"
                    empty = await press(reason_view("U_OP", ts2, " "))
                    assert empty["payload"]["response_action"] == "errors"
                    await press(reason_view("U_OP", ts2, "beam unstable"))
                    r2 = await h2.result()
            finally:
                stop.set()
                await bridge
    assert r1.status == "completed" and read_value(channel) == pytest.approx(start + 0.5)
    assert r2.status == "rejected" and r2.approvals[-1].comment == "beam unstable"
    rows = await audit_rows(s.dsn, h1.id)
    decision = json.loads(next(r for r in rows if r["event_kind"] == "decision")["details"])
    assert decision["surface"] == "slack"
    attempts = [json.loads(r["details"]) for r in rows if r["event_kind"] == "chat_decision"]
    assert [(a["platform_identity"], a["accepted"]) for a in attempts] == [("U_STRANGER", False), ("U_OP", True)]


async def test_slack_socket_mode_with_a_refused_app_token_fails_at_start(temporal_env, settings) -> None:
    slack_api, calls = fake_slack()  # no WebSocket URL: apps.connections.open answers invalid_auth
    async with serving(slack_api) as slack_url:
        dump = settings.model_dump()
        s = type(settings).model_validate(
            {
                **dump,
                "temporal": {**dump["temporal"], "address": temporal_env.client.service_client.config.target_host},
                "chat": {
                    **dump["chat"],
                    "slack_bot_token": "xoxb-test",
                    "slack_app_token": "xapp-1-A1-revoked",
                    "slack_channel": "C1",
                    "slack_api_url": f"{slack_url}/api/",
                },
            }
        )
        with pytest.raises(SlackApiError, match="invalid_auth"):
            await asyncio.wait_for(run_slack_bridge(s, asyncio.Event()), 60)  # never stopped: it must end itself
    assert [m for m, _ in calls] == ["apps.connections.open"]  # no card posted, nothing taken


def test_http_mode_refuses_an_empty_signing_secret(settings) -> None:
    """An empty secret would let anyone sign a decision: the app is not built (fail closed)."""
    dump = settings.model_dump()
    chat = {**dump["chat"], "slack_bot_token": "xoxb-test", "slack_signing_secret": ""}
    s = type(settings).model_validate({**dump, "chat": chat})
    with pytest.raises(ValueError, match="TERN_CHAT__SLACK_SIGNING_SECRET"):
        slack_app(s, None, AsyncWebClient(token="xoxb-test"))  # type: ignore[arg-type]  # fails before the bridge
    with pytest.raises(ValueError, match="empty Slack signing secret"):
        bolt_app(None, AsyncWebClient(token="xoxb-test"), signing_secret="")  # type: ignore[arg-type]
