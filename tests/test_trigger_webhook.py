"""Webhook triggers on real servers (Tern's webhook API under uvicorn, PostgreSQL, the Temporal dev server): a POST
signed by a key the trigger names starts one run whose input carries the body as its event; the same body again
(newly signed) is a duplicate, the same signature again a refused replay; unsigned or badly signed posts answer 401
and start nothing; another key answers 403; an unknown trigger answers 404."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
from pydantic import SecretStr

from starters.approvals_api import create_app
from tern.chat.signing import signed_headers
from tests.test_chat_webhook import serving
from tests.trigger_helpers import READ_PLAN, cli_env, runs_with_prefix, tern, write_plan

SECRETS = {"ops-bot": "s3cret-ops-0123456789", "other-bot": "s3cret-other-0123456"}


def sign(key: str, body: bytes, name: str, now: float | None = None) -> dict[str, str]:
    return signed_headers(key, SECRETS[key], body, target=f"/triggers/{name}", now=now)


async def test_signed_post_starts_one_run_and_unsigned_posts_start_nothing(temporal_env, settings, tmp_path) -> None:
    client = temporal_env.client
    secrets = {k: SecretStr(v) for k, v in SECRETS.items()}
    address = client.service_client.config.target_host
    s = settings.model_copy(
        update={
            "chat": settings.chat.model_copy(update={"webhook_secrets": secrets}),
            "temporal": settings.temporal.model_copy(update={"address": address}),
            # a day-long window: the posts below stay within it whatever the time (the boundary case is
            # tests/test_trigger_window.py, with an injected clock); no worker here, so the first status is not
            # waited for long
            "triggers": settings.triggers.model_copy(update={"dedup_window_s": 86400, "webhook_status_wait_s": 1}),
        }
    )
    env = cli_env(s, address, TERN_CHAT__WEBHOOK_SECRETS=json.dumps(SECRETS))
    name = "hook-" + uuid.uuid4().hex[:6]
    plan = write_plan(tmp_path / "read.json", READ_PLAN)
    keyless = tern(env, "trigger", "add", name, "--webhook", "--plan", str(plan))
    assert keyless.returncode == 2 and "--webhook needs --key-id KEY" in keyless.stderr, keyless.stderr
    unknown = tern(env, "trigger", "add", name, "--webhook", "--key-id", "eve", "--plan", str(plan))
    assert unknown.returncode == 2 and "--key-id 'eve' is not a key of TERN_CHAT__WEBHOOK_SECRETS" in unknown.stderr
    added = tern(env, "trigger", "add", name, "--webhook", "--key-id", "ops-bot", "--plan", str(plan), "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["when"] == f"POST /triggers/{name}"
    assert json.loads(added.stdout)["key_ids"] == ["ops-bot"]
    body = json.dumps({"alert": "RF cavity 1 reflected power high", "value": 47.5}).encode()
    async with serving(create_app(s)) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        unsigned = await http.post(f"/triggers/{name}", content=body)
        assert unsigned.status_code == 401 and "unsigned" in unsigned.json()["error"]
        forged = signed_headers("ops-bot", "not-the-secret-012345", body, target=f"/triggers/{name}")
        bad = await http.post(f"/triggers/{name}", content=body, headers=forged)
        assert bad.status_code == 401 and "signature" in bad.json()["error"]
        other_key = await http.post(f"/triggers/{name}", content=body, headers=sign("other-bot", body, name))
        assert other_key.status_code == 403 and "may not fire" in other_key.json()["error"]
        assert await runs_with_prefix(client, f"trigger-{name}-") == []

        signed_at = time.time()
        captured = sign("ops-bot", body, name, now=signed_at)
        ok = await http.post(f"/triggers/{name}", content=body, headers=captured)
        assert ok.status_code == 202, ok.text
        run_id = ok.json()["workflow_id"]
        assert run_id.startswith(f"trigger-{name}-webhook-")
        replay = await http.post(f"/triggers/{name}", content=body, headers=captured)
        assert replay.status_code == 409 and "signature already used" in replay.json()["error"]
        again = await http.post(f"/triggers/{name}", content=body, headers=sign("ops-bot", body, name, signed_at + 1))
        assert again.status_code == 200 and again.json() == {
            "status": "duplicate",
            "workflow_id": run_id,
            "run_id": run_id,
            "progress": None,  # no worker ran it: nothing published yet
        }

        other = json.dumps(["not", "an", "object"]).encode()
        wrong = await http.post(f"/triggers/{name}", content=other, headers=sign("ops-bot", other, name))
        assert wrong.status_code == 400
        assert (await asyncio.to_thread(tern, env, "trigger", "pause", name)).returncode == 0
        later = json.dumps({"alert": "again"}).encode()
        paused = await http.post(f"/triggers/{name}", content=later, headers=sign("ops-bot", later, name))
        assert paused.status_code == 409 and "paused" in paused.json()["error"]
        assert (await asyncio.to_thread(tern, env, "trigger", "resume", name)).returncode == 0
        resumed = await http.post(
            f"/triggers/{name}", content=later, headers=sign("ops-bot", later, name, time.time() + 1)
        )
        assert resumed.status_code == 202, resumed.text
        await client.get_workflow_handle(resumed.json()["workflow_id"]).terminate("test over")
        missing = await http.post("/triggers/no-such", content=body, headers=sign("ops-bot", body, "no-such"))
        assert missing.status_code == 404
    history = await client.get_workflow_handle(run_id).fetch_history()
    request = json.loads(history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data)
    assert request["trigger"] == {"name": name, "kind": "webhook", "event": json.loads(body), "source": "ops-bot"}
    await client.get_workflow_handle(run_id).terminate("test over")
    assert tern(env, "trigger", "remove", name).returncode == 0
