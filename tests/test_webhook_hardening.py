"""Signed webhooks that cannot be replayed or cross-used (issue 22), on Tern's webhook API under uvicorn with a real
PostgreSQL; no Temporal needed: everything here is refused before a decision or a run would start (the accepted
paths run end to end in tests/test_chat_webhook.py and tests/test_trigger_webhook.py)."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import Request

from tern.chat.signing import signed_headers
from tern.config import TernSettings
from tern.models.trigger import TriggerAction, TriggerDefinition
from tests.test_chat_webhook import serving

pytestmark = [pytest.mark.postgres]
SECRETS = {"ops-bot": "s3cret-ops-0123456789", "ticket-bot": "s3cret-ticket-012345"}
NOTIFY_SECRET = "s3cret-notify-0123456"
READ_PLAN = {"steps": [{"id": "read", "kind": "channel_read", "channels": ["SR:RF:CAVITY:01:VOLTAGE:RB"]}]}


def _settings(pg_dsn: str, tmp_path: Path) -> TernSettings:
    idmap = tmp_path / "ids.toml"
    idmap.write_text('[webhook]\nops-bot = "operator"\n')
    return TernSettings(
        data_dir=tmp_path,
        database={"url": pg_dsn},
        chat={
            "webhook_secrets": SECRETS,
            "webhook_notify_secret": NOTIFY_SECRET,
            "webhook_notify_urls": ["http://127.0.0.1:9/hook"],
            "identity_map_path": idmap,
            "webhook_max_body_bytes": 1024,
        },
    )


async def _rows(dsn: str, run_id: str) -> list[dict]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM audit_events WHERE run_id = $1 ORDER BY id", run_id)]
    finally:
        await conn.close()


def signed(key: str, body: bytes, target: str, **kw: object) -> dict[str, str]:
    return {"Content-Type": "application/json", **signed_headers(key, SECRETS[key], body, target=target, **kw)}


async def test_unsigned_posts_are_counted_not_audited_and_signed_refusals_are_audited_once(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A flood of unsigned or badly signed posts writes no audit row (counted instead); a validly signed post that
    is refused is audited, and the same signature again is refused as a replay and audited only once."""
    from starters.approvals_api import create_app

    s = _settings(pg_dsn, tmp_path)
    app = create_app(s)
    body = json.dumps({"approved": True, "comment": "ok"}).encode()
    path = "/approvals/r-unknown/decision"
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        for i in range(20):
            r = await http.post(path, content=body)
            assert r.status_code == 401 and "unsigned" in r.json()["error"]
            r = await http.post(f"/triggers/t{i}", content=body)
            assert r.status_code == 401
        forged = signed_headers("ops-bot", "not-the-secret-0123456", body, target=path)
        assert (await http.post(path, content=body, headers=forged)).status_code == 401
        assert await _rows(pg_dsn, "chat-bridge") == [] and await _rows(pg_dsn, "trigger-webhooks") == []
        assert sum(app.state.unsigned.counts.values()) == 41

        h = signed("ops-bot", body, path)
        first = await http.post(path, content=body, headers=h)
        assert first.status_code == 404 and "unknown request id" in first.json()["error"]
        for _ in range(3):  # the captured request, replayed
            again = await http.post(path, content=body, headers=h)
            assert again.status_code == 409 and "signature already used" in again.json()["error"]
    rows = [json.loads(r["details"]) for r in await _rows(pg_dsn, "chat-bridge")]
    assert [(d["platform_identity"], d["accepted"]) for d in rows] == [("ops-bot", False), ("ops-bot", False)]


async def test_a_signature_for_one_path_or_trigger_does_not_work_on_another(pg_dsn: str, tmp_path: Path) -> None:
    """The path is signed: a decision captured for request A posted to B, or a trigger post sent to another
    trigger, is refused (401); a notification (signed with the notification secret) replayed to Tern is refused;
    a key a trigger does not name may not fire it (403), nor any key a trigger that names none (403)."""
    from starters.approvals_api import create_app
    from tern.db import create_pool
    from tern.triggers.store import add_trigger

    s = _settings(pg_dsn, tmp_path)
    pool = await create_pool(pg_dsn)
    action = TriggerAction(plan=READ_PLAN, user="ops")  # type: ignore[arg-type]
    try:
        async with pool.acquire() as conn:
            await add_trigger(
                conn, TriggerDefinition(name="ticket", kind="webhook", action=action, key_ids=["ticket-bot"])
            )
            await add_trigger(conn, TriggerDefinition(name="legacy", kind="webhook", action=action))
            await add_trigger(conn, TriggerDefinition(name="other", kind="webhook", action=action, key_ids=["ops-bot"]))
        decision = json.dumps({"approved": False, "comment": "no"}).encode()
        event = json.dumps({"alert": "RF trip"}).encode()
        notification = json.dumps({"event": "approval_requested", "decision_path": "/approvals/a/decision"}).encode()
        async with serving(create_app(s, pool)) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
            captured = signed("ops-bot", decision, "/approvals/a/decision")
            to_b = await http.post("/approvals/b/decision", content=decision, headers=captured)
            assert to_b.status_code == 401 and "does not match" in to_b.json()["error"]
            for target in ("/triggers/ticket", "/approvals/a/decision"):
                notified = signed_headers("tern-notify", NOTIFY_SECRET, notification, target=target)
                replayed = await http.post(target, content=notification, headers=notified)
                assert replayed.status_code == 401 and "unknown key id 'tern-notify'" in replayed.json()["error"]

            for_other = signed("ops-bot", event, "/triggers/other")
            cross = await http.post("/triggers/ticket", content=event, headers=for_other)
            assert cross.status_code == 401 and "does not match" in cross.json()["error"]
            wrong_key = await http.post(
                "/triggers/ticket", content=event, headers=signed("ops-bot", event, "/triggers/ticket")
            )
            assert wrong_key.status_code == 403 and "may not fire trigger 'ticket'" in wrong_key.json()["error"]
            legacy = await http.post(
                "/triggers/legacy", content=event, headers=signed("ticket-bot", event, "/triggers/legacy")
            )
            assert legacy.status_code == 403 and "names no key" in legacy.json()["error"]
            assert "--key-id" in legacy.json()["error"]
    finally:
        await pool.close()
    refused = [(r["actor"], json.loads(r["details"])["trigger"]) for r in await _rows(pg_dsn, "trigger-webhooks")]
    assert refused == [("ops-bot", "ticket"), ("ticket-bot", "legacy")]


async def test_webhook_api_serves_no_ariel_route(pg_dsn: str, tmp_path: Path) -> None:
    """`tern bridge webhook` is an unauthenticated endpoint: logbook entries, (RAG) search and LLM spend are not on
    it (404), only the signed routes and /health."""
    from starters.approvals_api import create_app

    async with serving(create_app(_settings(pg_dsn, tmp_path))) as base, httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        for path in ("/entries/e-1", "/search?q=rf&mode=rag", "/status"):
            assert (await http.get(path)).status_code == 404, path
        assert (await http.post("/search", json={"query": "rf", "mode": "rag"})).status_code == 404


async def test_a_chunked_body_is_refused_at_the_limit_without_reading_the_rest(tmp_path: Path) -> None:
    """A body without Content-Length (chunked) is read only up to the limit, then refused with 413: the rest
    of a huge body is never pulled into memory."""
    from starters.signed_requests import Refused, signed_body

    s = TernSettings(data_dir=tmp_path, chat={"webhook_max_body_bytes": 1024})
    pulled = {"n": 0}

    async def receive() -> dict:
        pulled["n"] += 1
        return {"type": "http.request", "body": b"x" * 256, "more_body": pulled["n"] < 100_000}

    scope = {"type": "http", "method": "POST", "path": "/triggers/t", "raw_path": b"/triggers/t", "headers": []}
    request = Request(scope, receive)  # the ASGI messages uvicorn hands the app for a chunked body
    with pytest.raises(Refused) as info:
        await signed_body(request, s, {}, pool=None)  # type: ignore[arg-type]
    assert info.value.status == 413 and info.value.verified is None
    assert pulled["n"] == 5  # 4 x 256 bytes fit, the fifth passes the limit; 99,995 chunks never read


async def test_a_chunked_body_over_the_limit_answers_413_on_the_server(pg_dsn: str, tmp_path: Path) -> None:
    from starters.approvals_api import create_app

    async def chunks():
        for _ in range(64):
            yield b"x" * 256

    async with serving(create_app(_settings(pg_dsn, tmp_path))) as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.post("/triggers/t", content=chunks())
        assert r.status_code == 413 and "larger than 1024" in r.json()["error"]


async def test_a_signature_is_spent_once_even_concurrently_and_spent_ones_are_pruned(pg_dsn: str) -> None:
    """``use_signature``: ten concurrent uses of one signature, exactly one wins (the primary key decides); a
    signature past its window (plus a minute's grace) is pruned by the next use, so the table holds one window."""
    import asyncio
    import time

    from tern.chat import store
    from tern.db import create_pool

    pool = await create_pool(pg_dsn, max_size=10)
    try:

        async def use(digest: str, expires_at: float) -> bool:
            async with pool.acquire() as conn:
                return await store.use_signature(conn, digest, "ops-bot", "POST /triggers/t", expires_at)

        later = time.time() + 300
        assert sorted(await asyncio.gather(*(use("d-1", later) for _ in range(10)))) == [False] * 9 + [True]
        assert await use("d-old", time.time() - 3600)  # already expired when spent (a clock far off)
        assert await use("d-2", later)  # prunes d-old
        async with pool.acquire() as conn:
            left = await conn.fetch("SELECT digest FROM webhook_signatures ORDER BY digest")
        assert [r["digest"] for r in left] == ["d-1", "d-2"]
        assert not await use("d-1", later)
    finally:
        await pool.close()


def test_refusals_without_a_signature_are_all_counted_but_logged_at_a_bounded_rate(caplog) -> None:
    from starters.signed_requests import UnsignedCounter

    now = {"t": 1000.0}
    counter = UnsignedCounter(per_minute=30, clock=lambda: now["t"])
    with caplog.at_level("WARNING", logger="starters.signed_requests"):
        for _ in range(35):
            counter.refused("POST /triggers/t", 401, "unsigned request")
        now["t"] += 61
        counter.refused("POST /triggers/t", 401, "unsigned request")
    lines = [r.getMessage() for r in caplog.records]
    assert counter.counts == {"POST /triggers/t 401": 36}
    assert len(lines) == 31 and lines[-1].endswith("(5 more not logged)")
