"""The facility write freeze from a chat bridge (issue 26): Slack's ``/tern freeze <reason>`` and ``/tern thaw
<reason>`` through the real slack-bolt app in HTTP mode, as the presser's mapped user; the approval policy decides
who may thaw; the freeze workflow audits each change with that principal and the surface; a write approved from its
card while frozen is held and its card says "frozen by X since ...", then the thaw releases it once.

Real servers: the Temporal dev server, a worker, PostgreSQL, the simulated IOC; Slack's Web API is a local stand-in
(slack_sdk ``base_url``), Slack's requests are signed with the app's signing secret as Slack signs them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import httpx
import pytest

from starters.bridge_cli import run_slack_bridge
from starters.client import TernClient
from tern.control.channel_access import read_value
from tern.embedded.net import free_port
from tests.agent_helpers import audit_rows, running_worker, start_run, wait_for_state, write_plan
from tests.test_chat_slack import SIGNING_SECRET, button, fake_slack, signed, signed_form, until
from tests.test_chat_webhook import serving

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.ca]


def slash(user: str, text: str) -> tuple[str, dict[str, str]]:
    """A signed ``/tern`` slash-command request as Slack sends it (form fields, Slack's "Slash commands")."""
    return signed_form(
        {
            "token": "unused",
            "team_id": "T1",
            "channel_id": "C1",
            "user_id": user,
            "command": "/tern",
            "text": text,
            "api_app_id": "A1",
            "response_url": "http://127.0.0.1:9/unused",
            "trigger_id": f"trigger-{time.monotonic_ns()}",
        }
    )


async def test_slack_freeze_and_thaw_hold_an_approved_write_and_the_card_says_so(
    temporal_env, settings, tmp_path
) -> None:
    idmap = tmp_path / "ids.toml"
    idmap.write_text('[slack]\nU_OP = "operator"\nU_VIS = "visitor"\n')
    slack_api, calls = fake_slack()
    port = free_port()
    freeze_id = f"tern-facility-freeze-{uuid.uuid4().hex[:8]}"  # one freeze per test: the dev server is shared
    async with serving(slack_api) as slack_url:
        dump = settings.model_dump()
        s = type(settings).model_validate(
            {
                **dump,
                "approval": {**dump["approval"], "approvers": ["operator"]},  # the policy: operator may thaw
                "control": {**dump["control"], "freeze_workflow_id": freeze_id},
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
        tern = TernClient(temporal_env.client, s)
        stop = asyncio.Event()
        bridge = asyncio.create_task(run_slack_bridge(s, stop))
        events = f"http://127.0.0.1:{port}/slack/events"

        async def command(user: str, text: str) -> str:
            """Send ``/tern <text>`` as ``user``; the bridge's answer in the channel."""
            seen = len(calls)
            body, headers = slash(user, text)
            async with httpx.AsyncClient(timeout=60) as http:
                assert (await http.post(events, content=body, headers=headers)).status_code == 200
            got = await until(
                lambda: [
                    a["text"]
                    for m, a in calls[seen:]
                    if m == "chat.postMessage" and a.get("text", "").startswith(f"<@{user}>")
                ],
                60,
            )
            return str(got[0])

        def card_ts(rid: str) -> str | None:
            return next(
                (a["_ts"] for m, a in calls if m == "chat.postMessage" and "thread_ts" not in a and rid in a["text"]),
                None,
            )

        async def listening() -> None:
            deadline = time.monotonic() + 60
            async with httpx.AsyncClient(timeout=5) as http:
                while True:
                    try:
                        await http.get(events)  # any answer: the bridge serves
                        return
                    except httpx.ConnectError:
                        assert time.monotonic() < deadline and not bridge.done(), "the Slack bridge never listened"
                        await asyncio.sleep(0.2)

        try:
            await listening()
            channel = "SR:MAG:QF:11:CURRENT:SP"
            start = read_value(channel)
            async with running_worker(temporal_env.client, s):
                assert "not mapped" in await command("U_NOBODY", "freeze beam loss")
                assert not (await tern.freeze_state()).frozen
                assert "needs a reason" in await command("U_OP", "freeze")
                frozen = await command("U_OP", "freeze beam-loss investigation")
                assert "Facility frozen" in frozen and "frozen by operator since" in frozen, frozen
                st = await tern.freeze_state()
                assert st.frozen and st.by == "operator" and st.reason == "beam-loss investigation"

                h = await start_run(
                    temporal_env.client, s, write_plan(channel, start + 0.25), user="physicist", approvers=["operator"]
                )
                rid = (await wait_for_state(h, "awaiting_approval")).pending.request_id  # type: ignore[union-attr]
                ts = await until(lambda: card_ts(rid), 60)
                async with httpx.AsyncClient(timeout=60) as http:
                    body, headers = signed(button("tern_approve", "U_OP", ts, rid))
                    assert (await http.post(events, content=body, headers=headers)).status_code == 200
                await wait_for_state(h, "frozen")
                held = await until(
                    lambda: [
                        a["text"] for m, a in calls if m == "chat.update" and a["ts"] == ts and "held" in a["text"]
                    ]
                )
                since = f"{st.since:%Y-%m-%d %H:%M:%S}"
                assert f"frozen by operator since {since} UTC: beam-loss investigation" in held[-1], held[-1]
                assert read_value(channel) == pytest.approx(start)  # nothing written while frozen

                refused = await command("U_VIS", "thaw visitor wants writes back")
                assert "not taken" in refused and "visitor may not thaw" in refused, refused
                assert (await tern.freeze_state()).frozen
                thawed = await command("U_OP", "thaw investigation over")
                assert "Facility thawed" in thawed, thawed
                result = await h.result()
                await until(
                    lambda: [
                        a
                        for m, a in calls
                        if m == "chat.update" and a["ts"] == ts and "Written and verified" in a["text"]
                    ]
                )
        finally:
            stop.set()
            await bridge
    assert result.status == "completed" and read_value(channel) == pytest.approx(start + 0.25)
    rows = await audit_rows(s.dsn, freeze_id)
    changes = [(r["event_kind"], r["actor"], json.loads(r["details"]).get("surface")) for r in rows]
    assert [c for c in changes if c[0] in ("facility_frozen", "facility_thawed")] == [
        ("facility_frozen", "operator", "slack"),
        ("facility_thawed", "operator", "slack"),
    ]
    assert [r["actor"] for r in rows if r["event_kind"] == "freeze_refused"] == ["visitor"]
    run_rows = await audit_rows(s.dsn, h.id)
    assert [r["event_kind"] for r in run_rows if re.fullmatch("write_(held|released)|write", r["event_kind"])] == [
        "write_held",
        "write_released",
        "write",
    ]
