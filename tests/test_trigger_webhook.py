"""Webhook triggers on real servers (Tern's HTTP API under uvicorn, PostgreSQL, the Temporal dev server): a signed
POST starts one run whose input carries the body as its event; the same body again is a duplicate; unsigned or
badly signed posts answer 401 and start nothing; an unknown trigger answers 404."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
from pydantic import SecretStr

from starters.approvals_api import create_app
from tern.chat.signing import signed_headers
from tests.test_chat_webhook import serving
from tests.trigger_helpers import READ_PLAN, cli_env, runs_with_prefix, tern, write_plan

SECRETS = {"ops-bot": "s3cret-ops"}


async def test_signed_post_starts_one_run_and_unsigned_posts_start_nothing(temporal_env, settings, tmp_path) -> None:
    client = temporal_env.client
    secrets = {k: SecretStr(v) for k, v in SECRETS.items()}
    address = client.service_client.config.target_host
    s = settings.model_copy(
        update={
            "chat": settings.chat.model_copy(update={"webhook_secrets": secrets}),
            "temporal": settings.temporal.model_copy(update={"address": address}),
        }
    )
    env = cli_env(s, address)
    name = "hook-" + uuid.uuid4().hex[:6]
    plan = write_plan(tmp_path / "read.json", READ_PLAN)
    added = tern(env, "trigger", "add", name, "--webhook", "--plan", str(plan), "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["when"] == f"POST /triggers/{name}"
    body = json.dumps({"alert": "RF cavity 1 reflected power high", "value": 47.5}).encode()
    async with serving(create_app(s)) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        unsigned = await http.post(f"/triggers/{name}", content=body)
        assert unsigned.status_code == 401 and "unsigned" in unsigned.json()["error"]
        forged = signed_headers("ops-bot", "not-the-secret", body)
        bad = await http.post(f"/triggers/{name}", content=body, headers=forged)
        assert bad.status_code == 401 and "signature" in bad.json()["error"]
        assert await runs_with_prefix(client, f"trigger-{name}-") == []

        ok = await http.post(
            f"/triggers/{name}", content=body, headers=signed_headers("ops-bot", SECRETS["ops-bot"], body)
        )
        assert ok.status_code == 202, ok.text
        run_id = ok.json()["workflow_id"]
        assert run_id.startswith(f"trigger-{name}-webhook-")
        again = await http.post(
            f"/triggers/{name}", content=body, headers=signed_headers("ops-bot", SECRETS["ops-bot"], body)
        )
        assert again.status_code == 200 and again.json() == {
            "status": "duplicate",
            "workflow_id": run_id,
            "run_id": run_id,
        }

        other = json.dumps(["not", "an", "object"]).encode()
        wrong = await http.post(
            f"/triggers/{name}", content=other, headers=signed_headers("ops-bot", SECRETS["ops-bot"], other)
        )
        assert wrong.status_code == 400
        assert (await asyncio.to_thread(tern, env, "trigger", "pause", name)).returncode == 0
        later = json.dumps({"alert": "again"}).encode()
        paused = await http.post(
            f"/triggers/{name}", content=later, headers=signed_headers("ops-bot", SECRETS["ops-bot"], later)
        )
        assert paused.status_code == 409 and "paused" in paused.json()["error"]
        assert (await asyncio.to_thread(tern, env, "trigger", "resume", name)).returncode == 0
        resumed = await http.post(
            f"/triggers/{name}", content=later, headers=signed_headers("ops-bot", SECRETS["ops-bot"], later)
        )
        assert resumed.status_code == 202, resumed.text
        await client.get_workflow_handle(resumed.json()["workflow_id"]).terminate("test over")
        missing = await http.post(
            "/triggers/no-such", content=body, headers=signed_headers("ops-bot", SECRETS["ops-bot"], body)
        )
        assert missing.status_code == 404
    history = await client.get_workflow_handle(run_id).fetch_history()
    request = json.loads(history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data)
    assert request["trigger"] == {"name": name, "kind": "webhook", "event": json.loads(body), "source": "ops-bot"}
    await client.get_workflow_handle(run_id).terminate("test over")
    assert tern(env, "trigger", "remove", name).returncode == 0
